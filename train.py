"""Train or package a model and write it beside its model.json signature.

    python train.py [--output model.joblib]
        today's iris model, from scikit-learn's bundled iris data
    python train.py --csv FILE --target COLUMN [--task classification|regression]
                    [--estimator linear|hist-gradient-boosting|random-forest]
                    [--unit COLUMN=UNIT ...] [--name NAME] [--output PATH]
        the standard baseline for any table: impute and scale numbers, impute and one-hot
        encode categories, then LogisticRegression or Ridge (docs/model.md); or trees
    python train.py --model FITTED --csv FILE --target COLUMN [--no-holdout]
                    [--unit COLUMN=UNIT ...] [--name NAME] [--output PATH]
        a model you already fitted (joblib, or an XGBoost/LightGBM booster file), packaged
        with a signature read from the CSV

Fixed seeds, so two runs give the same model. The sidecar records what the function serves
as its signature and metadata, what it checks before loading (versions and the file's
SHA-256) and what drift reports compare served rows with (training ranges, category shares
and binned numbers).
"""

import argparse
import contextlib
import csv
import difflib
import hashlib
import json
import math
import platform
import shutil
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import joblib
import numpy as np
import sklearn
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_iris
from sklearn.exceptions import ConvergenceWarning
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import (accuracy_score, log_loss, mean_absolute_error, r2_score,
                             root_mean_squared_error)
from sklearn.model_selection import StratifiedKFold, cross_validate, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler
from sklearn.ensemble import (HistGradientBoostingClassifier, HistGradientBoostingRegressor,
                              RandomForestClassifier, RandomForestRegressor)

import convert
from drift import reference
from iris_predict.errors import ModelUnavailable
from iris_predict.model import artifact
from iris_predict.model import served as served_model
from iris_predict.model.artifact import sidecar_path

SEED = 42
# What --estimator fits after the preprocessing (docs/model.md).
LINEAR, HIST_GRADIENT_BOOSTING, RANDOM_FOREST = "linear", "hist-gradient-boosting", "random-forest"
ESTIMATORS = (LINEAR, HIST_GRADIENT_BOOSTING, RANDOM_FOREST)
FOREST_TREES = 100
CV_FOLDS = 10
HOLDOUT_FRACTION = 0.2
# The iris facts: (name, tutorial alias, unit), in the column order of sklearn's iris data,
# and the bounds of anything that could be a flower (more than 0, at most a metre).
IRIS_FEATURES = (
    ("sepal_length", "sl", "cm"),
    ("sepal_width", "sw", "cm"),
    ("petal_length", "pl", "cm"),
    ("petal_width", "pw", "cm"),
)
IRIS_BOUNDS = {"exclusiveMinimum": 0, "maximum": 100}
# CSV cells that mean "missing" (surrounding spaces ignored); in a column of numbers, so
# does NaN however it is spelt (pandas writes "nan" for one).
MISSING = ("", "NA")
# A row of the CSV left out, and why: printed, and recorded in model.json's "left_out_rows".
TARGET_MISSING = "the target is missing"
LEFT_OUT_LINES = 20  # line numbers recorded per reason
# Beyond this magnitude, squaring a number (a variance: StandardScaler) overflows float64.
HUGE = 1e150
# A numeric target with at most this many distinct whole numbers is a set of class labels.
MAX_CLASS_LEVELS = 20
DIGITS = 12  # of means, standard deviations and shares in model.json
MAX_DECIMALS = 12  # recorded of a number's cells ("decimals"), whose precision forms show


class TrainError(Exception):
    """The CSV or model cannot be trained or packaged; the message says why and what to do."""


# An L2-regularised logistic regression has exactly one optimum. lbfgs stops near it, where
# floating-point details decide (its ftol is fixed at 64 eps inside scikit-learn, so even
# tol=1e-15 leaves ~1e-5 between machines); Newton steps converge quadratically, so every
# machine lands within ~1e-14 of it (README "The model and retraining").
SOLVER_TOL = 1e-12
SOLVER_MAX_ITER = 100


def make_estimator():
    """The served estimator; README 'The model and retraining' explains the choice."""
    return LogisticRegression(solver="newton-cholesky", tol=SOLVER_TOL, max_iter=SOLVER_MAX_ITER)


# --- iris ------------------------------------------------------------------------------------

