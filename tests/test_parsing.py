"""Unit tests for request decoding and validation."""

import numpy as np
import pytest

from iris_predict import settings
from iris_predict.edge import decoding
from iris_predict.edge.decoding import decode
from iris_predict.errors import RequestError
from iris_predict.model import served as model
from iris_predict.protocols import routes, rows
from iris_predict.protocols.batch import CLASS, Kind
from main import Incoming

ROOT = routes.ROUTES["/"]


def parse(payload, query: bytes = b""):
    """A decoded body posted to "/", parsed by the protocol that claims it."""
    protocol = next(p for p in ROOT.takers[decoding.JSON] if p.claims(payload))
    return protocol.parse(payload, Incoming(ROOT, query, {}), model.get())


def answer(payload) -> dict:
    """The answer to a decoded body posted to "/", from the protocol that claims it."""
    protocol = next(p for p in ROOT.takers[decoding.JSON] if p.claims(payload))
    return protocol.answer(parse(payload), model.get())


def parse_bytes(body: bytes):
    """A body posted to "/" as JSON: decoded, then parsed, as the front door does."""
    served = model.get()
    protocol, payload = routes.decode(ROOT, decoding.JSON, body, {}, served.signature)
    return protocol.parse(payload, Incoming(ROOT, b"", {}), served)

SETOSA = [5.1, 3.5, 1.4, 0.2]
TUTORIAL = {"sl": 5.1, "sw": 3.5, "pl": 1.4, "pw": 0.2}
NAMED = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}


@pytest.mark.parametrize("payload", [TUTORIAL, NAMED, {"sl": 5, "sw": 3.5, "pl": 1.4, "pw": 0.2}])
def test_single_flower_forms_agree(payload):
    batch = parse(payload)
    assert batch.kind is Kind.SINGLE
    np.testing.assert_allclose(batch.X, [[5 if payload.get("sl") == 5 else 5.1, 3.5, 1.4, 0.2]])


def test_instances_accept_arrays_and_objects_in_order():
    batch = parse({"instances": [SETOSA, NAMED, TUTORIAL, [7, 3.2, 4.7, 1.4]]})
    assert batch.kind is Kind.INSTANCES and not batch.probabilities
    np.testing.assert_array_equal(batch.X, [SETOSA, SETOSA, SETOSA, [7, 3.2, 4.7, 1.4]])


def test_calls_keep_nulls_and_read_decimal_strings():
    batch = parse({"requestId": "r", "calls": [SETOSA, [None, 1, 2, 3], ["5.1", "3.5", "1.4", "0.2"]],
                   "userDefinedContext": {"output": "class"}})
    assert (batch.total, batch.present, batch.output) == (3, [0, 2], CLASS)
    np.testing.assert_array_equal(batch.X, [SETOSA, SETOSA])


def test_empty_calls_are_an_empty_answer():
    batch = parse({"calls": []})
    assert batch.total == 0 and batch.X.shape == (0, 4)


