"""From a tree ensemble's scores to its answers, with each library's own arithmetic.

A score is the sum of the trees (forest.py); the libraries turn it into a label, a
probability or a value each in their own way, and the last bit depends on it: which exp
(NumPy's vectorised one, the C library's exp, or its float32 expf), in which type, and
whether a tie at 0 is the positive class. Each link below names the code it follows.
"""

import functools
import math

import numpy as np

from iris_predict.model.estimators import (BINARY, MULTINOMIAL, REGRESSION, expit, row_max,
                                          two_classes)

# A float32 exp within this relative distance of a float32 midpoint may be rounded either
# way by the C library's expf (glibc's is within 0.502 ULP, i.e. 2**-32 relative, of the
# true value): those few are asked of expf itself, the rest rounded from float64's exp.
NEAR_MIDPOINT = 2.0 ** -30
FEW = 16  # values: below this, one call of expf each


@functools.cache
def _libm():
    """The C library's math, expf and logf typed, opened on first use. By glibc's name for it
    first: ctypes.util.find_library runs ldconfig in a subprocess, about 5 ms."""
    import ctypes
    import ctypes.util

    try:
        libm = ctypes.CDLL("libm.so.6")
    except OSError:  # not glibc
        libm = ctypes.CDLL(ctypes.util.find_library("m"))
    for name in ("expf", "logf"):
        getattr(libm, name).restype = ctypes.c_float
        getattr(libm, name).argtypes = [ctypes.c_float]
    return libm


def c_logf(x) -> np.float32:
    """logf of one float32, as the C library computes it (XGBoost's base margin)."""
    return np.float32(_libm().logf(np.float32(x)))


def c_exp(x: np.ndarray) -> np.ndarray:
    """exp of each float64 with the C library's exp (std::exp, scipy's expit, LightGBM),
    which math.exp calls; NumPy's vectorised exp may differ in the last bit."""
    return np.array([_exp(v) for v in x.ravel().tolist()]).reshape(x.shape)


def _exp(v: float) -> float:
    try:
        return math.exp(v)
    except OverflowError:  # C's exp is inf there
        return math.inf


def c_expf(x: np.ndarray) -> np.ndarray:
    """expf of each float32, as the C library computes it (XGBoost's transforms)."""
    x = np.asarray(x, dtype=np.float32)
    expf = _libm().expf
    if x.size <= FEW:  # a few calls cost less than NumPy's steps below
        return np.array([expf(v) for v in x.ravel().tolist()],
                        dtype=np.float32).reshape(x.shape)
    wide = np.exp(x.astype(np.float64))
    near = np.ones(x.shape, dtype=bool)
    with np.errstate(over="ignore"):
        rounded = wide.astype(np.float32)
        finite = np.isfinite(rounded) & (rounded > 0)
        up = np.nextafter(rounded, np.float32(np.inf)).astype(np.float64)
        down = np.nextafter(rounded, np.float32(0)).astype(np.float64)
    middle = np.where(wide >= rounded, (rounded.astype(np.float64) + up) / 2,
                      (rounded.astype(np.float64) + down) / 2)
    near[finite] = (np.abs(wide - middle) <= wide * NEAR_MIDPOINT)[finite]
    if near.any():
        rounded[near] = [expf(v) for v in x[near].tolist()]
    return rounded


def _softmax(scores: np.ndarray) -> np.ndarray:
    """sklearn.utils.extmath.softmax, in its own steps."""
    scores = scores - row_max(scores)
    np.exp(scores, out=scores)
    scores /= scores.sum(axis=1, keepdims=True)
    return scores


class Link:
    """kind, and answer(scores, probabilities) -> (labels or values, probabilities or None)."""

    kind = REGRESSION

    def answer(self, scores: np.ndarray, probabilities: bool):
        raise NotImplementedError


class Identity(Link):
    """A regressor whose score is its value (squared, absolute, Huber, quantile losses)."""

    def answer(self, scores, probabilities):
        return scores[:, 0].astype(np.float64), None


class NumpyExp(Link):
    """scikit-learn's log link (HistGradientBoosting's poisson and gamma): np.exp."""

    def answer(self, scores, probabilities):
        return np.exp(scores.ravel()), None


