"""Request rows checked against the model's signature, into the matrix the model takes.

Every protocol hands its rows here: arrays of values in the signature's feature
order, or objects keyed by the features' names (or, for a model whose features
all have one, their aliases). What comes back is a float64 (rows, features)
matrix as model/served.py takes it: a number column holds the value, a category
column the index of the value among the categories seen in training (-1 for one
never seen, answered with a warning), NaN where a value is missing and the model
may take that. Anything else is refused with a message naming the row, the
feature and what it must be.

Valid batches are checked a column at a time in C (set(map(type, ...)),
np.fromiter, one vectorised bounds check); only a batch that fails those, or
holds something unusual, is walked value by value, which finds and names the
problem.
"""

import difflib
import itertools
import math
import re

import numpy as np

from iris_predict import settings
from iris_predict.edge import number_rows
from iris_predict.errors import InvalidRequest, PayloadTooLarge
from iris_predict.model.signature import UNKNOWN_CODE, Signature
from iris_predict.text import kind, show

# BigQuery sends NUMERIC and BIGNUMERIC columns, and CSV every cell, as decimal text.
DECIMAL = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
NUMBER_TYPES = frozenset({float, int})


class Rows:
    """What the rows of one batch turned out to be."""

    __slots__ = ("X", "present", "unknown")

    def __init__(self, X: np.ndarray, present: list, unknown: list):
        self.X = X                  # (rows, features) float64, in the signature's order
        self.present = present      # BigQuery: the calls scored (not NULL), by index
        self.unknown = unknown      # (row, feature index, value): categories never seen


class Columns:
    """A signature's checks, made once per served model: bounds as arrays, category indices."""

    def __init__(self, signature: Signature):
        self.signature = signature
        self.features = signature.features
        self.names = signature.names
        self.width = len(self.names)
        self.name_set = frozenset(self.names)
        self.alias_set = frozenset(signature.aliases)
        # Every bound as "x > low and x <= high", so one vectorised test checks them all:
        # x >= a is x > (the float below a); x < b is x <= (the float below b).
        low = [f.low if not f.low_inclusive else np.nextafter(f.low, -np.inf)
               for f in self.features]
        high = [f.high if f.high_inclusive else np.nextafter(f.high, -np.inf)
                for f in self.features]
        self.low = np.array(low)
        self.high = np.minimum(np.array(high), np.finfo(float).max)  # infinity is no number
        # The same as Python floats, for one value at a time (a NumPy scalar compares several
        # times slower); NaN for a category, where no number is the usual case.
        self.lows = [lo if f.number else math.nan
                     for lo, f in zip(self.low.tolist(), self.features)]
        self.highs = self.high.tolist()
        self.numeric = signature.numeric
        self.numbers = [j for j, f in enumerate(self.features) if f.number]
        # Number columns that may hold NaN: a missing value the model takes.
        self.missing = np.array([f.missing for f in self.features])[self.numbers]
        self.index = [None if f.number else {c: i for i, c in enumerate(f.categories)}
                      for f in self.features]
        self.expected = ", ".join(self.names)
        # The same bounds for every feature (iris's; none at all, by default): then X's
        # smallest and largest value tell, two flat reductions, where comparing X with a
        # row of bounds loops over its short rows (1,000 rows: 3 us instead of 20).
        same = len(set(low)) == 1 and len(set(self.highs)) == 1
        self.same_bounds = (float(low[0]), self.highs[0]) if same else None

    def inside(self, X: np.ndarray) -> bool:
        """True if every number of X is within its bounds (NaN and infinity are not)."""
        if self.same_bounds and X.size:
            low, high = self.same_bounds
            return bool(X.min() > low and X.max() <= high)  # NaN is neither
        return bool(((X > self.low) & (X <= self.high)).all())


_columns = None


def columns(signature: Signature) -> Columns:
    """The checks for `signature`, made on first use (one model is served per instance)."""
    global _columns
    if _columns is None or _columns.signature is not signature:
        _columns = Columns(signature)
    return _columns


def numbers(body: bytes, key: str, signature: Signature) -> dict | None:
    """The body as decoding.decode gives it, with `key`'s rows as the model's matrix, when they
    are nothing but numbers, each within its bounds (edge/number_rows.py); else None, and it
    is decoded the usual way: out of bounds, so that the refusal shows the value as sent."""
    if b"[" not in body or not signature.numeric:
        return None
    payload = number_rows.decode(body, key, len(signature.names))
    return payload if payload is not None and columns(signature).inside(payload[key]) else None


