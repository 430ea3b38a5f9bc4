"""Batches of nothing but numbers, decoded straight into the matrix (iris_predict/edge/number_rows.py).

The oracle is the standard library: whatever the shortcut gives must be json.loads(body)
with its rows bitwise np.array(json.loads(body)[key], dtype=float), and every body it
does not take must go the usual way, with the usual answer or refusal.
"""

import json
import math
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from iris_predict.edge import decoding, number_rows
from iris_predict.model import served as model
from iris_predict.protocols import rows as rows_module
from tests.test_parsing import parse_bytes

BOUNDED = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
WIDTH = 4
# JSON's number grammar (RFC 8259), as text, so exponents, signs and zeros come in every form.
NUMBER = r"-?(0|[1-9][0-9]{0,20})(\.[0-9]{1,20})?([eE][+-]?[0-9]{1,3})?"
number_text = st.from_regex(NUMBER, fullmatch=True)
# What clients send: floats as repr writes them, integers of 64 bits (wider ones go the usual
# way: test_numbers_at_the_edges_are_what_the_usual_path_decodes).
number_values = st.floats(allow_nan=False, allow_infinity=False) | st.integers(-2**63, 2**64 - 1)
spaces = st.sampled_from(["", " ", "\n  ", "\t", "\r\n"])
JSON = {"Content-Type": "application/json"}
MIN_BODY_BYTES = number_rows.MIN_BODY_BYTES  # smaller bodies go the usual way: it is faster


@pytest.fixture(autouse=True, scope="module")
def every_size():
    """The shortcut for bodies of any size: most here are smaller than it takes."""
    patch = pytest.MonkeyPatch()
    patch.setattr(number_rows, "MIN_BODY_BYTES", 0)
    yield
    patch.undo()


def oracle(body: bytes, key: str = "instances") -> np.ndarray:
    return np.array(json.loads(body)[key], dtype=float)


def shortcut(body: bytes, key: str = "instances") -> np.ndarray | None:
    """The shortcut's matrix of the body's rows, checked to come with the body's other fields
    as the standard library decodes them."""
    payload = number_rows.decode(body, key, WIDTH)
    if payload is None:
        return None
    expected = json.loads(body)
    assert list(payload) == list(expected)  # the same fields, in the same order
    assert {k: v for k, v in payload.items() if k != key} == {
        k: v for k, v in expected.items() if k != key}
    return payload[key]


@BOUNDED
@given(st.lists(st.lists(number_text, min_size=WIDTH, max_size=WIDTH), min_size=1, max_size=8),
       spaces, spaces)
def test_numbers_in_any_form_decode_bitwise_as_the_standard_library(rows, space, comma):
    body = ('{' + space + '"instances"' + space + ':' + space + "[" + (comma + ",").join(
        "[" + (comma + ",").join(row) + "]" for row in rows) + "]" + space + "}").encode()
    X = shortcut(body)
    if X is not None:  # None: a number beyond a double or an integer beyond 64 bits, which
        # go the usual way
        expected = oracle(body)
        assert X.shape == expected.shape
        assert X.tobytes() == expected.tobytes()  # bitwise: -0.0 and 0.0 differ


@BOUNDED
@given(st.lists(st.lists(number_values, min_size=WIDTH, max_size=WIDTH), min_size=1,
                max_size=50))
def test_the_numbers_clients_send_take_the_shortcut(rows):
    body = json.dumps({"instances": rows}).encode()
    X = shortcut(body)
    assert X is not None and X.tobytes() == oracle(body).tobytes()
    pretty = json.dumps({"instances": rows}, indent=2).encode()
    assert shortcut(pretty).tobytes() == oracle(body).tobytes()


# Other fields of any JSON, the rows' key and brackets in their strings too, but no array.
field_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.sampled_from('ab:",{}[]\\ instances')),
    lambda inner: st.dictionaries(st.text(max_size=12), inner, max_size=3), max_leaves=6)
fields = st.dictionaries(st.text(max_size=12).filter(lambda k: k != "instances"), field_values,
                         max_size=4)


@BOUNDED
@given(fields, st.lists(st.lists(number_values, min_size=WIDTH, max_size=WIDTH), min_size=1,
                        max_size=20), fields, st.sampled_from([None, 2]))
