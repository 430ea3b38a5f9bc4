"""This function's own protocol on "/": one row, a batch of instances, the metadata.

docs/api.md is the reference. A POST body is one row as an object, by the
features' names or aliases ({"sl": 5.1, ...}, the tutorial's body), or a batch in
the Vertex AI / KServe V1 shape ({"instances": [...], "parameters": {...}}).
Explanations are asked for with ?explain=true, "explain": true in the body, or
"parameters": {"explain": true} beside instances. GET answers the model's
metadata: what a client needs to build a form or check what it is talking to.
"""

import json

import numpy as np

from iris_predict import settings
from iris_predict.edge import decoding, number_rows, page
from iris_predict.edge.responses import json_response
from iris_predict.errors import InvalidRequest
from iris_predict.model import served as model
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


def decode(body: bytes, headers: dict, signature):
    if b"[" in body and signature.numeric:  # a batch of nothing but numbers: into the matrix
        X = number_rows.matrix(body, INSTANCES, len(signature.names))
        # Out of bounds, it is decoded again, for the message to show the value as sent.
        if X is not None and rows.columns(signature).inside(X):
            return {INSTANCES: X}
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
        # Imported on the first ask: compiling its 900 lines cost every cold start ~13 ms
        # where no bytecode is kept, for a document few clients fetch.
        from iris_predict import contract
        return json_response(contract.document(served.signature, settings.MAX_BODY_BYTES,
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