def evaluate(estimator, X, y):
    """Held-out and cross-validated scores, all from fixed splits."""
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=HOLDOUT_FRACTION, stratify=y, random_state=SEED
    )
    holdout = clone(estimator).fit(X_train, y_train)
    folds = StratifiedKFold(CV_FOLDS, shuffle=True, random_state=SEED)
    cv = cross_validate(estimator, X, y, cv=folds, scoring=("accuracy", "neg_log_loss"))
    return {
        "holdout_accuracy": round(float(holdout.score(X_test, y_test)), 4),
        "holdout_rows": int(len(y_test)),
        "cv_folds": CV_FOLDS,
        "cv_accuracy_mean": round(float(cv["test_accuracy"].mean()), 4),
        "cv_accuracy_std": round(float(cv["test_accuracy"].std()), 4),
        "cv_log_loss_mean": round(float(-cv["test_neg_log_loss"].mean()), 4),
    }


def train(output: Path) -> dict:
    """Fit iris on all 150 flowers, write the artifact and sidecar, return the sidecar."""
    iris = load_iris()
    X, y = iris.data, iris.target
    estimator = make_estimator()
    with warnings.catch_warnings():
        # A model that stopped short of the optimum is not reproducible across machines.
        warnings.simplefilter("error", ConvergenceWarning)
        metrics = evaluate(estimator, X, y)
        estimator.fit(X, y)
    features = [{"name": name, "type": "number", "alias": alias, "unit": unit,
                 "bounds": IRIS_BOUNDS, "missing": False, **_number_stats(column)}
                for (name, alias, unit), column in zip(IRIS_FEATURES, X.T)]
    table = Table([name for name, _, _ in IRIS_FEATURES], list(X.T), y.tolist())
    return _write(estimator, output, name="iris", task="classification", target="species",
                  classes=[str(c) for c in iris.target_names], features=features, table=table,
                  metrics=metrics)


# --- a CSV -----------------------------------------------------------------------------------

@dataclass
class Table:
    """A CSV's feature columns and target, as read."""

    names: list              # feature columns, in the file's order
    columns: list            # per feature: float array (NaN missing) or list of str/None
    target: list             # the target's cells (rows without one are left out)
    left_out: list = ()      # model.json's "left_out_rows": {"reason", "rows", "lines"}
    units: dict = field(default_factory=dict)  # a number's unit by name (--unit), if given
    decimals: dict = field(default_factory=dict)  # a number's decimals, as the CSV writes it

    @property
    def rows(self) -> int:
        return len(self.target)

    def objects(self) -> np.ndarray:
        """The features as a NumPy object array: floats (NaN missing), strings (NaN missing)."""
        X = np.empty((self.rows, len(self.names)), dtype=object)
        for j, column in enumerate(self.columns):
            X[:, j] = [math.nan if v is None else v for v in column] \
                if isinstance(column, list) else column.tolist()
        return X

    def numeric(self) -> bool:
        return not any(isinstance(c, list) for c in self.columns)