def check_rows(count: int, where: str):
    """Refuse a batch of more than MAX_BATCH_ROWS rows with 413."""
    if count > settings.MAX_BATCH_ROWS:
        raise PayloadTooLarge(
            f"{where} has {count} rows, more than the limit of {settings.MAX_BATCH_ROWS}; "
            f"split it into batches of at most {settings.MAX_BATCH_ROWS} rows")


def matrix(rows, where: str, signature: Signature, bigquery: bool = False) -> Rows:
    """The rows, validated, as the model's matrix.

    Instances may be arrays or objects; BigQuery calls are arrays of arguments,
    which may be NULL or decimal strings. A NULL argument where the model cannot
    take a missing value makes that call's reply NULL (SQL's NULL in, NULL out),
    while the rest of the batch still scores; it excuses no garbage elsewhere in
    its call.
    """
    if type(rows) is np.ndarray:  # decoded from the body as a checked matrix (native.decode)
        check_rows(len(rows), where)
        return Rows(rows, range(len(rows)), [])
    if not isinstance(rows, list):
        raise InvalidRequest(f"{where} must be an array of rows, got {kind(rows)}")
    if not rows and not bigquery:  # BigQuery may send an empty batch
        raise InvalidRequest(f"{where} is empty; send at least one row")
    check_rows(len(rows), where)
    cols = columns(signature)
    fast = _fast(rows, cols)
    if fast is not None:
        return fast
    present, values, unknown = [], [], []
    for i, row in enumerate(rows):
        checked = row_values(row, f"{where}[{i}]", cols, bigquery, len(present), unknown)
        if checked is not None:
            present.append(i)
            values.append(checked)
    return Rows(np.array(values, dtype=float).reshape(-1, cols.width), present, unknown)


def _fast(rows: list, cols: Columns) -> Rows | None:
    """The rows as a matrix if all are plain arrays of valid values, else None."""
    if not rows or set(map(type, rows)) != {list} or set(map(len, rows)) != {cols.width}:
        return None
    everything = range(len(rows))
    if cols.numeric:  # a C-level pass over all values: the common case
        if not set(map(type, itertools.chain.from_iterable(rows))) <= NUMBER_TYPES:
            return None
        try:
            X = np.fromiter(itertools.chain.from_iterable(rows), dtype=float,
                            count=len(rows) * cols.width).reshape(-1, cols.width)
        except OverflowError:
            return None
        return Rows(X, everything, []) if cols.inside(X) else None
    X = np.empty((len(rows), cols.width))
    unknown = []
    for j, (column, feature, index) in enumerate(zip(zip(*rows), cols.features, cols.index)):
        types = set(map(type, column))
        if index is None:
            if not types <= NUMBER_TYPES:
                return None
            try:
                X[:, j] = np.fromiter(column, dtype=float, count=len(rows))
            except OverflowError:
                return None
        elif types == {str}:
            codes = list(map(index.get, column, itertools.repeat(UNKNOWN_CODE)))
            X[:, j] = codes
            if UNKNOWN_CODE in codes:
                unknown += [(i, j, column[i]) for i, code in enumerate(codes)
                            if code == UNKNOWN_CODE]
        else:
            return None
    sub = X[:, cols.numbers]
    inside = (sub > cols.low[cols.numbers]) & (sub <= cols.high[cols.numbers])
    if cols.missing.any():
        inside |= np.isnan(sub) & cols.missing
    if not inside.all():
        return None
    unknown.sort()
    return Rows(X, everything, unknown)


def row_values(row, where: str, cols: Columns, bigquery: bool = False, at: int = 0,
               unknown: list | None = None) -> list | None:
    """One row's values, validated; None for a BigQuery call with a NULL it cannot score.

    `where` names the row in messages ("" for a body that is the row itself); `at`
    is its index in the matrix being built, for `unknown` categories.
    """
    if isinstance(row, dict) and not bigquery:
        keys = cols.names if row.keys() == cols.name_set else cols.signature.aliases \
            if cols.alias_set and row.keys() == cols.alias_set else _keys(row, where, cols)
        prefix = f"{where}." if where else ""
        return [value(row.get(k), j, cols, prefix + k, at, unknown)
                for j, k in enumerate(keys)]
    noun = "arguments" if bigquery else "values"
    if not isinstance(row, list):
        expected = f"an array of {cols.width} arguments" if bigquery \
            else f"an array of {cols.width} values or an object"
        raise InvalidRequest(f"{where or 'request body'} must be {expected}, got {kind(row)}")
    if len(row) != cols.width:
        raise InvalidRequest(
            f"{where} has {len(row)} {noun}, expected {cols.width} ({cols.expected})")
    values, null = [], False
    for j, (v, feature) in enumerate(zip(row, cols.features)):
        if v is None and bigquery and not feature.missing:
            null = True  # SQL NULL: this call's reply is NULL
            continue
        values.append(value(v, j, cols, f"{where}[{j}] ({feature.name})", at, unknown,
                            text=bigquery))
    return None if null else values


