"""The OpenAPI contract of the served model, generated from its signature (model.json).

Every path the function answers, with request and answer schemas that follow the
model: its features (JSON Schema bounds as model.json states them), its target,
its classes or its regression value, and the served limits. GET /openapi.json
answers it; the committed openapi.yaml is the one for the bundled model
(`make openapi` writes it, tests/test_contract.py checks that it is current).
Plain dicts, no YAML here: only requirements.txt is installed where it is served.

Usage: python -m iris_predict.contract [MODEL_JSON]   (prints the document as JSON)
"""

import functools
import json
import math
import re
import sys

from iris_predict.edge import cors
from iris_predict.model import signature as sig
from iris_predict.model.estimators import AVERAGE_ROW, EXPECTED_SCORE

SERVER_NAME = "iris-predict"
NOSNIFF = {"$ref": "#/components/headers/Nosniff"}
MAX_INT_DIGITS = 300  # a longer decimal string is past float64's range: not a finite number
EXPLAIN = "explain"  # also asked for in a body, beside a row's values or instances
FRACTION = "(\\.[0-9]*)?"  # "5." is 5, as float() reads it
# A cell or a BigQuery string argument that is a category: anything but CSV's own characters.
CATEGORY_CELL = '[^,"\\r\\n]+'
# What a regular expression must escape, as ECMA-262 (and so JSON Schema) reads it.
REGEX_SPECIAL = re.compile(r"([.^$*+?()\[\]{}|\\/-])")


def ref(name: str, kind: str = "schemas") -> dict:
    return {"$ref": f"#/components/{kind}/{name}"}


@functools.lru_cache(maxsize=4)
def document(signature: sig.Signature, max_body_bytes: int, max_batch_rows: int) -> dict:
    """The OpenAPI 3.1 document for a model with this signature, served with these limits."""
    return _Contract(signature, max_body_bytes, max_batch_rows).document()


