"""The Open Inference Protocol (KServe's V2 REST API), as KServe, MLServer and Triton speak it.

docs/open-inference.md is the reference. The model is named as model.json names
it. A model whose features are all numbers takes one input tensor of shape
[N, F] (FP32 or FP64, the features in model.json's order); a model with
categories takes one input per column, named for its feature, as MLServer's
pandas codec sends a data frame (BYTES for strings, FP32/FP64/INT64 for numbers),
and its metadata says so. Outputs are named as MLServer's scikit-learn runtime
names them: "predict" (a classifier's INT64 class index, a regressor's FP64
value) and, for classifiers, "predict_proba" (FP64 [N, classes]). Tensor data
comes as JSON or, with Triton's binary tensor extension, as raw little-endian
bytes after the JSON header, which is what tritonclient sends and asks for by
default.
"""

import re
import struct
from typing import NamedTuple

import numpy as np
import orjson

from iris_predict import SERVER_NAME
from iris_predict.edge import decoding
from iris_predict.edge.responses import content_response, json_response
from iris_predict.errors import InvalidRequest, NotFound
from iris_predict.model import served as model
from iris_predict.protocols import rows
from iris_predict.protocols.batch import Batch, Kind
from iris_predict.text import kind, show

NAME = "v2"
# Operations (KServe's V2 REST API).
LIVE, READY, SERVER, MODEL, MODEL_READY, INFER = (
    "live", "ready", "server", "model", "model ready", "infer")
PATHS = {"/v2": (SERVER, ("GET",)), "/v2/health/live": (LIVE, ("GET",)),
         "/v2/health/ready": (READY, ("GET",))}
WHERE = "/v2/... (Open Inference Protocol)"
# v2/models/${MODEL_NAME}[/versions/${MODEL_VERSION}][/ready|/infer]
MODEL_PATH = re.compile(r"/v2/models/([^/]+)(?:/versions/([^/]+))?(/ready|/infer)?")
MODEL_OPERATIONS = {None: (MODEL, ("GET",)), "/ready": (MODEL_READY, ("GET",)),
                    "/infer": (INFER, ("POST",))}
# Triton's name for the extension: tensors as raw bytes after the JSON header.
BINARY_EXTENSION = "binary_tensor_data"
# The request and response header that says where the JSON ends and the tensors begin.
HEADER_LENGTH = "inference-header-content-length"
MEDIA_TYPES = (decoding.JSON, decoding.BINARY, decoding.NONE)
INPUT_NAME = "input-0"  # what the metadata calls the input; a request may name it anything
DATATYPES = {"FP32": np.dtype("<f4"), "FP64": np.dtype("<f8")}
# A column of a data frame (MLServer's pandas codec) may also be integers or strings.
COLUMN_DATATYPES = {**DATATYPES, "INT64": np.dtype("<i8"), "BYTES": None}
PREDICT, PREDICT_PROBA = "predict", "predict_proba"


def match(path: str):
    """(operation, methods, params) for a model path, else None."""
    found = MODEL_PATH.fullmatch(path)
    if found is None:
        return None
    name, version, suffix = found.groups()
    operation, methods = MODEL_OPERATIONS[suffix]
    return operation, methods, {"model": name, "version": version or ""}


def claims(payload) -> bool:
    return True


def outputs(signature) -> tuple:
    """The outputs the model gives, in the order they are sent when none are asked for."""
    return (PREDICT, PREDICT_PROBA) if signature.classifier else (PREDICT,)


class Options(NamedTuple):
    """What an inference request asks of the answer, besides the rows."""

    id: str | None
    outputs: tuple        # output names, in the order asked
    binary: frozenset     # those to send as raw bytes
    path: dict            # the model name and version its path names


# Health and metadata (GET).

