"""Reading request bodies and writing JSON answers, with limits enforced first."""

import json

import flask

from iris_predict import settings
from iris_predict.parsing import InvalidRequest, clip

JSON_TYPES = ("application/json",)


def read_body(request: flask.Request) -> bytes:
    """The raw POST body, refused before reading if it is too large or not JSON."""
    mimetype = request.mimetype
    if mimetype not in JSON_TYPES and not mimetype.endswith("+json"):
        got = f"Content-Type {clip(mimetype, 60)}" if mimetype else "no Content-Type"
        raise InvalidRequest(f"send the body as application/json (got {got})", status=415)
    limit = settings.MAX_BODY_BYTES
    length = request.content_length
    if length is not None and length > limit:
        raise InvalidRequest(f"request body is {length} bytes, more than the limit of {limit}",
                             status=413)
    # Chunked bodies have no Content-Length: read one byte past the limit to detect excess.
    # Otherwise read just the body: werkzeug's LimitedStream allocates the whole size asked.
    body = request.stream.read(limit + 1 if length is None else length)
    if len(body) > limit:
        raise InvalidRequest(f"request body is more than the limit of {limit} bytes", status=413)
    return body


def json_response(body, status: int = 200, headers: dict | None = None) -> flask.Response:
    text = json.dumps(body, separators=(",", ":"), allow_nan=False)
    response = flask.Response(text, status=status, mimetype="application/json")
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "no-store"
    if headers:
        response.headers.update(headers)
    return response


def error_response(message: str, status: int, bigquery: bool = False,
                   headers: dict | None = None) -> flask.Response:
    """{"error": message}; BigQuery reads {"errorMessage": message} instead."""
    response = json_response({"errorMessage" if bigquery else "error": message}, status, headers)
    if status == 413:
        # functions-framework reads the whole request body into memory after every
        # non-streamed answer; a streamed one leaves the server to discard it in chunks.
        response.response = iter([response.get_data()])
    return response

