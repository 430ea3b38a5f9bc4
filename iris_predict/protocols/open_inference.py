"""The Open Inference Protocol (KServe's V2 REST API), as KServe, MLServer and Triton speak it.

docs/open-inference.md is the reference. The model is "iris": one input tensor of
shape [N, 4] (FP32 or FP64, the features in model.json's order) and two outputs
named as MLServer's scikit-learn runtime names them: "predict" (INT64 [N], the
class index) and "predict_proba" (FP64 [N, 3]). Tensor data comes as JSON or,
with Triton's binary tensor extension, as raw little-endian bytes after the JSON
header, which is what tritonclient sends and asks for by default.
"""

from dataclasses import dataclass

import numpy as np
import orjson

from iris_predict.edge import decoding
from iris_predict.model import served as model
from iris_predict.protocols import parsing, routes
from iris_predict.protocols.batch import Batch, Kind
from iris_predict.errors import InvalidRequest, NotFound
from iris_predict.features import MAX_VALUE, MIN_VALUE, NAMES
from iris_predict.edge.responses import content_response, json_response
from iris_predict.text import kind, show

SERVER_NAME = "iris-predict"
# Triton's name for the extension: tensors as raw bytes after the JSON header.
BINARY_EXTENSION = "binary_tensor_data"
# The request and response header that says where the JSON ends and the tensors begin.
HEADER_LENGTH = "inference-header-content-length"
MEDIA_TYPES = (decoding.JSON, decoding.BINARY, decoding.NONE)
INPUT_NAME = "input-0"  # what the metadata calls the input; a request may name it anything
DATATYPES = {"FP32": np.dtype("<f4"), "FP64": np.dtype("<f8")}
PREDICT, PREDICT_PROBA = "predict", "predict_proba"
OUTPUTS = (PREDICT, PREDICT_PROBA)
WIDTH = len(NAMES)


@dataclass(frozen=True, slots=True)
class Options:
    """What an inference request asks of the answer, besides the rows."""

    id: str | None
    outputs: tuple        # output names, in the order asked
    binary: frozenset     # those to send as raw bytes
    version: str          # the model version its path names, if any


# Health and metadata (GET).

async def get(route: routes.Route):
    """The answer to a GET of `route`; readiness answers at once, without waiting for the model."""
    if route.operation == routes.LIVE:
        return json_response({"live": True})
    if route.operation == routes.READY:
        model.loaded()
        return json_response({"ready": True})
    if route.operation == routes.MODEL_READY:
        _check_version(route.version, model.loaded())
        return json_response({"name": routes.MODEL_NAME, "ready": True})
    served = await model.ready()
    if route.operation == routes.SERVER:
        return json_response({"name": SERVER_NAME, "version": served.version,
                              "extensions": [BINARY_EXTENSION]})
    _check_version(route.version, served)
    return json_response(metadata(served))


def metadata(served: model.Model) -> dict:
    """The model metadata: its version, input and outputs."""
    return {
        "name": routes.MODEL_NAME,
        "versions": [served.version],
        "platform": "sklearn",
        "inputs": [{"name": INPUT_NAME, "datatype": "FP64", "shape": [-1, WIDTH],
                    # Parameters are strings, numbers or booleans: the order, comma-separated.
                    "parameters": {"features": ",".join(NAMES), "unit": "cm"}}],
        "outputs": [{"name": PREDICT, "datatype": "INT64", "shape": [-1]},
                    {"name": PREDICT_PROBA, "datatype": "FP64",
                     "shape": [-1, len(served.classes)],
                     "parameters": {"classes": ",".join(served.classes)}}],
    }


def _check_version(version: str, served: model.Model):
    if version and version != served.version:
        raise NotFound(f"model {routes.MODEL_NAME} has no version {show(version)}; "
                       f"its version is {served.version}")


# Inference (POST): decode -> parse -> answer -> respond.

def decode(body: bytes, headers: dict) -> tuple:
    """(JSON header, the binary tensor bytes after it) of an inference request body."""
    length = headers.get(HEADER_LENGTH)
    if length is None:
        return decoding.decode(body), b""
    if not length.isdigit() or int(length) > len(body):
        raise InvalidRequest(f"Inference-Header-Content-Length must be the length of the JSON "
                             f"header, at most the body's {len(body)} bytes, got {show(length)}")
    return decoding.decode(body[:int(length)]), body[int(length):]


def parse(payload: tuple, route: routes.Route) -> Batch:
    """A validated inference request; InvalidRequest names what is wrong."""
    request, binary = payload
    if type(request) is not dict:
        raise InvalidRequest(f"request body must be a JSON object, got {kind(request)}")
    parsing.only_keys(request, ("id", "parameters", "inputs", "outputs"), "request body")
    request_id = request.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidRequest(f"id must be a string, got {kind(request_id)}")
    parameters = _object(request.get("parameters", {}), "parameters", ("binary_data_output",))
    binary_output = _flag(parameters, "binary_data_output", "parameters")
    inputs = request.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1:
        got = f"{len(inputs)} inputs" if isinstance(inputs, list) else kind(inputs)
        raise InvalidRequest(f"inputs must be an array of one tensor of shape [N, {WIDTH}], "
                             f"got {got}")
    X = _tensor(inputs[0], binary)
    outputs, binary_outputs = _outputs(request.get("outputs"), binary_output)
    return Batch(Kind.INFER, X, probabilities=PREDICT_PROBA in outputs,
                 options=Options(request_id, outputs, binary_outputs, route.version))


