"""A body that is nothing but rows of numbers, decoded straight into a float64 matrix.

A numeric model's batch is usually {"instances": [[5.1, 3.5, 1.4, 0.2], ...]}.
Decoding it the usual way (decoding.decode, then NumPy over a list per row) spends
most of its time making and then unpacking a list per row. Here one bytes.translate
turns the body into one flat JSON array, ["instances", 5.1, 3.5, 1.4, 0.2, ...],
which orjson reads and struct packs into doubles in C: a little over half the usual
path's time for 1,000 rows (docs/performance.md), with no dependency but orjson.

It is used only where it gives exactly the matrix decoding.decode's values would:
- the body less the characters of numbers and JSON white space (its skeleton) must
  spell {"<key>":[[,,,],[,,,],...]}: one key (so none repeated), `width` slots in
  every row, and no string, true, false, null, object or deeper array among them;
- the key must appear as written ("<key>": no white space or digit inside the quotes);
- no number may touch a row's bracket from outside, as in [[1,2,3,]5,[...]]: the
  flat array would have it fill the empty slot beside it;
- orjson must read the flat array, so every slot holds one strict JSON number (01,
  .5, 1., +1, 4 5, 1e400 and empty slots are refused, and take the usual path, which
  names them).
orjson reads each number as it does on the usual path, so the values are the same
bits. Anything else gives None, and the caller decodes the body the usual way.
"""

import struct

import numpy as np
import orjson

SPACE = b" \t\n\r"  # JSON's white space, and nothing else (not \x0b or \x0c)
NUMBER = b"0123456789.eE+-"
# Every number's characters become "0", and white space and commas go: rows are then apart
# by exactly "][" unless a number strays beside a bracket. (A search for "][" skips ahead
# over the zeros; one for "],[" or "0[" steps through the commas and zeros a byte at a
# time: 3 against 16 µs for 1,000 rows.)
NUMBER_TO_ZERO = bytes.maketrans(NUMBER, b"0" * len(NUMBER))
NOT_IN_SHAPE = SPACE + b","
ROW_BREAK = b"]["
# {"instances": [[1, 2], [3, 4]]}  ->  ["instances",  1, 2 ,  3, 4  ]
TO_FLAT_ARRAY = bytes.maketrans(b"{}:[]", b"[],  ")


def matrix(body: bytes, key: str, width: int) -> np.ndarray | None:
    """body's {key: rows} as a (rows, width) float64 matrix; None if it is anything else."""
    skeleton = body.translate(None, NUMBER + SPACE)
    rows = skeleton.count(b"[") - 1
    if rows < 1:  # no rows at all: one row as an object, say
        return None
    name = key.encode()
    row = b"[" + b"," * (width - 1) + b"]"
    expected = b'{"' + name.translate(None, NUMBER) + b'":[' + (row + b",") * (rows - 1) + row
    if skeleton != expected + b"]}" or b'"' + name + b'"' not in body:
        return None
    shape = body.translate(NUMBER_TO_ZERO, NOT_IN_SHAPE)
    if (not shape.startswith(b'{"' + name.translate(NUMBER_TO_ZERO, NOT_IN_SHAPE) + b'":[[')
            or not shape.endswith(b"]]}") or shape.count(ROW_BREAK) != rows - 1):
        return None
    try:
        values = orjson.loads(body.translate(TO_FLAT_ARRAY))
        del values[0]  # the key
        return np.frombuffer(struct.pack(f"{len(values)}d", *values)).reshape(rows, width)
    except (ValueError, OverflowError, struct.error):  # orjson's JSONDecodeError is a ValueError
        return None
