"""MLflow's scoring server protocol: /invocations, /ping, /health and /version.

docs/mlflow.md is the reference. As `mlflow models serve` answers for a
scikit-learn classifier: a JSON body with exactly one of dataframe_split,
dataframe_records, instances or inputs (or a CSV table) gets
{"predictions": [...]}, what the estimator's own predict() answers (its classes_:
model.json's predict_values); errors are {"error_code", "message"}, as
MLflow's MlflowException serializes them (mlflow/pyfunc/scoring_server).
"""

from iris_predict.edge import decoding
from iris_predict.edge.responses import TEXT, content_response, json_response
from iris_predict.errors import InvalidRequest
from iris_predict.model import served as model
from iris_predict.protocols import csv_table, rows
from iris_predict.protocols.batch import Batch, Kind
from iris_predict.text import kind, show

NAME = "mlflow"
PING, VERSION, INVOCATIONS = "ping", "version", "invocations"
PATHS = {"/invocations": (INVOCATIONS, ("POST",)), "/ping": (PING, ("GET",)),
         "/health": (PING, ("GET",)), "/version": (VERSION, ("GET",))}
WHERE = "/invocations, /ping, /health and /version (MLflow)"
MEDIA_TYPES = (decoding.JSON, decoding.CSV)
DF_SPLIT, DF_RECORDS, INSTANCES, INPUTS = (
    "dataframe_split", "dataframe_records", "instances", "inputs")
FORMATS = (DF_SPLIT, DF_RECORDS, INSTANCES, INPUTS)
PARAMS = "params"  # MLflow's inference parameters; a scikit-learn model takes none
# MLflow's error codes for our statuses (mlflow/exceptions.py maps them back to these).
ERROR_CODES = {404: "ENDPOINT_NOT_FOUND", 500: "INTERNAL_ERROR", 503: "TEMPORARILY_UNAVAILABLE"}
BAD_REQUEST = "BAD_REQUEST"


def error_body(message: str, status: int) -> dict:
    return {"error_code": ERROR_CODES.get(status, BAD_REQUEST), "message": message}


def claims(payload) -> bool:
    return True


def decode(body: bytes, headers: dict, signature):
    return body if decoding.media_type(headers) == decoding.CSV else decoding.decode(body)


async def get(route, headers: dict):
    """/ping and /health: 200 once the model is loaded (at once, never waiting); /version."""
    if route.operation == PING:
        model.loaded()
        return json_response({"status": "ok"})
    return content_response((await model.ready()).version, TEXT)


def parse(payload, request, served: model.Model) -> Batch:
    """A scoring request (decoded JSON, or the bytes of a CSV table) as a batch."""
    if isinstance(payload, bytes):
        found, _ = csv_table.read(payload, served.signature)
        return Batch(Kind.INVOCATIONS, found.X, unknown=found.unknown)
    if type(payload) is not dict:
        raise InvalidRequest(f"the body must be a JSON object with exactly one of the fields "
                             f"{', '.join(FORMATS)}, got {kind(payload)}")
    found = [key for key in FORMATS if key in payload]
    if len(found) != 1:
        raise InvalidRequest(f"the body must have exactly one of the fields "
                             f"{', '.join(FORMATS)}; found {', '.join(found) or 'none of them'}")
    rows.only_keys(payload, (*found, PARAMS), "request body")
    if payload.get(PARAMS, {}) != {}:
        raise InvalidRequest(f"{PARAMS} must be empty: this model takes no parameters")
    key = found[0]
    found = rows.matrix(_without_extras(ROWS[key](payload[key], key), served.signature), key,
                        served.signature)
    return Batch(Kind.INVOCATIONS, found.X, unknown=found.unknown)