class _Contract:
    """One document's facts, so that each schema below reads as what it says."""

    def __init__(self, signature: sig.Signature, max_body_bytes: int, max_batch_rows: int):
        self.s = signature
        self.max_body_bytes = max_body_bytes
        self.rows = max_batch_rows
        self.width = len(signature.features)
        self.keys = _component_keys(signature.names)  # a feature's value schema, by feature name
        self.target = signature.target

    # The document.

    def document(self) -> dict:
        s = self.s
        return {
            "openapi": "3.1.0",
            "info": {
                "title": SERVER_NAME,
                "version": "1.0",
                "summary": self._summary(),
                "description": (
                    f"A Google Cloud Run function serving the model {s.name!r}, generated from "
                    "its model.json. It answers several protocols, each on its own paths: its "
                    "own (and BigQuery remote functions, and CSV tables) on `/`, the Open "
                    "Inference Protocol (KServe V2) under `/v2`, and MLflow's scoring server on "
                    "`/invocations`, `/ping`, `/health` and `/version`. A browser asking `/` "
                    "for HTML gets the web page. Any other path is a 404. Every answer carries "
                    "`X-Content-Type-Options: nosniff`. docs/api.md explains each field."),
            },
            "servers": [{"url": "http://localhost:8080"}],
            "paths": self.paths(),
            "components": {
                "headers": {"Nosniff": {"required": True,
                                        "schema": {"type": "string", "const": "nosniff"}}},
                "parameters": self.parameters(),
                "responses": self.responses(),
                "schemas": self.schemas(),
            },
        }

    def _summary(self) -> str:
        s = self.s
        what = (f"one of {_words(s.classes)}" if s.classifier else "a number")
        return (f"Predict {self.target} ({what}) from {self.width} feature"
                f"{'s' if self.width > 1 else ''}: {', '.join(s.names)}.")

    # Paths.

    def paths(self) -> dict:
        model_name = ref("ModelName", "parameters")
        model_version = ref("ModelVersion", "parameters")
        infer = self.v2_infer()
        return {
            "/": {"get": self.describe(), "post": self.predict(), "options": _preflight()},
            "/openapi.json": {"get": _get(
                "contract", "This document: the OpenAPI contract of the served model.",
                _json_ok("The contract.", {"type": "object",
                                           "required": ["openapi", "info", "paths"]}))},
            "/app.js": {"get": _get("pageScript", "The web page's script.",
                                    _content_ok("The script.", "text/javascript"))},
            "/style.css": {"get": _get("pageStyle", "The web page's style sheet.",
                                       _content_ok("The style sheet.", "text/css"))},
            "/v2": {"get": _get(
                "v2ServerMetadata", "Open Inference Protocol: server metadata.",
                _json_ok("The server's name, version (the model's) and extensions.", {
                    "type": "object", "required": ["name", "version", "extensions"],
                    "additionalProperties": False,
                    "properties": {
                        "name": {"type": "string", "const": SERVER_NAME},
                        "version": ref("ModelVersion"),
                        "extensions": {"type": "array", "items": {
                            "type": "string", "enum": ["binary_tensor_data"]}}}}),
                unavailable=True)},
            "/v2/health/live": {"get": _get(
                "v2ServerLive", "Open Inference Protocol: the server is up.",
                _json_ok("Live.", _const_object("live", True)))},
            "/v2/health/ready": {"get": _get(
                "v2ServerReady",
                "Open Inference Protocol: the model is loaded (answers at once, never waits).",
                ref("V2Ready", "responses"), unavailable=True)},
            "/v2/models/{model_name}": {
                "parameters": [model_name],
                "get": self._v2_get("v2ModelMetadata",
                                    "the model's inputs, outputs and version.",
                                    ref("V2ModelMetadata", "responses"))},
            "/v2/models/{model_name}/versions/{model_version}": {
                "parameters": [model_name, model_version],
                "get": self._v2_get("v2ModelVersionMetadata",
                                    "the model's metadata, for its version.",
                                    ref("V2ModelMetadata", "responses"))},
            "/v2/models/{model_name}/ready": {
                "parameters": [model_name],
                "get": self._v2_get("v2ModelReady", "the model is loaded (answers at once, "
                                    "never waits).", ref("V2ModelReady", "responses"))},
            "/v2/models/{model_name}/versions/{model_version}/ready": {
                "parameters": [model_name, model_version],
                "get": self._v2_get("v2ModelVersionReady", "the model version is loaded.",
                                    ref("V2ModelReady", "responses"))},
            "/v2/models/{model_name}/infer": {
                "parameters": [model_name], "post": {**infer, "operationId": "v2Infer"}},
            "/v2/models/{model_name}/versions/{model_version}/infer": {
                "parameters": [model_name, model_version],
                "post": {**infer, "operationId": "v2InferVersion"}},
            "/invocations": {"post": self.mlflow_invocations()},
            "/ping": {"get": _mlflow_health("mlflowPing", "MLflow scoring server: the model is "
                                            "loaded (answers at once, never waits).")},
            "/health": {"get": _mlflow_health("mlflowHealth",
                                              "MLflow scoring server: the same as /ping.")},
            "/version": {"get": {
                "operationId": "mlflowVersion",
                "summary": "MLflow scoring server: the version, which is the model's.",
                "responses": {
                    "200": {"description": "The model's version, as plain text.",
                            "headers": {"X-Content-Type-Options": NOSNIFF},
                            "content": {"text/plain": {"schema": ref("ModelVersion")}}},
                    "503": ref("MlflowError", "responses")}}},
        }

    def describe(self) -> dict:
        return {
            "operationId": "describe",
            "summary": "The model's metadata, from which a client builds its form; a browser "
                       "(Accept preferring text/html) gets the web page instead.",
            "responses": {
                "200": {"description": "Metadata, or the page.",
                        "headers": {"X-Content-Type-Options": NOSNIFF},
                        "content": {"application/json": {"schema": ref("Metadata")},
                                    "text/html": {"schema": {"type": "string"}}}},
                "503": ref("Unavailable", "responses"),
            },
        }

    def predict(self) -> dict:
        s = self.s
        bodies = [ref("OneRowByName")] + ([ref("OneRowByAlias")] if s.aliases else []) \
            + [ref("InstancesRequest"), ref("BigQueryRequest")]
        return {
            "operationId": "predict",
            "summary": "Predict one row, a batch, a CSV table, or a BigQuery remote-function "
                       "call.",
            "parameters": [{
                "name": "explain", "in": "query",
                "description": "true adds `explanations` to a one-row, `instances` or CSV "
                               "answer (not to BigQuery calls, which are refused with it).",
                "schema": {"type": "boolean"}}],
            "requestBody": {"required": True, "content": {
                "application/json": {"schema": {"anyOf": bodies}},
                "text/csv": {"schema": ref("CsvTable")}}},
            "responses": {
                "200": {
                    "description": "The prediction, shaped like the request: one row, "
                                   "`instances` (or a CSV table), or BigQuery `calls`. A batch "
                                   "with `Accept: text/csv` is answered as a CSV table.",
                    "headers": {"X-Content-Type-Options": NOSNIFF},
                    "content": {
                        "application/json": {"schema": {"anyOf": [
                            ref("RowAnswer"), ref("InstancesAnswer"), ref("BigQueryAnswer")]}},
                        "text/csv": {"schema": ref("CsvAnswer")}}},
                **_refusals("400", "413", "415", "503"),
            },
        }

    def _v2_get(self, operation: str, summary: str, ok: dict) -> dict:
        return {"operationId": operation, "summary": f"Open Inference Protocol: {summary}",
                "responses": {"200": ok, "404": ref("NotFound", "responses"),
                              "503": ref("Unavailable", "responses")}}

    def v2_infer(self) -> dict:
        s = self.s
        if s.numeric:
            inputs = (f"One input tensor of shape [N, {self.width}], FP32 or FP64, in the "
                      "metadata's feature order. JSON Schema cannot say that `data` holds "
                      f"N * {self.width} values; the function checks it (400).")
        else:
            inputs = ("One input tensor per feature, named as the feature, of shape [N] or "
                      "[N, 1] (MLServer's pandas codec): BYTES for categories, FP32 or FP64 "
                      "for numbers.")
        outputs = "`predict` (INT64 [N], class indices) and `predict_proba` (FP64 " \
            f"[N, {len(s.classes)}])" if s.classifier else "`predict` (FP64 [N])"
        return {
            "summary": "Open Inference Protocol: predict a tensor of rows.",
            "description": inputs + " Tensors may also come as raw bytes after the JSON header "
                           "(Triton's binary tensor extension: `Inference-Header-Content-"
                           "Length` gives the header's length).",
            "requestBody": {"required": True, "content": {
                "application/json": {"schema": ref("V2InferenceRequest")},
                "application/octet-stream": {"schema": {"type": "string",
                                                        "format": "binary"}}}},
            "responses": {
                "200": {
                    "description": f"The outputs asked for (all when no list is given): "
                                   f"{outputs}. With binary outputs the body is the JSON "
                                   "header followed by the tensors' bytes "
                                   "(application/octet-stream).",
                    "headers": {
                        "X-Content-Type-Options": NOSNIFF,
                        "Inference-Header-Content-Length": {
                            "description": "With binary outputs, the length of the JSON header.",
                            "schema": {"type": "string", "pattern": "^[0-9]+$"}}},
                    "content": {
                        "application/json": {"schema": ref("V2InferenceResponse")},
                        "application/octet-stream": {"schema": {"type": "string",
                                                                "format": "binary"}}}},
                **_refusals("400", "404", "413", "415", "503"),
            },
        }

    def mlflow_invocations(self) -> dict:
        values = self.s.predict_values
        answer = {"enum": list(values)} if values else ref("ClassIndex") if self.s.classifier \
            else {"type": "number"}
        error = ref("MlflowError", "responses")
        return {
            "operationId": "mlflowInvocations",
            "summary": "MLflow scoring server: predict a table of rows.",
            "requestBody": {"required": True, "content": {
                "application/json": {"schema": ref("MlflowRequest")},
                "text/csv": {"schema": ref("CsvTable")}}},
            "responses": {
                "200": {"description": "What the model's own predict() answers, one per row, "
                                       "in order: " + ("its class labels." if values else
                                                       "the class index." if self.s.classifier
                                                       else "the predicted value."),
                        "headers": {"X-Content-Type-Options": NOSNIFF},
                        "content": {"application/json": {"schema": {
                            "type": "object", "required": ["predictions"],
                            "additionalProperties": False,
                            "properties": {"predictions": {"type": "array", "items": answer}}}}}},
                "400": error, "413": error, "415": error, "503": error,
            },
        }

    # Components.

    def parameters(self) -> dict:
        name = self.s.name
        return {
            "ModelName": {"name": "model_name", "in": "path", "required": True,
                          "description": f"The only model is {name}; any other name is a 404.",
                          "schema": {"type": "string", "enum": [name]}},
            "ModelVersion": {"name": "model_version", "in": "path", "required": True,
                             "description": f"The model's version (GET /v2/models/{name}); "
                                            "any other is a 404.",
                             "schema": ref("ModelVersion")},
        }

    def responses(self) -> dict:
        name = self.s.name
        error = {"application/json": {"schema": ref("Error")}}
        nosniff = {"X-Content-Type-Options": NOSNIFF}
        return {
            "Invalid": {"description": "The request is malformed; the message names the "
                                       "problem.", "headers": nosniff, "content": error},
            "TooLarge": {"description": "The body is over MAX_BODY_BYTES "
                                        f"({self.max_body_bytes}) or a batch over "
                                        f"MAX_BATCH_ROWS ({self.rows}).",
                         "headers": nosniff, "content": error},
            "NotJson": {"description": "The body is not sent in a type the path takes.",
                        "headers": nosniff, "content": error},
            "NotFound": {"description": "Nothing here, another model, or another version of it.",
                         "headers": nosniff, "content": error},
            "Unavailable": {"description": "The model cannot be loaded (the cause is in the "
                                           "function's log, once), or, for readiness probes, "
                                           "is still loading.",
                            "headers": nosniff, "content": error},
            "V2Ready": _json_ok("The model is loaded.", _const_object("ready", True)),
            "V2ModelReady": _json_ok("The model is loaded.", {
                "type": "object", "required": ["name", "ready"], "additionalProperties": False,
                "properties": {"name": {"type": "string", "const": name},
                               "ready": {"type": "boolean", "const": True}}}),
            "V2ModelMetadata": _json_ok("The model's name, version, platform, inputs and "
                                        "outputs.", ref("V2ModelMetadata")),
            "MlflowHealthy": _json_ok("The model is loaded.", {
                "type": "object", "required": ["status"], "additionalProperties": False,
                "properties": {"status": {"type": "string", "const": "ok"}}}),
            "MlflowError": {
                "description": "A refusal, as MLflow's scoring server words it.",
                "headers": nosniff,
                "content": {"application/json": {"schema": {
                    "type": "object", "required": ["error_code", "message"],
                    "additionalProperties": False,
                    "properties": {
                        "error_code": {"type": "string", "enum": [
                            "BAD_REQUEST", "ENDPOINT_NOT_FOUND", "TEMPORARILY_UNAVAILABLE",
                            "INTERNAL_ERROR"]},
                        "message": {"type": "string", "minLength": 1, "maxLength": 400}}}}}},
        }

    def schemas(self) -> dict:
        s = self.s
        found = {self.keys[f.name]: _value(f) for f in s.features}
        found.update(self.requests())
        found.update(self.answers())
        found.update(self.v2())
        found.update(self.mlflow())
        found.update(self.metadata())
        found["Error"] = {
            "description": "What is wrong, which field, what was expected, what came; never "
                           "more than a few hundred characters, never the request echoed "
                           "back. BigQuery requests get errorMessage, which BigQuery shows "
                           "instead of retrying.",
            "type": "object", "minProperties": 1, "maxProperties": 1,
            "additionalProperties": False,
            "properties": {"error": {"type": "string", "minLength": 1, "maxLength": 400},
                           "errorMessage": {"type": "string", "minLength": 1, "maxLength": 400}}}
        return found

    def _row_object(self, names: tuple, description: str, explain: bool = False) -> dict:
        features = self.s.features
        properties = {n: ref(self.keys[f.name]) for n, f in zip(names, features)}
        if explain and EXPLAIN not in properties:  # a feature may be called "explain"
            properties[EXPLAIN] = {"description": "true adds `explanations` (as ?explain=true "
                                                  "does).", "type": "boolean"}
        return {"description": description, "type": "object",
                "required": [n for n, f in zip(names, features) if not f.missing],
                "additionalProperties": False, "properties": properties}

    def requests(self) -> dict:
        s = self.s
        found = {"RowByName": self._row_object(s.names, "A row, by the features' names."),
                 "OneRowByName": self._row_object(s.names, "One row, by the features' names.",
                                                  explain=True)}
        if s.aliases:
            found["RowByAlias"] = self._row_object(s.aliases, "A row, by the features' short "
                                                              "names (aliases).")
            found["OneRowByAlias"] = self._row_object(s.aliases, "One row, by the features' "
                                                                 "short names (aliases).",
                                                      explain=True)
        found["Row"] = {"description": f"[{', '.join(s.names)}]", "type": "array",
                        "prefixItems": [ref(self.keys[n]) for n in s.names],
                        "items": False, "minItems": self.width, "maxItems": self.width}
        rows = [ref("Row"), ref("RowByName")] + ([ref("RowByAlias")] if s.aliases else [])
        explain = {"description": "Add `explanations`, one per row.", "type": "boolean"}
        parameters = {EXPLAIN: explain}
        if s.classifier:
            parameters = {"probabilities": {"type": "boolean"}, **parameters}
        found["InstancesRequest"] = {
            "description": "A batch in the Vertex AI / KServe V1 shape.",
            "type": "object", "required": ["instances"], "additionalProperties": False,
            "properties": {
                "instances": {"type": "array", "minItems": 1, "maxItems": self.rows,
                              "items": {"anyOf": rows}},
                "parameters": {"type": "object", "additionalProperties": False,
                               "properties": parameters},
                EXPLAIN: explain}}
        outputs = [self.target, "class", "json"] if s.classifier else [self.target, "json"]
        found["BigQueryRequest"] = {
            "description": "What BigQuery sends a remote function; it adds fields of its own "
                           "(requestId, caller, sessionUser), which are ignored.",
            "type": "object", "required": ["calls"],
            "properties": {
                "calls": {"type": "array", "maxItems": self.rows, "items": {
                    "type": "array", "minItems": self.width, "maxItems": self.width,
                    "items": False,
                    "prefixItems": [self._argument(f) for f in s.features]}},
                "userDefinedContext": {
                    "type": ["object", "null"], "additionalProperties": False,
                    "properties": {"output": {"type": "string", "enum": outputs}}}}}
        found["CsvTable"] = {
            "description": "One row per line: a header row of the long or the short names (in "
                           "any order), or no header and the columns in the features' order.",
            "type": "string", "pattern": self._csv_pattern()}
        return found

    def _argument(self, f: sig.Feature) -> dict:
        """A BigQuery call's argument: the value, SQL NULL, or a NUMERIC column's string."""
        choices = [ref(self.keys[f.name]),
                   {"type": "null", "description": "SQL NULL; the reply for this call is null."}]
        pattern = decimal_pattern(f) if f.number else None
        if pattern:
            choices.append({"type": "string", "description": "A NUMERIC column, sent as a "
                                                             "decimal string.",
                            "pattern": f"^({pattern})$"})
        return {"anyOf": choices}

    def _csv_pattern(self) -> str:
        s = self.s
        headers = [",".join(_escape(n) for n in s.names)]
        if s.aliases:
            headers.append(",".join(_escape(a) for a in s.aliases))
        cells = []
        for f in s.features:
            cell = (decimal_pattern(f) or "[^,\\r\\n]+") if f.number else CATEGORY_CELL
            cells.append(f"({cell})?" if f.missing else f"({cell})")
        row = ",".join(cells)
        return f"^(({'|'.join(headers)})\\n)?{row}(\\n{row})*\\n?$"

    def answers(self) -> dict:
        s = self.s
        names = list(s.names)
        found = {
            "Warning": {
                "description": "A value the training data never had: a number outside the "
                               "training range (the prediction extrapolates), or a category "
                               "not seen in training.",
                "type": "object", "required": ["row", "feature", "value", "message"],
                "properties": {"row": {"type": "integer", "minimum": 0},
                               "feature": {"type": "string", "enum": names},
                               "value": {"type": ["number", "string"]},
                               "min": {"type": "number"}, "max": {"type": "number"},
                               "message": {"type": "string"}}},
            "Explanations": {
                "description": "Only when asked for: one object per row, each feature's part of "
                               "the prediction's score (the predicted class's, or the value) "
                               "relative to its base value (`base_values`): a row's parts "
                               "and its base add up to its score.",
                "type": "array", "items": {
                    "type": "object", "required": names, "additionalProperties": False,
                    "properties": {n: {"type": "number"} for n in names}}},
        }
        warnings = {"type": "array", "items": ref("Warning")}
        if s.classifier:
            found["Label"] = {"type": "string", "enum": list(s.classes)}
            found["ClassIndex"] = {"type": "integer", "minimum": 0,
                                   "maximum": len(s.classes) - 1}
            found["Probabilities"] = {
                "type": "object", "required": list(s.classes), "additionalProperties": False,
                "properties": {c: {"type": "number", "minimum": 0, "maximum": 1}
                               for c in s.classes}}
            one, label, prediction = ref("ClassIndex"), ref("Label"), \
                "[k], the class index, as the tutorial answered."
        else:
            one = label = {"type": "number"}
            prediction = "[v], the predicted value."
        single = {"prediction": {"description": prediction, "type": "array", "items": one,
                                 "minItems": 1, "maxItems": 1},
                  self.target: label}
        batch = {"predictions": {"type": "array", "items": one},
                 self.target: {"type": "array", "items": label}}
        if s.classifier:
            single["probabilities"] = ref("Probabilities")
            batch["probabilities"] = {"description": "Only when parameters.probabilities is "
                                                     "true.",
                                      "type": "array", "items": ref("Probabilities")}
        explanations = {
            "explanations": ref("Explanations"),
            "base_values": {"description": "Only with `explanations`: each row's score they are "
                                           "measured from.",
                            "type": "array", "items": {"type": "number"}},
            "measured_from": {"description": "Only with `explanations`: what the base values "
                                             "are, the average training row's score (linear "
                                             "models) or the expected score (tree models).",
                              "type": "string",
                              "enum": [AVERAGE_ROW, EXPECTED_SCORE]}}
        found["RowAnswer"] = {
            "type": "object", "additionalProperties": False,
            "required": [*single, "warnings"],
            "properties": {**single, "warnings": warnings, **explanations}}
        found["InstancesAnswer"] = {
            "type": "object", "additionalProperties": False,
            "required": ["predictions", self.target, "warnings"],
            "properties": {**batch, "warnings": warnings, **explanations}}
        json_reply = {"type": "object", "description": 'userDefinedContext.output "json".',
                      "additionalProperties": False}
        reply_warnings = {"type": "array", "items": {
            "type": "object", "required": ["feature", "value", "message"],
            "properties": {k: v for k, v in found["Warning"]["properties"].items()
                           if k != "row"}}}
        if s.classifier:
            replies = [ref("Label"), ref("ClassIndex")]
            json_reply.update(required=["class", self.target, "probabilities", "warnings"],
                              properties={"class": ref("ClassIndex"), self.target: ref("Label"),
                                          "probabilities": ref("Probabilities"),
                                          "warnings": reply_warnings})
        else:
            replies = [{"type": "number"}]
            json_reply.update(required=[self.target, "warnings"],
                              properties={self.target: {"type": "number"},
                                          "warnings": reply_warnings})
        found["BigQueryAnswer"] = {
            "type": "object", "required": ["replies"], "additionalProperties": False,
            "properties": {"replies": {
                "description": "One per call, in order; null where a call had a SQL NULL.",
                "type": "array", "items": {"anyOf": [{"type": "null"}, *replies, json_reply]}}}}
        columns = ["class", self.target, *(f"probability_{c}" for c in s.classes)] \
            if s.classifier else [self.target]
        found["CsvAnswer"] = {
            "description": f"A header row (the request's columns the model does not use, then "
                           f"{', '.join(columns)}), then one line per input row.",
            "type": "string",
            "pattern": f"^([^\\n]*,)?{','.join(_escape(c) for c in columns)}\\n"}
        found["ModelVersion"] = {
            "description": "The first 12 hex digits of the model file's SHA-256 (model.json "
                           "sha256).",
            "type": "string", "pattern": "^[0-9a-f]{12}$"}
        return found

    def v2(self) -> dict:
        s = self.s
        if s.numeric:
            values = {ref(self.keys[n])["$ref"] for n in s.names}
            # A flat tensor interleaves the features; one schema fits each value only if they
            # share it.
            value = ref(self.keys[s.names[0]]) if len(values) == 1 else {"type": "number"}
            tensor = {
                "type": "object", "required": ["name", "shape", "datatype", "data"],
                "additionalProperties": False,
                "properties": {
                    "name": {"type": "string"},
                    "shape": {"description": f"[N, {self.width}]", "type": "array",
                              "minItems": 2, "maxItems": 2,
                              "prefixItems": [{"type": "integer", "minimum": 1,
                                               "maximum": self.rows},
                                              {"const": self.width}]},
                    "datatype": {"type": "string", "enum": ["FP32", "FP64"]},
                    "parameters": _binary_size(),
                    "data": {"description": f"N * {self.width} values, row-major, flat or as N "
                                            f"rows of {self.width}.",
                             "anyOf": [{"type": "array", "minItems": self.width,
                                        "items": value},
                                       {"type": "array", "minItems": 1, "items": ref("Row")}]}}}
            inputs = {"type": "array", "minItems": 1, "maxItems": 1, "items": tensor}
        else:
            inputs = {"type": "array", "minItems": self.width, "maxItems": self.width,
                      "items": {"anyOf": [self._column_tensor(f) for f in s.features]}}
        outputs = ["predict", "predict_proba"] if s.classifier else ["predict"]
        return {
            "V2InferenceRequest": {
                "type": "object", "required": ["inputs"], "additionalProperties": False,
                "properties": {
                    "id": {"type": "string"},
                    "parameters": {"type": "object", "additionalProperties": False,
                                   "properties": {"binary_data_output": {"type": "boolean"}}},
                    "inputs": inputs,
                    "outputs": {"type": "array", "minItems": 1, "items": {
                        "type": "object", "required": ["name"], "additionalProperties": False,
                        "properties": {
                            "name": {"type": "string", "enum": outputs},
                            "parameters": {"type": "object", "additionalProperties": False,
                                           "properties": {"binary_data": {"type": "boolean"}}}}}}}},
            "V2InferenceResponse": {
                "type": "object", "required": ["model_name", "model_version", "outputs"],
                "additionalProperties": False,
                "properties": {
                    "model_name": {"type": "string", "const": s.name},
                    "model_version": ref("ModelVersion"),
                    "id": {"type": "string"},
                    "outputs": {"type": "array", "minItems": 1, "items": {
                        "type": "object", "required": ["name", "shape", "datatype"],
                        "additionalProperties": False,
                        "properties": {
                            "name": {"type": "string", "enum": outputs},
                            "shape": {"type": "array", "items": {"type": "integer",
                                                                 "minimum": 0}},
                            "datatype": {"type": "string", "enum": [
                                "INT64", "FP64"] if s.classifier else ["FP64"]},
                            "parameters": _binary_size(),
                            "data": {"type": "array", "items": {"type": "number"}}}}}}},
            "V2ModelMetadata": {
                "type": "object", "required": ["name", "versions", "platform", "inputs",
                                               "outputs"],
                "additionalProperties": False,
                "properties": {
                    "name": {"type": "string", "const": s.name},
                    "versions": {"type": "array", "items": ref("ModelVersion")},
                    "platform": {"type": "string"},
                    "inputs": {"type": "array", "items": ref("V2TensorMetadata")},
                    "outputs": {"type": "array", "items": ref("V2TensorMetadata")}}},
            "V2TensorMetadata": {
                "type": "object", "required": ["name", "datatype", "shape"],
                "additionalProperties": False,
                "properties": {
                    "name": {"type": "string"}, "datatype": {"type": "string"},
                    "shape": {"type": "array", "items": {"type": "integer"}},
                    "parameters": {"type": "object", "additionalProperties": {
                        "type": ["string", "number", "boolean"]}}}},
        }

    def _column_tensor(self, f: sig.Feature) -> dict:
        """One feature's column, as MLServer's pandas codec sends it."""
        value = ref(self.keys[f.name])
        return {
            "type": "object", "required": ["name", "shape", "datatype", "data"],
            "additionalProperties": False,
            "properties": {
                "name": {"type": "string", "const": f.name},
                "shape": {"description": "[N] or [N, 1]", "type": "array", "minItems": 1,
                          "maxItems": 2,
                          "prefixItems": [{"type": "integer", "minimum": 1,
                                           "maximum": self.rows}, {"const": 1}]},
                "datatype": {"type": "string",
                             "enum": ["FP32", "FP64"] if f.number else ["BYTES"]},
                "parameters": _binary_size(),
                "data": {"type": "array", "minItems": 1, "maxItems": self.rows,
                         "items": value}}}

    def mlflow(self) -> dict:
        s = self.s
        columns = [{"const": list(s.names)}] + ([{"const": list(s.aliases)}] if s.aliases else [])
        rows = [ref("Row"), ref("MlflowRecordByName")] + (
            [ref("MlflowRecordByAlias")] if s.aliases else [])
        params = ref("MlflowParams")

        def one_of(field: str, schema: dict) -> dict:
            return {"type": "object", "required": [field], "additionalProperties": False,
                    "properties": {field: schema, "params": params}}

        records = ref("Records")
        return {
            "MlflowRequest": {
                "description": "Exactly one of dataframe_split, dataframe_records, instances or "
                               "inputs (a body with none, or more than one, is a 400 that names "
                               "those found); params must be empty.",
                "anyOf": [
                    one_of("dataframe_split", {
                        "description": "pandas' DataFrame.to_dict(orient=\"split\").",
                        "type": "object", "required": ["data"], "additionalProperties": False,
                        "properties": {
                            "index": {"type": "array"},
                            "columns": {"description": "The names of data's columns, long or "
                                                       "short, in any order; without them the "
                                                       "columns are in model.json's order.",
                                        "anyOf": columns},
                            "data": {"type": "array", "minItems": 1, "maxItems": self.rows,
                                     "items": ref("Row")}}}),
                    one_of("dataframe_records", records),
                    one_of("instances", records),
                    one_of("inputs", records)]},
            "Records": {"type": "array", "minItems": 1, "maxItems": self.rows,
                        "items": {"anyOf": rows}},
            # Other columns are ignored, as MLflow ignores inputs its signature does not name.
            **{f"MlflowRecordBy{form}": {**self._row_object(
                names, f"A row by the features' {words}; other columns are ignored (one named "
                       f"like a feature is refused, naming it)."), "additionalProperties": True}
               for form, names, words in (("Name", s.names, "names"),
                                          ("Alias", s.aliases, "short names"))
               if names},
            "MlflowParams": {"type": "object", "maxProperties": 0},
        }

    def metadata(self) -> dict:
        s = self.s
        properties = {
            "name": {"type": "string", "const": s.name},
            "task": {"type": "string", "const": s.task},
            "target": {"type": "string", "const": self.target},
            "features": {"type": "array", "minItems": self.width, "maxItems": self.width,
                         "prefixItems": [self._feature(f) for f in s.features],
                         "items": False},
            "aliases": {"type": "object", "additionalProperties": {"type": "string",
                                                                   "enum": list(s.names)}},
            "classes": {"type": "array", "items": ref("Label")} if s.classifier else None,
            "estimator": {"type": "string"},
            "metrics": {"type": "object", "additionalProperties": {"type": "number"}},
            "versions": {"type": "object", "required": ["python", "scikit-learn", "joblib",
                                                        "numpy"],
                         "additionalProperties": {"type": "string"}},
            "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
            "limits": {"type": "object", "required": ["max_body_bytes", "max_batch_rows"],
                       "additionalProperties": False,
                       "properties": {"max_body_bytes": {"type": "integer", "minimum": 1},
                                      "max_batch_rows": {"type": "integer", "minimum": 1}}},
        }
        properties = {k: v for k, v in properties.items() if v is not None}
        return {"Metadata": {"type": "object", "required": list(properties),
                             "additionalProperties": False, "properties": properties}}

    def _feature(self, f: sig.Feature) -> dict:
        """A feature as the metadata describes it (model.json's entry)."""
        common = {"name": {"const": f.name}, "type": {"const": f.type},
                  "alias": {"type": "string"}, "unit": {"type": "string"},
                  "missing": {"type": "boolean"}}
        if f.number:
            specific = {"bounds": {"type": "object", "additionalProperties": {"type": "number"}},
                        **{k: {"type": "number"} for k in ("min", "max", "mean")},
                        "std": {"type": "number", "minimum": 0}}
            required = ["name", "type", "min", "max", "mean", "std"]
        else:
            specific = {"categories": {"type": "object", "additionalProperties": {
                "type": "number", "minimum": 0, "maximum": 1}}}
            required = ["name", "type", "categories"]
        return {"type": "object", "required": required, "additionalProperties": False,
                "properties": {**common, **specific}}