async def get(route, headers: dict):
    """The answer to a GET of `route`; readiness answers at once, without waiting for the model."""
    if route.operation == LIVE:
        return json_response({"live": True})
    if route.operation == READY:
        model.loaded()
        return json_response({"ready": True})
    if route.operation == MODEL_READY:
        served = model.loaded()
        _check_model(route.params, served)
        return json_response({"name": served.signature.name, "ready": True})
    served = await model.ready()
    if route.operation == SERVER:
        return json_response({"name": SERVER_NAME, "version": served.version,
                              "extensions": [BINARY_EXTENSION]})
    _check_model(route.params, served)
    return json_response(metadata(served))


def metadata(served: model.Model) -> dict:
    """The model metadata: its version, inputs and outputs."""
    signature = served.signature
    if signature.numeric:
        # Parameters are strings, numbers or booleans: the order, comma-separated.
        parameters = {"features": ",".join(signature.names)}
        units = {f.unit for f in signature.features}
        if len(units) == 1 and None not in units:
            parameters["unit"] = units.pop()
        inputs = [{"name": INPUT_NAME, "datatype": "FP64", "shape": [-1, len(signature.names)],
                   "parameters": parameters}]
    else:  # one column per input, as MLServer's pandas codec sends a data frame
        inputs = [{"name": f.name, "datatype": "FP64" if f.number else "BYTES", "shape": [-1, 1]}
                  for f in signature.features]
    predict = {"name": PREDICT, "datatype": "INT64" if signature.classifier else "FP64",
               "shape": [-1]}
    found = {"name": signature.name, "versions": [served.version], "platform": "sklearn",
             "inputs": inputs, "outputs": [predict]}
    if signature.classifier:
        found["outputs"].append({"name": PREDICT_PROBA, "datatype": "FP64",
                                 "shape": [-1, len(signature.classes)],
                                 "parameters": {"classes": ",".join(signature.classes)}})
    if not signature.numeric:
        found["parameters"] = {"content_type": "pd"}
    return found


def _check_model(params: dict, served: model.Model):
    name = served.signature.name
    if params["model"] != name:
        raise NotFound(f"model {show(params['model'])} is not served here; the only model is "
                       f"{name}")
    version = params["version"]
    if version and version != served.version:
        raise NotFound(f"model {name} has no version {show(version)}; "
                       f"its version is {served.version}")


# Inference (POST): decode -> parse -> answer -> respond.

def decode(body: bytes, headers: dict, signature) -> tuple:
    """(JSON header, the binary tensor bytes after it) of an inference request body."""
    length = headers.get(HEADER_LENGTH)
    if length is None:
        return decoding.decode(body), b""
    if not length.isdigit() or int(length) > len(body):
        raise InvalidRequest(f"Inference-Header-Content-Length must be the length of the JSON "
                             f"header, at most the body's {len(body)} bytes, got {show(length)}")
    return decoding.decode(body[:int(length)]), body[int(length):]


def parse(payload: tuple, request, served: model.Model) -> Batch:
    """A validated inference request; InvalidRequest names what is wrong."""
    _check_model(request.route.params, served)
    body, binary = payload
    if type(body) is not dict:
        raise InvalidRequest(f"request body must be a JSON object, got {kind(body)}")
    rows.only_keys(body, ("id", "parameters", "inputs", "outputs"), "request body")
    request_id = body.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidRequest(f"id must be a string, got {kind(request_id)}")
    parameters = _object(body.get("parameters", {}), "parameters",
                         ("binary_data_output", "content_type"))
    binary_output = _flag(parameters, "binary_data_output", "parameters")
    signature = served.signature
    tensors = _Tensors(body.get("inputs"), binary, signature)
    found = tensors.matrix() if signature.numeric else tensors.columns()
    if tensors.offset != len(binary):
        raise InvalidRequest(f"the body has {len(binary)} bytes after its JSON header, but its "
                             f"inputs' parameters.binary_data_size add up to {tensors.offset}")
    names, binary_outputs = _outputs(body.get("outputs"), binary_output, outputs(signature))
    return Batch(Kind.INFER, found.X, unknown=found.unknown,
                 probabilities=PREDICT_PROBA in names,
                 options=Options(request_id, names, binary_outputs, request.route.params))