def _tensor(tensor, binary: bytes) -> np.ndarray:
    """The input tensor as a validated (N, 4) float64 matrix."""
    where = "inputs[0]"
    tensor = _object(tensor, where, ("name", "shape", "datatype", "parameters", "data"))
    for field in ("name", "shape", "datatype"):
        if field not in tensor:
            raise InvalidRequest(f"{where} is missing {field}")
    if not isinstance(tensor["name"], str):
        raise InvalidRequest(f"{where}.name must be a string, got {kind(tensor['name'])}")
    datatype = DATATYPES.get(tensor["datatype"]) if isinstance(tensor["datatype"], str) else None
    if datatype is None:
        raise InvalidRequest(
            f"{where}.datatype must be FP32 or FP64, got {show(tensor['datatype'])}")
    shape = tensor["shape"]
    if (not isinstance(shape, list) or len(shape) != 2 or shape[1] != WIDTH
            or type(shape[0]) is not int or shape[0] < 1):
        raise InvalidRequest(f"{where}.shape must be [N, {WIDTH}] with N at least 1 "
                             f"({', '.join(NAMES)} in that order), got {show(shape)}")
    rows = shape[0]
    parsing.check_rows(rows, where)
    parameters = _object(tensor.get("parameters", {}), f"{where}.parameters",
                         ("binary_data_size",))
    if "binary_data_size" in parameters:
        if "data" in tensor:
            raise InvalidRequest(f"{where} has both data and parameters.binary_data_size; "
                                 "send one")
        X = _binary_data(parameters["binary_data_size"], binary, datatype, rows, where)
    elif "data" in tensor:
        if binary:
            raise InvalidRequest("the body has binary data after its JSON header, but no input "
                                 "says its binary_data_size")
        X, _ = parsing.matrix(_rows(tensor["data"], rows, where), f"{where}.data")
        if datatype.itemsize == 4:  # the client's FP32 values, as it holds them
            X = X.astype(np.float32).astype(np.float64)
    else:
        raise InvalidRequest(f"{where} has neither data nor parameters.binary_data_size")
    _check_bounds(X, f"{where}.data")
    return X


def _rows(data, rows: int, where: str) -> list:
    """The tensor data as rows of 4: it may come nested ([[...], ...]) or flat, row-major."""
    if not isinstance(data, list):
        raise InvalidRequest(f"{where}.data must be an array of numbers, got {kind(data)}")
    if data and all(type(row) is list for row in data):
        if len(data) != rows:
            raise InvalidRequest(f"{where}.data has {len(data)} rows, but its shape says {rows}")
        return data
    if len(data) != rows * WIDTH:
        raise InvalidRequest(f"{where}.data has {len(data)} values, but its shape "
                             f"[{rows}, {WIDTH}] needs {rows * WIDTH}")
    return [data[i:i + WIDTH] for i in range(0, len(data), WIDTH)]


def _binary_data(size, binary: bytes, datatype: np.dtype, rows: int, where: str) -> np.ndarray:
    expected = rows * WIDTH * datatype.itemsize
    if type(size) is not int or size != expected:
        raise InvalidRequest(f"{where}.parameters.binary_data_size must be {expected} (shape "
                             f"[{rows}, {WIDTH}] of {datatype.itemsize}-byte values), "
                             f"got {show(size)}")
    if len(binary) != size:
        raise InvalidRequest(f"the body has {len(binary)} bytes after its JSON header, but "
                             f"{where}.parameters.binary_data_size says {size}")
    return np.frombuffer(binary, datatype).astype(np.float64).reshape(rows, WIDTH)


def _check_bounds(X: np.ndarray, where: str):
    """Every value a plausible measurement, else number()'s message for the first that is not."""
    inside = (X > MIN_VALUE) & (X <= MAX_VALUE)  # false for NaN too
    if not inside.all():
        i, j = map(int, np.argwhere(~inside)[0])
        parsing.number(float(X[i, j]), f"{where}[{i}][{j}] ({NAMES[j]})")


def _outputs(requested, binary_output: bool) -> tuple:
    """(output names, those to send binary); no list means both outputs."""
    if requested is None:
        return OUTPUTS, frozenset(OUTPUTS) if binary_output else frozenset()
    if not isinstance(requested, list) or not requested:
        raise InvalidRequest(f"outputs must be a non-empty array, got {kind(requested)}")
    names, binary = [], set()
    for i, output in enumerate(requested):
        output = _object(output, f"outputs[{i}]", ("name", "parameters"))
        name = output.get("name")
        if name not in OUTPUTS:
            raise InvalidRequest(f"outputs[{i}].name must be one of {', '.join(OUTPUTS)}, "
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
    _check_version(options.version, served)
    labels, proba = served.predict(batch.X, batch.probabilities)
    tensors = {PREDICT: ("INT64", np.asarray(labels, dtype="<i8")),
               PREDICT_PROBA: ("FP64", proba)}
    outputs, blobs = [], []
    for name in options.outputs:
        datatype, values = tensors[name]
        output = {"name": name, "shape": list(values.shape), "datatype": datatype}
        if name in options.binary:
            blob = np.ascontiguousarray(values, dtype=values.dtype.newbyteorder("<")).tobytes()
            output["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            output["data"] = values.ravel().tolist()
        outputs.append(output)
    header = {"model_name": routes.MODEL_NAME, "model_version": served.version}
    if options.id is not None:
        header["id"] = options.id
    header["outputs"] = outputs
    return header, blobs


def respond(answer_: tuple):
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
    parsing.only_keys(value, allowed, where)
    return value


def _flag(parameters: dict, name: str, where: str, default: bool = False) -> bool:
    value = parameters.get(name, default)
    if not isinstance(value, bool):
        raise InvalidRequest(f"{where}.{name} must be true or false, got {show(value)}")
    return value
