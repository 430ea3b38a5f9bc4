"""Properties of the request validator and the answers, over generated inputs (hypothesis)."""

import json

from hypothesis import HealthCheck, given, settings, strategies as st

from iris_predict.edge.decoding import decode
from iris_predict.errors import RequestError as InvalidRequest
from iris_predict.model import served as model
from iris_predict.protocols.batch import Batch
from tests import oracle
from tests.test_parsing import answer, parse

# Iris's signature, as the tests know it (model.json must agree: tests/test_model.py).
NAMES = ("sepal_length", "sepal_width", "petal_length", "petal_width")
ALIASES = ("sl", "sw", "pl", "pw")
MAX_VALUE = 100.0

# Bounded for CI: a few hundred examples per property, no per-example deadline
# (the first example loads the model).
BOUNDED = settings(max_examples=300, deadline=None,
                   suppress_health_check=[HealthCheck.too_slow])

# Keys the parser looks for, mixed with any text, so generated objects reach deep into it.
keys = st.sampled_from(NAMES + ALIASES + ("instances", "parameters", "probabilities", "calls",
                                          "userDefinedContext", "output")) | st.text(max_size=8)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(keys, inner, max_size=5),
    max_leaves=12)
payloads = st.dictionaries(keys, json_values, max_size=5) | json_values
measurement = st.floats(min_value=0, max_value=MAX_VALUE, exclude_min=True) | \
    st.integers(min_value=1, max_value=int(MAX_VALUE))
row = st.lists(measurement, min_size=4, max_size=4)


@BOUNDED
@given(payloads)
def test_any_json_value_is_a_batch_or_a_clear_error(payload):
    try:
        batch = parse(payload)
    except InvalidRequest as e:
        assert 400 <= e.status < 500 and e.message
        assert len(e.message) <= 300
    else:
        assert isinstance(batch, Batch) and batch.X.shape[1:] == (len(NAMES),)


@BOUNDED
@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_any_bytes_decode_or_give_a_clear_error(body):
    try:
        decode(body)
    except InvalidRequest as e:
        assert e.status == 400 and len(e.message) <= 300


@BOUNDED
@given(row, st.booleans())
def test_valid_rows_predict_as_scikit_learn_does(values, long_names):
    flower = dict(zip(NAMES if long_names else ALIASES, values))
    body = answer(flower)
    assert oracle.close(oracle.without_messages(body), oracle.single(values))
    json.dumps(body, allow_nan=False)


@BOUNDED
@given(st.lists(row, min_size=1, max_size=20))
def test_a_batch_answers_as_scikit_learn_does(rows):
    body = answer({"instances": rows, "parameters": {"probabilities": True}})
    assert oracle.close(oracle.without_messages(body), oracle.instances(rows, True))


@BOUNDED
@given(st.lists(st.one_of(row, row.map(lambda r: [None] + r[1:])), max_size=20),
       st.sampled_from(["species", "class", "json"]))
def test_bigquery_replies_line_up_with_calls(calls, output):
    body = answer({"calls": calls, "userDefinedContext": {"output": output}})
    assert oracle.close(oracle.without_messages(body), oracle.replies(calls, output))
