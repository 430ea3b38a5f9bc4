"""This function's own protocol on "/": one row, a batch of instances, the metadata.

docs/api.md is the reference. A POST body is one row as an object, by the
features' names or aliases ({"sl": 5.1, ...}, the tutorial's body), or a batch in
the Vertex AI / KServe V1 shape ({"instances": [...], "parameters": {...}}).
Explanations are asked for with ?explain=true, "explain": true in the body, or
"parameters": {"explain": true} beside instances. GET answers the model's
metadata: what a client needs to build a form or check what it is talking to.
"""

import functools
import json

import numpy as np

from iris_predict import settings
from iris_predict.edge import decoding, page
from iris_predict.edge.responses import json_response
from iris_predict.errors import InvalidRequest
from iris_predict.model import served as model
from iris_predict.model.estimators import AVERAGE_ROW, EXPECTED_SCORE
from iris_predict.protocols import answers, csv_table, rows
from iris_predict.protocols.batch import Batch, Kind
from iris_predict.text import kind, show

NAME = "native"  # as the request log line names the protocol
PREDICT, CONTRACT = "predict", "contract"
# GET /: the metadata, or the web page for a browser; its files beside it (operations named
# as the file), and the OpenAPI contract.
PATHS = {"/": (PREDICT, ("GET", "POST")), "/openapi.json": (CONTRACT, ("GET",)),
         **{path: (name, ("GET",)) for path, name in page.PATHS.items()}}
WHERE = "/ (its own API; the web page for browsers), /openapi.json (its contract)"
MEDIA_TYPES = (decoding.JSON,)
INSTANCES, PARAMETERS, EXPLAIN, PROBABILITIES = "instances", "parameters", "explain", "probabilities"
EXPLAIN_FORMS = '?explain=true, "explain": true in the body, or "parameters": {"explain": true}'


def claims(payload) -> bool:
    """Every JSON body on "/" but BigQuery's calls."""
    return not (type(payload) is dict and "calls" in payload)


def decode_rows(body: bytes, signature):
    """A batch of nothing but numbers, its instances straight into the matrix; else None."""
    return rows.numbers(body, INSTANCES, signature)


def decode(body: bytes, headers: dict, signature):
    try:
        return decoding.decode(body)
    except decoding.EmptyBody:
        raise InvalidRequest(f"request body is empty; send one row as JSON, such as "
                             f"{example(signature)}") from None


def example(signature) -> str:
    """A minimal valid body for the served model, for messages: its average training row."""
    values = [round(f.mean, 1) if f.number else f.categories[0] for f in signature.features]
    return json.dumps(dict(zip(signature.aliases or signature.names, values)))


def parse(payload, request, served: model.Model) -> Batch:
    """Validate a decoded request body; raise InvalidRequest on any problem."""
    explain = answers.explain_asked(request.query) if request.query else False
    if type(payload) is not dict:
        raise InvalidRequest(f"request body must be a JSON object, got {kind(payload)}; "
                             f"send one row such as {example(served.signature)}")
    if INSTANCES in payload:
        return _instances(payload, explain, request, served)
    if EXPLAIN in payload and EXPLAIN not in served.signature.names:
        payload = dict(payload)
        explain = _boolean(payload.pop(EXPLAIN), EXPLAIN, explain)
    unknown = []
    values = rows.row_values(payload, "", rows.columns(served.signature), unknown=unknown)
    return Batch(Kind.SINGLE, np.array([values]), probabilities=True, explain=explain,
                 unknown=unknown)


def _instances(payload: dict, explain: bool, request, served: model.Model) -> Batch:
    rows.only_keys(payload, (INSTANCES, PARAMETERS, EXPLAIN), "request body")
    found = rows.matrix(payload[INSTANCES], INSTANCES, served.signature)
    parameters = payload.get(PARAMETERS, {})
    if not isinstance(parameters, dict):
        raise InvalidRequest(f"parameters must be an object, got {kind(parameters)}")
    rows.only_keys(parameters, (PROBABILITIES, EXPLAIN), PARAMETERS)
    if EXPLAIN in payload:
        explain = _boolean(payload[EXPLAIN], EXPLAIN, explain)
    table = csv_table.accepted(request.headers)  # answered as a table: a column per class
    return Batch(Kind.INSTANCES, found.X, unknown=found.unknown, table=table,
                 probabilities=table or _boolean(parameters.get(PROBABILITIES, False),
                                                 f"{PARAMETERS}.{PROBABILITIES}", False),
                 explain=_boolean(parameters.get(EXPLAIN, explain), f"{PARAMETERS}.{EXPLAIN}",
                                  explain))