class _Tensors:
    """The request's input tensors, read against the signature."""

    def __init__(self, inputs, binary: bytes, signature):
        self.signature = signature
        self.cols = rows.columns(signature)
        self.width = len(signature.names)
        count = 1 if signature.numeric else self.width
        if not isinstance(inputs, list) or len(inputs) != count:
            got = f"{len(inputs)} inputs" if isinstance(inputs, list) else kind(inputs)
            raise InvalidRequest(f"inputs must be an array of {self._expected()}, got {got}")
        self.inputs = inputs
        self.binary = binary
        self.offset = 0  # binary tensors follow one another in the order of the inputs

    def _expected(self) -> str:
        if self.signature.numeric:
            return (f"one tensor of shape [N, {self.width}] "
                    f"({', '.join(self.signature.names)} in that order)")
        return (f"{self.width} tensors of shape [N] or [N, 1], one per column, named "
                f"{', '.join(self.signature.names)}")

    def matrix(self) -> rows.Rows:
        """The one [N, F] tensor of a model whose features are all numbers."""
        where = "inputs[0]"
        tensor, datatype = self._header(self.inputs[0], where, DATATYPES)
        shape = tensor["shape"]
        if (not isinstance(shape, list) or len(shape) != 2 or shape[1] != self.width
                or type(shape[0]) is not int or shape[0] < 1):
            raise InvalidRequest(f"{where}.shape must be [N, {self.width}] with N at least 1 "
                                 f"({', '.join(self.signature.names)} in that order), "
                                 f"got {show(shape)}")
        n = shape[0]
        rows.check_rows(n, where)
        if self._is_binary(tensor, where):
            X = self._binary(tensor, where, datatype, n * self.width).reshape(n, self.width)
        else:
            found = rows.matrix(_rows(tensor["data"], n, self.width, where), f"{where}.data",
                                self.signature)
            X = found.X
            if datatype.itemsize == 4:  # the client's FP32 values, as it holds them
                X = X.astype(np.float32).astype(np.float64)
        rows.first_outside(X, self.cols, f"{where}.data")
        return rows.Rows(X, range(n), [])

    def columns(self) -> rows.Rows:
        """One [N] or [N, 1] tensor per feature, by name, as a data frame's columns."""
        by_name, n = {}, None
        for i, tensor in enumerate(self.inputs):
            where = f"inputs[{i}]"
            tensor, datatype = self._header(tensor, where, COLUMN_DATATYPES)
            name = tensor["name"]
            if name not in self.cols.name_set or name in by_name:
                problem = "repeats" if name in by_name else "is not a feature"
                raise InvalidRequest(f"{where}.name {show(name)} {problem}; the inputs are "
                                     f"{', '.join(self.signature.names)}, one each")
            shape = tensor["shape"]
            if (not isinstance(shape, list) or len(shape) not in (1, 2) or shape[1:] not in ([], [1])
                    or type(shape[0]) is not int or shape[0] < 1 or n not in (None, shape[0])):
                raise InvalidRequest(f"{where}.shape must be [N] or [N, 1], the same N for every "
                                     f"input, got {show(shape)}")
            n = shape[0]
            rows.check_rows(n, where)
            column = self._column(tensor, datatype, n, where)
            if datatype is None:  # BYTES has no null: an empty string is a missing value
                column = [None if v == "" else v for v in column]
            by_name[name] = column
        table = [by_name[name] for name in self.signature.names]
        return rows.matrix([list(row) for row in zip(*table)], "inputs", self.signature)

    def _header(self, tensor, where: str, datatypes: dict) -> tuple:
        tensor = _object(tensor, where, ("name", "shape", "datatype", "parameters", "data"))
        for field in ("name", "shape", "datatype"):
            if field not in tensor:
                raise InvalidRequest(f"{where} is missing {field}")
        if not isinstance(tensor["name"], str):
            raise InvalidRequest(f"{where}.name must be a string, got {kind(tensor['name'])}")
        name = tensor["datatype"]
        if not isinstance(name, str) or name not in datatypes:
            raise InvalidRequest(f"{where}.datatype must be {' or '.join(datatypes)}, "
                                 f"got {show(name)}")
        _object(tensor.get("parameters", {}), f"{where}.parameters",
                ("binary_data_size", "content_type"))
        return tensor, datatypes[name]

    def _is_binary(self, tensor: dict, where: str) -> bool:
        if "binary_data_size" in tensor.get("parameters", {}):
            if "data" in tensor:
                raise InvalidRequest(f"{where} has both data and parameters.binary_data_size; "
                                     "send one")
            return True
        if "data" not in tensor:
            raise InvalidRequest(f"{where} has neither data nor parameters.binary_data_size")
        if self.binary and self.signature.numeric:
            raise InvalidRequest("the body has binary data after its JSON header, but no input "
                                 "says its binary_data_size")
        return False

    def _binary(self, tensor: dict, where: str, datatype, count: int) -> np.ndarray:
        size = tensor["parameters"]["binary_data_size"]
        expected = count * datatype.itemsize
        if type(size) is not int or size != expected:
            raise InvalidRequest(f"{where}.parameters.binary_data_size must be {expected} "
                                 f"({count} values of {datatype.itemsize} bytes), got {show(size)}")
        chunk = self._take(size, where)
        return np.frombuffer(chunk, datatype).astype(np.float64)

    def _take(self, size: int, where: str) -> bytes:
        if type(size) is not int or size < 0 or self.offset + size > len(self.binary):
            raise InvalidRequest(f"the body has {len(self.binary) - self.offset} bytes left after "
                                 f"its JSON header, but {where}.parameters.binary_data_size says "
                                 f"{show(size)}")
        chunk = self.binary[self.offset:self.offset + size]
        self.offset += size
        return chunk

    def _column(self, tensor: dict, datatype, n: int, where: str) -> list:
        """A column's values as JSON would give them: numbers, or strings for BYTES."""
        if not self._is_binary(tensor, where):
            data = tensor["data"]
            if isinstance(data, list) and data and all(type(v) is list for v in data):
                data = [v[0] if len(v) == 1 else v for v in data]  # [[a], [b]]: shape [N, 1]
            if not isinstance(data, list) or len(data) != n:
                raise InvalidRequest(f"{where}.data must be an array of {n} values, "
                                     f"as its shape says")
            return data
        if datatype is not None:
            return self._binary(tensor, where, datatype, n).tolist()
        # BYTES, binary: each element a 4-byte little-endian length, then its bytes.
        blob = self._take(tensor["parameters"]["binary_data_size"], where)
        values, at = [], 0
        try:
            for _ in range(n):
                (length,) = struct.unpack_from("<I", blob, at)
                values.append(blob[at + 4:at + 4 + length].decode())
                at += 4 + length
        except (struct.error, UnicodeDecodeError):
            raise InvalidRequest(f"{where}'s binary data is not {n} length-prefixed UTF-8 "
                                 f"strings") from None
        if at != len(blob) or len(values) != n:
            raise InvalidRequest(f"{where}'s binary data is not {n} length-prefixed strings")
        return values


