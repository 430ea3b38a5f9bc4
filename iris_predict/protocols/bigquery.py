"""BigQuery remote functions: a POST to "/" whose JSON body has `calls`.

docs/bigquery.md is the reference. BigQuery sends {"calls": [[arguments], ...],
"userDefinedContext": {...}} and reads {"replies": [...]}, one reply per call in
order, or {"errorMessage": ...} on failure. A call with a NULL argument the
model cannot take gets a NULL reply, while the rest of the batch still scores.
userDefinedContext.output chooses the reply: the label (a regressor's value)
by default or under the target's name, the class index, or everything as JSON.
"""

from iris_predict.errors import InvalidRequest
from iris_predict.edge import decoding
from iris_predict.edge.responses import json_response
from iris_predict.model import served as model
from iris_predict.protocols import answers, rows
from iris_predict.protocols.batch import CLASS, JSON, Batch, Kind
from iris_predict.text import kind, show

NAME = "bigquery"
PATHS = {"/": ("predict", ("POST",))}
WHERE = "/ (BigQuery remote functions, with calls)"
MEDIA_TYPES = (decoding.JSON,)
CALLS, CONTEXT, OUTPUT = "calls", "userDefinedContext", "output"


def claims(payload) -> bool:
    return type(payload) is dict and CALLS in payload


def decode_rows(body: bytes, signature):
    """Calls of nothing but numbers, straight into the matrix; else None."""
    return rows.numbers(body, CALLS, signature)


def decode(body: bytes, headers: dict, signature):
    return decoding.decode(body)


def parse(payload: dict, request, served: model.Model) -> Batch:
    if request.query and answers.explain_asked(request.query):  # ?explain=false is no request at all
        raise InvalidRequest("explanations are not available to BigQuery calls")
    calls = payload[CALLS]
    found = rows.matrix(calls, CALLS, served.signature, bigquery=True)
    return Batch(Kind.CALLS, found.X, output=_output(payload.get(CONTEXT), served.signature),
                 total=len(calls), present=found.present, unknown=found.unknown)


def outputs(signature) -> tuple:
    """The replies userDefinedContext.output may choose, the default first."""
    return (signature.target, CLASS, JSON) if signature.classifier else (signature.target, JSON)


def _output(context, signature) -> str | None:
    if context is None:
        return None
    if not isinstance(context, dict):
        raise InvalidRequest(f"{CONTEXT} must be an object, got {kind(context)}")
    for key in context:
        if key != OUTPUT:
            raise InvalidRequest(f"{CONTEXT} has unknown field {show(key)}; expected {OUTPUT}")
    choices = outputs(signature)
    output = context.get(OUTPUT, signature.target)
    if output not in choices:
        raise InvalidRequest(f"{CONTEXT}.{OUTPUT} must be one of {', '.join(choices)}, "
                             f"got {show(output)}")
    return None if output == signature.target else output


def answer(batch: Batch, served: model.Model) -> dict:
    """One reply per call, in order; None (SQL NULL) where a call had a NULL argument."""
    scores = answers.Scores(batch, served, probabilities=batch.output == JSON)
    if batch.output == CLASS:
        scored = scores.predictions
    elif batch.output == JSON:
        scored = _json(scores, served.signature)
    else:
        scored = scores.labels
    if len(scored) == batch.total:  # no NULL rows: the replies are the scores, in order
        return {"replies": scored}
    replies = [None] * batch.total
    for i, reply in zip(batch.present, scored):
        replies[i] = reply
    return {"replies": replies}


def _json(scores: answers.Scores, signature) -> list:
    by_row = [[] for _ in scores.predictions]
    for w in scores.warnings:
        by_row[w["row"]].append({k: v for k, v in w.items() if k != "row"})
    if not signature.classifier:
        return [{signature.target: v, "warnings": ws}
                for v, ws in zip(scores.predictions, by_row)]
    return [{"class": k, signature.target: label, "probabilities": p, "warnings": ws}
            for k, label, p, ws in zip(scores.predictions, scores.labels, scores.probabilities or [],
                                       by_row)]


def respond(body: dict, batch: Batch, served: model.Model):
    return json_response(body)


def error_body(message: str, status: int) -> dict:
    return {"errorMessage": message}  # what BigQuery reads and shows in the query's error


def openapi(c) -> object:
    """This protocol's part of the contract (contract.py: `c` is its Contract)."""
    ref, s = c.ref, c.s
    request = {
        "description": "What BigQuery sends a remote function; it adds fields of its own "
                       "(requestId, caller, sessionUser), which are ignored.",
        "type": "object", "required": [CALLS],
        "properties": {
            CALLS: {"type": "array", "maxItems": c.rows, "items": {
                "type": "array", "minItems": c.width, "maxItems": c.width, "items": False,
                "prefixItems": [_argument(c, f) for f in s.features]}},
            CONTEXT: {
                "type": ["object", "null"], "additionalProperties": False,
                "properties": {OUTPUT: {"type": "string", "enum": list(outputs(s))}}}}}
    json_reply = {"type": "object", "description": 'userDefinedContext.output "json".',
                  "additionalProperties": False}
    warnings = {"type": "array", "items": {"type": "object",
                                           "required": ["feature", "value", "message"],
                                           "properties": c.warning_properties()}}
    if s.classifier:
        replies = [ref("Label"), ref("ClassIndex")]
        json_reply.update(required=[CLASS, c.target, "probabilities", "warnings"],
                          properties={CLASS: ref("ClassIndex"), c.target: ref("Label"),
                                      "probabilities": ref("Probabilities"),
                                      "warnings": warnings})
    else:
        replies = [{"type": "number"}]
        json_reply.update(required=[c.target, "warnings"],
                          properties={c.target: {"type": "number"}, "warnings": warnings})
    answer = {
        "type": "object", "required": ["replies"], "additionalProperties": False,
        "properties": {"replies": {
            "description": "One per call, in order; null where a call had a SQL NULL.",
            "type": "array", "items": {"anyOf": [{"type": "null"}, *replies, json_reply]}}}}
    return c.Part(about=("BigQuery remote functions", "on `/`"),
                  takes={("/", "post"): {decoding.JSON: [ref("BigQueryRequest")]}},
                  gives={("/", "post"): {decoding.JSON: [ref("BigQueryAnswer")]}},
                  requests={"BigQueryRequest": request}, answers={"BigQueryAnswer": answer})


def _argument(c, f) -> dict:
    """A call's argument: the value, SQL NULL, or a NUMERIC column's decimal string."""
    choices = [c.value(f.name),
               {"type": "null", "description": "SQL NULL; the reply for this call is null."}]
    pattern = c.decimal_pattern(f) if f.number else None
    if pattern:
        choices.append({"type": "string", "description": "A NUMERIC column, sent as a "
                                                         "decimal string.",
                        "pattern": f"^({pattern})$"})
    return {"anyOf": choices}