def read_csv(path: Path, target: str, units: dict | None = None) -> Table:
    """The CSV's columns, typed: a column with any non-numeric cell is a category; units
    name some numbers' units."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            lines = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise TrainError(f"cannot read {path}: {e}") from None
    if not lines or not any(cell.strip() for cell in lines[0]):
        raise TrainError(f"{path} has no header row naming its columns")
    header = [cell.strip() for cell in lines[0]]
    if "" in header or len(set(header)) != len(header):
        raise TrainError(f"{path}'s header must name every column once; it has {header}")
    if target not in header:
        raise TrainError(f"{path} has no column {target!r}{_did_you_mean(target, header)}; "
                         f"its columns are {header}")
    cells, line_numbers = [], []
    for number, line in enumerate(lines[1:], 2):
        if not any(cell.strip() for cell in line):
            continue  # a blank line
        if len(line) != len(header):
            raise TrainError(f"{path} line {number} has {len(line)} cells; the header "
                             f"has {len(header)}")
        cells.append([None if c.strip() in MISSING else c.strip() for c in line])
        line_numbers.append(number)
    by_column = dict(zip(header, zip(*cells))) if cells else {}
    targets = by_column.get(target, ())
    kept = [i for i, v in enumerate(targets) if v is not None]
    if len(kept) < 10:
        raise TrainError(f"{path} has {len(kept)} rows with a {target}; at least 10 are needed")
    dropped = [line_numbers[i] for i, v in enumerate(targets) if v is None]
    left_out = [{"reason": TARGET_MISSING, "rows": len(dropped),
                 "lines": dropped[:LEFT_OUT_LINES]}] if dropped else []
    names = [name for name in header if name != target]
    if not names:
        raise TrainError(f"{path} has no column besides the target {target!r}")
    columns, decimals = [], {}
    for name in names:
        values = [by_column[name][i] for i in kept]
        if all(v is None for v in values):
            raise TrainError(f"column {name!r} of {path} has no values")
        numbers = [_number(v) for v in values]
        if not all(v is None or n is not None for v, n in zip(values, numbers)):
            columns.append(list(values))  # text: a category
            continue
        for i, n in enumerate(numbers):
            if n is not None and math.isinf(n):
                raise TrainError(f"column {name!r} of {path} line {line_numbers[kept[i]]} is "
                                 f"{values[i]!r}: a number must be finite (an empty cell is "
                                 f"a missing one)")
        columns.append(np.array([math.nan if n is None else n for n in numbers]))  # NaN too
        decimals[name] = max(_decimals(v) for v in values if v is not None)
    for name in units or {}:
        if name not in names:
            raise TrainError(f"--unit {name}=...: {path} has no feature column {name!r}"
                             f"{_did_you_mean(name, names)}")
        if isinstance(columns[names.index(name)], list):
            raise TrainError(f"--unit {name}=...: {name!r} is a category, which has no unit")
    return Table(names, columns, [targets[i] for i in kept], left_out, dict(units or {}), decimals)


def _decimals(cell: str) -> int:
    """The digits after the point in a number as written: "1976" 0, "5.10" 2, "1e-3" 3."""
    mantissa, _, exponent = cell.lower().partition("e")
    places = len(mantissa.partition(".")[2]) - (int(exponent) if exponent.lstrip("+-").isdigit()
                                                  else 0)
    return min(max(places, 0), MAX_DECIMALS)


def _did_you_mean(name: str, names: list) -> str:
    """'; did you mean 'Origin'?' for the nearest of names (case aside), or ''."""
    folded = {n.casefold(): n for n in names}
    close = difflib.get_close_matches(name.casefold(), list(folded), n=1, cutoff=0.6)
    return f" (did you mean {folded[close[0]]!r}?)" if close else ""


def _number(cell):
    """The cell as a float (NaN and inf as they are), None for text or a missing cell."""
    try:
        return float(cell)
    except (TypeError, ValueError):
        return None


def target_classes(cells: list, task: str | None, target: str = "the target") -> tuple:
    """(task, classes or None, y): y as class indices (classification) or floats."""
    numbers = [_number(c) for c in cells]
    numeric = all(n is not None for n in numbers)
    if numeric and not all(math.isfinite(n) for n in numbers):
        bad = next(c for c, n in zip(cells, numbers) if not math.isfinite(n))
        raise TrainError(f"{target} has {bad!r}: a target must be finite")
    whole = numeric and all(n == int(n) for n in numbers)
    if task is None:
        task = "classification" if not numeric or (
            whole and len(set(numbers)) <= MAX_CLASS_LEVELS) else "regression"
    if task == "regression":
        if not numeric:
            bad = next(c for c, n in zip(cells, numbers) if n is None)
            raise TrainError(f"a regression target must be numbers; {target} has {bad!r}")
        return task, None, np.array(numbers)
    distinct = len(set(numbers if numeric else cells))
    if numeric and not whole:
        example = next(c for c, n in zip(cells, numbers) if n != int(n))
        raise TrainError(f"--task classification needs class labels, but {target} has "
                         f"{distinct} distinct values, not all whole numbers ({example!r}): "
                         f"a quantity, to be predicted with --task regression")
    if distinct > len(cells) / 2:
        raise TrainError(f"{target} has {distinct} distinct values in {len(cells)} rows, too "
                         f"many to learn as classes (most have one row: an identifier?); "
                         f"choose another target" + (", or --task regression" if numeric
                                                     else ""))
    if numeric:  # numeric labels: in numeric order, written as the CSV would ("2", "0.5")
        levels = sorted(set(numbers))
        classes = [str(int(n)) if n == int(n) else repr(n) for n in levels]
        y = np.searchsorted(np.array(levels), np.array(numbers))
    else:
        classes = sorted(set(cells))
        y = np.searchsorted(np.array(classes, dtype=object), np.array(cells, dtype=object))
    if len(classes) < 2:
        raise TrainError(f"a classification target needs two classes at least; it has {classes}")
    return task, classes, y


def make_pipeline(table: Table, task: str, estimator: str = LINEAR) -> Pipeline:
    """The baseline: impute and scale numbers, impute and one-hot encode categories, then a
    linear model; or for trees, numbers as they are (missing ones too) and categories as
    ordinal codes. Columns are chosen by index, so it takes an object array in column order."""
    numbers = [j for j, c in enumerate(table.columns) if not isinstance(c, list)]
    categories = [j for j, c in enumerate(table.columns) if isinstance(c, list)]
    if estimator != LINEAR:
        return _tree_pipeline(numbers, categories, task, estimator)
    blocks = []
    if numbers:
        blocks.append(("numbers", Pipeline([("impute", SimpleImputer(strategy="median")),
                                            ("scale", StandardScaler())]), numbers))
    if categories:
        # Dense, so the model's arithmetic is the same dense dot product served (estimators.py).
        encode = OneHotEncoder(handle_unknown="ignore", sparse_output=False)
        blocks.append(("categories", Pipeline([("impute", SimpleImputer(strategy="most_frequent")),
                                               ("onehot", encode)]), categories))
    final = make_estimator() if task == "classification" else Ridge()
    return Pipeline([("columns", ColumnTransformer(blocks)), ("model", final)])


def _tree_pipeline(numbers: list, categories: list, task: str, estimator: str) -> Pipeline:
    """Trees take missing numbers natively, and categories as codes: an unseen one is -1,
    which HistGradientBoosting takes as missing and a forest splits like any other code."""
    blocks = [("numbers", "passthrough", numbers)] if numbers else []
    if categories:
        blocks.append(("categories", OrdinalEncoder(handle_unknown="use_encoded_value",
                                                    unknown_value=-1), categories))
    classify = task == "classification"
    if estimator == RANDOM_FOREST:
        final = (RandomForestClassifier if classify else RandomForestRegressor)(
            n_estimators=FOREST_TREES, random_state=SEED)
    else:
        # Its categorical splits: the ordinal codes come after the numbers.
        coded = list(range(len(numbers), len(numbers) + len(categories)))
        final = (HistGradientBoostingClassifier if classify else HistGradientBoostingRegressor)(
            categorical_features=coded or None, random_state=SEED)
    return Pipeline([("columns", ColumnTransformer(blocks)), ("model", final)])


def holdout_metrics(estimator, X, y, task: str, classes) -> dict:
    """Scores of a copy fitted on 80% of the rows, on the other 20% (fixed split); y holds
    class indices, some of which the 80% may lack (a class of one row)."""
    stratify = None
    if task == "classification" and np.bincount(y).min() >= 2 \
            and len(y) * HOLDOUT_FRACTION >= len(classes):
        stratify = y
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=HOLDOUT_FRACTION, stratify=stratify, random_state=SEED)
    fitted = clone(estimator).fit(X_train, y_train)
    predicted, proba = fitted.predict(X_test), None
    if task == "classification" and hasattr(fitted, "predict_proba"):
        proba = np.zeros((len(X_test), len(classes)))
        proba[:, np.asarray(fitted.classes_, dtype=np.intp)] = fitted.predict_proba(X_test)
    return {f"holdout_{k}": v for k, v in scores(predicted, proba, y_test, task,
                                                  classes).items()}


def predictions(fitted, X, task: str) -> tuple:
    """(class indices or values, probabilities or None) of a fitted model for rows X."""
    predicted = fitted.predict(X)
    if task == "regression":
        return predicted, None
    proba = fitted.predict_proba(X) if hasattr(fitted, "predict_proba") else None
    return np.searchsorted(fitted.classes_, predicted), proba  # classes_ are sorted


def scores(predicted, proba, y, task: str, classes) -> dict:
    """Accuracy and log loss, or R², MAE and RMSE, of predictions for targets y."""
    if task == "regression":
        found = {"r2": r2_score(y, predicted), "mae": mean_absolute_error(y, predicted),
                 "rmse": root_mean_squared_error(y, predicted)}
    else:
        found = {"accuracy": accuracy_score(y, predicted)}
        if proba is not None:
            found["log_loss"] = log_loss(y, proba, labels=range(len(classes)))
    return {**{k: float(f"{v:.6g}") for k, v in found.items()}, "rows": int(len(y))}


def train_csv(csv_path: Path, target: str, output: Path, task: str | None = None,
              name: str | None = None, estimator: str = LINEAR, units: dict | None = None) -> dict:
    """Fit the baseline on every row of the CSV, write it and its sidecar, return the sidecar."""
    table = read_csv(csv_path, target, units)
    task, classes, y = target_classes(table.target, task, target)
    X = table.objects()
    estimator = make_pipeline(table, task, estimator)
    with _fitting(table), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # reported below, not fatal
        metrics = holdout_metrics(estimator, X, y, task, classes)
    with _fitting(table), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        estimator.fit(X, y)
    for warning in caught:
        print(f"train.py: warning: {warning.message}", file=sys.stderr)
    return _write(estimator, output, name=name or csv_path.stem, task=task, target=target,
                  classes=classes, features=features_of(table), table=table, metrics=metrics)


@contextlib.contextmanager
def _fitting(table: Table):
    """scikit-learn's refusal of the table (overflow, say), as one TrainError line."""
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            yield
    except (ValueError, FloatingPointError, OverflowError) as e:
        huge = [name for name, column in zip(table.names, table.columns)
                if not isinstance(column, list) and np.nanmax(np.abs(column)) > HUGE]
        hint = (f": {', '.join(huge)} {'has' if len(huge) == 1 else 'have'} numbers beyond "
                f"±{HUGE:g}, which overflow when scaled; rescale them (a log, or other units)"
                if huge else "")
        raise TrainError(f"scikit-learn cannot fit the table ({type(e).__name__}: "
                         f"{_first_line(e)}){hint}") from None


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [""])[0]


