"""A body that is nothing but rows of numbers, decoded straight into a float64 matrix.

A numeric model's batch is usually {"instances": [[5.1, 3.5, 1.4, 0.2], ...]}.
Decoding that into Python objects (orjson: a float object per value, a list per
row) costs more than everything the function then does with the rows. simdjson
parses the same bytes in C and hands the numbers over as one buffer of doubles,
with no Python object per value: about a fifth of orjson's time for 1,000 rows
(docs/performance.md).

It is used only where it gives exactly the matrix decoding.decode's values would:
- the body less the characters of numbers and JSON whitespace must spell
  {"<key>":[[,,,],[,,,],...]}: one key (so none repeated), `width` values in
  every row, and no string, true, false, null, object or deeper array among them;
- simdjson must accept every number. It refuses what strict JSON refuses
  (01, .5, 1., +1) and numbers beyond a double or a 64-bit integer, which
  then take the usual path.
Both parsers round each decimal to the nearest double, as Python's float()
does, so the values are the same. Anything else gives None, and the caller
decodes the body the usual way, which names any problem.
"""

import numpy as np

# Deleted from the body, what is left is its skeleton: brackets, commas, braces, the key.
NUMBER_AND_SPACE = b"0123456789.eE+-" + b" \t\n\r"
# One parser, reused: it keeps its buffers, where a new one allocates them for each body
# (a 10,000-row body in 3.9 ms instead of 1.0). It holds the GIL while it parses, and
# refuses a new body while a proxy of the last one lives (none outlives matrix()). Made
# with the first batch: importing simdjson (~3 ms) is no part of a cold start.
_parser = None


def matrix(body: bytes, key: str, width: int) -> np.ndarray | None:
    """body's {key: rows} as a (rows, width) float64 matrix; None if it is anything else."""
    skeleton = body.translate(None, NUMBER_AND_SPACE)
    rows = skeleton.count(b"[") - 1
    if rows < 1:  # no rows at all: one row as an object, say
        return None
    head = b'{"' + key.encode().translate(None, NUMBER_AND_SPACE) + b'":['
    row = b"[" + b"," * (width - 1) + b"]"
    if skeleton != head + (row + b",") * (rows - 1) + row + b"]}":
        return None
    try:
        values = _numbers(body, key)
    except Exception:  # any refusal (a number too big, another key): the usual way names it
        return None
    return np.frombuffer(values, dtype=float).reshape(rows, width)


def _numbers(body: bytes, key: str):
    """The numbers of body's {key: rows}, in order, as a buffer of doubles (simdjson)."""
    global _parser
    if _parser is None:
        import simdjson
        _parser = simdjson.Parser()
    return _parser.parse(body)[key].as_buffer(of_type="d")