def test_the_rows_take_the_shortcut_beside_other_fields(before, rows, after, indent):
    """Before the rows and after them (as BigQuery and KServe clients send "parameters")."""
    body = json.dumps({**before, "instances": rows, **after}, indent=indent).encode()
    X = shortcut(body)
    if ('"instances"' not in json.dumps(before) and "]" not in json.dumps(after)
            and number_rows.STAND_IN not in body):
        assert X is not None, "fields without its name before or a ] after must not turn it off"
    if X is not None:
        assert X.tobytes() == oracle(body).tobytes()


@pytest.mark.parametrize("body, taken", [
    (b'{"instances": [[1, 2, 3, 4]], "parameters": {"probabilities": true}}', True),
    (b'{"requestId": "a:b", "caller": "//bigquery", "instances": [[1, 2, 3, 4]]}', True),
    (b'\xef\xbb\xbf{"instances": [[1, 2, 3, 4]]}', True),  # a byte order mark: both take it
    (b'{"p": {"instances": 1}, "instances": [[1, 2, 3, 4]]}', False),  # the name as another's key
    (b'{"p": "instances", "instances": [[1, 2, 3, 4]]}', False),       # ...or a value, first
    (b'{"instances": [[1, 2, 3, 4]], "p": "\\\"instances\\\": [[5, 6, 7, 8]]"}', False),
])
def test_the_rows_are_found_as_the_top_level_key_or_not_at_all(body, taken):
    X = shortcut(body)
    assert (X is not None) is taken
    assert X is None or X.tobytes() == oracle(body).tobytes()


@pytest.mark.parametrize("body", [
    b'{"instances": []}',
    b'{"instances": [[1, 2, 3]]}',                      # a row too short
    b'{"instances": [[1, 2, 3, 4, 5]]}',                # too long
    b'{"instances": [[1, 2, 3], [4, 5, 6, 7, 8]]}',     # ragged, with the right total
    b'{"instances": [[1, 2, 3, true]]}',
    b'{"instances": [[1, 2, 3, null]]}',
    b'{"instances": [[1, 2, 3, "4"]]}',
    b'{"instances": [[1, 2, 3, [4]]]}',
    b'{"instances": [{"sl": 1, "sw": 2, "pl": 3, "pw": 4}]}',
    b'{"instances": [[1, 2, 3, 4]], "instances": [[1, 2, 3, 4]]}',  # a repeated key
    b'{"instances": [[1, 2, 3, 4]], "instances": 5}',
    b'{"instances": 5, "instances": [[1, 2, 3, 4]]}',
    b'{"p": {"instances": [[1, 2, 3, 4]]}, "instances": 5}',  # the rows of a nested object
    b'{"p": {"instances": [[1, 2, 3, 4]]}}',
    b'[{"instances": [[1, 2, 3, 4]]}]',                      # the rows of no body object
    b'{"instances": [[1, 2, 3, 4]], "p": "number_rows.matrix"}',  # the stand-in in the body
    b'{"p": {"instances": [[1, 2, 3, 4]]}, "instances": "number_rows.matrix"}',
    b'{"instances": [[1, 2, 3, 4]], "p": [1]}',             # a "]" after the rows
    b'{"instances": [[1, 2, 3, 4]], "p": }',                # the rest not JSON
    b'{"calls": [[1, 2, 3, 4]]}',
    b'{"inst1ances": [[1, 2, 3, 4]]}',                  # the skeleton alike, the key not
    b'{"instances": [[1, 2, 3, 01]]}',
    b'{"instances": [[1, 2, 3, .5]]}',
    b'{"instances": [[1, 2, 3, 5.]]}',
    b'{"instances": [[1, 2, 3, +5]]}',
    b'{"instances": [[1, 2, 3, 4 5]]}',
    b'{"instances": [[1, 2, 3, 1e400]]}',
    b'{"instances": [[1, 2, 3, NaN]]}',
    b'{"instances": [[1, 2, 3, Infinity]]}',
    b'{"instances": [[1, 2, 3, 4],]}',
    b'{"instances": [[1, 2, 3, ]]}',                    # an empty slot
    b'{"instances": [[, 2, 3, 4]]}',
    # A number stray beside a row's bracket (a flat array of the numbers, read before
    # simdjson, would have it fill an empty slot): before the first row, between rows
    # (either side of their comma), after the last.
    b'{"instances": 5[[, 2, 3, 4]]}',
    b'{"instances": [5[, 2, 3, 4]]}',
    b'{"instances": [[1, 2, 3, ]5, [6, 7, 8, 9]]}',
    b'{"instances": [[1, 2, 3, 4], 5[, 6, 7, 8]]}',
    b'{"instances": [[1, 2, 3, 4],5[, 6, 7, 8]]}',
    b'{"instances": [[1, 2, 3, ] 5 , [6, 7, 8, 9]]}',
    b'{"instances": [[1, 2, 3, ]5]}',
    b'{"instances": [[1, 2, 3, ]]5}',
    b'{"instances": [[1, 2, 3, 4] 5]}',
    b'{"instances": [[1, 2, 3, 4]] 5}',
    b'{5 "instances": [[1, 2, 3, 4]]}',
    b'{"instances" 5: [[1, 2, 3, 4]]}',
    b'{" instances": [[1, 2, 3, 4]]}',                  # white space inside the key
    b'{"instan ces": [[1, 2, 3, 4]]}',
    b'{"instances": [[1, 2, 3, 4]]}  5',
    b'{"instances": [[1, 2, 3, 4]]\x0b}',               # not JSON whitespace
    b'[[1, 2, 3, 4]]',
    b'{"instances": [1, 2, 3, 4, 5]}',                  # flat, as long as one row's tape
    # ...and each of its numbers' 64 bits with simdjson's type of a double as their top byte
    # (0x64, "d"), where a row's types would be read if its brackets were not checked.
    b'{"instances": [' + b", ".join([b"4.946608029462092e+173"] * 5) + b']}',
    b'{"instances": [[1, 2, 3, 4], [5, 6, 7, 8, [9]]]}',
    b'{"instances": [[1, 2, 3, 4], {"a": 1}]}',
    b'{"instances": [[1, 2, 3, "\xff"]]}',              # not UTF-8
    b'{"instances": ' + b"[" * 2000 + b"]" * 2000 + b'}',  # deeper than simdjson goes
])
def test_anything_else_goes_the_usual_way(body):
    assert number_rows.decode(body, "instances", WIDTH) is None