def _boolean(value, where: str, default: bool) -> bool:
    if not isinstance(value, bool):
        forms = f" (ask for explanations with {EXPLAIN_FORMS})" if where.endswith(EXPLAIN) else ""
        raise InvalidRequest(f"{where} must be true or false, got {show(value)}{forms}")
    return value



def answer(batch: Batch, served: model.Model):
    """The response body for a validated batch (its Scores, for a CSV table)."""
    scores = answers.Scores(batch, served, batch.probabilities)
    if batch.table:
        return scores
    return scores.body(served.signature.target, single=batch.kind is Kind.SINGLE)


def respond(answered, batch: Batch, served: model.Model):
    if batch.table:
        return csv_table.table(answered, (), served.signature)
    return json_response(answered)


def error_body(message: str, status: int) -> dict:
    return {"error": message}


async def get(route, headers: dict):
    """The metadata, the contract, or the page: a browser's GET / (no model needed for it)."""
    if route.operation in page.FILES:
        return page.response(route.operation)
    if route.operation == PREDICT and page.wants_html(headers):
        return page.response(page.INDEX)
    served = await model.ready()
    if route.operation == CONTRACT:
        # The table of every protocol (its paths and contracts); imported here, as that table
        # imports this module.
        from iris_predict.protocols import routes
        return json_response(routes.contract(served.signature, settings.MAX_BODY_BYTES,
                                             settings.MAX_BATCH_ROWS))
    return json_response(describe(served), headers=page.VARY)  # GET / differs by Accept


def describe(served: model.Model) -> dict:
    """The metadata a client needs to build a form or check what it is talking to."""
    meta, signature = served.metadata, served.signature
    described = {"name": signature.name, "task": signature.task, "target": signature.target,
                 "features": meta["features"],
                 "aliases": dict(zip(signature.aliases, signature.names))}
    if signature.classifier:
        described["classes"] = list(signature.classes)
    described.update({
        "estimator": meta["estimator"],
        "metrics": meta["metrics"],
        "versions": meta["versions"],
        "sha256": meta["sha256"],
        "limits": {"max_body_bytes": settings.MAX_BODY_BYTES,
                   "max_batch_rows": settings.MAX_BATCH_ROWS},
    })
    return described


def openapi(c) -> object:
    """This protocol's part of the contract (contract.py: `c` is its Contract)."""
    ref, s = c.ref, c.s
    bodies = [ref("OneRowByName")] + ([ref("OneRowByAlias")] if s.aliases else []) \
        + [ref("InstancesRequest")]
    return c.Part(
        about=("its own", "on `/`"),
        paths={
            "/": {"get": _describe_operation(c), "post": functools.partial(_predict, c),
                  "options": c.preflight()},
            "/openapi.json": {"get": c.get(
                "contract", "This document: the OpenAPI contract of the served model.",
                c.json_ok("The contract.", {"type": "object",
                                            "required": ["openapi", "info", "paths"]}))},
            "/app.js": {"get": c.get("pageScript", "The web page's script.",
                                     c.content_ok("The script.", "text/javascript"))},
            "/style.css": {"get": c.get("pageStyle", "The web page's style sheet.",
                                        c.content_ok("The style sheet.", "text/css"))}},
        takes={("/", "post"): {decoding.JSON: bodies}},
        gives={("/", "post"): {decoding.JSON: [ref("RowAnswer"), ref("InstancesAnswer")]}},
        requests=_request_schemas(c), answers=_answer_schemas(c))


def _describe_operation(c) -> dict:
    return {
        "operationId": "describe",
        "summary": "The model's metadata, from which a client builds its form; a browser "
                   "(Accept preferring text/html) gets the web page instead.",
        "responses": {
            "200": {"description": "Metadata, or the page.",
                    "headers": {"X-Content-Type-Options": c.NOSNIFF},
                    "content": {"application/json": {"schema": c.ref("Metadata")},
                                "text/html": {"schema": {"type": "string"}}}},
            "503": c.ref("Unavailable", "responses"),
        },
    }


