"""iris-predict: classify an iris flower over HTTPS, as a Google Cloud Function.

Serve locally:  functions-framework --target=predict
Classify once:  python main.py --sl 5.1 --sw 3.5 --pl 1.4 --pw 0.2

The model ships in the source bundle (model.joblib) and is loaded once per
instance: in the background as the serving process starts, with first requests
waiting for that load. docs/api.md documents every path, request and answer.
"""

import argparse
import asyncio
import json
import logging
import os
import sys
import time

import functions_framework.aio
from starlette.requests import Request
from starlette.responses import Response

from iris_predict import contract
from iris_predict.edge import cors, decoding, page, server
from iris_predict.protocols import csv_format, mlflow_scoring, open_inference, parsing
from iris_predict import logs, sampling, settings
from iris_predict.model import served as model
from iris_predict.protocols.answers import answer
from iris_predict.protocols.batch import Batch, Kind
from iris_predict.errors import MethodNotAllowed, ModelUnavailable, NotFound, RequestError
from iris_predict.features import ALIASES, NAMES
from iris_predict.edge.responses import error_response, json_response, preflight_response
from iris_predict.protocols.routes import (BIGQUERY, CONTRACT, CSV, MLFLOW, NATIVE, ROUTES, V2,
                                           Route, find)

logs.setup()
# Batches of this many rows or more are answered on a worker thread, so that they do
# not hold up the small requests queued behind them (measured: docs/performance.md).
THREAD_ROWS = 1000
# The media types each protocol's POST bodies may have.
BODY_TYPES = {NATIVE: (decoding.JSON, decoding.CSV), V2: open_inference.MEDIA_TYPES,
              MLFLOW: mlflow_scoring.MEDIA_TYPES}
# How each protocol answers a refusal; the rest answer {"error": message}.
ERROR_BODIES = {BIGQUERY: lambda message, status: {"errorMessage": message},  # what BigQuery reads
                MLFLOW: mlflow_scoring.error_body}


@functions_framework.aio.http
async def predict(request: Request) -> Response:
    """Every path and method: routes.py says which protocol answers, and how.

    POST: decode -> parse (each protocol its own) -> answer -> respond. GET: metadata
    and health. OPTIONS: CORS preflight.
    """
    started = time.perf_counter()
    method = request.method
    headers = {name.decode("latin-1"): value.decode("latin-1")  # Headers.get scans them all
               for name, value in request.scope["headers"]}
    path = request.scope["path"]
    route = ROUTES.get(path) or find(path)  # the tutorial's "/" costs one dict lookup
    protocol = route.protocol  # a POST to "/" may turn out to be BigQuery's, or CSV
    rows = failure = None
    reason = ""
    unread_body = decoding.has_body(headers)
    try:
        if route.refusal:
            raise NotFound(route.refusal)
        if method == "POST" and method in route.methods:
            media = decoding.media_type(headers)
            body = await decoding.read_body(request.receive, headers, media, BODY_TYPES[protocol])
            unread_body = False
            protocol, payload = _decode(protocol, media, body, headers)
            batch = _parse(protocol, payload, route, request.scope["query_string"], headers)
            rows = batch.rows
            served = await model.ready()
            shape = ANSWERS.get(protocol, answer)
            if len(batch.X) < THREAD_ROWS:
                answered = shape(batch, served)
            else:  # a big batch would hold up the small requests queued behind it
                answered = await asyncio.to_thread(shape, batch, served)
            response = _respond(protocol, batch, answered, served)
            sampling.log(batch, headers.get("x-cloud-trace-context"))
        elif method in route.methods:  # GET or HEAD
            response = page.answer(path, headers) or await GETS[protocol](route)
        elif method == "OPTIONS":
            response = preflight_response({"Allow": route.allow,
                                           **cors.preflight(headers.get("origin"), route.allow)})
        else:
            raise MethodNotAllowed(method, route.allow)
    except ModelUnavailable:
        # The cause was logged once, when loading failed; this line is the request's.
        reason = "no model to answer with"
        response = error_response(_error_body(protocol, ModelUnavailable.CLIENT_MESSAGE, 503),
                                  503, unread_body=unread_body)
    except RequestError as e:
        reason = e.message
        response = error_response(_error_body(protocol, e.message, e.status), e.status,
                                  e.headers, unread_body and not e.body_read)
    except Exception:  # a bug of ours: log it, never show a trace to the client
        reason, failure = "unexpected error", sys.exc_info()
        response = error_response(_error_body(protocol, "internal error", 500), 500,
                                  unread_body=unread_body)
    response.raw_headers += cors.headers(headers.get("origin"))
    logs.request(method, response.status_code, started, protocol, rows, reason,
                 headers.get("content-length"), len(response.body),
                 headers.get("x-cloud-trace-context"), failure)
    return response