@pytest.mark.parametrize("body, taken", [
    (b'{"instances": [[1, 2, 3, 18446744073709551615]]}', True),   # the widest 64-bit integer
    (b'{"instances": [[1, 2, 3, -9223372036854775808]]}', True),   # the least
    (b'{"instances": [[1, 2, 3, 9007199254740993]]}', True),       # 2**53 + 1: rounded to even
    (b'{"instances": [[1, 2, 3, 18446744073709551616]]}', False),  # beyond 64 bits: orjson's float
    (b'{"instances": [[1, 2, 3, -9223372036854775809]]}', False),
    (b'{"instances": [[1, 2, 3, 123456789012345678901234567890123]]}', False),
    (b'{"instances": [[1, 2, 3, 1e-400]]}', True),                 # below the least double: 0
    (b'{"instances": [[1, 2, 3, -0]]}', True),                     # an integer: 0.0, not -0.0
    (b'{"instances": [[1, 2, 3, -0.0]]}', True),
    (b'{"instances": [[1, 2, 3, 4.9e-324]]}', True),               # the least subnormal
    (b'{"instances": [[1, 2, 3, 1.7976931348623157e308]]}', True),  # the greatest double
])
def test_numbers_at_the_edges_are_what_the_usual_path_decodes(body, taken):
    usual = np.array(decoding.decode(body)["instances"], dtype=float)
    X = shortcut(body)
    assert (X is not None) is taken
    assert X is None or X.tobytes() == usual.tobytes()


def test_the_tape_is_read_where_simdjson_writes_it():
    """number_rows reads simdjson's memory through cysimdjson's element address, not an API:
    an upgrade of either that moves it fails here first, by name (its docstring's Threat)."""
    import cysimdjson

    parser = cysimdjson.JSONParser()
    words = number_rows._tape(parser.parse(b"[[1.5, -2], [3, 18446744073709551615]]")).tolist()
    # simdjson's tape format (its doc/tape.md): a type in each word's top byte; a number's
    # word is followed by its 64 bits.
    assert words[0] & (2**56 - 1) == len(words) == 16  # the root's payload: where it ends
    types = {i: chr(words[i] >> 56) for i in (0, 1, 2, 3, 5, 7, 8, 9, 11, 13, 14, 15)}
    assert "".join(types.values()) == "r[[dl][lu]]r"
    assert words[4] == struct.unpack("<Q", struct.pack("<d", 1.5))[0]
    assert (words[6], words[10], words[12]) == (2**64 - 2, 3, 2**64 - 1)