def _rows(data, n: int, width: int, where: str) -> list:
    """The tensor data as rows: it may come nested ([[...], ...]) or flat, row-major."""
    if not isinstance(data, list):
        raise InvalidRequest(f"{where}.data must be an array of numbers, got {kind(data)}")
    if data and all(type(row) is list for row in data):
        if len(data) != n:
            raise InvalidRequest(f"{where}.data has {len(data)} rows, but its shape says {n}")
        return data
    if len(data) != n * width:
        raise InvalidRequest(f"{where}.data has {len(data)} values, but its shape "
                             f"[{n}, {width}] needs {n * width}")
    return [data[i:i + width] for i in range(0, len(data), width)]


def _outputs(requested, binary_output: bool, given: tuple) -> tuple:
    """(output names, those to send binary); no list means every output, in `given` order."""
    if requested is None:
        return given, frozenset(given) if binary_output else frozenset()
    if not isinstance(requested, list) or not requested:
        raise InvalidRequest(f"outputs must be a non-empty array, got {kind(requested)}")
    names, binary = [], set()
    for i, output in enumerate(requested):
        output = _object(output, f"outputs[{i}]", ("name", "parameters"))
        name = output.get("name")
        if name not in given:
            raise InvalidRequest(f"outputs[{i}].name must be one of {', '.join(given)}, "
                                 f"got {show(name)}")
        parameters = _object(output.get("parameters", {}), f"outputs[{i}].parameters",
                             ("binary_data",))
        if _flag(parameters, "binary_data", f"outputs[{i}].parameters", binary_output):
            binary.add(name)
        if name not in names:
            names.append(name)
    return tuple(names), frozenset(binary)


