"""The served model: loaded once per instance, shared by all threads.

preload() starts the load in the background when the serving process starts;
get() waits for it, or loads the model itself where nothing preloaded it (the
CLI, tests).

functions-framework runs several request threads per instance, so on a cold
instance many first requests can arrive together; a lock makes exactly one of
them load the model while the others wait for it. A model that cannot load is
remembered too: every request then gets the same 503, and the cause is logged
once instead of once per request.
"""

import logging
import threading

import numpy as np

from iris_predict import artifact, settings
from iris_predict.artifact import ModelUnavailable

log = logging.getLogger(__name__)


class Model:
    """A fitted estimator with the metadata that describes it."""

    def __init__(self, estimator, metadata: dict):
        self.estimator = estimator
        self.metadata = metadata
        self.classes = tuple(metadata["classes"])
        self.mins = np.array([f["min"] for f in metadata["features"]])
        self.maxs = np.array([f["max"] for f in metadata["features"]])
        self.linear = _is_multinomial_logistic(estimator)

    def predict(self, X: np.ndarray, probabilities: bool):
        """Class indices for each row of X, plus class probabilities if asked (else None).

        X must already be validated: a float64 (rows, 4) array of finite numbers.
        """
        if not self.linear:
            labels = self.estimator.predict(X)
            proba = self.estimator.predict_proba(X) if probabilities else None
            return labels, proba
        # LogisticRegression.predict and predict_proba, minus the per-call input
        # validation that costs ~10x the arithmetic for a single row; the same
        # NumPy operations in the same order, so the results are bitwise identical
        # (tests/test_fast_path.py), and the scores are computed once, not twice.
        scores = X @ self.estimator.coef_.T + self.estimator.intercept_
        labels = scores.argmax(axis=1)  # classes_ are 0..n-1 (checked at load)
        if not probabilities:
            return labels, None
        scores -= scores.max(axis=1).reshape(-1, 1)  # sklearn.utils.extmath.softmax
        np.exp(scores, out=scores)
        scores /= scores.sum(axis=1).reshape(-1, 1)
        return labels, scores

    def out_of_range(self, X: np.ndarray):
        """(row, feature) index pairs where X lies outside the training range."""
        rows, cols = np.nonzero((X < self.mins) | (X > self.maxs))
        return zip(rows.tolist(), cols.tolist())


def _is_multinomial_logistic(estimator) -> bool:
    """True for the estimator whose predict/predict_proba Model.predict reproduces."""
    from sklearn.linear_model import LogisticRegression  # already imported by the unpickling

    return (type(estimator) is LogisticRegression
            and len(estimator.classes_) > 2
            and type(estimator.coef_) is np.ndarray
            and estimator.coef_.shape == (len(estimator.classes_), estimator.n_features_in_))


_lock = threading.Lock()
_model = None
_error = None
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
        raise _error
    return _model


def preload():
    """Start loading the model in the background; get() waits for it, or loads it itself."""
    threading.Thread(target=_load_quietly, name="model-preload", daemon=True).start()


def _load_quietly():
    try:
        get()
    except ModelUnavailable:
        pass  # get() logged the cause; requests answer 503
