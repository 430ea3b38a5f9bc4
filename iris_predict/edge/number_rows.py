"""A body's rows of numbers, decoded straight into a float64 matrix.

A numeric model's batch is usually {"instances": [[5.1, 3.5, 1.4, 0.2], ...]},
perhaps with other fields ("parameters": {...}). Decoding it the usual way
(decoding.decode, then NumPy over a list per row) spends most of its time making
a Python float per number and a list per row, then unpacking them. Here the rows'
array is found in the body and parsed by simdjson (cysimdjson), whose tape, one
64-bit word per value and its type, is read in place by NumPy: no Python object
per number: 62 against 160 us (orjson's flat array) for 1,000 rows (docs/performance.md). The
rest of the body, the array replaced by a stand-in, is decoded the usual way: a
few fields, however they are written.

Threat: the tape is simdjson's memory, reached through cysimdjson's element
address (ctypes), not through an API. So:
- what is read is simdjson 3.8's layout as cysimdjson 26.27 builds it (pinned; an
  element is {document *, tape index}, a document starts with its tape), and the
  tests decode every form of number against the standard library through it;
- only words inside the tape are read: its length is its root word's, and the
  parser that owns it lives until the values are copied out;
- nothing is taken on trust from the client: simdjson parses strict JSON (RFC
  8259) or refuses, and the tape must then spell rows of `width` numbers word by
  word, each in its place, or the body goes the usual way.

It is used only where it gives exactly the payload decoding.decode would:
- the array is the value of the body's top-level `key`: the body with the array
  replaced by STAND_IN decodes (strictly: no repeated key) to an object whose
  `key` holds STAND_IN, which the body itself does not contain;
- the array is strict JSON holding `width` numbers in every row, and nothing else;
- its numbers fit simdjson's: doubles, and integers of 64 bits (beyond, it refuses).
Both parsers round each number's decimal correctly, and integers become doubles as
NumPy converts Python's (nearest, ties to even), so the values are the same bits.
Anything else gives None, and the caller decodes the body the usual way, which
names the problem. The array is taken to end at the body's last "]", so a field
after it that holds one (an array) sends the body the usual way too; the fields a
batch comes with do not.
"""

import ctypes
import functools

import numpy as np
import orjson

from iris_predict.edge import decoding
from iris_predict.errors import InvalidRequest

SPACE = b" \t\n\r"  # JSON's white space, and nothing else (not \x0b or \x0c)
# simdjson's tape (its doc/tape.md): a word's type is its top byte; a number's 64 bits follow.
TYPE = 56
PAYLOAD = (1 << TYPE) - 1
START_ARRAY, END_ARRAY = ord("["), ord("]")
INTEGERS = {ord("l"): np.int64, ord("u"): np.uint64}  # simdjson's integers, by their types
INTEGERS_AS_DOUBLES = bytes.maketrans(b"lu", b"dd")
# Below this, the usual path is the faster (NumPy's overhead per call): iris rows, 20 in 455
# bytes, 15 against 13 us; 50 in 1,115 bytes, 17 against 24 us.
MIN_BODY_BYTES = 768
# What the rows' array is replaced by for decoding the rest: a string no escape or colon
# complicates (decoding's check for repeated keys vouches for such bodies at once).
STAND_IN_VALUE = "number_rows.matrix"
STAND_IN = orjson.dumps(STAND_IN_VALUE)


def decode(body: bytes, key: str, width: int) -> dict | None:
    """The body's JSON object with its `key`'s rows as a (rows, width) float64 matrix, as
    decoding.decode would decode it; None if it is anything else, or small."""
    if len(body) < MIN_BODY_BYTES:
        return None
    name = orjson.dumps(key)
    at = body.find(name)
    start = body.find(b"[", at + len(name))
    if at < 0 or start < 0 or body[at + len(name):start].strip(SPACE) != b":":
        return None  # not found, or found first elsewhere than as a key: the usual way
    end = body.rfind(b"]") + 1  # the array's end, unless a field after it holds a "]"
    X = matrix(body[start:end], width) if end > start else None
    rest = body[:start] + STAND_IN + body[end:]
    if X is None or rest.count(STAND_IN) != 1:  # the stand-in is not the client's own
        return None
    try:
        payload = decoding.decode(rest)
    except InvalidRequest:  # named again from the whole body, where its positions are
        return None
    if type(payload) is not dict or payload.get(key) != STAND_IN_VALUE:
        return None  # the array was some other object's, or the body no object
    payload[key] = X
    return payload


def matrix(array: bytes, width: int) -> np.ndarray | None:
    """A JSON array of rows of `width` numbers as a float64 matrix; None if it is anything else."""
    import cysimdjson  # here, not above: its 1 ms (C++ library) stays off the cold start

    parser = cysimdjson.JSONParser()  # one per call: no tape shared between threads
    try:
        element = parser.parse(array)
    except (ValueError, RuntimeError, MemoryError):  # not JSON (or too deep), a number beyond
        return None  # 64 bits (RuntimeError too), a body beyond memory: each the usual way
    words = _tape(element)
    stride = 2 + 2 * width  # [, then a type and its value per number, then ]
    rows, leftover = divmod(len(words) - 4, stride)  # less the roots and the outer brackets
    if rows < 1 or leftover or words[1] >> TYPE != START_ARRAY \
            or words[-2] >> TYPE != END_ARRAY:
        return None
    # Each row's words are where they must be if the one before ended where it must: a
    # bracket, then `width` numbers (a type, then its 64 bits), then a bracket. Their types
    # are compared as bytes: one comparison, where NumPy's would be a reduction per check.
    grid = words[2:-2].reshape(rows, stride)
    types = (grid[:, _type_columns(width)] >> TYPE).astype(np.uint8).tobytes()
    expected = (b"[" + b"d" * width + b"]") * rows  # rows of doubles
    X = grid[:, 2::2].copy().view(np.float64)  # out of the parser's memory, before it goes
    if types == expected:
        return X
    if types.translate(INTEGERS_AS_DOUBLES) != expected:
        return None
    types = np.frombuffer(types, np.uint8).reshape(rows, width + 2)[:, 1:-1]
    for kind, dtype in INTEGERS.items():  # their 64 bits are an integer's: made doubles
        found = types == kind
        X[found] = X[found].view(dtype)
    return X


@functools.cache
def _type_columns(width: int) -> list:
    """Where a row's words hold types: its brackets, and each number's type before its bits."""
    return [0, *range(1, 2 * width + 2, 2)]


def _tape(element) -> np.ndarray:
    """The tape of the document `element` roots, as uint64 words (a view of simdjson's memory)."""
    at = element.get_addr()
    document = ctypes.c_void_p.from_address(at).value
    tape = ctypes.c_void_p.from_address(document).value
    length = ctypes.c_uint64.from_address(tape).value & PAYLOAD  # the root word: where it ends
    return np.ctypeslib.as_array((ctypes.c_uint64 * length).from_address(tape))
