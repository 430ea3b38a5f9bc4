"""iris-predict: a scikit-learn model over HTTPS, as a Google Cloud Function.

Serve locally:  functions-framework --target=predict
Predict once:   python main.py --sl 5.1 --sw 3.5 --pl 1.4 --pw 0.2   (options: the model's features)

The model ships in the source bundle (model.joblib, with model.json, its
signature) and is loaded once per instance: in the background as the serving
process starts, with first requests waiting for that load. docs/api.md
documents every path, request and answer.
"""

import gc
import os

# A cold start makes a few hundred thousand objects that live as long as the instance
# (NumPy, uvicorn, the model), and the collector would walk them again and again as they
# pile up: 40-70 ms of a start (docs/performance.md "Cold starts"). It is off until they
# are all made, then they are frozen out of every later collection.
gc.disable()
# One BLAS thread: the function's matrix products are a few columns wide, and OpenBLAS's
# thread pool costs about 10 ms of NumPy's import (and contends on Cloud Run's one CPU).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402 (the two lines above must run before NumPy is imported)
import asyncio
import json
import logging
import re
import sys
import time
from typing import NamedTuple

import functions_framework.aio
from starlette.requests import Request
from starlette.responses import Response

from iris_predict import logs, sampling
from iris_predict.edge import cors, decoding, server
from iris_predict.edge.responses import error_response, preflight_response
from iris_predict.errors import MethodNotAllowed, ModelUnavailable, NotFound, RequestError
from iris_predict.model import served as model
from iris_predict.protocols import native, routes
from iris_predict.text import clip

logs.setup()
# Batches of this many rows or more are answered on a worker thread, so that they do
# not hold up the small requests queued behind them; smaller ones are answered sooner on
# the event loop than the hop to a thread takes (measured: docs/performance.md).
THREAD_ROWS = 10_000


class Incoming(NamedTuple):
    """What a protocol's parse may read of the request besides its body."""

    route: routes.Route
    query: bytes
    headers: dict


@functions_framework.aio.http
async def predict(request: Request) -> Response:
    """Every path and method: protocols/routes.py says which protocol answers, and how.

    POST: decode -> parse -> answer -> respond, each step the protocol's own. GET:
    metadata and health. OPTIONS: CORS preflight.
    """
    started = time.perf_counter()
    method = request.method
    headers = {name.decode("latin-1"): value.decode("latin-1")  # Headers.get scans them all
               for name, value in request.scope["headers"]}
    path = request.scope["path"]
    route = routes.ROUTES.get(path) or routes.find(path)  # the tutorial's "/": one lookup
    protocol = route.default  # until the body says which of the path's protocols it speaks
    rows = failure = None
    reason, severity = "", "INFO"
    unread_body = decoding.has_body(headers)
    try:
        if route.refusal:
            raise NotFound(route.refusal)
        if method == "POST" and method in route.methods:
            media = decoding.media_type(headers)
            body = await decoding.read_body(request.receive, headers, media, route.media_types)
            unread_body = False
            served = await model.ready()
            protocol, payload = routes.decode(route, media, body, headers, served.signature)
            batch = protocol.parse(payload, Incoming(route, request.scope["query_string"],
                                                     headers), served)
            rows = batch.rows
            if len(batch.X) < THREAD_ROWS:
                answered = protocol.answer(batch, served)
            else:  # a big batch would hold up the small requests queued behind it
                answered = await asyncio.to_thread(protocol.answer, batch, served)
            response = protocol.respond(answered, batch, served)
            sampling.log(batch, headers.get("x-cloud-trace-context"))
        elif method in route.methods:  # GET or HEAD
            protocol = route.getter
            response = await protocol.get(route, headers)
        elif method == "OPTIONS":
            response = preflight_response({"Allow": route.allow,
                                           **cors.preflight(headers.get("origin"), route.allow)})
        else:
            raise MethodNotAllowed(method, route.allow)
    except ModelUnavailable:
        # The cause was logged once, when loading failed; this line is the request's.
        reason, severity = "no model to answer with", ModelUnavailable.severity
        response = error_response(protocol.error_body(ModelUnavailable.CLIENT_MESSAGE, 503),
                                  503, unread_body=unread_body)
    except RequestError as e:
        # A 404's line names the path asked for, so that a wrong URL shows in the log.
        reason = e.message if e.status != 404 else f"{clip(path, 200)}: {e.message}"
        severity = e.severity
        response = error_response(protocol.error_body(e.message, e.status), e.status,
                                  e.headers, unread_body and not e.body_read)
    except Exception:  # a bug of ours: log it, never show a trace to the client
        reason, failure, severity = "unexpected error", sys.exc_info(), "ERROR"
        response = error_response(protocol.error_body("internal error", 500), 500,
                                  unread_body=unread_body)
    response.raw_headers += cors.headers(headers.get("origin"))
    logs.request(method, response.status_code, started, protocol.NAME, severity, rows, reason,
                 headers.get("content-length"), len(response.body),
                 headers.get("x-cloud-trace-context"), failure)
    return response


def _collect_from_now():
    """Start-up's objects out of every later collection; the collector back on."""
    gc.freeze()
    gc.enable()


def _serve_in_worker():
    """gunicorn imports this module in its master, then forks the worker that serves;
    threads do not survive a fork, so the worker starts loading the model as soon as it
    exists, overlapping the load with its start-up and first connection."""
    gc.disable()  # until the model is loaded: the worker's start-up makes objects too
    model.preload(then=_collect_from_now)


server.tune(predict)
_collect_from_now()  # the master's (and any in-process user's) start-up is done
os.register_at_fork(after_in_child=_serve_in_worker)


def cli(argv=None) -> int:
    """The tutorial's iris.py, for any model: predict one row given on the command line."""
    logs.setup(sys.stderr, logging.WARNING)  # stdout holds the answer and nothing else
    try:
        served = model.get()
    except ModelUnavailable as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    signature = served.signature
    parser = argparse.ArgumentParser(description=f"Predict {signature.target} with the "
                                                 f"{signature.name} model, from one row.")
    aliases = signature.aliases or (None,) * len(signature.names)
    for feature, alias in zip(signature.features, aliases):
        flags = [f"--{alias}"] if alias else []
        flags.append("--" + re.sub(r"[\W_]+", "-", feature.name).strip("-"))  # letters kept
        parser.add_argument(*dict.fromkeys(flags), dest=feature.name, required=not feature.missing,
                            metavar=(feature.unit or "VALUE").upper() if feature.number
                            else "CATEGORY", help=feature.allowed())
    parser.add_argument("--json", action="store_true", help="print the full JSON answer")
    args = parser.parse_args(argv)
    values = {f.name: _cli_value(getattr(args, f.name), f) for f in signature.features}
    values = {name: value for name, value in values.items() if value is not None}
    try:  # the same path as a POST body
        request = Incoming(routes.ROUTES["/"], b"", {})
        body = native.answer(native.parse(values, request, served), served)
    except RequestError as e:
        parser.error(e.message)
    if args.json:
        print(json.dumps(body, indent=2))
    else:
        print(body[signature.target])
        for warning in body["warnings"]:
            print(f"warning: {warning['message']}", file=sys.stderr)
    return 0


def _cli_value(text: str | None, feature):
    """A command-line value as JSON would give it, so the same validation applies."""
    if text is None or not feature.number:
        return text
    try:
        return json.loads(text, parse_constant=lambda name: name)
    except ValueError:
        return text


if __name__ == "__main__":
    sys.exit(cli())
