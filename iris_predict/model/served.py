"""The served model: loaded once per instance, shared by every request.

preload() starts the load in the background when the serving process starts;
ready() waits for it without blocking the event loop, get() loads the model
itself where nothing preloaded it (the CLI, tests), and state() says where the
load is without waiting for it (readiness probes).

A cold instance may receive many first requests together; a lock makes
exactly one of them load the model while the others wait for it. A model that
cannot load is remembered too: every request then gets the same 503, and the
cause is logged once instead of once per request.
"""

import asyncio
import logging
import threading

import numpy as np

from iris_predict.model import artifact, signature
from iris_predict import settings
from iris_predict.errors import InvalidRequest, ModelLoading, ModelUnavailable
from iris_predict.model.logistic import LogisticRegressionState

log = logging.getLogger(__name__)
FEW_ROWS = 16  # below this, a loop in Python beats NumPy's overhead per call
VERSION_DIGITS = 12  # of the model file's SHA-256: the model's version
# What state() answers.
LOADED, LOADING, FAILED = "loaded", "loading", "failed"


class Model:
    """A fitted estimator with the metadata that describes it."""

    def __init__(self, estimator, metadata: dict):
        self.estimator = estimator
        self.metadata = metadata
        self.signature = signature.from_metadata(metadata)
        self.classes = tuple(metadata["classes"])
        self.mins = np.array([f["min"] for f in metadata["features"]])
        self.maxs = np.array([f["max"] for f in metadata["features"]])
        self.ranges = list(zip(self.mins.tolist(), self.maxs.tolist()))  # (min, max) per feature
        # The average training flower, from which explain() measures contributions.
        self.means = np.array([f["mean"] for f in metadata["features"]])
        # Stable for one model file, new for any other: clients can tell models apart.
        self.version = metadata["sha256"][:VERSION_DIGITS]
        # The shipped estimator: predicted with NumPy alone, as scikit-learn would.
        self.linear = isinstance(estimator, LogisticRegressionState)

    def predict(self, X: np.ndarray, probabilities: bool):
        """Class indices for each row of X, plus class probabilities if asked (else None).

        X must already be validated: a float64 (rows, 4) array of finite numbers.
        """
        if not self.linear:  # any other estimator: scikit-learn's own methods
            labels = self.estimator.predict(X)
            proba = self.estimator.predict_proba(X) if probabilities else None
            return labels, proba
        # LogisticRegression's decision_function, predict and predict_proba for a
        # multinomial model, as scikit-learn 1.9 computes them: the same NumPy
        # operations in the same order, so the results are bitwise identical
        # (tests/test_fast_path.py), without its per-call input validation (~10x the
        # arithmetic for one row), and the scores are computed once, not twice.
        scores = X @ self.estimator.coef_.T + self.estimator.intercept_
        labels = scores.argmax(axis=1)  # classes_ are 0..n-1 (checked at load)
        if not probabilities:
            return labels, None
        scores -= scores.max(axis=1, keepdims=True)  # sklearn.utils.extmath.softmax
        np.exp(scores, out=scores)
        scores /= scores.sum(axis=1, keepdims=True)
        return labels, scores

    def explain(self, X: np.ndarray, labels) -> np.ndarray:
        """Each feature's share of the predicted class's score, relative to the mean flower.

        For a linear model the score of class k is coef_[k] @ x + intercept_[k], so
        coef_[k, j] * (x_j - mean_j) is exactly feature j's part of how far the score
        lies from the mean flower's: what SHAP's LinearExplainer computes. Any other
        model has no such exact split, and is refused rather than approximated.
        """
        if not self.linear:
            raise InvalidRequest(
                f"explanations need a linear model, whose score splits exactly into one "
                f"share per feature; the served model is {self.metadata['estimator']}")
        return self.estimator.coef_[labels] * (X - self.means)

    def out_of_range(self, X: np.ndarray) -> list:
        """(row, feature, value) for each value of X outside the training range."""
        if len(X) <= FEW_ROWS:  # NumPy's overhead per call outweighs the work here
            return [(i, j, value) for i, row in enumerate(X.tolist())
                    for j, (value, (lo, hi)) in enumerate(zip(row, self.ranges))
                    if not lo <= value <= hi]
        outside = (X < self.mins) | (X > self.maxs)
        if not outside.any():
            return []
        rows, cols = np.nonzero(outside)
        return list(zip(rows.tolist(), cols.tolist(), X[rows, cols].tolist()))


_lock = threading.Lock()
_model = None
_error = None
_preloading = False  # a background load has been started
loads = 0  # how many times a load was attempted; tests use it to prove "once"


def get() -> Model:
    """The instance's model, loading it on first call; raises ModelUnavailable."""
    global _model, _error, loads
    if _model is None and _error is None:
        with _lock:
            if _model is None and _error is None:
                loads += 1
                try:
                    _model = Model(*artifact.load(settings.MODEL_PATH))
                    log.info("model loaded from %s", settings.MODEL_PATH)
                except ModelUnavailable as e:
                    log.error("model unavailable: %s", e)
                    _error = e
    if _error is not None:
        raise ModelUnavailable(_error.message)  # a fresh one: a re-raised one keeps its frames
    return _model


async def ready() -> Model:
    """get(), for the event loop: waits for a load in progress on a thread, not the loop."""
    if _model is not None:
        return _model
    return await asyncio.to_thread(get)


def state() -> str:
    """LOADED, LOADING or FAILED, at once; starts the load if nothing has yet."""
    if _model is not None:
        return LOADED
    if _error is not None:
        return FAILED
    if not _preloading:  # nothing preloaded (a test's in-process app): a probe starts it
        preload()
    return LOADING


def loaded() -> Model:
    """The model if it is loaded; else ModelLoading or ModelUnavailable, without waiting."""
    now = state()
    if now == LOADED:
        return _model
    if now == FAILED:
        raise ModelUnavailable(_error.message)
    raise ModelLoading("the model is still loading; ask again in a moment")


def preload():
    """Start loading the model in the background; get() waits for it, or loads it itself."""
    global _preloading
    _preloading = True
    threading.Thread(target=_load_quietly, name="model-preload", daemon=True).start()


def _load_quietly():
    try:
        get()
    except ModelUnavailable:
        pass  # get() logged the cause; requests answer 503