def test_only_bodies_big_enough_to_gain_take_the_shortcut(monkeypatch):
    monkeypatch.setattr(number_rows, "MIN_BODY_BYTES", MIN_BODY_BYTES)
    small = json.dumps({"instances": [[5.1, 3.5, 1.4, 0.2]] * 2}).encode()
    big = json.dumps({"instances": [[5.1, 3.5, 1.4, 0.2]] * 50}).encode()
    assert len(small) < MIN_BODY_BYTES <= len(big)
    assert number_rows.decode(small, "instances", WIDTH) is None
    assert shortcut(big).tobytes() == oracle(big).tobytes()


def test_the_front_door_takes_the_shortcut_for_a_batch_of_numbers():
    batch = parse_bytes(b'{"instances": [[5.1, 3.5, 1.4, 0.2], [7, 3.2, 4.7, 1.4]]}')
    assert batch.X.tolist() == [[5.1, 3.5, 1.4, 0.2], [7.0, 3.2, 4.7, 1.4]]


@pytest.mark.parametrize("rows", [
    [[5.1, 3.5, 1.4, 0.2], [6.3, 2.5, 4.9, 1.5], [7.7, 3.0, 6.1, 2.3]],
    [[3, 2, 1, 1], [8.5, 4.5, 7.5, 3.5], [100, 100, 100, 100], [1e-300, 1, 1, 1]],
])
@pytest.mark.parametrize("key, fields", [
    ("instances", {}),
    ("instances", {"parameters": {"probabilities": True}}),
    # BigQuery's calls come after its other fields (docs/bigquery.md).
    ("calls", {"requestId": "124ab1c", "caller": "//bigquery.googleapis.com/projects/p/jobs/j",
               "sessionUser": "someone@example.com", "userDefinedContext": {}}),
    ("calls", {"requestId": "124ab1c", "userDefinedContext": {"output": "json"}}),
])
def test_answers_are_the_same_bytes_either_way(client, monkeypatch, rows, key, fields):
    """The shortcut's answer against the usual path's, the same body."""
    body = json.dumps({**fields, key: rows})
    taken, decode = [], number_rows.decode

    def watched(*args):
        taken.append(decode(*args))
        return taken[-1]

    monkeypatch.setattr(number_rows, "decode", watched)
    fast = client.post("/", content=body, headers=JSON)
    assert any(payload is not None for payload in taken), "the shortcut was not taken"
    monkeypatch.setattr(number_rows, "decode", lambda *args: None)
    usual = client.post("/", content=body, headers=JSON)
    assert fast.status_code == usual.status_code == 200
    assert fast.content == usual.content


@pytest.mark.parametrize("body, message", [
    (b'{"instances": [[5.1, 3.5, 1.4, 0.2], [0, 1, 1, 1]]}',
     "instances[1][0] (sepal_length) must be a number greater than 0 and at most 100 (cm), "
     "got 0"),
    (b'{"instances": [[5.1, 3.5, 1.4, 0.2], [1, 1, 1, 100.5e0]]}',
     "instances[1][3] (petal_width) must be a number greater than 0 and at most 100 (cm), "
     "got 100.5"),
])
def test_out_of_bounds_numbers_are_refused_showing_the_value_as_sent(client, body, message):
    reply = client.post("/", content=body, headers=JSON)
    assert reply.status_code == 400
    assert reply.json() == {"error": message}


@BOUNDED
@given(st.lists(st.lists(st.floats(min_value=-1, max_value=101) | st.just(0.0) |
                         st.just(100.0) | st.sampled_from([math.nan, math.inf, -math.inf]),
                         min_size=WIDTH, max_size=WIDTH), min_size=1, max_size=40))
def test_a_matrix_is_inside_the_bounds_exactly_when_every_value_is(rows):
    """Iris's bounds, greater than 0 and at most 100, checked value by value in Python."""
    columns = rows_module.columns(model.get().signature)
    expected = all(0 < v <= 100 for row in rows for v in row)  # False for NaN too
    assert columns.inside(np.array(rows)) is expected
