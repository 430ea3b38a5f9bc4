"""Answers as HTTP responses, with the headers every answer carries.

JSON for nearly everything; CSV tables, plain text (MLflow's /version) and Open
Inference binary tensors where their protocols ask for them.
"""

import asyncio

import orjson
from starlette.responses import Response

JSON = "application/json"
CSV = "text/csv; charset=utf-8"
TEXT = "text/plain; charset=utf-8"
# Never sniffed as HTML or script by a browser; never cached (answers follow the model).
COMMON_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}
# Bounds on the lingering close: Cloud Run refuses larger requests itself, and
# a client that takes longer to send the rest has its connection closed anyway.
LINGER_BYTES = 32 * 1024 * 1024
LINGER_SECONDS = 5.0


# The headers of every JSON answer, encoded once: Starlette's checks would re-encode them
# for each of the thousands of answers a second one instance gives.
JSON_HEADERS = [(b"content-type", JSON.encode()),
                *((name.lower().encode(), value.encode())
                  for name, value in COMMON_HEADERS.items())]


class JSONResponse(Response):
    """A JSON answer; its body is encoded by orjson."""

    media_type = JSON

    def __init__(self, body, status: int = 200, headers: dict | None = None):
        self.status_code = status
        self.background = None
        self.body = orjson.dumps(body)
        self.raw_headers = [(b"content-length", b"%d" % len(self.body)), *JSON_HEADERS]
        if headers:
            self.raw_headers += [(name.lower().encode("latin-1"), value.encode("latin-1"))
                                 for name, value in headers.items()]


def json_response(body, status: int = 200, headers: dict | None = None) -> Response:
    return JSONResponse(body, status, headers)


def content_response(content: bytes | str, media_type: str,
                     headers: dict | None = None) -> Response:
    """A 200 answer that is not JSON: a CSV table, plain text, binary tensors."""
    return Response(content, 200, {**COMMON_HEADERS, **(headers or {})}, media_type)


def error_response(body: dict, status: int, headers: dict | None = None,
                   unread_body: bool = False) -> Response:
    """A refusal, its body in the shape of the request's protocol (main.ERROR_BODIES).

    `unread_body` says the client is still sending a body the function will not
    read (it refused it, or the method takes none): see LingeringResponse.
    """
    headers = {**COMMON_HEADERS, **(headers or {})}
    response_class = Response
    if unread_body:
        response_class, headers["Connection"] = LingeringResponse, "close"
    return response_class(orjson.dumps(body), status, headers, JSON)


def preflight_response(headers: dict) -> Response:
    """The answer to a CORS preflight: no body, so no type."""
    return Response(status_code=204, headers={"X-Content-Type-Options": "nosniff", **headers})


class LingeringResponse(Response):
    """An answer sent while the request's body is still arriving, then a lingering close.

    A client that writes its whole body before reading (Python's urllib and
    requests, among others) loses an early answer if the server closes the
    connection while it is still sending: its next write fails (broken pipe,
    connection reset) and the answer waiting in its socket is never read. RFC
    9112 section 9.6 gives the remedy: after answering, keep reading and
    discarding what the client sends, within bounds, and only then close.
    """

    async def __call__(self, scope, receive, send):
        await send({"type": "http.response.start", "status": self.status_code,
                    "headers": self.raw_headers})
        await send({"type": "http.response.body", "body": self.body, "more_body": True})
        await _discard_body(receive)
        await send({"type": "http.response.body", "body": b""})  # uvicorn then closes


async def _discard_body(receive):
    """Read and drop the rest of the request body, up to LINGER_BYTES or LINGER_SECONDS."""
    discarded = 0
    try:
        async with asyncio.timeout(LINGER_SECONDS):
            while discarded <= LINGER_BYTES:
                message = await receive()
                if message["type"] != "http.request":  # the client has gone
                    return
                discarded += len(message.get("body", b""))
                if not message.get("more_body", False):
                    return
    except TimeoutError:
        return