def _keys(obj: dict, where: str, cols: Columns) -> tuple:
    """The key set `obj` uses, or InvalidRequest naming the first key that is off."""
    where = where or "request body"
    named = sum(k in cols.name_set for k in obj)
    aliased = sum(k in cols.alias_set for k in obj)
    # The form most keys use; with no telling, the aliases, as the tutorial's requests had.
    keys, other = (cols.names, cols.signature.aliases) \
        if named > aliased or not cols.signature.aliases else (cols.signature.aliases, cols.names)
    known = set(keys)
    for key in obj:
        if key in known:
            continue
        if key in other:  # the odd one out of a mixture
            twin = keys[other.index(key)]
            raise InvalidRequest(
                f"{where} mixes long and short names: {show(key)} is the other form of "
                f"{show(twin)}; use {', '.join(keys)}")
        raise InvalidRequest(f"{where} has unknown field {show(key)}{_suggest(key, cols)}; "
                             f"expected {_expected(cols)}")
    missing = [k for k, f in zip(keys, cols.features) if k not in obj and not f.missing]
    if missing:
        raise InvalidRequest(f"{where} is missing {', '.join(missing)}")
    return keys


def _expected(cols: Columns) -> str:
    if cols.signature.aliases:
        return f"{cols.expected} or {', '.join(cols.signature.aliases)}"
    return cols.expected


def _suggest(key: str, cols: Columns) -> str:
    """' (did you mean "x"?)' for a key that looks like a misspelt feature, else ''."""
    close = difflib.get_close_matches(key, [*cols.names, *cols.signature.aliases], n=1,
                                      cutoff=0.8)
    return f" (did you mean {show(close[0])}?)" if close else ""


def suggest(key: str, signature: Signature) -> str:
    """_suggest for callers outside this module (CSV headers)."""
    return _suggest(key, columns(signature))


def value(v, j: int, cols: Columns, where: str, at: int = 0, unknown: list | None = None,
          text: bool = False) -> float:
    """One value of feature j as the matrix holds it; `text` allows numbers as decimal strings."""
    if type(v) is float and cols.lows[j] < v <= cols.highs[j]:  # the usual case, at once
        return v
    feature = cols.features[j]
    if v is None or (text and v == "") or (feature.missing and type(v) is float and v != v):
        if feature.missing:
            return math.nan
        if v == "":
            raise InvalidRequest(f"{where} is empty; {feature.name} must be {feature.allowed()}")
        raise InvalidRequest(f"{where} must be {feature.allowed()}, got null (the model cannot "
                             f"take a missing {feature.name})")
    if not feature.number:
        if type(v) is not str:
            raise InvalidRequest(f"{where} must be {feature.allowed()}, got {_got(v)}")
        code = cols.index[j].get(v, UNKNOWN_CODE)
        if code == UNKNOWN_CODE and unknown is not None:
            unknown.append((at, j, v))
        return float(code)
    if text and isinstance(v, str) and DECIMAL.fullmatch(v.strip()):
        result = float(v)
    elif isinstance(v, bool) or not isinstance(v, (int, float)):
        raise InvalidRequest(f"{where} must be {feature.allowed()}, got {_got(v)}")
    else:
        try:
            result = float(v)
        except OverflowError:
            result = math.inf
    if not cols.low[j] < result <= cols.high[j]:  # also false for inf and nan
        raise InvalidRequest(f"{where} must be {feature.allowed()}, got {show(v)}")
    return result


def _got(v) -> str:
    """A wrong value as a message names it: its type, and the value if it is short to show."""
    shown = show(v)
    return kind(v) if shown == kind(v) else f"{kind(v)} {shown}"


def first_outside(X: np.ndarray, cols: Columns, where: str):
    """Raise value()'s message for the first number of X outside its bounds, if any."""
    sub = X[:, cols.numbers]
    inside = (sub > cols.low[cols.numbers]) & (sub <= cols.high[cols.numbers])  # not NaN
    if not inside.all():
        i, k = map(int, np.argwhere(~inside)[0])
        j = cols.numbers[k]
        value(float(X[i, j]), j, cols, f"{where}[{i}][{j}] ({cols.names[j]})")


def only_keys(obj: dict, allowed: tuple, where: str):
    """Refuse the first key of `obj` that is not `allowed`, naming what is."""
    for key in obj:
        if key not in allowed:
            raise InvalidRequest(
                f"{where} has unknown field {show(key)}; expected {', '.join(allowed)}")