# The pieces every document has.

def _value(f: sig.Feature) -> dict:
    """The JSON Schema of a feature's value in a request."""
    if f.number:
        schema = {"type": ["number", "null"] if f.missing else "number", **dict(f.bounds)}
        unit = f" ({f.unit})" if f.unit else ""
        schema = {"description": f"{f.name}{unit}: training range {f.min:g} to {f.max:g}; "
                                 f"outside it the answer carries a warning.", **schema}
    else:
        shown = ", ".join(f.categories)
        schema = {"description": f"{f.name}: a category. Seen in training: {shown}. Any "
                                 f"other is answered, with a warning.",
                  "type": ["string", "null"] if f.missing else "string",
                  "examples": list(f.categories)}
    if f.missing:
        schema["description"] += " May be missing (null, or left out)."
    return schema


def _get(operation: str, summary: str, ok: dict, unavailable: bool = False) -> dict:
    responses = {"200": ok}
    if unavailable:
        responses["503"] = ref("Unavailable", "responses")
    return {"operationId": operation, "summary": summary, "responses": responses}


def _json_ok(description: str, schema: dict) -> dict:
    return {"description": description, "headers": {"X-Content-Type-Options": NOSNIFF},
            "content": {"application/json": {"schema": schema}}}


def _content_ok(description: str, media_type: str) -> dict:
    return {"description": description, "headers": {"X-Content-Type-Options": NOSNIFF},
            "content": {media_type: {"schema": {"type": "string"}}}}


