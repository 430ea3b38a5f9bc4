"""The trained model: accuracy, known flowers, reproducibility, the committed artifact."""

import hashlib
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import pytest
import sklearn
from sklearn.datasets import load_iris

import train
from iris_predict.model import artifact
from iris_predict import settings

CANONICAL = [  # one textbook flower per class, from the iris data set
    ([5.1, 3.5, 1.4, 0.2], 0),
    ([7.0, 3.2, 4.7, 1.4], 1),
    ([6.3, 3.3, 6.0, 2.5], 2),
]


def _sklearn_and_metadata(path):
    """The estimator as scikit-learn itself loads it, once the production checks pass."""
    _, metadata, _ = artifact.load(path)
    return joblib.load(path), metadata


@pytest.fixture(scope="module")
def bundled():
    """The committed model and metadata."""
    return _sklearn_and_metadata(settings.MODEL_PATH)


@pytest.fixture(scope="module")
def retrained(tmp_path_factory):
    """Two fresh runs of train.py, written to temporary paths."""
    paths = [tmp_path_factory.mktemp(f"run{i}") / "model.joblib" for i in range(2)]
    for path in paths:
        train.main(["--output", str(path)])
    return [_sklearn_and_metadata(path) for path in paths]


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


# Across machines (other BLAS kernels, other SIMD widths) a refit reaches the same optimum to
# ~1e-14 in its coefficients (train.py's Newton solver converges quadratically), and a probe
# row's scores move by at most |x| times that, so 1e-6 leaves eight orders of margin. A label may
# only differ where the two top probabilities are within the same 1e-6: no probe row is.
PROBA_TOLERANCE = 1e-6
NEAR_TIES_IN_PROBE = 0


def test_committed_model_is_what_train_py_writes(bundled, retrained):
    (committed, committed_meta), (fresh, fresh_meta) = bundled, retrained[0]
    X = probe_inputs()
    proba = committed.predict_proba(X)
    np.testing.assert_allclose(fresh.predict_proba(X), proba, rtol=0, atol=PROBA_TOLERANCE)
    top_two = np.sort(proba, axis=1)[:, -2:]
    near_tie = top_two[:, 1] - top_two[:, 0] <= PROBA_TOLERANCE
    assert near_tie.sum() == NEAR_TIES_IN_PROBE
    assert (committed.predict(X) == fresh.predict(X))[~near_tie].all()
    ignore = {"sha256", "versions"}  # bytes and interpreter may differ across machines
    assert {k: v for k, v in committed_meta.items() if k not in ignore} == \
        {k: v for k, v in fresh_meta.items() if k not in ignore}


def test_training_reaches_the_one_optimum(retrained):
    """The fit is converged: the regularised loss's gradient vanishes (computed here)."""
    estimator, _ = retrained[0]
    X, y = load_iris(return_X_y=True)
    proba = estimator.predict_proba(X)
    residual = proba - np.eye(3)[y]
    # scikit-learn minimises mean log loss + ||coef||^2 / (2 C n), the intercept unpenalised.
    n = len(y)
    grad_coef = residual.T @ X / n + estimator.coef_ / (estimator.C * n)
    grad_intercept = residual.sum(axis=0) / n
    assert np.abs(grad_coef).max() < 1e-10 and np.abs(grad_intercept).max() < 1e-10


def test_metadata_records_what_the_issue_asks(bundled):
    _, meta = bundled
    petal_length = load_iris().data[:, 2]
    assert meta["features"][2] == {"name": "petal_length", "type": "number", "alias": "pl",
                                   "unit": "cm", "bounds": {"exclusiveMinimum": 0, "maximum": 100},
                                   "missing": False, "min": 1.0, "max": 6.9,
                                   "mean": pytest.approx(petal_length.mean(), abs=1e-12),
                                   "std": pytest.approx(petal_length.std(), abs=1e-12)}
    assert meta["classes"] == ["setosa", "versicolor", "virginica"]
    assert (meta["name"], meta["task"], meta["target"]) == ("iris", "classification", "species")
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
    refused = f"pickled by scikit-learn 0{stamp[1:].decode()}"
    with pytest.raises(artifact.ModelUnavailable, match=refused):
        artifact.load(path)


def _blas_kernels() -> list:
    """OpenBLAS kernel families this CPU can run, to stand in for other machines."""
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    if platform.machine() != "x86_64":
        return []
    kernels = ["Prescott", "Sandybridge"]  # SSE3 and AVX: every x86_64 server has them
    if " avx512f" in flags:
        kernels.append("SkylakeX")  # the kernels of the Xeon where the old model failed
    return kernels


@pytest.mark.parametrize("kernel", _blas_kernels())
def test_committed_model_holds_under_other_blas_kernels(kernel):
    """This file's checks, rerun where OpenBLAS takes another floating-point path."""
    env = {**os.environ, "OPENBLAS_CORETYPE": kernel}
    test = f"{__file__}::test_committed_model_is_what_train_py_writes"
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test],
                         env=env, cwd=Path(__file__).parent.parent, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:]


# What serving the linear model must not import: joblib (~17 ms of a cold start),
# scikit-learn, and the tree evaluator (~5 ms).
NOT_FOR_A_LINEAR_MODEL = ["joblib", "sklearn", "iris_predict.model.trees",
                          "iris_predict.model.boosters", "iris_predict.model.forest",
                          "iris_predict.model.treeshap", "iris_predict.model.links"]


def test_serving_reads_the_model_without_joblib_or_scikit_learn():
    """The function answers from the model file with NumPy alone: joblib's format is read
    by safe_unpickle, and neither joblib nor scikit-learn is imported, nor (the model
    being linear) the tree evaluator. The arrays are joblib's: the answer is scikit-learn's
    own."""
    code = ("import json, sys, numpy, main; from iris_predict.model import served\n"
            "labels, proba = served.get().predict(numpy.array([[6.3, 3.3, 6.0, 2.5]]), True)\n"
            "print(json.dumps([labels.tolist(), proba.tolist(),"
            f" sorted(set({NOT_FOR_A_LINEAR_MODEL!r}) & set(sys.modules))]))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, cwd=Path(__file__).resolve().parent.parent)
    assert run.returncode == 0, run.stderr
    labels, proba, imported = json.loads(run.stdout.splitlines()[-1])  # after the load's log
    assert imported == []
    assert labels == [2]
    np.testing.assert_allclose(proba, joblib.load(settings.MODEL_PATH).predict_proba(
        [[6.3, 3.3, 6.0, 2.5]]), rtol=1e-12)
