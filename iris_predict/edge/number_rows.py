"""A body's rows of numbers, decoded straight into a float64 matrix.

A numeric model's batch is usually {"instances": [[5.1, 3.5, 1.4, 0.2], ...]},
perhaps with other fields ("parameters": {...}). Decoding it the usual way
(decoding.decode, then NumPy over a list per row) spends most of its time making
and then unpacking a list per row. Here the rows' array is found in the body and
one bytes.translate turns it into one flat JSON array, [5.1, 3.5, 1.4, 0.2, ...],
which orjson reads and struct packs into doubles in C: a little over half the
usual path's time for 1,000 rows (docs/performance.md), with no dependency but
orjson. The rest of the body, the array replaced by a stand-in, is decoded the
usual way: a few fields, however they are written.

It is used only where it gives exactly the payload decoding.decode would:
- the array is the value of the body's top-level `key`: the body with the array
  replaced by STAND_IN decodes (strictly: no repeated key) to an object whose
  `key` holds STAND_IN, which the body itself does not contain;
- the array less the characters of numbers and JSON white space (its skeleton)
  must spell [[,,,],[,,,],...]: `width` slots in every row, and no string, true,
  false, null, object or deeper array among them;
- no number may touch a row's bracket from outside, as in [[1,2,3,]5,[...]]: the
  flat array would have it fill the empty slot beside it;
- orjson must read the flat array, so every slot holds one strict JSON number (01,
  .5, 1., +1, 4 5, 1e400 and empty slots are refused, and take the usual path, which
  names them).
orjson reads each number as it does on the usual path, so the values are the same
bits. Anything else gives None, and the caller decodes the body the usual way. The
array is taken to end at the body's last "]", so a field after it that holds one
(an array) sends the body the usual way too; the fields a batch comes with do not.
"""

import struct

import numpy as np
import orjson

from iris_predict.edge import decoding
from iris_predict.errors import InvalidRequest

SPACE = b" \t\n\r"  # JSON's white space, and nothing else (not \x0b or \x0c)
NUMBER = b"0123456789.eE+-"
# Every number's characters become "0", and white space and commas go: rows are then apart
# by exactly "][" unless a number strays beside a bracket. (A search for "][" skips ahead
# over the zeros; one for "],[" or "0[" steps through the commas and zeros a byte at a
# time: 3 against 16 µs for 1,000 rows.)
NUMBER_TO_ZERO = bytes.maketrans(NUMBER, b"0" * len(NUMBER))
NOT_IN_SHAPE = SPACE + b","
ROW_BREAK = b"]["
# [[1, 2], [3, 4]]  ->  1, 2, 3, 4, read inside one pair of brackets: one flat array. (With
# the brackets as spaces instead, orjson takes 8 % longer: it reads the white space too,
# and an array whose first value does not follow its bracket at once is slower.)
BRACKETS = b"[]"
# What the rows' array is replaced by for decoding the rest: a string no escape or colon
# complicates (decoding's check for repeated keys vouches for such bodies at once).
STAND_IN_VALUE = "number_rows.matrix"
STAND_IN = orjson.dumps(STAND_IN_VALUE)


def decode(body: bytes, key: str, width: int) -> dict | None:
    """The body's JSON object with its `key`'s rows as a (rows, width) float64 matrix, as
    decoding.decode would decode it; None if it is anything else."""
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
    skeleton = array.translate(None, NUMBER + SPACE)
    rows = skeleton.count(b"[") - 1
    if rows < 1:  # no rows at all
        return None
    row = b"[" + b"," * (width - 1) + b"]"
    if skeleton != b"[" + (row + b",") * (rows - 1) + row + b"]":
        return None
    shape = array.translate(NUMBER_TO_ZERO, NOT_IN_SHAPE)
    if (not shape.startswith(b"[[") or not shape.endswith(b"]]")
            or shape.count(ROW_BREAK) != rows - 1):
        return None
    try:
        values = orjson.loads(b"[" + array.translate(None, BRACKETS) + b"]")
        return np.frombuffer(struct.pack(f"{len(values)}d", *values)).reshape(rows, width)
    except (ValueError, OverflowError, struct.error):  # orjson's JSONDecodeError is a ValueError
        return None