def _const_object(key: str, value) -> dict:
    return {"type": "object", "required": [key], "additionalProperties": False,
            "properties": {key: {"type": "boolean", "const": value}}}


def _binary_size() -> dict:
    return {"type": "object", "additionalProperties": False,
            "properties": {"binary_data_size": {"type": "integer", "minimum": 0}}}


def _mlflow_health(operation: str, summary: str) -> dict:
    return {"operationId": operation, "summary": summary,
            "responses": {"200": ref("MlflowHealthy", "responses"),
                          "503": ref("MlflowError", "responses")}}


def _refusals(*statuses: str) -> dict:
    names = {"400": "Invalid", "404": "NotFound", "413": "TooLarge", "415": "NotJson",
             "503": "Unavailable"}
    return {status: ref(names[status], "responses") for status in statuses}


def _preflight() -> dict:
    allow = ", ".join(("GET", "POST", "OPTIONS"))
    return {
        "operationId": "preflight", "summary": "CORS preflight.",
        "responses": {"204": {
            "description": "No body. For an allowed origin, the Access-Control-Allow-* headers "
                           "say which methods and headers a browser may use.",
            "headers": {
                "Allow": {"required": True, "schema": {"type": "string", "const": allow}},
                "X-Content-Type-Options": NOSNIFF,
                "Access-Control-Allow-Origin": {"schema": {"type": "string"}},
                "Access-Control-Allow-Methods": {"schema": {"type": "string", "const": allow}},
                "Access-Control-Allow-Headers": {"schema": {
                    "type": "string", "const": cors.ALLOWED_HEADERS}},
                "Access-Control-Max-Age": {"schema": {"type": "string",
                                                      "pattern": "^[0-9]+$"}}}}},
    }


