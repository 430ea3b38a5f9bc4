"""Model.predict, without scikit-learn, gives exactly what scikit-learn's own methods give."""

import joblib
import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.tree import DecisionTreeClassifier

from iris_predict.model import served as model_module
from iris_predict import settings

MAX_VALUE = 100.0  # iris's bound on every measurement, from model.json


def _inputs() -> dict:
    rng = np.random.default_rng(20240611)
    iris = load_iris().data
    return {
        "iris": iris,
        "in range": rng.uniform(iris.min(axis=0), iris.max(axis=0), size=(5000, 4)),
        # Anything the validator lets through: just above 0 up to 100 cm, far outside training.
        "out of range": rng.uniform(1e-9, MAX_VALUE, size=(5000, 4)),
        "extremes": np.array([[1e-300] * 4, [MAX_VALUE] * 4,
                              [MAX_VALUE, 1e-9, MAX_VALUE, 1e-9],
                              [1e-9, MAX_VALUE, 1e-9, MAX_VALUE]]),
        "log-uniform": np.exp(rng.uniform(np.log(1e-6), np.log(MAX_VALUE), size=(5000, 4))),
    }


INPUTS = _inputs()


@pytest.fixture(scope="module")
def served():
    """The bundled model, as the function serves it."""
    return model_module.get()


@pytest.fixture(scope="module")
def sklearn_estimator():
    """The same file, as scikit-learn itself loads it: the oracle."""
    return joblib.load(settings.MODEL_PATH)


def test_the_bundled_model_takes_the_fast_path(served):
    assert served.linear


@pytest.mark.parametrize("name", INPUTS)
def test_identical_to_the_estimator(served, sklearn_estimator, name):
    X = np.ascontiguousarray(INPUTS[name], dtype=np.float64)
    labels, proba = served.predict(X.copy(), probabilities=True)
    expected_labels = sklearn_estimator.predict(X)
    expected_proba = sklearn_estimator.predict_proba(X)
    assert labels.tolist() == expected_labels.tolist()
    assert proba.dtype == expected_proba.dtype and proba.shape == expected_proba.shape
    assert np.array_equal(proba, expected_proba)  # bitwise, not approximately
    only_labels, none = served.predict(X.copy(), probabilities=False)
    assert only_labels.tolist() == expected_labels.tolist() and none is None


@pytest.mark.parametrize("name", ["iris", "out of range"])
def test_identical_one_row_at_a_time(served, sklearn_estimator, name):
    """Single-flower requests predict one row; BLAS may sum a lone row differently."""
    for row in INPUTS[name][:300]:
        X = row[None, :].copy()
        labels, proba = served.predict(X.copy(), probabilities=True)
        assert labels.tolist() == sklearn_estimator.predict(X).tolist()
        assert np.array_equal(proba, sklearn_estimator.predict_proba(X))


def test_other_estimators_use_their_own_methods(served):
    iris = load_iris()
    tree = DecisionTreeClassifier(random_state=0).fit(iris.data, iris.target)
    other = model_module.Model(tree, served.metadata)
    assert not other.linear
    labels, proba = other.predict(iris.data, probabilities=True)
    assert labels.tolist() == tree.predict(iris.data).tolist()
    assert np.array_equal(proba, tree.predict_proba(iris.data))


@pytest.mark.parametrize("rows", [1, model_module.FEW_ROWS, model_module.FEW_ROWS + 1, 500])
def test_answers_round_as_numpy_rounds_scikit_learns_probabilities(served, sklearn_estimator, rows):
    """Few rows are rounded in Python, many in NumPy: both must be np.round(proba, 6)."""
    from iris_predict.protocols.batch import Batch, Kind
    from iris_predict.protocols.native import answer

    X = INPUTS["out of range"][:rows].copy()
    body = answer(Batch(Kind.INSTANCES, X, probabilities=True), served)
    expected = np.round(sklearn_estimator.predict_proba(X), 6)
    classes = load_iris().target_names.tolist()  # in scikit-learn's order, as each row's keys
    assert all(list(p) == classes for p in body["probabilities"])
    got = np.array([[p[name] for name in classes] for p in body["probabilities"]])
    assert np.array_equal(got, expected)  # exactly, not approximately
    assert [(w["row"], w["feature"], w["value"]) for w in body["warnings"]] == [
        (i, name, X[i, j]) for i, j in zip(*np.nonzero(
            (X < load_iris().data.min(axis=0)) | (X > load_iris().data.max(axis=0))))
        for name in [("sepal_length", "sepal_width", "petal_length", "petal_width")[j]]]
