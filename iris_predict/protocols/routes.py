"""Which requests the function answers: its paths, the protocol each belongs to, its methods.

One function answers several protocols, each on its own paths (docs/api.md and the
document of each protocol): this function's own on "/", the Open Inference Protocol
under "/v2", MLflow's scoring server on "/invocations", "/ping", "/health" and
"/version". Any other path, or another model's, is a 404 that says what is there.
The framework routes every path to the handler but for two it answers itself
(server.py hands those back).
"""

import re
from typing import NamedTuple

from iris_predict.text import show

# Protocols, as the request log line names them. A POST to "/" is this function's
# own, BigQuery's or a CSV table; which one is decided once its body is decoded.
NATIVE = "native"
BIGQUERY = "bigquery"
CSV = "csv"
V2 = "v2"
MLFLOW = "mlflow"

# The only model this function serves, by the name Open Inference clients use for it.
MODEL_NAME = "iris"

# Paths browsers and crawlers ask every host for; functions-framework answers them 404.
NOT_FOUND = ("/favicon.ico", "/robots.txt")


class Route(NamedTuple):
    """What a path is: the protocol answering it, which of its operations, its methods."""

    protocol: str
    operation: str
    methods: frozenset   # the methods it answers besides OPTIONS; HEAD is answered as GET
    allow: str           # the same, for the Allow header and CORS preflights
    version: str = ""    # Open Inference model paths: the model version they name, if any
    refusal: str = ""    # nothing is there: the 404's message


def _route(protocol: str, operation: str, *methods: str, version: str = "",
           refusal: str = "") -> Route:
    allow = ", ".join((*methods, "OPTIONS"))
    head = {"HEAD"} if "GET" in methods else set()
    return Route(protocol, operation, frozenset(methods) | head, allow, version, refusal)


# Open Inference Protocol operations (KServe's V2 REST API).
LIVE, READY, SERVER, MODEL, MODEL_READY, INFER = (
    "live", "ready", "server", "model", "model ready", "infer")
# MLflow scoring server operations.
PING, VERSION, INVOCATIONS = "ping", "version", "invocations"
# This function's own: predictions and metadata, its OpenAPI contract, the web page's files.
PREDICT, CONTRACT, PAGE = "predict", "contract", "page"

ROUTES = {
    "/": _route(NATIVE, PREDICT, "GET", "POST"),
    "/openapi.json": _route(NATIVE, CONTRACT, "GET"),
    "/app.js": _route(NATIVE, PAGE, "GET"),
    "/style.css": _route(NATIVE, PAGE, "GET"),
    "/v2": _route(V2, SERVER, "GET"),
    "/v2/health/live": _route(V2, LIVE, "GET"),
    "/v2/health/ready": _route(V2, READY, "GET"),
    "/invocations": _route(MLFLOW, INVOCATIONS, "POST"),
    "/ping": _route(MLFLOW, PING, "GET"),
    "/health": _route(MLFLOW, PING, "GET"),
    "/version": _route(MLFLOW, VERSION, "GET"),
}
# v2/models/${MODEL_NAME}[/versions/${MODEL_VERSION}][/ready|/infer]
V2_MODEL_PATH = re.compile(r"/v2/models/([^/]+)(?:/versions/([^/]+))?(/ready|/infer)?")
V2_MODEL_OPERATIONS = {None: (MODEL, "GET"), "/ready": (MODEL_READY, "GET"),
                       "/infer": (INFER, "POST")}
NOWHERE = "nowhere"  # the operation of a path with nothing there
NO_PATH = _route(NATIVE, NOWHERE, refusal=(
    "nothing here: this function answers / (its own API and BigQuery; the web page for "
    "browsers), /openapi.json (its contract), /v2/... (Open "
    "Inference Protocol), /invocations, /ping, /health and /version (MLflow); see docs/api.md"))


def find(path: str) -> Route:
    """The route for a path that ROUTES does not list; one with a `refusal` if nothing is there."""
    match = V2_MODEL_PATH.fullmatch(path)
    if match is None:
        return NO_PATH
    model, version, suffix = match.groups()
    if model != MODEL_NAME:
        return _route(V2, NOWHERE, refusal=f"model {show(model)} is not served here; "
                                           f"the only model is {MODEL_NAME}")
    operation, method = V2_MODEL_OPERATIONS[suffix]
    return _route(V2, operation, method, version=version or "")