def _component_keys(names: tuple) -> dict:
    """A component name for each feature's value schema: OpenAPI allows [A-Za-z0-9._-]."""
    keys = {}
    for i, name in enumerate(names):
        key = "Value." + re.sub(r"[^A-Za-z0-9._-]", "_", name)
        keys[name] = key if key not in keys.values() else f"{key}.{i}"
    return keys


def _words(items) -> str:
    return ", ".join(items[:-1]) + f" or {items[-1]}" if len(items) > 1 else items[0]


def _escape(text: str) -> str:
    return REGEX_SPECIAL.sub(r"\\\1", text)


# Decimal strings within a feature's bounds, as regular expressions. BigQuery sends NUMERIC
# columns and CSV cells come as such strings; the pattern says exactly which are answered.

def decimal_pattern(f: sig.Feature) -> str | None:
    """The decimal strings (no exponent) within f's bounds; None if no simple one says that.

    Written out for no bounds at all and for whole-number bounds of at least 0, which
    model.json's bounds usually are (iris: greater than 0, at most 100).
    """
    low, high = f.low, f.high
    if low == -math.inf and high == math.inf:
        return f"-?([0-9]{{1,{MAX_INT_DIGITS}}}{FRACTION}|\\.[0-9]+)"
    if low < 0 or not low.is_integer() or not (high == math.inf or high.is_integer()) \
            or low >= high:
        return None
    low = int(low)
    choices = []
    if high != math.inf and f.high_inclusive:  # the upper bound itself, and nothing above
        choices.append(f"{int(high)}(\\.0*)?")
    # Whole parts strictly between the bounds take any fraction.
    if high == math.inf:
        digits = len(str(low + 1))
        choices += [_group(_int_range(low + 1, 10 ** digits - 1)) + FRACTION,
                    f"[1-9][0-9]{{{digits},{MAX_INT_DIGITS - 1}}}{FRACTION}"]
    elif low + 1 <= high - 1:
        choices.append(_group(_int_range(low + 1, int(high) - 1)) + FRACTION)
    # The lower bound's whole part: any fraction if the bound is allowed, else a nonzero one.
    whole = "" if low == 0 else str(low)
    if not f.low_inclusive:
        choices.append(f"{whole}\\.[0-9]*[1-9][0-9]*")
    else:
        choices += [f"{whole or 0}{FRACTION}"] + (["\\.[0-9]+"] if low == 0 else [])
    # Leading zeros, as float() reads them ("007.5"); and a negative zero, where 0 is allowed.
    negative_zero = "|-(0+(\\.0*)?|\\.0+)" if low == 0 and f.low_inclusive else ""
    return f"0*({'|'.join(choices)}){negative_zero}"


