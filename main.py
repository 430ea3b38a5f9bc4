"""iris-predict: classify an iris flower over HTTPS, as a Google Cloud Function.

Serve locally:  functions-framework --target=predict
Classify once:  python main.py --sl 5.1 --sw 3.5 --pl 1.4 --pw 0.2

The model ships in the source bundle (model.joblib) and is loaded once per
instance: in the background as the serving process starts, with first requests
waiting for that load. README "API reference" documents every request and answer.
"""

import argparse
import json
import logging
import os
import sys
import time

import flask
import functions_framework
from werkzeug.exceptions import HTTPException

from iris_predict import cors, logs, model, settings
from iris_predict.answers import answer
from iris_predict.artifact import ModelUnavailable
from iris_predict.features import ALIASES, NAMES
from iris_predict.parsing import InvalidRequest, decode, parse
from iris_predict.responses import error_response, json_response, read_body

logs.setup()
ALLOW = "GET, POST, OPTIONS"


@functions_framework.http
def predict(request: flask.Request) -> flask.Response:
    """GET: model metadata. POST: predictions. OPTIONS: CORS preflight."""
    started = time.perf_counter()
    origin = request.headers.get("Origin")
    bigquery = False
    rows, reason, failure = None, "", None
    try:
        if request.method == "POST":
            payload = decode(read_body(request))
            bigquery = isinstance(payload, dict) and "calls" in payload
            batch = parse(payload)
            rows = batch.total or len(batch.X)
            response = json_response(answer(batch, model.get()))
        elif request.method in ("GET", "HEAD"):
            response = json_response(describe(model.get()))
        elif request.method == "OPTIONS":
            response = flask.Response(status=204, headers={"Allow": ALLOW,
                                                           "X-Content-Type-Options": "nosniff"})
            del response.headers["Content-Type"]  # no body, so no type
            response.headers.update(cors.headers(origin, preflight=True))
        else:
            reason = f"method {request.method} is not allowed"
            response = error_response(f"{reason}; use {ALLOW}", 405, headers={"Allow": ALLOW})
    except InvalidRequest as e:
        reason = e.message
        response = error_response(e.message, e.status, bigquery)
    except ModelUnavailable:
        # The cause was logged once, when loading failed; this line is the request's.
        reason = "no model to answer with"
        response = error_response("the model is unavailable; see the function's logs",
                                  503, bigquery)
    except Exception:  # a bug of ours: log it, never show a trace to the client
        reason, failure = "unexpected error", sys.exc_info()
        response = error_response("internal error", 500, bigquery)
    response.headers.update(cors.headers(origin))
    _log(request, response, started, rows, reason, failure)
    return response


def _log(request, response, started, rows=None, reason="", failure=None):
    """The request's one log line: what was asked and how it went, never the data."""
    logs.request(request.method, response.status_code, started, rows, reason,
                 request.content_length, response.content_length,
                 request.headers.get("X-Cloud-Trace-Context"), failure)


def _framework_error(error: HTTPException) -> flask.Response:
    """The framework's own refusals (e.g. its 404 for /favicon.ico), as JSON too."""
    started = time.perf_counter()  # the framework refused it before predict(): time ours only
    response = error_response(error.description or error.name, error.code or 500)
    response.headers.update(cors.headers(flask.request.headers.get("Origin")))
    _log(flask.request, response, started, reason=error.name)
    return response


if flask.has_app_context():  # functions-framework imports this module inside its app
    flask.current_app.register_error_handler(HTTPException, _framework_error)
    # gunicorn imports this module, then forks the worker that serves; threads do not
    # survive a fork, so the worker starts loading the model as soon as it exists,
    # overlapping the load with the worker's start-up and the first connection.
    os.register_at_fork(after_in_child=model.preload)


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
        body = answer(parse(values), model.get())  # the same path as a POST body
    except InvalidRequest as e:
        parser.error(e.message)
    except ModelUnavailable as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
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
