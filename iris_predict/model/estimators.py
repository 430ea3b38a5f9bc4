"""Fitted linear models and their preprocessing, read from a pickle, computed without scikit-learn.

Importing scikit-learn costs about 0.9 s and 100 MB of memory, nearly all of an
instance's cold start, and the arithmetic of what train.py fits is a few NumPy
lines. So the unpickler (safe_unpickle.py) builds plain stand-ins in place of
the classes below: a pickle rebuilds an estimator by creating an empty instance
and handing it the attributes `fit` set, so a stand-in only has to keep them.
linear() then turns a tree of stand-ins into a Linear: the matrix Z the final
estimator sees, built from the served X, and its coefficients. Whatever it
cannot express exactly (other steps, other options) raises Unsupported, and
the model is loaded again with scikit-learn's own classes (artifact.py).

Z is built with the same floating-point operations in the same order as
scikit-learn's transforms (impute, x -= mean_, x /= scale_, one-hot 1.0/0.0,
then Z @ coef_.T + intercept_), so the scores are bitwise scikit-learn's
(tests/test_fast_path.py, tests/test_train.py).
"""

import math
from typing import NamedTuple

import numpy as np

from iris_predict.model.signature import UNKNOWN_CODE


class Unsupported(Exception):
    """The fitted model is not one whose arithmetic Linear reproduces; the message says why."""


class Fitted:
    """A pickled scikit-learn estimator's attributes, kept as they were."""

    checks_version = True  # an estimator records the scikit-learn that pickled it

    def __setstate__(self, state: dict):
        self.__dict__.update(state)
        # BaseEstimator.__getstate__ records the version that pickled the estimator.
        self.sklearn_version = state.get("_sklearn_version")

    def __repr__(self) -> str:
        return f"{type(self).__name__} state (loaded without scikit-learn)"


class LogisticRegression(Fitted):
    pass


class LinearRegressor(Fitted):
    """Ridge, LinearRegression, Lasso, ElasticNet: all predict X @ coef_ + intercept_."""


class Pipeline(Fitted):
    pass


class ColumnTransformer(Fitted):
    pass


class SimpleImputer(Fitted):
    pass


class StandardScaler(Fitted):
    pass


class OneHotEncoder(Fitted):
    pass


class OrdinalEncoder(Fitted):
    pass


class FunctionTransformer(Fitted):
    """A ColumnTransformer's "passthrough", fitted: the identity when its func is None."""


class UnknownCategory(ValueError):
    """An OrdinalEncoder with handle_unknown="error" was given a category it never saw."""


# The pickled class each stand-in takes the place of (safe_unpickle.ALLOWED).
STAND_INS = {
    ("sklearn.linear_model._logistic", "LogisticRegression"): LogisticRegression,
    ("sklearn.linear_model._ridge", "Ridge"): LinearRegressor,
    ("sklearn.linear_model._base", "LinearRegression"): LinearRegressor,
    ("sklearn.linear_model._coordinate_descent", "Lasso"): LinearRegressor,
    ("sklearn.linear_model._coordinate_descent", "ElasticNet"): LinearRegressor,
    ("sklearn.pipeline", "Pipeline"): Pipeline,
    ("sklearn.compose._column_transformer", "ColumnTransformer"): ColumnTransformer,
    ("sklearn.impute._base", "SimpleImputer"): SimpleImputer,
    ("sklearn.preprocessing._data", "StandardScaler"): StandardScaler,
    ("sklearn.preprocessing._encoders", "OneHotEncoder"): OneHotEncoder,
    ("sklearn.preprocessing._encoders", "OrdinalEncoder"): OrdinalEncoder,
    ("sklearn.preprocessing._function_transformer", "FunctionTransformer"): FunctionTransformer,
}


def parts(obj):
    """Every stand-in inside obj (itself included), however deeply nested."""
    if isinstance(obj, Fitted):
        yield obj
        obj = list(obj.__dict__.values())
    if isinstance(obj, (list, tuple)):
        for item in obj:
            yield from parts(item)


# --- the arithmetic ------------------------------------------------------------------------

MULTINOMIAL, BINARY, REGRESSION = "multinomial", "binary", "regression"
# What explanations are measured from, in the answers' words (`measured_from`).
AVERAGE_ROW, EXPECTED_SCORE = "average training row", "expected score"


