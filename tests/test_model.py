"""The trained model: accuracy, known flowers, reproducibility, the committed artifact."""

import hashlib
import json

import numpy as np
import pytest
import sklearn
from sklearn.datasets import load_iris

import train
from iris_predict import artifact, settings

CANONICAL = [  # one textbook flower per class, from the iris data set
    ([5.1, 3.5, 1.4, 0.2], 0),
    ([7.0, 3.2, 4.7, 1.4], 1),
    ([6.3, 3.3, 6.0, 2.5], 2),
]


@pytest.fixture(scope="module")
def bundled():
    """The committed model and metadata, loaded through the production checks."""
    return artifact.load(settings.MODEL_PATH)


@pytest.fixture(scope="module")
def retrained(tmp_path_factory):
    """Two fresh runs of train.py, written to temporary paths."""
    paths = [tmp_path_factory.mktemp(f"run{i}") / "model.joblib" for i in range(2)]
    for path in paths:
        train.main(["--output", str(path)])
    return [artifact.load(path) for path in paths]


def probe_inputs():
    rng = np.random.default_rng(7)
    return np.vstack([load_iris().data, rng.uniform(0.1, 10, size=(2000, 4))])


def test_holdout_accuracy_floor():
    X, y = load_iris(return_X_y=True)
    assert train.evaluate(train.make_estimator(), X, y)["holdout_accuracy"] >= 0.93


def test_canonical_flowers(bundled):
    estimator, _ = bundled
    for row, label in CANONICAL:
        assert estimator.predict([row]).tolist() == [label]


def test_training_is_reproducible(retrained):
    (a, meta_a), (b, meta_b) = retrained
    X = probe_inputs()
    np.testing.assert_array_equal(a.predict(X), b.predict(X))
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    assert meta_a == meta_b


def test_committed_model_is_what_train_py_writes(bundled, retrained):
    (committed, committed_meta), (fresh, fresh_meta) = bundled, retrained[0]
    X = probe_inputs()
    np.testing.assert_array_equal(committed.predict(X), fresh.predict(X))
    np.testing.assert_allclose(committed.predict_proba(X), fresh.predict_proba(X), rtol=1e-9)
    ignore = {"sha256", "versions"}  # bytes and interpreter may differ across machines
    assert {k: v for k, v in committed_meta.items() if k not in ignore} == \
        {k: v for k, v in fresh_meta.items() if k not in ignore}


def test_metadata_records_what_the_issue_asks(bundled):
    _, meta = bundled
    assert meta["features"][2] == {"name": "petal_length", "alias": "pl", "unit": "cm",
                                   "min": 1.0, "max": 6.9}
    assert meta["classes"] == ["setosa", "versicolor", "virginica"]
    assert meta["estimator"].startswith("LogisticRegression(")
    assert set(meta["versions"]) == {"python", "scikit-learn", "joblib", "numpy"}
    assert 0.9 <= meta["metrics"]["cv_accuracy_mean"] <= 1


def test_pickle_from_another_sklearn_is_refused_not_warned(tmp_path):
    """sklearn only warns on a version mismatch inside the pickle; loading must fail."""
    data = settings.MODEL_PATH.read_bytes()
    stamp = sklearn.__version__.encode()
    other = b"0" + stamp[1:]  # same length, so the pickle stays well-formed
    assert data.count(stamp) == 1
    path = tmp_path / "model.joblib"
    path.write_bytes(data.replace(stamp, other))
    sidecar = json.loads(settings.MODEL_PATH.with_suffix(".json").read_text())
    sidecar["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    path.with_suffix(".json").write_text(json.dumps(sidecar))
    with pytest.raises(artifact.ModelUnavailable, match="InconsistentVersionWarning"):
        artifact.load(path)