BAD = [
    # (body bytes, status, words the message must contain)
    (b"", 400, 'request body is empty; send one row as JSON, such as {"sl": 5.8, "sw": 3.1, '
               '"pl": 3.8, "pw": 1.2}'),
    (b" \n", 400, "request body is empty"),
    (b"{", 400, "not valid JSON"),
    (b"\xff\xfe\x00", 400, "not valid"),
    # The decoder's own refusal, not the range check's that would follow if it let them by.
    (b'{"sl": NaN, "sw": 1, "pl": 1, "pw": 1}', 400,
     "request body contains NaN, which is not a JSON number"),
    (b'{"sl": Infinity, "sw": 1, "pl": 1, "pw": 1}', 400,
     "request body contains Infinity, which is not a JSON number"),
    (b'{"sl": -Infinity, "sw": 1, "pl": 1, "pw": 1}', 400,
     "request body contains -Infinity, which is not a JSON number"),
    (b'{"sl": 1e999, "sw": 1, "pl": 1, "pw": 1}', 400, "sl must be a number"),
    (b'{"sl": 1, "sl": 2, "sw": 1, "pl": 1, "pw": 1}', 400, 'repeats the field "sl"'),
    (b"[" * 100_000, 400, "nested too deeply"),
    (b'{"sl": ' + b"9" * 5000 + b"}", 400, "too many digits"),
    (b'[5.1, 3.5, 1.4, 0.2]', 400, "must be a JSON object, got array"),
    (b'"hello"', 400, "got string"),
    (b"null", 400, "got null"),
    (b"{}", 400, "missing sl, sw, pl, pw"),
    (b'{"sl": 1, "sw": 1, "pl": 1}', 400, "missing pw"),
    (b'{"sl": 1, "sw": 1, "pl": 1, "pw": 1, "x": 2}', 400, 'unknown field "x"'),
    (b'{"sl": 1, "sw": 1, "pl": 1, "petal_width": 1}', 400,
     'request body mixes long and short names: "petal_width" is the other form of "pw"; '
     'use sl, sw, pl, pw'),
    (b'{"sepal_length": 1, "sepal_width": 1, "petal_length": 1, "pw": 1}', 400,
     '"pw" is the other form of "petal_width"'),
    (b'{"sepal_length": 1, "sepal_width": 1, "petal_length": 1, "petal_widht": 1}', 400,
     'unknown field "petal_widht" (did you mean "petal_width"?)'),
    (b'{"sl": "5.1", "sw": 1, "pl": 1, "pw": 1}', 400, 'sl must be a number greater than 0 and at most 100 (cm), got string "5.1"'),
    (b'{"sl": true, "sw": 1, "pl": 1, "pw": 1}', 400, "got boolean"),
    (b'{"sl": null, "sw": 1, "pl": 1, "pw": 1}', 400, "got null"),
    (b'{"sl": [1], "sw": 1, "pl": 1, "pw": 1}', 400, "got array"),
    (b'{"sl": {}, "sw": 1, "pl": 1, "pw": 1}', 400, "got object"),
    (b'{"sl": -1, "sw": 1, "pl": 1, "pw": 1}', 400, "got -1"),
    (b'{"sl": 0, "sw": 1, "pl": 1, "pw": 1}', 400, "got 0"),
    (b'{"sl": 1e300, "sw": 1, "pl": 1, "pw": 1}', 400, "got 1e+300"),
    (b'{"sl": ' + b"9" * 400 + b', "sw": 1, "pl": 1, "pw": 1}', 400, "sl must be a number"),
    (b'{"instances": []}', 400, "instances is empty"),
    (b'{"instances": {}}', 400, "instances must be an array"),
    (b'{"instances": [[1, 2, 3]]}', 400, "instances[0] has 3 values, expected 4"),
    (b'{"instances": [[1, 2, 3, 4], [1, 2, 3, 4, 5]]}', 400, "instances[1] has 5 values"),
    (b'{"instances": [[1, 2, 3, "4"]]}', 400, "instances[0][3] (petal_width)"),
    (b'{"instances": [[1, 2, 3, 4], 7]}', 400, "instances[1] must be an array of 4 values or an object"),
    (b'{"instances": [{"sl": 1, "sw": 2, "pl": 3}]}', 400, "instances[0] is missing pw"),
    (b'{"instances": [[1, 2, 3, 4]], "parameters": {"probabilities": "yes"}}', 400, "parameters.probabilities"),
    (b'{"instances": [[1, 2, 3, 4]], "parameters": {"top_k": 1}}', 400, 'unknown field "top_k"'),
    (b'{"instances": [[1, 2, 3, 4]], "extra": 1}', 400, 'unknown field "extra"'),
    (b'{"calls": [[1, 2, 3]]}', 400, "calls[0] has 3 arguments"),
    (b'{"calls": [[1, 2, 3, "x"]]}', 400, "calls[0][3] (petal_width)"),
    (b'{"calls": [[1, 2, 3, "NaN"]]}', 400, "calls[0][3]"),
    (b'{"calls": [[null, "x", 3, 4]]}', 400, "calls[0][1] (sepal_width)"),  # NULL excuses no garbage
    (b'{"calls": [[1, 2, 3, 4]], "userDefinedContext": {"output": "html"}}', 400, "userDefinedContext.output"),
    (b'{"calls": "all"}', 400, "calls must be an array"),
]


@pytest.mark.parametrize("body, status, words", BAD)
def test_bad_requests_are_named(body, status, words):
    with pytest.raises(RequestError) as caught:
        parse_bytes(body)
    assert caught.value.status == status
    assert words in caught.value.message
    assert len(caught.value.message) < 300


def test_batch_row_limit(monkeypatch):
    monkeypatch.setattr(settings, "MAX_BATCH_ROWS", 3)
    parse({"instances": [SETOSA] * 3})
    with pytest.raises(RequestError) as caught:
        parse({"instances": [SETOSA] * 4})
    assert caught.value.status == 413 and "limit of 3" in caught.value.message