# A missing category is served as NaN: taken as this where a code must be an index.
MISSING_CODE = -2
# row_max: NumPy's pass over one column of a score matrix costs about what its reduction of
# this many short rows does (measured: 1,000 rows of 3 scores, 36 us by rows, 3.5 by columns).
COLUMN_PASS_ROWS = 40


class Ordinals(NamedTuple):
    """OrdinalEncoder columns, all at once: a served category code -> the encoder's code.

    Each column's row of `table` is [code of a missing value, code of an unknown category,
    code of each signature code...], so that the served code + 2 (missing: -2, unknown: -1)
    + the row's start (`starts`) is one gather for every cell, missing and unknown ones too.
    """

    inputs: np.ndarray       # (k,) intp: input columns
    outputs: np.ndarray      # (k,) intp: output columns
    table: np.ndarray        # (k, longest + 2): as above, NaN past a column's codes
    starts: np.ndarray       # (k,) intp: where each row's signature codes start, flattened
    refuse: np.ndarray       # (k,) bool: refuse an unknown category (handle_unknown="error")
    refusing: bool           # refuse.any()

    @classmethod
    def of(cls, found: list) -> "Ordinals":
        """From (input, output, codes per signature code + [unknown], missing, refuse)."""
        width = max(len(codes) for _, _, codes, _, _ in found) + 1
        table = np.full((len(found), width), np.nan)
        for row, (_, _, codes, missing, _) in zip(table, found):
            row[:2], row[2:len(codes) + 1] = (missing, codes[-1]), codes[:-1]
        inputs, outputs, _, _, refuse = zip(*found)
        refuse = np.array(refuse, dtype=bool)
        return cls(np.array(inputs, dtype=np.intp), np.array(outputs, dtype=np.intp), table,
                   np.arange(len(found), dtype=np.intp) * width + 2, refuse, bool(refuse.any()))

    def fill(self, X: np.ndarray, Z: np.ndarray):
        codes = X[:, self.inputs]
        picked = np.where(np.isnan(codes), MISSING_CODE, codes).astype(np.intp)
        if self.refusing:
            refused = (picked == UNKNOWN_CODE) & self.refuse
            if refused.any():
                raise UnknownCategory(int(self.inputs[np.nonzero(refused)[1][0]]))
        picked += self.starts
        Z[:, self.outputs] = self.table.take(picked)


class Columns(NamedTuple):
    """A ColumnTransformer's arithmetic: served X (n, F) -> Z (n, width) as it would output."""

    width: int
    numbers: np.ndarray      # input columns of numbers, in output order
    number_out: np.ndarray   # their output columns
    fill: np.ndarray         # the imputer's value for a missing number (NaN: none imputed)
    mean: np.ndarray         # StandardScaler's mean_ (0 without centring)
    scale: np.ndarray        # and scale_ (1 without scaling)
    categories: tuple        # (input column, output column per signature code + [-1], fill col)
    impute: bool             # may a number be missing (NaN) in X
    identity: bool           # Z is X itself: a bare estimator
    ordinals: Ordinals | None = None
    scaled: bool = True      # are numbers centred or scaled (False: mean 0 and scale 1)
    # One-hot input columns whose encoder refuses what it never saw (handle_unknown="error")
    strict: frozenset = frozenset()

    def transform(self, X: np.ndarray) -> np.ndarray:
        if self.identity:
            return X
        numbers = X[:, self.numbers]  # a copy: fancy indexing
        if self.impute:
            missing = np.isnan(numbers)
            if missing.any():
                numbers[missing] = np.broadcast_to(self.fill, numbers.shape)[missing]
        if self.scaled:  # StandardScaler.transform's own steps: X -= mean_, then X /= scale_.
            numbers -= self.mean
            numbers /= self.scale
        if not self.categories and self.ordinals is None:
            if self.width == len(self.numbers) and (self.number_out == np.arange(self.width)).all():
                return numbers
        Z = np.zeros((len(X), self.width))
        Z[:, self.number_out] = numbers
        rows = np.arange(len(X))
        for column, out, fill in self.categories:
            codes = X[:, column]
            missing = np.isnan(codes)
            # A code -1 (never seen in training) picks out's last entry, -1: no column, as
            # OneHotEncoder(handle_unknown="ignore") leaves all of the feature's columns 0.
            index = out[np.where(missing, -1, codes).astype(np.intp)]
            index[missing] = fill
            hit = index >= 0
            if column in self.strict and not hit.all():
                raise UnknownCategory(int(column))
            Z[rows[hit], index[hit]] = 1.0
        if self.ordinals is not None:
            self.ordinals.fill(X, Z)
        return Z

    def recoded(self, order: np.ndarray, known: tuple):
        """These Columns followed by a reordering (output j is column order[j]) and, for the
        first len(known) outputs, which must be ordinal codes, their index in known (sorted;
        anything else NaN), as one Columns; None if a recoded output is not an ordinal code.
        """
        if self.ordinals is None or self.identity:
            return None
        new = np.empty(len(order), dtype=np.intp)
        new[order] = np.arange(len(order))
        ordinals = self.ordinals
        table = ordinals.table.copy()
        for j, values in enumerate(known):
            hits = np.flatnonzero(ordinals.outputs == order[j])
            if not len(hits):
                return None
            table[hits[0]] = _index_in(values, table[hits[0]])
        categories = tuple((column, np.where(out >= 0, new[out], -1),
                            new[fill] if fill >= 0 else -1)
                           for column, out, fill in self.categories)
        return self._replace(
            number_out=new[self.number_out], categories=categories,
            ordinals=ordinals._replace(outputs=new[ordinals.outputs], table=table))


