"""Request bytes to JSON values: the body read within its limits, then decoded strictly.

Strict means the JSON standard and nothing more: no NaN or Infinity, no repeated
keys, no integers of thousands of digits, no nesting deeper than the standard
library's parser goes. orjson decodes in C, several times faster than the
standard library, and refuses all of that itself except repeated keys, of which
it keeps the last. So orjson decodes first; a body it refuses, or one that could
hide a repeated key, is decoded again by the standard library with hooks that
name the problem. Both give the same values for every body either accepts, but
for integers beyond 64 bits, which orjson reads as floats: no measurement is
that large, so they are refused all the same (the message shows the float).
"""

import json

import orjson

from iris_predict import settings
from iris_predict.errors import InvalidRequest, PayloadTooLarge, UnsupportedMediaType
from iris_predict.text import clip, show

# Media types of request bodies; what each path takes is the protocol's choice (main.py).
JSON = "application/json"
CSV = "text/csv"
BINARY = "application/octet-stream"  # Open Inference binary tensors after a JSON header
NONE = ""  # no Content-Type, as tritonclient sends its inference requests


def media_type(headers: dict) -> str:
    """The request's media type, lower case, without parameters; any +json type is JSON."""
    media = headers.get("content-type", "").partition(";")[0].strip().lower()
    return JSON if media.endswith("+json") else media


async def read_body(receive, headers: dict, media: str, accepted: tuple) -> bytes:
    """The raw POST body, refused before it is read if its type is not accepted or it is too large.

    `receive` is the request's ASGI receive; `headers` its headers, names in lower case;
    `media` their media_type().
    """
    if media not in accepted:
        got = f"Content-Type {clip(media, 60)}" if media else "no Content-Type"
        types = " or ".join(t for t in accepted if t)
        raise UnsupportedMediaType(f"send the body as {types} (got {got})")
    limit = settings.MAX_BODY_BYTES
    length = headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise PayloadTooLarge(f"request body is {length} bytes, more than the limit of {limit}; "
                              f"{_split()}")
    # Chunked bodies have no Content-Length: count as they arrive, stop past the limit.
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise InvalidRequest("the client disconnected before sending the whole body")
        chunk, more = message.get("body", b""), message.get("more_body", False)
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body is more than the limit of {limit} bytes; "
                                  f"{_split()}", body_read=not more)
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _split() -> str:
    """What an over-limit body is told to do instead."""
    return (f"send the rows in several requests, batches of at most {settings.MAX_BATCH_ROWS} "
            f"rows that each fit in {settings.MAX_BODY_BYTES} bytes")


def decode(body: bytes):
    """The JSON value in `body`; raises InvalidRequest naming what is not strict JSON."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return _decode_strictly(body)
    if not _keys_provably_unique(body, payload):
        return _decode_strictly(body)
    return payload


def _keys_provably_unique(body: bytes, payload) -> bool:
    """True when orjson cannot have dropped a repeated key while decoding `body`.

    Every key is followed by a colon outside any string, so a body's colons are
    at least the pairs it spells plus the colons inside its strings. Without
    escapes a decoded string is its raw text; so if every "{" of the body is one
    of the objects found, and their pairs plus the colons in their own strings
    account for every colon, no pair was dropped. A body this cannot vouch for
    (escapes, or braces and colons elsewhere: rare) is decoded again instead.
    """
    if b"\\" in body:
        return False
    objects = pairs = colons = 0
    pending = [payload] if type(payload) is dict else []
    while pending:
        obj = pending.pop()
        objects += 1
        pairs += len(obj)
        for key, value in obj.items():
            colons += key.count(":")
            kind = type(value)
            if kind is dict:
                pending.append(value)
            elif kind is str:
                colons += value.count(":")
            elif kind is list and value and type(value[0]) is dict:  # rows given as objects
                pending.extend(item for item in value if type(item) is dict)
    return objects == body.count(b"{") and pairs + colons == body.count(b":")


class EmptyBody(InvalidRequest):
    """A body of nothing but white space: a protocol may say what to send instead."""


def _decode_strictly(body: bytes):
    """The standard library's decoder, with every refusal named."""
    if not body.strip():
        raise EmptyBody("request body is empty; send a JSON object")
    try:
        return json.loads(body, parse_constant=_reject_constant,
                          object_pairs_hook=_reject_duplicates)
    except InvalidRequest:
        raise
    except RecursionError:
        raise InvalidRequest("request body is nested too deeply") from None
    except UnicodeDecodeError:
        raise InvalidRequest("request body is not valid UTF-8") from None
    except json.JSONDecodeError as e:
        raise InvalidRequest(f"request body is not valid JSON: {e}") from None
    except ValueError:  # Python refuses integer literals of thousands of digits
        raise InvalidRequest("request body has a number with too many digits") from None


def _reject_constant(name: str):
    raise InvalidRequest(f"request body contains {name}, which is not a JSON number")


def _reject_duplicates(pairs: list) -> dict:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen = set()
        duplicate = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise InvalidRequest(f"request body repeats the field {show(duplicate)}")
    return obj


def has_body(headers) -> bool:
    """True if the request comes with a body (which the handler may never read)."""
    length = headers.get("content-length")
    return (length is not None and length != "0") or "transfer-encoding" in headers