def features_of(table: Table) -> list:
    """model.json's features: each column's type, whether it had missing cells, and its
    training range, mean and spread (numbers) or categories with their shares."""
    features = []
    for name, column in zip(table.names, table.columns):
        if isinstance(column, list):
            seen = [v for v in column if v is not None]
            values, counts = np.unique(np.array(seen, dtype=object), return_counts=True)
            shares = {str(v): round(float(c) / len(seen), DIGITS)
                      for v, c in zip(values.tolist(), counts.tolist())}
            features.append({"name": name, "type": "category", "categories": shares,
                             "missing": len(seen) < len(column)})
        else:
            present = column[~np.isnan(column)]
            unit = {"unit": table.units[name]} if name in table.units else {}
            features.append({"name": name, "type": "number", **unit,
                             "decimals": table.decimals[name],
                             "missing": len(present) < len(column), **_number_stats(present)})
    return features


def _number_stats(column: np.ndarray) -> dict:
    return {"min": float(column.min()), "max": float(column.max()),
            "mean": round(float(column.mean()), DIGITS), "std": round(float(column.std()), DIGITS)}


def _numbers(table: Table) -> dict:
    """The numbers' present values by name, for the reference bins of drift reports."""
    return {name: column[~np.isnan(column)] for name, column in zip(table.names, table.columns)
            if not isinstance(column, list)}


