"""The served model: loaded once per instance, on first use, shared by all threads.

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

    def predict(self, X: np.ndarray, probabilities: bool):
        """Class indices for each row of X, plus class probabilities if asked (else None)."""
        labels = self.estimator.predict(X)
        proba = self.estimator.predict_proba(X) if probabilities else None
        return labels, proba

    def out_of_range(self, X: np.ndarray):
        """(row, feature) index pairs where X lies outside the training range."""
        rows, cols = np.nonzero((X < self.mins) | (X > self.maxs))
        return zip(rows.tolist(), cols.tolist())


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