def _index_in(known: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Each value's index in the sorted array known; NaN where it is not there."""
    index = np.searchsorted(known, values).clip(0, max(len(known) - 1, 0))
    found = (known[index] == values) if len(known) else np.zeros(len(values), dtype=bool)
    return np.where(found, index, np.nan)


class Linear(NamedTuple):
    """A linear model's scores from served X: Z(X) @ coef.T + intercept."""

    kind: str                # MULTINOMIAL, BINARY or REGRESSION
    coef: np.ndarray         # (classes, width); binary (1, width); regression (width,)
    intercept: np.ndarray    # (classes,); binary (1,); regression a 0-d array
    columns: Columns
    reference: np.ndarray    # (width,): the Z explanations measure from
    groups: np.ndarray       # (width,): the input feature of each of Z's columns

    MEASURED_FROM = AVERAGE_ROW  # the reference row's score

    def predict(self, X: np.ndarray, probabilities: bool):
        """(labels or values, probabilities or None), as LogisticRegression's predict and
        predict_proba or a regressor's predict compute them."""
        scores = self.scores(self.columns.transform(X))
        if self.kind == REGRESSION:
            return scores, None
        if self.kind == BINARY:
            labels = (scores > 0).astype(np.intp)
            if not probabilities:
                return labels, None
            positive = np.array([expit(s) for s in scores.tolist()])
            return labels, two_classes(1 - positive, positive)
        # A multinomial model, as scikit-learn 1.9 computes it: the same NumPy operations in
        # the same order, so the results are bitwise identical (tests/test_fast_path.py),
        # without its per-call input validation (~10x the arithmetic for one row), and the
        # scores are computed once, not twice.
        labels = scores.argmax(axis=1)  # classes_ are the signature's, in order (checked)
        if not probabilities:
            return labels, None
        scores -= row_max(scores)  # sklearn.utils.extmath.softmax
        np.exp(scores, out=scores)
        scores /= scores.sum(axis=1, keepdims=True)
        return labels, scores

    def decision(self, X: np.ndarray) -> np.ndarray:
        return self.scores(self.columns.transform(X))

    def scores(self, Z: np.ndarray) -> np.ndarray:
        """decision_function of the final estimator, as scikit-learn computes it."""
        if self.kind == REGRESSION:
            return Z @ self.coef + self.intercept
        scores = Z @ self.coef.T + self.intercept
        return scores.ravel() if self.kind == BINARY else scores

    def contributions(self, X: np.ndarray, labels) -> tuple:
        """((n, features), (n,)): each input feature's part of the score of class labels[i]
        (or of the value) relative to the reference row, and the reference row's score.
        Binary: class 0's score is taken as the negation of class 1's, decision_function's
        only score."""
        Z = self.columns.transform(X)  # reads X, never writes it
        if self.kind == REGRESSION:
            weights, intercept = self.coef, self.intercept
        elif self.kind == BINARY:
            sign = np.where(np.asarray(labels) == 1, 1.0, -1.0)
            weights, intercept = self.coef[0] * sign[:, None], self.intercept[0] * sign
        else:
            weights, intercept = self.coef[labels], self.intercept[labels]
        base = weights @ self.reference + intercept
        parts = weights * (Z - self.reference)
        if self.columns.identity:
            return parts, np.broadcast_to(base, (len(X),))
        summed = np.zeros((len(X), X.shape[1]))
        np.add.at(summed.T, self.groups, parts.T)
        return summed, np.broadcast_to(base, (len(X),))


def row_max(scores: np.ndarray) -> np.ndarray:
    """(rows, 1): each row's largest score, as scores.max(axis=1, keepdims=True) gives it.

    NumPy reduces a matrix's short rows one at a time (1,000 rows of 3 scores: 36 us); a
    maximum is the same whatever the order it is taken in, so a long matrix is taken a column
    at a time (3.5 us). One column costs about what COLUMN_PASS_ROWS rows do."""
    if len(scores) <= COLUMN_PASS_ROWS * scores.shape[1]:
        return scores.max(axis=1, keepdims=True)
    columns = iter(scores.T)
    largest = next(columns).copy()
    for column in columns:
        np.maximum(largest, column, out=largest)
    return largest[:, None]


def two_classes(negative, positive) -> np.ndarray:
    """(rows, 2) float64: each row's two probabilities (np.stack costs twice this, 3 µs,
    for one row)."""
    proba = np.empty((len(positive), 2))
    proba[:, 0], proba[:, 1] = negative, positive
    return proba


def expit(x: float) -> float:
    """scipy.special.expit, which LogisticRegression's binary predict_proba calls: 1 / (1 +
    exp(-x)) in C with the C library's exp, as math.exp is. NumPy's own (vectorised) exp may
    differ in the last bit, and importing scipy costs the cold start."""
    try:
        return 1.0 / (1.0 + math.exp(-x))
    except OverflowError:  # exp(-x) beyond the largest float: C's is inf, and 1 / inf is 0
        return 0.0


def linear(estimator, signature, means: list) -> Linear:
    """The Linear computing this tree of stand-ins; Unsupported says why it cannot.

    means: the training mean of each input feature (model.json), the reference row of a
    bare estimator's explanations.
    """
    try:
        return _linear(estimator, signature, means)
    except (AttributeError, TypeError, ValueError, IndexError, KeyError) as e:
        raise Unsupported(f"its attributes are not a fitted model's: {e!r}") from None


def _linear(estimator, signature, means: list) -> Linear:
    steps = estimator.steps if isinstance(estimator, Pipeline) else [(None, estimator)]
    *transforms, (_, final) = steps
    if not isinstance(final, (LogisticRegression, LinearRegressor)):
        raise Unsupported(f"the final step is {type(final).__name__}, not a linear model")
    columns, reference, groups = preprocessing([step for _, step in transforms], signature,
                                               means)
    if columns.ordinals is not None:
        raise Unsupported("a linear model after an OrdinalEncoder is not served by NumPy")
    return Linear(*_coefficients(final, signature, columns.width), columns, reference, groups)


def preprocessing(transforms: list, signature, means: list) -> tuple:
    """(Columns, reference Z, each Z column's input feature) of the steps before the final
    estimator: none (a bare estimator), a ColumnTransformer, or a chain over every column."""
    n = len(signature.features)
    if not transforms:
        if not all(f.number for f in signature.features):
            raise Unsupported("a bare estimator cannot take categories")
        return _identity(n), np.asarray(means, dtype=float), np.arange(n)
    if len(transforms) == 1 and isinstance(transforms[0], ColumnTransformer):
        # Its output is dense (_blocks): a sparse one-hot block is stacked as dense columns.
        return _columns(_blocks(transforms[0]), signature, dense=True)
    # A chain of imputer and scaler over every column
    return _columns([(list(transforms), list(range(n)))], signature, dense=False)


def _identity(n: int) -> Columns:
    empty = np.zeros(0)
    return Columns(n, np.arange(n), np.arange(n), empty, empty, empty, (), False, True)


def _blocks(transformer: ColumnTransformer) -> list:
    """(chain of steps, input columns) per fitted transformer, in output order."""
    if getattr(transformer, "sparse_output_", True):
        raise Unsupported("the ColumnTransformer's output is sparse")
    blocks = []
    for name, fitted, columns in transformer.transformers_:
        if isinstance(fitted, str) and fitted == "drop":
            continue
        if isinstance(fitted, str):
            raise Unsupported(f"transformer {name!r} is {fitted!r}")
        columns = np.asarray(columns)
        names = getattr(transformer, "feature_names_in_", None)
        if columns.dtype.kind in "UO" and names is not None:
            # Fitted on a DataFrame, it picks columns by name: the names it was fitted on,
            # which train.py checked are the CSV's columns in order (the signature's).
            names = [str(n) for n in names.tolist()]
            if not set(columns.tolist()) <= set(names):
                raise Unsupported(f"transformer {name!r} picks columns it was not fitted on")
            columns = np.array([names.index(c) for c in columns.tolist()], dtype=np.intp)
        if columns.dtype.kind not in "iu":
            raise Unsupported(f"transformer {name!r} selects columns by {columns.dtype}, "
                              "not by index or name")
        chain = [step for _, step in fitted.steps] if isinstance(fitted, Pipeline) else [fitted]
        chain = [step for step in chain if not _identity_function(step)]
        blocks.append((chain, columns.tolist()))
    return blocks


def _identity_function(step) -> bool:
    return isinstance(step, FunctionTransformer) and step.func is None


def _columns(blocks: list, signature, dense: bool) -> tuple:
    """Columns, the reference Z and each Z column's input feature, from the blocks (dense:
    inside a ColumnTransformer whose output is dense, whatever its encoders output)."""
    features = signature.features
    numbers, number_out, fill, mean, scale, categories, ordinals = [], [], [], [], [], [], []
    reference, groups, strict = [], [], set()
    width = 0
    for chain, inputs in blocks:
        imputer = chain.pop(0) if chain and isinstance(chain[0], SimpleImputer) else None
        statistics = _imputer(imputer, len(inputs))
        if len(chain) == 1 and isinstance(chain[0], OneHotEncoder):
            encoder = chain[0]
            _check_encoder(encoder, len(inputs), dense)
            if encoder.handle_unknown == "error":
                strict.update(inputs)
            for j, known, filled in zip(inputs, encoder.categories_, statistics):
                feature = features[j]
                if feature.number:
                    raise Unsupported(f"{feature.name} is a number but is one-hot encoded")
                known = [str(value) for value in known.tolist()]
                out = [width + known.index(c) if c in known else -1 for c in feature.categories]
                fill_col = width + known.index(str(filled)) if str(filled) in known else -1
                categories.append((j, np.array(out + [-1], dtype=np.intp), fill_col))
                shares = dict(zip(feature.categories, feature.shares))
                reference += [shares.get(c, 0.0) for c in known]
                groups += [j] * len(known)
                width += len(known)
            continue
        if len(chain) == 1 and isinstance(chain[0], OrdinalEncoder):
            for j, codes, missing_code, refuse in _ordinal(chain[0], inputs, statistics,
                                                           features):
                ordinals.append((j, width, codes, missing_code, refuse))
                reference.append(0.0)
                groups.append(j)
                width += 1
            continue
        centre, spread = np.zeros(len(inputs)), np.ones(len(inputs))
        if len(chain) == 1 and isinstance(chain[0], StandardScaler):
            scaler = chain.pop()
            if scaler.with_mean:
                centre = np.asarray(scaler.mean_, dtype=float)
            if scaler.with_std:
                spread = np.asarray(scaler.scale_, dtype=float)
        if chain:
            raise Unsupported(f"steps {[type(s).__name__ for s in chain]} are not served "
                              "by NumPy")
        for j in inputs:
            if not features[j].number:
                raise Unsupported(f"{features[j].name} is a category but is not one-hot encoded")
        numbers += inputs
        number_out += range(width, width + len(inputs))
        fill += [float(s) for s in statistics]
        mean += centre.tolist()
        scale += spread.tolist()
        reference += [0.0] * len(inputs)  # (mean_ - mean_) / scale_: the scaled training mean
        groups += inputs
        width += len(inputs)
    columns = Columns(width, np.array(numbers, dtype=np.intp),
                      np.array(number_out, dtype=np.intp), np.array(fill), np.array(mean),
                      np.array(scale), tuple(categories),
                      # Only where an imputer fills something (trees take NaN as it is).
                      any(features[j].missing and f == f for j, f in zip(numbers, fill)),
                      False,
                      Ordinals.of(ordinals) if ordinals else None,
                      any(m != 0.0 for m in mean) or any(v != 1.0 for v in scale),
                      frozenset(strict))
    return columns, np.array(reference), np.array(groups, dtype=np.intp)


def _ordinal(encoder: OrdinalEncoder, inputs: list, statistics: list, features) -> list:
    """(input column, code per signature code + [-1], code of a missing value, whether an
    unknown category is refused) per column."""
    if encoder._infrequent_enabled or len(encoder.categories_) != len(inputs) \
            or encoder.handle_unknown not in ("error", "use_encoded_value"):
        raise Unsupported("the OrdinalEncoder has infrequent categories or other columns")
    unknown = (math.nan if encoder.handle_unknown == "error"
               else float(encoder.unknown_value))
    found = []
    for j, known, filled in zip(inputs, encoder.categories_, statistics):
        if features[j].number:
            raise Unsupported(f"{features[j].name} is a number but is ordinal encoded")
        names = [str(c) for c in known.tolist()]
        codes = [float(names.index(c)) if c in names else unknown
                 for c in features[j].categories] + [unknown]
        # An imputer in front fills a missing value; else it is encoded_missing_value.
        imputed = filled == filled and str(filled) in names  # NaN: no imputer in front
        missing = (float(names.index(str(filled))) if imputed
                   else float(encoder.encoded_missing_value))
        found.append((j, np.array(codes), missing, encoder.handle_unknown == "error"))
    return found


def _imputer(imputer, count: int) -> list:
    """The value a SimpleImputer fills each column with (NaN per column without one)."""
    if imputer is None:
        return [math.nan] * count
    missing = imputer.missing_values
    if not (isinstance(missing, float) and math.isnan(missing)):
        raise Unsupported(f"the imputer replaces {missing!r}, not NaN")
    if imputer.add_indicator:
        raise Unsupported("the imputer adds indicator columns")
    statistics = imputer.statistics_.tolist()
    if len(statistics) != count or any(s != s for s in statistics if isinstance(s, float)):
        raise Unsupported("the imputer dropped a column that was empty in training")
    return statistics


def _check_encoder(encoder: OneHotEncoder, count: int, dense: bool):
    # A sparse matrix reaching the final estimator is not served: XGBoost, for one, takes
    # its absent entries as missing rather than 0.
    if encoder.handle_unknown not in ("ignore", "error") or encoder.drop_idx_ is not None \
            or encoder._infrequent_enabled or (encoder.sparse_output and not dense) \
            or len(encoder.categories_) != count:
        raise Unsupported("the OneHotEncoder has a drop, infrequent categories, "
                          "handle_unknown other than 'ignore' or 'error', or sparse output "
                          "outside a ColumnTransformer")


def _coefficients(final, signature, width: int) -> tuple:
    """(kind, coef, intercept) of the final estimator, checked against the signature."""
    coef, intercept = final.coef_, final.intercept_
    if not (type(coef) is np.ndarray and coef.dtype == np.float64):
        raise Unsupported("its coefficients are not a float64 array")
    intercept = np.asarray(intercept, dtype=np.float64)
    if isinstance(final, LinearRegressor):
        if signature.classifier or coef.shape != (width,) or intercept.shape != ():
            raise Unsupported(f"a regressor of coefficients {coef.shape} does not fit "
                              f"{width} columns and one value")
        return REGRESSION, coef, intercept
    classes = len(signature.classes or ())
    if not signature.classifier or final.classes_.tolist() != list(range(classes)) and \
            [str(c) for c in final.classes_.tolist()] != list(signature.classes):
        raise Unsupported("its classes are not the signature's")
    rows = 1 if classes == 2 else classes
    if coef.shape != (rows, width) or intercept.shape != (rows,):
        raise Unsupported(f"coefficients {coef.shape} do not fit {classes} classes and "
                          f"{width} columns")
    return (BINARY if classes == 2 else MULTINOMIAL), coef, intercept