def _group(choices: list) -> str:
    return choices[0] if len(choices) == 1 else f"({'|'.join(choices)})"


def _int_range(low: int, high: int) -> list:
    """Regular expressions that together match the whole numbers low..high (no leading zeros)."""
    found = []
    for digits in range(len(str(low)), len(str(high)) + 1):
        a = max(low, 10 ** (digits - 1) if digits > 1 else 0)
        b = min(high, 10 ** digits - 1)
        if a <= b:
            found += _same_length(str(a), str(b))
    return found


def _same_length(a: str, b: str) -> list:
    """Expressions for the numbers a..b, both written with the same number of digits."""
    if a == b:
        return [a]
    if len(a) == 1:
        return [f"[{a}-{b}]"]
    if a[0] == b[0]:
        return [a[0] + _group(_same_length(a[1:], b[1:]))]
    rest = len(a) - 1
    found, first, last = [], int(a[0]), int(b[0])
    if a[1:] != "0" * rest:
        found.append(a[0] + _group(_same_length(a[1:], "9" * rest)))
        first += 1
    tail = b[0] + _group(_same_length("0" * rest, b[1:])) if b[1:] != "9" * rest else None
    if tail:
        last -= 1
    if first <= last:
        digit = str(first) if first == last else f"[{first}-{last}]"
        found.append(f"{digit}[0-9]" + (f"{{{rest}}}" if rest > 1 else ""))
    if tail:
        found.append(tail)
    return found


def main(argv: list) -> int:
    from pathlib import Path

    from iris_predict import settings
    from iris_predict.model import artifact

    path = Path(argv[0]) if argv else artifact.sidecar_path(settings.MODEL_PATH)
    signature = sig.from_metadata(json.loads(path.read_text()))
    print(json.dumps(document(signature, settings.MAX_BODY_BYTES, settings.MAX_BATCH_ROWS),
                     indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