def answer(batch: Batch, served: model.Model) -> tuple:
    """(the response's JSON header, the binary tensors that follow it, in order)."""
    options = batch.options
    predicted, proba = served.predict(batch.X, batch.probabilities, batch.unknown)
    datatype = "INT64" if served.signature.classifier else "FP64"
    tensors = {PREDICT: (datatype, np.asarray(predicted, dtype="<i8" if datatype == "INT64"
                                              else "<f8")),
               PREDICT_PROBA: ("FP64", proba)}
    found, blobs = [], []
    for name in options.outputs:
        datatype, values = tensors[name]
        output = {"name": name, "shape": list(values.shape), "datatype": datatype}
        if name in options.binary:
            blob = np.ascontiguousarray(values, dtype=values.dtype.newbyteorder("<")).tobytes()
            output["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            output["data"] = values.ravel().tolist()
        found.append(output)
    header = {"model_name": served.signature.name, "model_version": served.version}
    if options.id is not None:
        header["id"] = options.id
    header["outputs"] = found
    return header, blobs


def respond(answer_: tuple, batch: Batch, served: model.Model):
    """JSON alone, or, with binary tensors, the JSON header followed by their bytes."""
    header, blobs = answer_
    if not blobs:
        return json_response(header)
    encoded = orjson.dumps(header)
    return content_response(encoded + b"".join(blobs), decoding.BINARY,
                            {"Inference-Header-Content-Length": str(len(encoded))})


def _object(value, where: str, allowed: tuple) -> dict:
    if not isinstance(value, dict):
        raise InvalidRequest(f"{where} must be an object, got {kind(value)}")
    rows.only_keys(value, allowed, where)
    return value



def error_body(message: str, status: int) -> dict:
    return {"error": message}


def _flag(parameters: dict, name: str, where: str, default: bool = False) -> bool:
    value = parameters.get(name, default)
    if not isinstance(value, bool):
        raise InvalidRequest(f"{where}.{name} must be true or false, got {show(value)}")
    return value


def openapi(c) -> object:
    """This protocol's part of the contract (contract.py: `c` is its Contract)."""
    ref = c.ref
    model_name, model_version = ref("ModelName", "parameters"), ref("ModelVersion", "parameters")
    infer = _infer_operation(c)
    name = c.s.name
    return c.Part(
        about=("the Open Inference Protocol (KServe V2)", "under `/v2`"),
        paths={
            "/v2": {"get": c.get(
                "v2ServerMetadata", "Open Inference Protocol: server metadata.",
                c.json_ok("The server's name, version (the model's) and extensions.", {
                    "type": "object", "required": ["name", "version", "extensions"],
                    "additionalProperties": False,
                    "properties": {
                        "name": {"type": "string", "const": SERVER_NAME},
                        "version": ref("ModelVersion"),
                        "extensions": {"type": "array", "items": {
                            "type": "string", "enum": [BINARY_EXTENSION]}}}}),
                unavailable=True)},
            "/v2/health/live": {"get": c.get(
                "v2ServerLive", "Open Inference Protocol: the server is up.",
                c.json_ok("Live.", c.const_object("live", True)))},
            "/v2/health/ready": {"get": c.get(
                "v2ServerReady",
                "Open Inference Protocol: the model is loaded (answers at once, never waits).",
                ref("V2Ready", "responses"), unavailable=True)},
            "/v2/models/{model_name}": {
                "parameters": [model_name],
                "get": _model_get(c, "v2ModelMetadata", "the model's inputs, outputs and "
                                  "version.", ref("V2ModelMetadata", "responses"))},
            "/v2/models/{model_name}/versions/{model_version}": {
                "parameters": [model_name, model_version],
                "get": _model_get(c, "v2ModelVersionMetadata", "the model's metadata, for its "
                                  "version.", ref("V2ModelMetadata", "responses"))},
            "/v2/models/{model_name}/ready": {
                "parameters": [model_name],
                "get": _model_get(c, "v2ModelReady", "the model is loaded (answers at once, "
                                  "never waits).", ref("V2ModelReady", "responses"))},
            "/v2/models/{model_name}/versions/{model_version}/ready": {
                "parameters": [model_name, model_version],
                "get": _model_get(c, "v2ModelVersionReady", "the model version is loaded.",
                                  ref("V2ModelReady", "responses"))},
            "/v2/models/{model_name}/infer": {
                "parameters": [model_name], "post": {**infer, "operationId": "v2Infer"}},
            "/v2/models/{model_name}/versions/{model_version}/infer": {
                "parameters": [model_name, model_version],
                "post": {**infer, "operationId": "v2InferVersion"}}},
        parameters={
            "ModelName": {"name": "model_name", "in": "path", "required": True,
                          "description": f"The only model is {name}; any other name is a 404.",
                          "schema": {"type": "string", "enum": [name]}},
            "ModelVersion": {"name": "model_version", "in": "path", "required": True,
                             "description": f"The model's version (GET /v2/models/{name}); "
                                            "any other is a 404.",
                             "schema": ref("ModelVersion")}},
        responses={
            "V2Ready": c.json_ok("The model is loaded.", c.const_object("ready", True)),
            "V2ModelReady": c.json_ok("The model is loaded.", {
                "type": "object", "required": ["name", "ready"], "additionalProperties": False,
                "properties": {"name": {"type": "string", "const": name},
                               "ready": {"type": "boolean", "const": True}}}),
            "V2ModelMetadata": c.json_ok("The model's name, version, platform, inputs and "
                                         "outputs.", ref("V2ModelMetadata"))},
        answers={"ModelVersion": {
            "description": "The first 12 hex digits of the model file's SHA-256 (model.json "
                           "sha256).",
            "type": "string", "pattern": "^[0-9a-f]{12}$"}},
        schemas=_schemas(c))


def _model_get(c, operation: str, summary: str, ok: dict) -> dict:
    return {"operationId": operation, "summary": f"Open Inference Protocol: {summary}",
            "responses": {"200": ok, "404": c.ref("NotFound", "responses"),
                          "503": c.ref("Unavailable", "responses")}}


def _infer_operation(c) -> dict:
    s = c.s
    if s.numeric:
        inputs = (f"One input tensor of shape [N, {c.width}], FP32 or FP64, in the metadata's "
                  "feature order. JSON Schema cannot say that `data` holds "
                  f"N * {c.width} values; the function checks it (400).")
    else:
        inputs = ("One input tensor per feature, named as the feature, of shape [N] or [N, 1] "
                  "(MLServer's pandas codec): BYTES for categories, FP32 or FP64 for numbers.")
    outputs_ = f"`{PREDICT}` (INT64 [N], class indices) and `{PREDICT_PROBA}` (FP64 " \
        f"[N, {len(s.classes)}])" if s.classifier else f"`{PREDICT}` (FP64 [N])"
    binary = {"type": "string", "format": "binary"}
    return {
        "summary": "Open Inference Protocol: predict a tensor of rows.",
        "description": inputs + " Tensors may also come as raw bytes after the JSON header "
                       "(Triton's binary tensor extension: `Inference-Header-Content-"
                       "Length` gives the header's length).",
        "requestBody": {"required": True, "content": {
            decoding.JSON: {"schema": c.ref("V2InferenceRequest")},
            decoding.BINARY: {"schema": binary}}},
        "responses": {
            "200": {
                "description": f"The outputs asked for (all when no list is given): "
                               f"{outputs_}. With binary outputs the body is the JSON header "
                               "followed by the tensors' bytes (application/octet-stream).",
                "headers": {
                    "X-Content-Type-Options": c.NOSNIFF,
                    "Inference-Header-Content-Length": {
                        "description": "With binary outputs, the length of the JSON header.",
                        "schema": {"type": "string", "pattern": "^[0-9]+$"}}},
                "content": {decoding.JSON: {"schema": c.ref("V2InferenceResponse")},
                            decoding.BINARY: {"schema": binary}}},
            **c.refusals("400", "404", "413", "415", "503"),
        },
    }


def _binary_size() -> dict:
    return {"type": "object", "additionalProperties": False,
            "properties": {"binary_data_size": {"type": "integer", "minimum": 0}}}


def _schemas(c) -> dict:
    """The requests, answers and metadata of this protocol, as KServe's V2 REST API has them."""
    ref, s = c.ref, c.s
    if s.numeric:
        values = {c.value(n)["$ref"] for n in s.names}
        # A flat tensor interleaves the features; one schema fits each value only if they
        # share it.
        value = c.value(s.names[0]) if len(values) == 1 else {"type": "number"}
        tensor = {
            "type": "object", "required": ["name", "shape", "datatype", "data"],
            "additionalProperties": False,
            "properties": {
                "name": {"type": "string"},
                "shape": {"description": f"[N, {c.width}]", "type": "array",
                          "minItems": 2, "maxItems": 2,
                          "prefixItems": [{"type": "integer", "minimum": 1,
                                           "maximum": c.rows},
                                          {"const": c.width}]},
                "datatype": {"type": "string", "enum": list(DATATYPES)},
                "parameters": _binary_size(),
                "data": {"description": f"N * {c.width} values, row-major, flat or as N rows "
                                        f"of {c.width}.",
                         "anyOf": [{"type": "array", "minItems": c.width, "items": value},
                                   {"type": "array", "minItems": 1, "items": ref("Row")}]}}}
        inputs = {"type": "array", "minItems": 1, "maxItems": 1, "items": tensor}
    else:
        inputs = {"type": "array", "minItems": c.width, "maxItems": c.width,
                  "items": {"anyOf": [_column_tensor(c, f) for f in s.features]}}
    names = list(outputs(s))
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
                        "name": {"type": "string", "enum": names},
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
                        "name": {"type": "string", "enum": names},
                        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
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


def _column_tensor(c, f) -> dict:
    """One feature's column, as MLServer's pandas codec sends it."""
    return {
        "type": "object", "required": ["name", "shape", "datatype", "data"],
        "additionalProperties": False,
        "properties": {
            "name": {"type": "string", "const": f.name},
            "shape": {"description": "[N] or [N, 1]", "type": "array", "minItems": 1,
                      "maxItems": 2,
                      "prefixItems": [{"type": "integer", "minimum": 1, "maximum": c.rows},
                                      {"const": 1}]},
            "datatype": {"type": "string", "enum": list(DATATYPES) if f.number else ["BYTES"]},
            "parameters": _binary_size(),
            "data": {"type": "array", "minItems": 1, "maxItems": c.rows,
                     "items": c.value(f.name)}}}
