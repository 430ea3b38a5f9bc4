"""Explanations: each feature's share of the predicted class's score, against scikit-learn.

The oracle is computed here from what scikit-learn fitted (coef_, decision_function)
and the training data's mean (sklearn.datasets.load_iris), never from the function.
"""

import joblib
import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from iris_predict import settings

from iris_predict.model import served as model_module
from harness import ROOT

IRIS = load_iris()
MEAN = IRIS.data.mean(axis=0)
NAMES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
X = np.vstack([IRIS.data[::10], [[3.0, 2.0, 1.0, 1.0]]])
# Contributions are rounded to 6 decimals, as probabilities are; model.json keeps the
# means to 12 decimals, which moves a contribution by less than 1e-10.
ROUNDING = 5e-7 + 1e-10


@pytest.fixture(scope="module")
def estimator():
    """The shipped model as scikit-learn itself loads it: the oracle."""
    return joblib.load(ROOT / "model.joblib")


def expected(estimator, X: np.ndarray) -> np.ndarray:
    """coef_[k, j] * (x_j - mean_j), k the class scikit-learn predicts."""
    k = estimator.predict(X)
    return estimator.coef_[k] * (X - MEAN)


def as_matrix(explanations: list) -> np.ndarray:
    assert all(list(e) == NAMES for e in explanations)
    return np.array([[e[name] for name in NAMES] for e in explanations])


def test_a_batch_explains_every_row(live, estimator):
    reply = live.call("POST", {"instances": X.tolist(), "parameters": {"explain": True}})
    assert reply.status == 200
    body = reply.json()
    assert body["predictions"] == estimator.predict(X).tolist()
    np.testing.assert_allclose(as_matrix(body["explanations"]), expected(estimator, X),
                               rtol=0, atol=ROUNDING)


def test_contributions_add_up_to_the_score_above_the_mean_flower(live, estimator):
    """Exact for a linear model: their sum is decision_function(x) - decision_function(mean)."""
    body = live.call("POST", {"instances": X.tolist(), "parameters": {"explain": True}}).json()
    k = estimator.predict(X)
    rows = np.arange(len(X))
    gap = estimator.decision_function(X)[rows, k] - estimator.decision_function([MEAN])[0, k]
    np.testing.assert_allclose(as_matrix(body["explanations"]).sum(axis=1), gap,
                               rtol=0, atol=len(NAMES) * ROUNDING)


def test_one_flower_explains_with_the_query(live, estimator):
    flower = dict(zip(("sl", "sw", "pl", "pw"), X[-1]))
    reply = live.call("POST", flower, path="/?explain=true")
    (explanation,) = reply.json()["explanations"]
    np.testing.assert_allclose(as_matrix([explanation])[0], expected(estimator, X[-1:])[0],
                               rtol=0, atol=ROUNDING)
    assert "explanations" not in live.call("POST", flower, path="/?explain=false").json()
    assert "explanations" not in live.call("POST", flower).json()


def test_a_csv_table_explains_with_the_query(live, estimator):
    table = "\n".join(",".join(map(repr, row)) for row in X.tolist())
    reply = live.call("POST", table, {"Content-Type": "text/csv"}, path="/?explain=true")
    np.testing.assert_allclose(as_matrix(reply.json()["explanations"]), expected(estimator, X),
                               rtol=0, atol=ROUNDING)


FLOWER = {"sl": 5.1, "sw": 3.5, "pl": 1.4, "pw": 0.2}


@pytest.mark.parametrize("path, body, message", [
    ("/?explain=yes", FLOWER, "explain must be true or false"),
    ("/?why=true", FLOWER, "unknown query parameter"),
    ("/", {"instances": [[5.1, 3.5, 1.4, 0.2]], "parameters": {"explain": "yes"}},
     "parameters.explain must be true or false"),
    ("/?explain=true", {"calls": [[5.1, 3.5, 1.4, 0.2]]}, "not available to BigQuery calls"),
])
def test_bad_explanation_requests_are_400(live, path, body, message):
    reply = live.call("POST", body, path=path)
    assert reply.status == 400 and message in str(reply.json())


@pytest.mark.parametrize("estimator, name", [
    (KNeighborsClassifier(), "KNeighborsClassifier"),
    # A pipeline's repr runs over several lines; the message names its final step's class.
    (make_pipeline(StandardScaler(), SVC(C=2.0, kernel="poly", degree=2)), "SVC"),
])
def test_a_model_with_no_exact_explanation_is_refused_not_approximated(client, fresh_model,
                                                                       estimator, name):
    """kNN and SVM scores do not split exactly into features: a one-line 400 that says so."""
    served = model_module.get()
    fitted = estimator.fit(IRIS.data, IRIS.target)
    fresh_model._model = model_module.Model(fitted, {**served.metadata,
                                                     "estimator": repr(fitted)})
    reply = client.post("/", json={"instances": X.tolist(), "parameters": {"explain": True}})
    assert reply.status_code == 400
    assert reply.json()["error"] == (
        "explanations need a linear model or a tree ensemble, whose score splits exactly "
        f"into one share per feature; the served model is {name}")
    plain = client.post("/", json={"instances": X.tolist()})  # predictions still work
    assert plain.json()["predictions"] == fitted.predict(X).tolist()


def test_more_rows_than_the_explain_limit_are_refused_by_name(client, monkeypatch):
    monkeypatch.setattr(settings, "EXPLAIN_MAX_ROWS", 3)
    rows = IRIS.data[:4].tolist()
    reply = client.post("/", json={"instances": rows, "parameters": {"explain": True}})
    assert reply.status_code == 413
    assert reply.json()["error"] == (
        "explanations are given for at most 3 rows a request (EXPLAIN_MAX_ROWS); this one "
        "has 4: send fewer, or ask without explain")
    assert client.post("/", json={"instances": rows[:3], "explain": True}).status_code == 200
    assert client.post("/", json={"instances": rows}).status_code == 200


def test_answers_carry_the_base_they_are_measured_from(live, estimator):
    """The linear base is the average training flower's score for the answered class."""
    body = live.call("POST", {"instances": X.tolist(), "parameters": {"explain": True}}).json()
    k = estimator.predict(X)
    assert body["measured_from"] == "average training row"
    np.testing.assert_allclose(body["base_values"], estimator.decision_function([MEAN])[0, k],
                               rtol=0, atol=ROUNDING)


def test_model_json_records_the_training_means():
    served = model_module.get()
    means = [feature.mean for feature in served.signature.features]
    np.testing.assert_allclose(means, MEAN, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(served.linear.reference, means)  # what explain() measures from