# --- packaging a fitted model ----------------------------------------------------------------

def package(model_path: Path, csv_path: Path, target: str, output: Path,
            name: str | None = None, holdout: bool = True, units: dict | None = None) -> dict:
    """Write a fitted model with a sidecar read from the CSV: the column types, ranges and
    categories, the model's scores on the CSV's rows (csv_: its training rows, perhaps) and
    (holdout) those of a copy refitted on 80% of them, on the other 20%. An XGBoost or
    LightGBM model (a pickle, or a booster's own file) is converted to its library's model
    format."""
    table = read_csv(csv_path, target, units)
    if model_path.suffix.lower() in convert.BOOSTER_FILES:
        metadata = _package_booster_file(model_path, table, csv_path, target, output, name)
        if holdout:
            print("train.py: no holdout_ metrics: a booster file holds no parameters to refit "
                  "a copy with; package the fitted estimator's pickle for them",
                  file=sys.stderr)
        return metadata
    fitted = _read_fitted(model_path)
    try:
        served, versions = convert.convert(fitted)
    except convert.ConversionError as e:
        raise TrainError(str(e)) from None
    classes_ = getattr(fitted, "classes_", None)
    task, classes, y = _fitted_target(classes_, table.target)
    _check_columns(fitted, table, target)
    X = table.objects() if not table.numeric() else np.column_stack(table.columns)
    if getattr(fitted, "feature_names_in_", None) is not None:
        X = _frame(table, X)  # fitted on a DataFrame: asked with one, as its owner would
    try:
        answers = predictions(fitted, X, task)
    except Exception as e:  # whatever the model raises on rows it cannot take
        raise TrainError(
            f"the model cannot predict the CSV's rows, given in column order as a NumPy "
            f"array or (fitted with column names) a pandas DataFrame ({type(e).__name__}: "
            f"{e}); fit it on df.drop(columns=[{target!r}]) of the CSV read by pandas, or on "
            f"its .to_numpy(dtype=object)") from None
    metrics = {f"csv_{k}": v for k, v in scores(*answers, y, task, classes).items()}
    if holdout:
        metrics = {**_refitted_holdout(fitted, X, y, task, classes, table), **metrics}
    output.parent.mkdir(parents=True, exist_ok=True)
    copied = served is fitted
    if copied and output.resolve() != model_path.resolve():
        shutil.copyfile(model_path, output)
    metadata = _write(served, output, name=name or csv_path.stem, task=task, target=target,
                      classes=classes, features=features_of(table), table=table,
                      metrics=metrics, dump=not copied,
                      libraries=versions, fitted=fitted)
    _check_loads(output)
    return metadata


