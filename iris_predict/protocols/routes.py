"""Which requests the function answers: every protocol's paths, gathered into one table.

Each protocol module declares its own PATHS ({path: (operation, methods)}) and,
if it has paths with parameters, a match(path), and writes its own part of the
contract (openapi()); this table and the contract are built from them, so adding
a protocol is adding its module to PROTOCOLS (or register()ing it). Several protocols
may share a path ("/" is this function's own, BigQuery's and CSV's): the one that
answers a POST is the first whose media types take the body and that claims what
it decodes to; GET is answered by the first that takes GET. Any other path is a
404 that says what is there. The framework routes every path to the handler but
for two it answers itself (edge/server.py hands those back).
"""

from typing import NamedTuple

from iris_predict.protocols import bigquery, csv_table, mlflow_scoring, native, open_inference

# In the order they are tried on a shared path: the tutorial's protocol first.
PROTOCOLS = (native, bigquery, csv_table, open_inference, mlflow_scoring)
NOWHERE = "nowhere"  # the operation of a path with nothing there


class Route(NamedTuple):
    """What a path is: the protocols answering it, which operation, its methods."""

    takers: dict         # POST: media type -> the protocols taking it, in the order tried
    getter: object       # the protocol that answers GET here, if any
    operation: str
    methods: frozenset   # the methods it answers besides OPTIONS; HEAD is answered as GET
    allow: str           # the same, for the Allow header and CORS preflights
    media_types: tuple   # what a POST body may be
    default: object      # the protocol that refuses what none has claimed yet
    params: dict = {}    # what a path with parameters names (an Open Inference model)
    refusal: str = ""    # nothing is there: the 404's message


def _route(entries: list, params: dict | None = None) -> Route:
    """The route of a path from its (protocol, operation, methods) entries."""
    methods = [m for _, _, ms in entries for m in ms]
    methods = list(dict.fromkeys(methods))  # each once, in order
    takers = {}
    for protocol, _, ms in entries:
        if "POST" in ms:
            for media in protocol.MEDIA_TYPES:
                takers.setdefault(media, []).append(protocol)
    getter = next((p for p, _, ms in entries if "GET" in ms), None)
    head = {"HEAD"} if "GET" in methods else set()
    return Route({media: tuple(found) for media, found in takers.items()}, getter,
                 entries[0][1], frozenset(methods) | head, ", ".join((*methods, "OPTIONS")),
                 tuple(takers), entries[0][0], params or {})


def _table() -> dict:
    entries = {}
    for protocol in PROTOCOLS:
        for path, (operation, methods) in protocol.PATHS.items():
            entries.setdefault(path, []).append((protocol, operation, methods))
    return {path: _route(found) for path, found in entries.items()}


def _no_path() -> Route:
    return Route({}, None, NOWHERE, frozenset(), "OPTIONS", (), PROTOCOLS[0], refusal=(
        "nothing here: this function answers "
        + ", ".join(dict.fromkeys(p.WHERE for p in PROTOCOLS)) + "; see docs/api.md"))


ROUTES = _table()
NO_PATH = _no_path()


def register(protocol) -> None:
    """Answer one more protocol module too, tried after the others on a path they share.

    A protocol module has NAME, PATHS, WHERE, MEDIA_TYPES, and claims, decode, parse,
    answer, respond and error_body, as those above; get, if any of its paths takes GET;
    match, if any has parameters; and openapi, its part of the contract (contract.py).
    """
    global PROTOCOLS, ROUTES, NO_PATH
    PROTOCOLS = (*PROTOCOLS, protocol)
    ROUTES, NO_PATH = _table(), _no_path()


def contract(signature, max_body_bytes: int, max_batch_rows: int) -> dict:
    """The OpenAPI document of every protocol answered, for this model and these limits."""
    from iris_predict import contract as openapi  # on the first ask: serving never needs it
    return openapi.document(signature, max_body_bytes, max_batch_rows, PROTOCOLS)


def find(path: str) -> Route:
    """The route for `path`; one with a `refusal` if nothing is there."""
    route = ROUTES.get(path)
    if route is not None:
        return route
    for protocol in PROTOCOLS:
        found = getattr(protocol, "match", None) and protocol.match(path)
        if found:
            operation, methods, params = found
            return _route([(protocol, operation, methods)], params)
    return NO_PATH


def decode(route: Route, media: str, body: bytes, headers: dict, signature) -> tuple:
    """(the protocol that answers, the body as it decoded it).

    `media` is one of the route's media types (decoding.read_body checked). The
    protocols taking it decode it alike, so the first decodes it for all; but first,
    each that has a decode_rows(body, signature) may find its rows of numbers in it and
    decode them straight into the model's matrix (the rest as decode would).
    """
    takers = route.takers[media]
    for protocol in takers:
        decode_rows = getattr(protocol, "decode_rows", None)
        payload = decode_rows(body, signature) if decode_rows else None
        if payload is not None:
            break
    else:
        payload = takers[0].decode(body, headers, signature)
    for protocol in takers:
        if protocol.claims(payload):
            return protocol, payload
    return takers[0], payload