def test_fast_and_row_by_row_paths_agree():
    rng = np.random.default_rng(0)
    rows_ = rng.uniform(0.1, 9, size=(500, 4)).tolist()
    fast = parse({"instances": rows_}).X
    slow = parse({"instances": rows_ + [NAMED]}).X[:-1]  # an object row forces the slow path
    assert rows._fast(rows_, rows.columns(model.get().signature)) is not None
    np.testing.assert_array_equal(fast, slow)


# Bodies on which orjson and the standard library could part ways; decode() must
# answer each exactly as the standard library's strict decoder does.
DECODER_EDGES = [
    b'{"sl": 5.1, "sw": 3.5, "pl": 1.4, "pw": 0.2}',
    b'{"sl": 1, "sw": 1, "pl": 1, "pw": 1, "sl": 2}',                 # last key repeated
    b'{"instances": [[1, 2, 3, 4]], "parameters": {"probabilities": true, "probabilities": false}}',
    b'{"instances": [{"sl": 1, "sl": 2, "sw": 1, "pl": 1, "pw": 1}]}',  # inside a row object
    b'{"instances": [[1, 2, 3, 4], {"sl": 1, "sw": 1, "pl": 1, "pw": 1, "pw": 2}]}',
    b'{"calls": [[1, 2, 3, 4]], "caller": "//bigquery/projects/p/jobs/p:US.job", "x": {"a": 1, "a": 2}}',
    b'{"calls": [[1, 2, 3, 4]], "caller": "//bigquery/projects/p/jobs/p:US.job:1"}',
    b'{"a": "\\u003a", "b": 1, "b": 2}',                               # an escaped colon
    b'{"a\\"": 1, "a\\"": 2}',                                         # escaped quotes in keys
    b'{"a": "{", "b": 1, "b": 2}',                                     # a brace inside a string
    b'{"a": ":", "b": 1}',
    b'[{"a": 1, "a": 2}]',
    b'[[{"a": 1}, {"b": 1, "b": 2}]]',
    b'{"a": [[], {"b": 1, "b": 2}]}',
    b'{"": 1, "": 2}',
    b'\xef\xbb\xbf{"sl": 1, "sw": 1, "pl": 1, "pw": 1}',               # UTF-8 byte order mark
    '{"sl": 1, "sw": 1, "pl": 1, "pw": 1}'.encode("utf-16"),
    b'{"a": "\\ud800"}',                                                # a lone surrogate
    b'{"sl": NaN}', b'{"sl": -Infinity}', b'[1e400]', b'[-0.0]', b'[1E5, 1e-5]',
    b'[' + b'9' * 5000 + b']', b'[' * 100_000, b'[' * 900 + b']' * 900,
    b' \n\t{"sl" : 1 , "sl" : 2 } \n', b'{"sl": 1}garbage', b'',
]


def _outcome(decoder, body):
    try:
        return "value", decoder(body)
    except RequestError as e:
        return "refused", e.message


@pytest.mark.parametrize("body", DECODER_EDGES, ids=lambda b: repr(b[:40]))
def test_fast_decoder_is_exactly_as_strict(body):
    assert _outcome(decode, body) == _outcome(decoding._decode_strictly, body)


@pytest.mark.parametrize("body", [
    b'{"sl": 5.1, "sw": 3.5, "pl": 1.4, "pw": 0.2}',
    b'{"instances": [[5.1, 3.5, 1.4, 0.2]], "parameters": {"probabilities": true}}',
    b'{"instances": [{"sl": 5.1, "sw": 3.5, "pl": 1.4, "pw": 0.2}, [1, 2, 3, 4]]}',
    b'{"requestId": "124ab1c", "caller": "//bigquery.googleapis.com/projects/p/jobs/p:US.bq_1",'
    b' "sessionUser": "a@example.com", "userDefinedContext": {"output": "json"},'
    b' "calls": [[5.1, 3.5, 1.4, 0.2], [null, 3.0, 5.1, 1.8], ["6.3", "3.3", "6.0", "2.5"]]}',
])
def test_everyday_bodies_take_the_fast_decoder(body):
    """Each needs no second decoding: the point of the fast path."""
    import orjson
    assert decoding._keys_provably_unique(body, orjson.loads(body))


@pytest.mark.parametrize("value, got", [([1], "got array"), ({}, "got object"),
                                        ("five", 'got string "five"'), (True, "got boolean true")])
def test_a_wrong_value_is_named_once(value, got):
    with pytest.raises(RequestError) as caught:
        parse({"sl": value, "sw": 1, "pl": 1, "pw": 1})
    assert caught.value.message == f"sl must be a number greater than 0 and at most 100 (cm), {got}"