def _predict(c, bodies: dict, answers: dict) -> dict:
    """POST /, with the bodies and answers of every protocol on "/" (BigQuery's, CSV's)."""
    return {
        "operationId": "predict",
        "summary": "Predict one row, a batch, a CSV table, or a BigQuery remote-function call.",
        "parameters": [{
            "name": EXPLAIN, "in": "query",
            "description": "true adds `explanations` to a one-row, `instances` or CSV answer "
                           "(not to BigQuery calls, which are refused with it).",
            "schema": {"type": "boolean"}}],
        "requestBody": {"required": True, "content": bodies},
        "responses": {
            "200": {
                "description": "The prediction, shaped like the request: one row, `instances` "
                               "(or a CSV table), or BigQuery `calls`. A batch with `Accept: "
                               "text/csv` is answered as a CSV table.",
                "headers": {"X-Content-Type-Options": c.NOSNIFF},
                "content": answers},
            **c.refusals("400", "413", "415", "503"),
        },
    }


def _request_schemas(c) -> dict:
    """A row (as a list, or an object by name or alias), one row, and a batch of them."""
    ref, s = c.ref, c.s
    found = {"RowByName": c.row_object(s.names, "A row, by the features' names."),
             "OneRowByName": c.row_object(s.names, "One row, by the features' names.",
                                          explain=True)}
    if s.aliases:
        found["RowByAlias"] = c.row_object(s.aliases, "A row, by the features' short names "
                                                      "(aliases).")
        found["OneRowByAlias"] = c.row_object(s.aliases, "One row, by the features' short "
                                                         "names (aliases).", explain=True)
    found["Row"] = {"description": f"[{', '.join(s.names)}]", "type": "array",
                    "prefixItems": [c.value(n) for n in s.names],
                    "items": False, "minItems": c.width, "maxItems": c.width}
    rows_ = [ref("Row"), ref("RowByName")] + ([ref("RowByAlias")] if s.aliases else [])
    explain = {"description": "Add `explanations`, one per row.", "type": "boolean"}
    parameters = {EXPLAIN: explain}
    if s.classifier:
        parameters = {PROBABILITIES: {"type": "boolean"}, **parameters}
    found["InstancesRequest"] = {
        "description": "A batch in the Vertex AI / KServe V1 shape.",
        "type": "object", "required": [INSTANCES], "additionalProperties": False,
        "properties": {
            INSTANCES: {"type": "array", "minItems": 1, "maxItems": c.rows,
                        "items": {"anyOf": rows_}},
            PARAMETERS: {"type": "object", "additionalProperties": False,
                         "properties": parameters},
            EXPLAIN: explain}}
    return found


def _answer_schemas(c) -> dict:
    """The answer to one row, and to `instances`."""
    ref, s = c.ref, c.s
    warnings = {"type": "array", "items": ref("Warning")}
    if s.classifier:
        one, label = ref("ClassIndex"), ref("Label")
        prediction = "[k], the class index, as the tutorial answered."
    else:
        one = label = {"type": "number"}
        prediction = "[v], the predicted value."
    single = {"prediction": {"description": prediction, "type": "array", "items": one,
                             "minItems": 1, "maxItems": 1},
              c.target: label}
    batch = {"predictions": {"type": "array", "items": one},
             c.target: {"type": "array", "items": label}}
    if s.classifier:
        single[PROBABILITIES] = ref("Probabilities")
        batch[PROBABILITIES] = {"description": "Only when parameters.probabilities is true.",
                                "type": "array", "items": ref("Probabilities")}
    explanations = {
        "explanations": ref("Explanations"),
        "base_values": {"description": "Only with `explanations`: each row's score they are "
                                       "measured from.",
                        "type": "array", "items": {"type": "number"}},
        "measured_from": {"description": "Only with `explanations`: what the base values are, "
                                         "the average training row's score (linear models) or "
                                         "the expected score (tree models).",
                          "type": "string", "enum": [AVERAGE_ROW, EXPECTED_SCORE]}}
    return {
        "RowAnswer": {
            "type": "object", "additionalProperties": False,
            "required": [*single, "warnings"],
            "properties": {**single, "warnings": warnings, **explanations}},
        "InstancesAnswer": {
            "type": "object", "additionalProperties": False,
            "required": ["predictions", c.target, "warnings"],
            "properties": {**batch, "warnings": warnings, **explanations}},
    }