def _refitted_holdout(fitted, X, y, task: str, classes, table: Table) -> dict:
    """holdout_metrics of a clone of the user's model (its parameters, unfitted), or {} with
    the reason printed where it cannot be refitted from the CSV alone."""
    try:
        with _fitting(table), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return holdout_metrics(fitted, X, y, task, classes)
    except Exception as e:  # whatever the user's model raises when refitted without us
        print(f"train.py: no holdout_ metrics: a copy of the model could not be refitted "
              f"on 80% of the CSV ({type(e).__name__}: {_first_line(e)})", file=sys.stderr)
        return {}


def _frame(table: Table, X: np.ndarray):
    """The CSV's rows as a pandas DataFrame: numbers as floats, text as objects (NaN missing).
    pandas is the model's owner's (it was fitted on a DataFrame); serving never imports it."""
    try:
        import pandas
    except ImportError:
        raise TrainError("the model was fitted on a pandas DataFrame: packaging it needs "
                         "pandas installed here") from None
    return pandas.DataFrame({name: (X[:, j] if isinstance(table.columns[j], list)
                                    else X[:, j].astype(float))
                             for j, name in enumerate(table.names)})


def _read_fitted(model_path: Path):
    """The fitted model in a joblib file: through the allowlist, or (an XGBoost or LightGBM
    model, which only its library unpickles) with joblib and the library, as its owner would."""
    try:
        data = model_path.read_bytes()
    except OSError as e:
        raise TrainError(f"cannot read {model_path}: {e.strerror}") from None
    try:
        return artifact.unpickle(data, model_path, stand_ins=False)
    except ModelUnavailable as e:
        refused = next((name for name in convert.LIBRARIES if f"global {name}." in e.message),
                       None)
        if refused is None:
            raise TrainError(f"{e.message} (the classes served are listed in docs/model.md)") \
                from None
    try:
        convert.library(refused)
    except convert.ConversionError as e:
        raise TrainError(str(e)) from None
    try:
        return joblib.load(model_path)
    except Exception as e:  # whatever unpickling the user's file raises
        raise TrainError(f"cannot load {model_path} with {refused}: {e!r}") from None


def _package_booster_file(model_path: Path, table, csv_path: Path, target: str, output: Path,
                          name: str | None) -> dict:
    """A booster saved by save_model (XGBoost .json or .ubj, LightGBM .txt), packaged: it takes
    the CSV's columns as numbers, in order, and is scored on them as served."""
    try:
        booster, version = convert.read_booster_file(model_path)
    except convert.ConversionError as e:
        raise TrainError(str(e)) from None
    if not table.numeric():
        raise TrainError("a booster file takes numbers only, but the CSV has text columns; "
                         "fit a Pipeline with an OrdinalEncoder and package its pickle")
    classes_ = np.arange(booster.classes) if booster.classes else None
    task, classes, y = _fitted_target(classes_, table.target)
    features = features_of(table)
    metadata = _write(booster, output, name=name or csv_path.stem, task=task, target=target,
                      classes=classes, features=features, table=table,
                      metrics={}, libraries={booster.library: version})
    model = _check_loads(output)
    if model.computed is None:
        raise TrainError(f"the {booster.library} model does not fit the CSV's "
                         f"{len(features)} columns besides {target!r}")
    labels, proba = model.predict(np.column_stack(table.columns), probabilities=True)
    metadata["metrics"] = {f"csv_{k}": v for k, v in scores(labels, proba, y, task,
                                                             classes).items()}
    sidecar_path(output).write_text(json.dumps(metadata, indent=2) + "\n")
    return metadata