def _without_extras(records, signature) -> list:
    """The rows without the columns that are not features, as MLflow's schema enforcement
    ignores them (an ID column beside the features, say); a column named like a feature
    (sepal_lenght) stays, to be refused with its suggestion rather than leave the feature
    missing. Rows that are arrays pass as they are."""
    if not isinstance(records, list):
        return records
    known = {*signature.names, *signature.aliases}
    kept_by_keys = {}  # the kept keys of each set of keys: records mostly share theirs
    found = []
    for row in records:
        if type(row) is not dict or row.keys() <= known:
            found.append(row)
            continue
        keys = frozenset(row)
        kept = kept_by_keys.get(keys)
        if kept is None:
            kept = kept_by_keys[keys] = [k for k in row if k in known
                                         or rows.suggest(k, signature)]
        found.append({k: row[k] for k in kept})
    return found


def answer(batch: Batch, served: model.Model) -> dict:
    predicted, _ = served.predict(batch.X, False, batch.unknown)
    values = served.signature.predict_values
    if values is None:  # class k is answered k (a regressor: its value)
        return {"predictions": predicted.tolist()}
    return {"predictions": [values[k] for k in predicted.tolist()]}


def respond(body: dict, batch: Batch, served: model.Model):
    return json_response(body)



def _split(frame, where: str) -> list:
    """pandas' to_dict(orient="split"): columns and data (and an index, which is ignored)."""
    if not isinstance(frame, dict):
        raise InvalidRequest(f"{where} must be an object with columns and data, got {kind(frame)}")
    rows.only_keys(frame, ("columns", "data", "index"), where)
    data, index = frame.get("data"), frame.get("index", [])
    if not isinstance(data, list):
        raise InvalidRequest(f"{where}.data must be an array of rows, got {kind(data)}")
    if not isinstance(index, list):
        raise InvalidRequest(f"{where}.index must be an array, got {kind(index)}")
    if "columns" not in frame:  # no names: the columns are in model.json's order
        return data
    columns = frame["columns"]
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns) \
            or len(set(columns)) != len(columns):
        raise InvalidRequest(f"{where}.columns must be an array of distinct feature names, "
                             f"got {show(columns)}")
    found = []
    for i, row in enumerate(data):
        if not isinstance(row, list) or len(row) != len(columns):
            raise InvalidRequest(f"{where}.data[{i}] must be an array of {len(columns)} values, "
                                 f"one per column")
        found.append(dict(zip(columns, row)))
    return found


def _rows(rows, where: str) -> list:
    """Rows as the native API takes them: arrays in model.json's order, or objects by name."""
    return rows


def _inputs(inputs, where: str) -> list:
    """TF Serving's columnar form, {feature: [values]}, as rows; or rows, as `instances`."""
    if not isinstance(inputs, dict):
        return inputs
    columns = list(inputs.values())
    if not all(isinstance(c, list) for c in columns) or len({len(c) for c in columns}) > 1:
        raise InvalidRequest(f"{where} as columns must map each feature to an array of values, "
                             "all of the same length")
    return [dict(zip(inputs, values)) for values in zip(*columns)]


ROWS = {DF_SPLIT: _split, DF_RECORDS: _rows, INSTANCES: _rows, INPUTS: _inputs}


