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
import warnings

import numpy as np

from iris_predict import settings
from iris_predict.errors import InvalidRequest, ModelLoading, ModelUnavailable, PayloadTooLarge
from iris_predict.model import artifact, compute, estimators, signature

log = logging.getLogger(__name__)
FEW_ROWS = 16  # below this, a loop in Python beats NumPy's overhead per call
VERSION_DIGITS = 12  # of the model file's SHA-256: the model's version
# What state() answers.
LOADED, LOADING, FAILED = "loaded", "loading", "failed"


class Model:
    """A fitted estimator with the signature that describes it.

    X, everywhere below, is what the protocols make of the request's rows: a float64
    (rows, features) array in the signature's feature order, already validated. A number
    is its value (NaN where missing, if the feature may be missing); a category is its
    index in the feature's categories, -1 for one never seen in training, NaN where missing.
    `unknown` lists (row, column, string sent) for each -1 (Batch.unknown): only a model
    served by scikit-learn reads it (a one-hot encoder ignores unknown categories alike).
    """

    def __init__(self, estimator, metadata: dict, computed=None):
        self.estimator = estimator
        self.metadata = metadata
        self.signature = signature.from_metadata(metadata)
        self.classes = self.signature.classes
        features = self.signature.features
        self.mins = np.array([f.min if f.number else -np.inf for f in features])
        self.maxs = np.array([f.max if f.number else np.inf for f in features])
        self.ranges = list(zip(self.mins.tolist(), self.maxs.tolist()))  # (min, max) per feature
        # Stable for one model file, new for any other: clients can tell models apart.
        self.version = metadata["sha256"][:VERSION_DIGITS]
        # The model computed with NumPy alone, as its library would (compute.py); None: by
        # scikit-learn's own methods.
        self.computed = computed or compute.with_numpy(estimator, self.signature)
        self.linear = self.computed if isinstance(self.computed, estimators.Linear) else None
        self._objects = not all(f.number for f in features)  # scikit-learn takes strings

    def predict(self, X: np.ndarray, probabilities: bool, unknown=()):
        """(labels, probabilities or None): class indices and (rows, classes) probabilities
        for a classifier; float values and None for a regressor."""
        if self.computed is None:
            return self._sklearn_predict(X, probabilities, unknown)
        try:
            return self.computed.predict(X, probabilities)
        except estimators.UnknownCategory as e:
            raise self._unknown(e) from None

    def decision(self, X: np.ndarray, unknown=()) -> np.ndarray:
        """decision_function(X), shaped as scikit-learn returns it (binary: one score)."""
        if self.computed is not None:
            try:
                scores = self.computed.decision(X)
            except estimators.UnknownCategory as e:
                raise self._unknown(e) from None
            if scores is not None:
                return scores
        if not hasattr(self.estimator, "decision_function"):
            raise InvalidRequest(f"the served model {self.metadata['estimator']} has no "
                                 "decision function")
        return self._sklearn("decision_function", X, unknown)

    def _unknown(self, error: estimators.UnknownCategory) -> InvalidRequest:
        feature = self.signature.features[error.args[0]]
        return InvalidRequest(f"{feature.name}: the model's encoder refuses categories it "
                              f"did not see in training; it takes {feature.allowed()}")

    def explain(self, X: np.ndarray, labels) -> tuple:
        """((rows, features) contributions, (rows,) base values): each input feature's share
        of the score of class labels[i] (a regressor: of its score), and the score they are
        measured from; a row's shares add up to its score minus its base.

        A linear model (estimators.Linear.contributions) is measured from the average
        training row, a tree ensemble (forest.Ensemble.contributions: TreeSHAP) from its
        expected score. Any other model (kNN, SVM) has no exact split, and is refused
        rather than approximated.
        """
        self._explained()
        return self.computed.contributions(X, labels)

    def explainable(self, rows: int):
        """Refuse a request's explanations before any work: a model that has none, or more
        rows than EXPLAIN_MAX_ROWS (a request's limit, not the model's: explain takes any)."""
        self._explained()
        if rows > settings.EXPLAIN_MAX_ROWS:
            raise PayloadTooLarge(
                f"explanations are given for at most {settings.EXPLAIN_MAX_ROWS} rows a "
                f"request (EXPLAIN_MAX_ROWS); this one has {rows}: send fewer, or ask "
                f"without explain", body_read=True)

    def _explained(self):
        if self.measured_from is None:  # neither a linear model nor a tree ensemble
            raise InvalidRequest(
                f"explanations need a linear model or a tree ensemble, whose score splits "
                f"exactly into one share per feature; the served model is "
                f"{_final_class(self.estimator)}")

    @property
    def measured_from(self) -> str | None:
        """What explanations are measured from, in the answer's words (None: none given)."""
        return getattr(self.computed, "MEASURED_FROM", None)

    def out_of_range(self, X: np.ndarray) -> list:
        """(row, feature, value) for each number of X outside the training range."""
        if len(X) <= FEW_ROWS:  # NumPy's overhead per call outweighs the work here
            return [(i, j, value) for i, row in enumerate(X.tolist())
                    for j, (value, (lo, hi)) in enumerate(zip(row, self.ranges))
                    if not lo <= value <= hi and value == value]  # NaN: missing
        # Checked on X's columns side by side (a copy, ~2 us for 1,000 rows): against a column
        # of bounds NumPy loops over the rows, not over a few features (27 -> 15 us).
        columns = np.ascontiguousarray(X.T)
        if not ((columns < self.mins[:, None]) | (columns > self.maxs[:, None])).any():
            return []
        outside = (X < self.mins) | (X > self.maxs)  # by row, then feature
        rows, cols = np.nonzero(outside)
        return list(zip(rows.tolist(), cols.tolist(), X[rows, cols].tolist()))

    def _sklearn_predict(self, X: np.ndarray, probabilities: bool, unknown):
        """Any other estimator: scikit-learn's own methods; labels as class indices."""
        predicted = self._sklearn("predict", X, unknown)
        if not self.signature.classifier:
            return predicted.astype(np.float64), None
        labels = np.searchsorted(self.estimator.classes_, predicted)  # classes_ are sorted
        proba = self._sklearn("predict_proba", X, unknown) if probabilities else None
        return labels, proba

    def _sklearn(self, method: str, X: np.ndarray, unknown) -> np.ndarray:
        rows = self.rows(X, unknown) if self._objects else X
        with warnings.catch_warnings():
            # Fitted on a DataFrame, it warns that an array has no column names: it
            # takes the columns in the order it was fitted with, the signature's.
            warnings.filterwarnings("ignore", message="X does not have valid feature names")
            try:
                return getattr(self.estimator, method)(rows)
            except ValueError as e:
                raise InvalidRequest(f"the model refused the rows: {e}") from None

    def rows(self, X: np.ndarray, unknown=()) -> np.ndarray:
        """X as a NumPy object array, as train.py fits: numbers as floats (NaN missing),
        categories as their strings (NaN missing; a -1 as its string in `unknown`, or ""
        if none was given, which no training category is)."""
        rows = X.astype(object)
        for j, feature in enumerate(self.signature.features):
            if feature.number:
                continue
            names = np.array(feature.categories + ("",), dtype=object)
            codes = X[:, j]
            missing = np.isnan(codes)
            rows[:, j] = names[np.where(missing, -1, codes).astype(np.intp)]
            rows[missing, j] = np.nan
        for i, j, text in unknown:
            rows[i, j] = text
        return rows


def _final_class(estimator) -> str:
    """The class of a model's final step, by name: one line, never the repr's many."""
    steps = getattr(estimator, "steps", None)
    final = steps[-1][1] if isinstance(steps, list) and steps else estimator
    return type(final).__name__


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


def preload(then=None):
    """Start loading the model in the background; get() waits for it, or loads it itself.

    `then`, if given, is called once the load has ended, loaded or not."""
    global _preloading
    _preloading = True
    threading.Thread(target=_load_quietly, args=(then,), name="model-preload",
                     daemon=True).start()


def _load_quietly(then):
    try:
        get()
    except ModelUnavailable:
        pass  # get() logged the cause; requests answer 503
    finally:
        if then is not None:
            then()