def _check_loads(output: Path):
    """The packaged model as served (artifact.load): a TrainError if it does not load."""
    try:
        return served_model.Model(*artifact.load(output))
    except ModelUnavailable as e:
        raise TrainError(f"the packaged model does not load: {e.message}") from None


def _fitted_target(classes_, cells: list) -> tuple:
    """(task, classes, y) of a fitted model on the CSV's target cells."""
    if classes_ is None:
        return target_classes(cells, "regression")
    classes = [str(c) for c in classes_.tolist()]
    labels = [str(int(n)) if n is not None and math.isfinite(n) and n == int(n) else c
              for c, n in zip(cells, map(_number, cells))] \
        if classes_.dtype.kind in "iuf" else cells
    unknown = sorted(set(labels) - set(classes))
    if unknown:
        raise TrainError(f"the CSV's target has values {unknown[:5]} that are not among the "
                         f"model's classes {classes[:10]}{_codes_advice(classes_, labels)}")
    return "classification", classes, np.array([classes.index(v) for v in labels])


def _codes_advice(classes_, labels: list) -> str:
    """How to fix labels that are the classes' codes, or classes that are the labels' codes."""
    codes = list(range(len(classes_)))
    if classes_.dtype.kind in "iu" and classes_.tolist() == codes:
        if len(set(labels)) <= len(codes):
            return (f": the model was fitted on the codes 0..{len(codes) - 1} of its classes; "
                    f"write those codes in the CSV's target, or refit the model on the "
                    f"labels themselves (y = the labels, not a LabelEncoder's codes) so that "
                    f"it answers them")
    elif all(label.isdigit() for label in labels):
        return (": the CSV's target holds numbers where the model's classes are labels; "
                "write the labels in the CSV's target")
    return ""


def _check_columns(fitted, table: Table, target: str):
    width = getattr(fitted, "n_features_in_", None)
    if width != len(table.names):
        raise TrainError(f"the model takes {width} features, but the CSV has "
                         f"{len(table.names)} columns besides {target!r}: {table.names}")
    names = getattr(fitted, "feature_names_in_", None)
    if names is not None and list(names) != table.names:
        raise TrainError(f"the model was fitted on columns {list(names)}, but the CSV has "
                         f"{table.names} besides {target!r}: give the CSV those columns in "
                         f"that order")


# --- writing ---------------------------------------------------------------------------------