def _decode(protocol: str, media: str, body: bytes, headers: dict) -> tuple:
    """The body's values, and the protocol they turn out to speak: "/" takes this
    function's own JSON, a BigQuery call or a CSV table."""
    if protocol == V2:
        return protocol, open_inference.decode(body, headers)
    if media == decoding.CSV:  # the table's bytes: the protocol's parser reads its lines
        return (CSV if protocol == NATIVE else protocol), body
    payload = decoding.decode(body)
    if protocol == NATIVE and type(payload) is dict and "calls" in payload:
        return BIGQUERY, payload
    return protocol, payload


def _parse(protocol: str, payload, route: Route, query: bytes, headers: dict) -> Batch:
    """The request as the protocol states it, validated into a Batch."""
    if protocol == V2:
        return open_inference.parse(payload, route)
    if protocol == MLFLOW:
        return mlflow_scoring.parse(payload)
    explain = parsing.query(query) if query else False  # ?explain=true
    batch = csv_format.parse(payload, explain) if protocol == CSV \
        else parsing.parse(payload, explain)
    if batch.kind is Kind.INSTANCES and csv_format.accepted(headers):
        batch.table = batch.probabilities = True  # answered as a table: a column per species
    return batch


def _respond(protocol: str, batch: Batch, body, served: model.Model) -> Response:
    if protocol == V2:
        return open_inference.respond(body)
    if batch.table:
        return csv_format.respond(body, served.classes)
    return json_response(body)


def _error_body(protocol: str, message: str, status: int) -> dict:
    shape = ERROR_BODIES.get(protocol)
    return shape(message, status) if shape else {"error": message}


async def _metadata(route: Route) -> Response:
    served = await model.ready()
    if route.operation == CONTRACT:  # GET /openapi.json
        return json_response(contract.document(served.signature, settings.MAX_BODY_BYTES,
                                               settings.MAX_BATCH_ROWS))
    return json_response(describe(served), headers=page.VARY)  # GET /: a browser got the page


ANSWERS = {V2: open_inference.answer, MLFLOW: mlflow_scoring.answer}
GETS = {NATIVE: _metadata, V2: open_inference.get, MLFLOW: mlflow_scoring.get}


def describe(served: model.Model) -> dict:
    """The metadata a client needs to build a form or check what it is talking to."""
    meta, signature = served.metadata, served.signature
    return {
        "name": signature.name,
        "task": signature.task,
        "target": signature.target,
        "features": meta["features"],
        "aliases": dict(zip(ALIASES, NAMES)),
        "classes": meta["classes"],
        "estimator": meta["estimator"],
        "metrics": meta["metrics"],
        "versions": meta["versions"],
        "sha256": meta["sha256"],
        "limits": {
            "max_body_bytes": settings.MAX_BODY_BYTES,
            "max_batch_rows": settings.MAX_BATCH_ROWS,
        },
    }


# gunicorn imports this module in its master, then forks the worker that serves;
# threads do not survive a fork, so the worker starts loading the model as soon
# as it exists, overlapping the load with its start-up and first connection.
os.register_at_fork(after_in_child=model.preload)
server.tune(predict)


def cli(argv=None) -> int:
    """The tutorial's iris.py: classify one flower given on the command line."""
    parser = argparse.ArgumentParser(description="Classify one iris flower (measurements in cm).")
    for name, alias in zip(NAMES, ALIASES):
        parser.add_argument(f"--{alias}", f"--{name.replace('_', '-')}", dest=alias,
                            required=True, metavar="CM", help=name.replace("_", " "))
    parser.add_argument("--json", action="store_true", help="print the full JSON answer")
    args = parser.parse_args(argv)
    logs.setup(sys.stderr, logging.WARNING)  # stdout holds the answer and nothing else
    try:
        values = {alias: _cli_number(getattr(args, alias)) for alias in ALIASES}
        body = answer(parsing.parse(values), model.get())  # the same path as a POST body
    except ModelUnavailable as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except RequestError as e:
        parser.error(e.message)
    if args.json:
        print(json.dumps(body, indent=2))
    else:
        print(body["species"])
        for warning in body["warnings"]:
            print(f"warning: {warning['message']}", file=sys.stderr)
    return 0


def _cli_number(text: str):
    """A command-line value as JSON would give it, so the same validation applies."""
    try:
        return json.loads(text, parse_constant=lambda name: name)
    except ValueError:
        return text


if __name__ == "__main__":
    sys.exit(cli())