def openapi(c) -> object:
    """This protocol's part of the contract (contract.py: `c` is its Contract)."""
    ref, s = c.ref, c.s
    values = s.predict_values
    answer = {"enum": list(values)} if values else ref("ClassIndex") if s.classifier \
        else {"type": "number"}
    error = ref("MlflowError", "responses")
    invocations = {
        "operationId": "mlflowInvocations",
        "summary": "MLflow scoring server: predict a table of rows.",
        "requestBody": {"required": True, "content": {
            decoding.JSON: {"schema": ref("MlflowRequest")},
            decoding.CSV: {"schema": ref("CsvTable")}}},
        "responses": {
            "200": {"description": "What the model's own predict() answers, one per row, in "
                                   "order: " + ("its class labels." if values else
                                                "the class index." if s.classifier
                                                else "the predicted value."),
                    "headers": {"X-Content-Type-Options": c.NOSNIFF},
                    "content": {decoding.JSON: {"schema": {
                        "type": "object", "required": ["predictions"],
                        "additionalProperties": False,
                        "properties": {"predictions": {"type": "array", "items": answer}}}}}},
            "400": error, "413": error, "415": error, "503": error,
        },
    }
    return c.Part(
        about=("MLflow's scoring server", "on `/invocations`, `/ping`, `/health` and "
                                          "`/version`"),
        paths={
            "/invocations": {"post": invocations},
            "/ping": {"get": _health(c, "mlflowPing", "MLflow scoring server: the model is loaded "
                                     "(answers at once, never waits).")},
            "/health": {"get": _health(c, "mlflowHealth",
                                       "MLflow scoring server: the same as /ping.")},
            "/version": {"get": {
                "operationId": "mlflowVersion",
                "summary": "MLflow scoring server: the version, which is the model's.",
                "responses": {
                    "200": {"description": "The model's version, as plain text.",
                            "headers": {"X-Content-Type-Options": c.NOSNIFF},
                            "content": {"text/plain": {"schema": ref("ModelVersion")}}},
                    "503": error}}}},
        responses={
            "MlflowHealthy": c.json_ok("The model is loaded.", {
                "type": "object", "required": ["status"], "additionalProperties": False,
                "properties": {"status": {"type": "string", "const": "ok"}}}),
            "MlflowError": {
                "description": "A refusal, as MLflow's scoring server words it.",
                "headers": {"X-Content-Type-Options": c.NOSNIFF},
                "content": {decoding.JSON: {"schema": {
                    "type": "object", "required": ["error_code", "message"],
                    "additionalProperties": False,
                    "properties": {
                        "error_code": {"type": "string", "enum": [
                            BAD_REQUEST, *(ERROR_CODES[status] for status in (404, 503, 500))]},
                        "message": {"type": "string", "minLength": 1, "maxLength": 400}}}}}}},
        schemas=_schemas(c))


def _health(c, operation: str, summary: str) -> dict:
    return {"operationId": operation, "summary": summary,
            "responses": {"200": c.ref("MlflowHealthy", "responses"),
                          "503": c.ref("MlflowError", "responses")}}


def _schemas(c) -> dict:
    """The request MLflow's scoring server takes: a data frame in one of its four forms."""
    ref, s = c.ref, c.s
    columns = [{"const": list(s.names)}] + ([{"const": list(s.aliases)}] if s.aliases else [])
    records = [ref("Row"), ref("MlflowRecordByName")] + (
        [ref("MlflowRecordByAlias")] if s.aliases else [])
    params = ref("MlflowParams")

    def one_of(field: str, schema: dict) -> dict:
        return {"type": "object", "required": [field], "additionalProperties": False,
                "properties": {field: schema, PARAMS: params}}

    return {
        "MlflowRequest": {
            "description": "Exactly one of dataframe_split, dataframe_records, instances or "
                           "inputs (a body with none, or more than one, is a 400 that names "
                           "those found); params must be empty.",
            "anyOf": [
                one_of(DF_SPLIT, {
                    "description": "pandas' DataFrame.to_dict(orient=\"split\").",
                    "type": "object", "required": ["data"], "additionalProperties": False,
                    "properties": {
                        "index": {"type": "array"},
                        "columns": {"description": "The names of data's columns, long or "
                                                   "short, in any order; without them the "
                                                   "columns are in model.json's order.",
                                    "anyOf": columns},
                        "data": {"type": "array", "minItems": 1, "maxItems": c.rows,
                                 "items": ref("Row")}}}),
                *(one_of(form, ref("Records")) for form in FORMATS[1:])]},
        "Records": {"type": "array", "minItems": 1, "maxItems": c.rows,
                    "items": {"anyOf": records}},
        # Other columns are ignored, as MLflow ignores inputs its signature does not name.
        **{f"MlflowRecordBy{form}": {**c.row_object(
            names, f"A row by the features' {words}; other columns are ignored (one named "
                   f"like a feature is refused, naming it)."), "additionalProperties": True}
           for form, names, words in (("Name", s.names, "names"),
                                      ("Alias", s.aliases, "short names"))
           if names},
        "MlflowParams": {"type": "object", "maxProperties": 0},
    }