def _write(estimator, output: Path, *, name, task, target, classes, features, table, metrics,
           dump=True, libraries=None, fitted=None) -> dict:
    """Write the estimator (unless it is there already) and its model.json; `fitted`, if
    given, is what the estimator was converted from (convert.py), and what it describes."""
    if dump:
        output.parent.mkdir(parents=True, exist_ok=True)
        joblib.dump(estimator, output)
    metadata = {"name": name, "task": task, "target": target}
    if classes is not None:
        metadata["classes"] = classes
        # What the estimator's own predict() answers, as MLflow's server answers it.
        answers = getattr(fitted if fitted is not None else estimator, "classes_", None)
        metadata["predict_values"] = (np.asarray(answers).tolist() if answers is not None
                                      else list(range(len(classes))))
    metadata.update({
        "estimator": repr(estimator if fitted is None else fitted),
        "features": features,
        "training_rows": int(table.rows),
        "left_out_rows": list(table.left_out),
        # Per number, bins across the training range and the training share in each: the
        # reference distribution of drift reports (drift.py, docs/drift.md).
        "training_distribution": reference(_numbers(table)),
        "metrics": metrics,
        "versions": {
            "python": platform.python_version(),
            "scikit-learn": sklearn.__version__,
            "joblib": joblib.__version__,
            "numpy": np.__version__,
            # The library an XGBoost or LightGBM model was converted from (convert.py).
            **(libraries or {}),
        },
        "sha256": hashlib.sha256(output.read_bytes()).hexdigest(),
    })
    sidecar_path(output).write_text(json.dumps(metadata, indent=2) + "\n")
    return metadata


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="train.py", description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[2:14]))
    parser.add_argument("--csv", type=Path, help="a table with a header row to train on")
    parser.add_argument("--target", help="the CSV column to predict")
    parser.add_argument("--task", choices=("classification", "regression"),
                        help="default: classification for a text target or one of at most "
                             f"{MAX_CLASS_LEVELS} whole numbers, else regression")
    parser.add_argument("--name", help="the model's name (default: the CSV file's stem)")
    parser.add_argument("--estimator", choices=ESTIMATORS,
                        help=f"what to fit after the preprocessing (default: {LINEAR})")
    parser.add_argument("--model", type=Path,
                        help="a fitted model to package: a joblib.dump pickle, or an XGBoost "
                             "(.json, .ubj) or LightGBM (.txt) booster's save_model file")
    parser.add_argument("--unit", action="append", default=[], metavar="COLUMN=UNIT",
                        help="a number column's unit, shown in forms, messages and the CLI "
                             "(repeat for more: --unit weight=kg --unit height=cm)")
    parser.add_argument("--no-holdout", action="store_true",
                        help="with --model: skip refitting a copy on 80%% of the CSV to score "
                             "it on the rest (holdout_ metrics)")
    parser.add_argument("--output", type=Path,
                        help="where to write the model (default: model.joblib beside this "
                             "file for iris, else the CSV's stem + .joblib here)")
    args = parser.parse_args(argv)
    if (args.csv is None) != (args.target is None):
        parser.error("--csv and --target go together")
    if args.target is not None and not args.target.strip():
        parser.error("--target is empty: it names the CSV column to predict (make model: "
                     "TARGET=COLUMN)")
    if args.no_holdout and not args.model:
        parser.error("--no-holdout goes with --model")
    units = dict(unit.partition("=")[::2] for unit in args.unit)
    if args.unit and args.csv is None:
        parser.error("--unit needs --csv and --target")
    if any(not column.strip() or not unit.strip() for column, unit in units.items()):
        parser.error("--unit takes COLUMN=UNIT, such as --unit weight=kg")
    if args.csv is None and (args.model or args.task or args.name):
        parser.error("--model, --task and --name need --csv and --target")
    if args.model and args.task:
        parser.error("--task is read from the fitted model; leave it out with --model")
    if args.model and args.estimator:
        parser.error("--estimator fits a model; leave it out with --model")
    if args.estimator and args.csv is None:
        parser.error("--estimator needs --csv and --target")
    try:
        if args.csv is None:
            output = args.output or Path(__file__).with_name("model.joblib")
            metadata = train(output)
        else:
            output = args.output or Path(args.csv.stem + ".joblib")
            if args.model:
                metadata = package(args.model, args.csv, args.target, output, args.name,
                                   holdout=not args.no_holdout, units=units)
            else:
                metadata = train_csv(args.csv, args.target, output, args.task, args.name,
                                     args.estimator or LINEAR, units)
    except TrainError as e:
        print(f"train.py: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # writing the output: a directory, a disk full, no permission
        print(f"train.py: cannot write {e.filename or output}: {e.strerror}", file=sys.stderr)
        return 2
    for left_out in metadata["left_out_rows"]:
        lines = ", ".join(map(str, left_out["lines"]))
        more = ", ..." if left_out["rows"] > len(left_out["lines"]) else ""
        print(f"train.py: left out {left_out['rows']} rows: {left_out['reason']} "
              f"(lines {lines}{more})", file=sys.stderr)
    print(f"wrote {output} and {sidecar_path(output)}: {metadata['name']}, "
          f"{metadata['task']} of {metadata['target']}")
    print("metrics: " + ", ".join(f"{k} {v}" for k, v in metadata["metrics"].items()))
    if any(key.startswith("csv_") for key in metadata["metrics"]):
        note = ("csv_: scored on the CSV's own rows, the model's training rows if it was "
                "fitted on them, so not a held-out score")
        if any(key.startswith("holdout_") for key in metadata["metrics"]):
            note += "; holdout_: a copy refitted on 80% of them, scored on the other 20%"
        print(f"({note})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
