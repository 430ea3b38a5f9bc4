"""iris-predict: classify an iris flower over HTTPS, as a Google Cloud Function.

Serve locally:  functions-framework --target=predict
Classify once:  python main.py --sl 5.1 --sw 3.5 --pl 1.4 --pw 0.2

The model ships in the source bundle (model.joblib) and is loaded once per
instance: in the background as the serving process starts, with first requests
waiting for that load. README "API reference" documents every request and answer.
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

from iris_predict import cors, decoding, logs, model, parsing, sampling, server, settings
from iris_predict.answers import answer
from iris_predict.batch import Kind
from iris_predict.errors import MethodNotAllowed, ModelUnavailable, NotFound, RequestError
from iris_predict.features import ALIASES, NAMES
from iris_predict.responses import error_response, json_response, preflight_response
from iris_predict.routes import ALLOW, NOT_FOUND

logs.setup()
# Batches of this many rows or more are answered on a worker thread, so that they do
# not hold up the small requests queued behind them (measured: README "Performance").
THREAD_ROWS = 1000


@functions_framework.aio.http
async def predict(request: Request) -> Response:
    """GET: model metadata. POST: predictions. OPTIONS: CORS preflight."""
    started = time.perf_counter()
    method = request.method
    headers = dict(request.headers.items())  # one pass: Headers.get scans them every time
    rows = failure = None
    reason, error_field = "", "error"
    unread_body = decoding.has_body(headers)
    try:
        if request.scope["path"] in NOT_FOUND:
            raise NotFound("not found")
        if method == "POST":
            body = await decoding.read_body(request.receive, headers)
            unread_body = False
            payload = decoding.decode(body)
            if type(payload) is dict and "calls" in payload:
                error_field = "errorMessage"  # what BigQuery reads
            batch = parsing.parse(payload)
            rows = batch.rows
            response = json_response(await _answer(batch, await model.ready()))
            sampling.log(batch, headers.get("x-cloud-trace-context"))
        elif method in ("GET", "HEAD"):
            response = json_response(describe(await model.ready()))
        elif method == "OPTIONS":
            response = preflight_response({"Allow": ALLOW, **cors.headers(
                headers.get("origin"), preflight=True)})
        else:
            raise MethodNotAllowed(method, ALLOW)
    except ModelUnavailable:
        # The cause was logged once, when loading failed; this line is the request's.
        reason = "no model to answer with"
        response = error_response(ModelUnavailable.CLIENT_MESSAGE, 503, error_field,
                                  unread_body=unread_body)
    except RequestError as e:
        reason = e.message
        response = error_response(e.message, e.status, error_field, e.headers,
                                  unread_body and not e.body_read)
    except Exception:  # a bug of ours: log it, never show a trace to the client
        reason, failure = "unexpected error", sys.exc_info()
        response = error_response("internal error", 500, error_field, unread_body=unread_body)
    response.headers.update(cors.headers(headers.get("origin")))
    logs.request(method, response.status_code, started, rows, reason,
                 headers.get("content-length"), len(response.body),
                 headers.get("x-cloud-trace-context"), failure)
    return response


async def _answer(batch, served: model.Model) -> dict:
    """answer(), on a worker thread for batches big enough to hold up other requests."""
    if len(batch.X) >= THREAD_ROWS:
        return await asyncio.to_thread(answer, batch, served)
    return answer(batch, served)


def describe(served: model.Model) -> dict:
    """The metadata a client needs to build a form or check what it is talking to."""
    meta = served.metadata
    return {
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