class CExp(Link):
    """LightGBM's poisson, gamma and tweedie: std::exp of the score."""

    def answer(self, scores, probabilities):
        return c_exp(scores[:, 0]), None


class FloatExp(Link):
    """XGBoost's count:poisson (and its other log links): expf, in float32."""

    def answer(self, scores, probabilities):
        return c_expf(scores[:, 0]).astype(np.float64), None


class Proportions(Link):
    """A forest of classification trees: the scores are the averaged class proportions."""

    kind = MULTINOMIAL

    def answer(self, scores, probabilities):
        return scores.argmax(axis=1), (scores if probabilities else None)


class Logistic(Link):
    """Two classes, one score; the positive class from `strict` (score > 0) or score >= 0,
    or (by_probability) where the larger probability is, as LGBMClassifier's argmax.

    scikit-learn's losses: expit(scale * score) (GradientBoosting's exponential loss has
    scale 2); LightGBM's binary objective: 1 / (1 + exp(-sigmoid * score)), the same."""

    kind = BINARY

    def __init__(self, strict: bool, scale: float = 1.0, by_probability: bool = False):
        self.strict, self.scale, self.by_probability = strict, scale, by_probability

    def answer(self, scores, probabilities):
        score = scores[:, 0]
        labels = (score > 0 if self.strict else score >= 0).astype(np.intp)
        if not probabilities and not self.by_probability:
            return labels, None
        scaled = self.scale * score if self.scale != 1.0 else score
        positive = np.array([expit(v) for v in scaled.tolist()])
        proba = two_classes(1 - positive, positive)
        if self.by_probability:
            labels = proba.argmax(axis=1)
        return labels, (proba if probabilities else None)


class Softmax(Link):
    """Several classes, a score each: scikit-learn's softmax; the label the largest score."""

    kind = MULTINOMIAL

    def answer(self, scores, probabilities):
        labels = scores.argmax(axis=1)
        return labels, (_softmax(scores) if probabilities else None)


class CSoftmax(Link):
    """LightGBM's Common::Softmax: std::exp(score - max), summed in order, divided; the
    label where the largest probability is (LGBMClassifier.predict's argmax)."""

    kind = MULTINOMIAL

    def answer(self, scores, probabilities):
        terms = c_exp(scores - row_max(scores))
        proba = terms / np.cumsum(terms, axis=1)[:, -1:]
        return proba.argmax(axis=1), (proba if probabilities else None)


class FloatLogistic(Link):
    """XGBoost's binary:logistic and reg:logistic: common::Sigmoid in float32,
    1 / (expf(min(-x, 88.7)) + 1 + 1e-16); the label: probability > 0.5."""

    kind = BINARY

    def __init__(self, regression: bool = False):
        self.regression = regression
        if regression:
            self.kind = REGRESSION

    def answer(self, scores, probabilities):
        x = np.minimum(-scores[:, 0].astype(np.float32), np.float32(88.7))
        denominator = (c_expf(x) + np.float32(1.0)) + np.float32(1e-16)
        positive = np.float32(1.0) / denominator
        if self.regression:
            return positive.astype(np.float64), None
        labels = (positive > 0.5).astype(np.intp)
        if not probabilities:
            return labels, None
        return labels, two_classes(np.float32(1) - positive, positive)


class FloatSoftmax(Link):
    """XGBoost's multi:softprob: common::Softmax, expf of (score - max) in float32, summed
    in a double, each divided by the float32 sum; the label the largest probability.

    multi:softmax (by_margin): the label is the largest score, and XGBClassifier's
    predict_proba is scipy.special.softmax of the float32 scores, NumPy's float32 exp."""

    kind = MULTINOMIAL

    def __init__(self, by_margin: bool = False):
        self.by_margin = by_margin

    def answer(self, scores, probabilities):
        scores = scores.astype(np.float32)
        shifted = scores - row_max(scores)
        if self.by_margin:
            labels = scores.argmax(axis=1)
            if not probabilities:
                return labels, None
            terms = np.exp(shifted)
            return labels, (terms / np.sum(terms, axis=1, keepdims=True)).astype(np.float64)
        terms = c_expf(shifted)
        total = np.cumsum(terms.astype(np.float64), axis=1)[:, -1:].astype(np.float32)
        proba = terms / total
        return proba.argmax(axis=1), (proba.astype(np.float64) if probabilities else None)
