"""BigQuery remote-function requests, replayed against the live function.

BigQuery POSTs {"requestId", "caller", "sessionUser", "userDefinedContext",
"calls": [[arg, ...], ...]} and reads {"replies": [...]}, one reply per call in
order, or a non-200 answer with {"errorMessage"} (under 1 KB); it retries
408, 429, 500, 503 and 504, and fails the query on any other error. Arguments
use TO_JSON_STRING's encoding: SQL NULL is null, NUMERIC values with a
fraction are decimal strings, FLOAT64 NaN and infinities are strings.
"""

import itertools

import pytest


NAMES = ("sepal_length", "sepal_width", "petal_length", "petal_width")  # iris's, in model.json

RETRIED_BY_BIGQUERY = {408, 429, 500, 503, 504}
SETOSA, VERSICOLOR, VIRGINICA = [5.1, 3.5, 1.4, 0.2], [7.0, 3.2, 4.7, 1.4], [6.3, 3.3, 6.0, 2.5]
TINY_SEPAL = [3.0, 2.0, 1.0, 1.0]  # outside the training range: a warning in "json" replies


def bigquery(calls: list, context: dict | None = None) -> dict:
    """A request as BigQuery sends it (fields as in its remote-functions docs)."""
    body = {
        "requestId": "124ab1c",
        "caller": "//bigquery.googleapis.com/projects/flower-shop/jobs/"
                  "flower-shop:US.bquxjob_5b4c112c_17961fafeaf",
        "sessionUser": "analyst@flower-shop.example",
        "calls": calls,
    }
    if context is not None:
        body["userDefinedContext"] = context
    return body


def plain_answer(live, row: list) -> dict:
    """What the function answers for the same flower asked the ordinary way."""
    return live.call("POST", dict(zip(NAMES, row))).json()


def replies(live, body: dict) -> list:
    reply = live.call("POST", body)
    assert reply.status == 200, reply.body
    assert reply.headers["content-type"] == "application/json"
    assert list(reply.json()) == ["replies"]
    return reply.json()["replies"]


def refusal(live, body: dict, status: int = 400) -> str:
    reply = live.call("POST", body)
    assert reply.status == status, reply.body
    assert status not in RETRIED_BY_BIGQUERY  # a bad request must fail the query, not loop
    assert list(reply.json()) == ["errorMessage"]
    message = reply.json()["errorMessage"]
    assert 0 < len(message.encode()) < 1024
    return message


def test_one_reply_per_call_in_order_and_null_for_null(live):
    calls = [SETOSA, [None, 3.5, 1.4, 0.2], VIRGINICA, [None] * 4, VERSICOLOR]
    expected = [plain_answer(live, SETOSA)["species"], None,
                plain_answer(live, VIRGINICA)["species"], None,
                plain_answer(live, VERSICOLOR)["species"]]
    assert expected[::2] == ["setosa", "virginica", "versicolor"]
    assert replies(live, bigquery(calls)) == expected


def test_a_batch_of_nulls_scores_nothing(live):
    assert replies(live, bigquery([[None] * 4, [None, None, None, 1.0]])) == [None, None]


@pytest.mark.parametrize("context", [None, {}, {"output": "species"}])
def test_species_is_the_default_reply(live, context):
    assert replies(live, bigquery([VERSICOLOR], context)) == ["versicolor"]


def test_class_replies(live):
    got = replies(live, bigquery([SETOSA, VERSICOLOR, [None] * 4, VIRGINICA],
                                 {"output": "class"}))
    assert got == [plain_answer(live, SETOSA)["prediction"][0],
                   plain_answer(live, VERSICOLOR)["prediction"][0], None,
                   plain_answer(live, VIRGINICA)["prediction"][0]]


def test_json_replies_carry_probabilities_and_warnings(live):
    got = replies(live, bigquery([SETOSA, [None] * 4, TINY_SEPAL], {"output": "json"}))
    assert got[1] is None
    for reply, row in ((got[0], SETOSA), (got[2], TINY_SEPAL)):
        plain = plain_answer(live, row)
        assert reply == {
            "class": plain["prediction"][0],
            "species": plain["species"],
            "probabilities": plain["probabilities"],
            "warnings": [{k: v for k, v in w.items() if k != "row"} for w in plain["warnings"]],
        }
    assert got[2]["warnings"][0]["feature"] == "sepal_length"


@pytest.mark.parametrize("call", [
    ["5.1", "3.5", "1.4", "0.2"],        # NUMERIC columns: decimal strings
    [5.1, "3.50", "1.4", 0.2],           # mixed FLOAT64 and NUMERIC
    ["+5.1", " 3.5 ", "1.40e0", ".2"],   # other decimal spellings
])
def test_decimal_strings_read_as_numbers(live, call):
    assert replies(live, bigquery([call, SETOSA], {"output": "json"})) == \
        replies(live, bigquery([SETOSA, SETOSA], {"output": "json"}))


def test_integer_arguments(live):
    """INT64 columns arrive as JSON numbers."""
    assert replies(live, bigquery([[6, 3, 5, 2]])) == [plain_answer(live, [6, 3, 5, 2])["species"]]


def test_a_batch_at_the_limit_is_answered_in_full(live):
    limit = live.call("GET").json()["limits"]["max_batch_rows"]
    flowers = [SETOSA, ["7.0", "3.2", "4.7", "1.4"], [None, 3.3, 6.0, 2.5], VIRGINICA]
    species = ["setosa", "versicolor", None, "virginica"]
    calls = list(itertools.islice(itertools.cycle(flowers), limit))
    got = replies(live, bigquery(calls))
    assert got == list(itertools.islice(itertools.cycle(species), limit))


def test_a_batch_over_the_limit_is_refused_without_retry(live):
    limit = live.call("GET").json()["limits"]["max_batch_rows"]
    message = refusal(live, bigquery([SETOSA] * (limit + 1)), status=413)
    assert message == f"calls has {limit + 1} rows, more than the limit of {limit}; " \
                      f"split it into batches of at most {limit} rows"


@pytest.mark.parametrize("calls, context, says", [
    ([SETOSA, [5.1, 3.5, 1.4]], None,
     "calls[1] has 3 arguments, expected 4 (sepal_length, sepal_width, petal_length, petal_width)"),
    ([SETOSA + [1.0]], None, "calls[0] has 5 arguments, expected 4"),
    ([["NaN", 3.5, 1.4, 0.2]], None, 'calls[0][0] (sepal_length) must be a number'),
    ([[5.1, "Infinity", 1.4, 0.2]], None, 'calls[0][1] (sepal_width) must be a number'),
    ([[5.1, 3.5, "-Infinity", 0.2]], None, 'calls[0][2] (petal_length) must be a number'),
    ([[5.1, 3.5, 1.4, "0"]], None, "calls[0][3] (petal_width) must be a number greater than 0"),
    ([[5.1, 3.5, 1.4, True]], None, "calls[0][3] (petal_width) must be a number"),
    ([[5.1, 3.5, 1.4, "two"]], None, 'got string "two"'),
    ([SETOSA, "5.1,3.5,1.4,0.2"], None, "calls[1] must be an array of 4 arguments"),
    ("SETOSA", None, "calls must be an array of rows"),
    ([SETOSA], {"output": "probabilities"},
     'userDefinedContext.output must be one of species, class, json, got "probabilities"'),
    ([SETOSA], {"mode": "json"}, 'userDefinedContext has unknown field "mode"'),
])
def test_bad_requests_fail_the_query_with_an_error_message(live, calls, context, says):
    assert says in refusal(live, bigquery(calls, context))
