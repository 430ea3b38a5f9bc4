"""Trees, forests and boosting, packaged by train.py --model and served by NumPy, answer
exactly as their own libraries do.

The oracles are the libraries themselves (scikit-learn, XGBoost, LightGBM), asked for
predict and predict_proba on the fitted object the test made. The rows are a table with
missing numbers, a category column with missing and never-seen categories, and cells
exactly on the models' split thresholds (and one float32 step either side), where a
comparison done in the wrong type or direction answers differently.
"""

import os
import subprocess
import sys
import warnings
from pathlib import Path
from unittest import mock

import joblib
import lightgbm
import numpy as np
import pytest
import xgboost
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (ExtraTreesRegressor, GradientBoostingClassifier,
                              GradientBoostingRegressor, HistGradientBoostingClassifier,
                              HistGradientBoostingRegressor, RandomForestClassifier,
                              RandomForestRegressor)
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

import train
from harness import ROOT, FunctionServer
from iris_predict import settings
from iris_predict.errors import InvalidRequest
from iris_predict.model import artifact, forest, served
from tests.models import encode, write_csv

ROWS = 300
COLOURS = ("red", "green", "blue", "white", "black")
NUMBERS = ("height", "width", "count")
# Relative: the libraries' own arithmetic is followed step by step, so most answers are
# bitwise equal; 1e-12 leaves room for a compiler that fuses a multiply and an add (FMA)
# in a library's loop on another CPU.
RTOL = 1e-12


def make_rows(seed: int, rows: int = ROWS) -> np.ndarray:
    """Object rows: height (normal), width (10% missing), count (whole numbers: cells on
    thresholds), colour (a category, 5% missing)."""
    rng = np.random.default_rng(seed)
    height = rng.normal(50, 12, rows)
    width = np.where(rng.random(rows) < 0.1, np.nan, rng.uniform(0, 30, rows))
    count = rng.integers(0, 12, rows).astype(float)
    colour = np.array([np.nan if r < 0.05 else COLOURS[int(c)]
                       for r, c in zip(rng.random(rows), rng.integers(0, 5, rows))],
                      dtype=object)
    return np.column_stack([height, width, count, colour]).astype(object)


def score_of(rows: np.ndarray) -> np.ndarray:
    colour = {"red": 1.0, "green": -0.5, "blue": 0.3, "white": 0.0, "black": -1.0}
    width = np.nan_to_num(rows[:, 1].astype(float), nan=15.0)
    return ((rows[:, 0].astype(float) - 50) / 12 + (width - 15) / 10
            + (rows[:, 2].astype(float) - 6) / 4
            + np.array([colour.get(c, 0.0) if isinstance(c, str) else 0.0 for c in rows[:, 3]]))


TARGETS = {
    "binary": lambda s: (s > 0).astype(int),
    "three": lambda s: np.digitize(s, [-0.7, 0.7]),
    "value": lambda s: 30 + 10 * s,
    "positive": lambda s: np.exp(s / 2),          # poisson, gamma, tweedie
    "share": lambda s: 1 / (1 + np.exp(-s)),       # reg:logistic
}


def numbers_then_codes(unknown=-1) -> ColumnTransformer:
    """Numbers as they are, the colour as an ordinal code (the usual encoder before trees)."""
    return ColumnTransformer([
        ("numbers", "passthrough", [0, 1, 2]),
        ("colour", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=unknown),
         [3])])


def numbers_then_one_hot(**options) -> ColumnTransformer:
    """The colour one-hot encoded by scikit-learn's default encoder: sparse blocks, stacked
    dense by the ColumnTransformer; a missing colour is a category of its own."""
    return ColumnTransformer([("numbers", "passthrough", [0, 1, 2]),
                              ("colour", OneHotEncoder(**options), [3])])


def imputed_then_codes() -> ColumnTransformer:
    """For GradientBoosting, which takes no missing values."""
    return ColumnTransformer([
        ("numbers", SimpleImputer(strategy="median"), [0, 1, 2]),
        ("colour", Pipeline([("impute", SimpleImputer(strategy="most_frequent")),
                             ("code", OrdinalEncoder(handle_unknown="use_encoded_value",
                                                     unknown_value=-1))]), [3])])


def pipe(final, columns=None) -> Pipeline:
    return Pipeline([("columns", columns or numbers_then_codes()), ("model", final)])


XGB = dict(n_estimators=30, max_depth=4, learning_rate=0.3, n_jobs=1)
LGB = dict(n_estimators=30, num_leaves=15, min_child_samples=5, verbose=-1, n_jobs=1)
CODED = {"model__categorical_feature": [3]}  # LightGBM: the colour's code is a category

# id: (target, estimator, fit keyword arguments)
MODELS = {
    "decision tree classifier": ("three", lambda: pipe(DecisionTreeClassifier(random_state=0)), {}),
    "decision tree regressor": ("value", lambda: pipe(DecisionTreeRegressor(max_depth=8)), {}),
    "random forest classifier": ("binary", lambda: pipe(RandomForestClassifier(
        30, max_depth=8, random_state=0)), {}),
    "random forest regressor": ("value", lambda: pipe(RandomForestRegressor(
        20, random_state=0)), {}),
    "extra trees regressor": ("value", lambda: pipe(ExtraTreesRegressor(20, random_state=0)), {}),
    "gradient boosting binary": ("binary", lambda: pipe(GradientBoostingClassifier(
        n_estimators=30, random_state=0), imputed_then_codes()), {}),
    "gradient boosting three classes": ("three", lambda: pipe(GradientBoostingClassifier(
        n_estimators=20, random_state=0), imputed_then_codes()), {}),
    "gradient boosting exponential": ("binary", lambda: pipe(GradientBoostingClassifier(
        loss="exponential", n_estimators=20), imputed_then_codes()), {}),
    "gradient boosting huber": ("value", lambda: pipe(GradientBoostingRegressor(
        loss="huber", n_estimators=20), imputed_then_codes()), {}),
    "random forest one-hot": ("three", lambda: pipe(RandomForestClassifier(
        20, random_state=0), numbers_then_one_hot(handle_unknown="ignore")), {}),
    "hist gradient boosting categories": ("three", lambda: pipe(HistGradientBoostingClassifier(
        max_iter=30, categorical_features=[3], random_state=0)), {}),
    "hist gradient boosting binary": ("binary", lambda: pipe(HistGradientBoostingClassifier(
        max_iter=30, categorical_features=[3]), numbers_then_codes(np.nan)), {}),
    "hist gradient boosting poisson": ("positive", lambda: pipe(HistGradientBoostingRegressor(
        loss="poisson", max_iter=30, categorical_features=[3])), {}),
    "xgboost binary:logistic": ("binary", lambda: pipe(xgboost.XGBClassifier(**XGB)), {}),
    "xgboost multi:softprob": ("three", lambda: pipe(xgboost.XGBClassifier(**XGB)), {}),
    "xgboost multi:softmax": ("three", lambda: pipe(xgboost.XGBClassifier(
        objective="multi:softmax", **XGB)), {}),
    "xgboost categories": ("three", lambda: pipe(xgboost.XGBClassifier(
        enable_categorical=True, feature_types=["q", "q", "q", "c"], max_cat_to_onehot=1,
        **XGB)), {}),
    "xgboost one-hot": ("binary", lambda: pipe(xgboost.XGBClassifier(**XGB),
                                               numbers_then_one_hot(handle_unknown="ignore")), {}),
    "xgboost reg:squarederror": ("value", lambda: pipe(xgboost.XGBRegressor(
        base_score=7.25, **XGB)), {}),
    "xgboost reg:logistic": ("share", lambda: pipe(xgboost.XGBRegressor(
        objective="reg:logistic", **XGB)), {}),
    "xgboost count:poisson": ("positive", lambda: pipe(xgboost.XGBRegressor(
        objective="count:poisson", **XGB)), {}),
    "lightgbm binary": ("binary", lambda: pipe(lightgbm.LGBMClassifier(**LGB)), CODED),
    "lightgbm multiclass": ("three", lambda: pipe(lightgbm.LGBMClassifier(**LGB)), CODED),
    "lightgbm regression": ("value", lambda: pipe(lightgbm.LGBMRegressor(**LGB)), CODED),
    "lightgbm l1": ("value", lambda: pipe(lightgbm.LGBMRegressor(objective="l1", **LGB)), {}),
    "lightgbm huber": ("value", lambda: pipe(lightgbm.LGBMRegressor(objective="huber", **LGB)),
                       {}),
    "lightgbm poisson": ("positive", lambda: pipe(lightgbm.LGBMRegressor(
        objective="poisson", **LGB)), CODED),
    "lightgbm gamma": ("positive", lambda: pipe(lightgbm.LGBMRegressor(
        objective="gamma", **LGB)), {}),
    "lightgbm tweedie": ("positive", lambda: pipe(lightgbm.LGBMRegressor(
        objective="tweedie", **LGB)), {}),
    "lightgbm zero_as_missing": ("value", lambda: pipe(lightgbm.LGBMRegressor(
        zero_as_missing=True, **LGB)), {}),
    "lightgbm use_missing=False": ("value", lambda: pipe(lightgbm.LGBMRegressor(
        use_missing=False, **LGB)), {}),
}


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    """(directory, training rows, score per row)."""
    directory = tmp_path_factory.mktemp("trees")
    rows = make_rows(7)
    return directory, rows, score_of(rows)


def write_table(directory: Path, rows, y, target: str) -> Path:
    cells = [[None if isinstance(v, float) and np.isnan(v) else v for v in row] + [t]
             for row, t in zip(rows.tolist(), y.tolist())]
    header = [*NUMBERS, "colour"][:rows.shape[1]]
    return write_csv(directory / f"{target}.csv", [*header, target], cells)


def package(directory: Path, fitted, rows, y, target: str, name: str) -> Path:
    """train.py --model: the fitted object pickled, packaged beside a CSV of its rows."""
    csv = write_table(directory, rows, y, target)
    return packaged(directory, fitted, csv, target,
                    name.replace(" ", "_").replace(":", "_").replace("=", "_"))


def packaged(directory: Path, fitted, csv: Path, target: str, stem: str) -> Path:
    """The model file train.py --model writes for the fitted object, pickled, and the CSV."""
    pickled = directory / f"{stem}.pkl"
    joblib.dump(fitted, pickled)
    output = directory / f"{stem}.joblib"
    assert train.main(["--model", str(pickled), "--csv", str(csv), "--target", target,
                       "--output", str(output)]) == 0
    return output


def thresholds(fitted) -> dict:
    """{input column: split values} of the model's numbers, for cells exactly on them."""
    final = fitted[-1] if isinstance(fitted, Pipeline) else fitted
    found = {}

    def add(features, values):
        for f, t in zip(np.asarray(features).tolist(), np.asarray(values).tolist()):
            if 0 <= f < len(NUMBERS) and np.isfinite(t):
                found.setdefault(f, set()).add(float(t))

    if isinstance(final, (xgboost.XGBModel, lightgbm.LGBMModel)):
        frame = (final.get_booster() if isinstance(final, xgboost.XGBModel)
                 else final.booster_).trees_to_dataframe()
        if isinstance(final, xgboost.XGBModel):
            frame = frame[frame["Feature"] != "Leaf"]
            add(frame["Feature"].str.lstrip("f").astype(int), frame["Split"])
        else:
            frame = frame[frame["decision_type"] == "<="]  # not a category split
            add(frame["split_feature"].str.replace("Column_", "").astype(int),
                frame["threshold"].astype(float))
        return found
    if hasattr(final, "_predictors"):
        for predictor in [p for iteration in final._predictors for p in iteration]:
            nodes = predictor.nodes[predictor.nodes["is_leaf"] == 0]
            add(nodes["feature_idx"], nodes["num_threshold"])
        return found
    estimators = getattr(final, "estimators_", [final])
    for estimator in np.ravel(estimators):
        add(estimator.tree_.feature, estimator.tree_.threshold)
    return found


def probe_rows(fitted, rows) -> np.ndarray:
    """The training rows, new rows, never-seen and missing categories, and each number set
    exactly on a split threshold and one float32 step either side of it."""
    extra = make_rows(99, 200)
    unseen = rows[:20].copy()
    unseen[:, 3] = "purple"
    missing = rows[20:30].copy()
    missing[:, 1] = np.nan
    missing[:, 3] = np.nan
    probes = []
    base = rows[0]
    for column, values in thresholds(fitted).items():
        for value in sorted(values)[:40]:
            for cell in (value, float(np.nextafter(np.float32(value), np.float32(np.inf))),
                         float(np.nextafter(np.float32(value), np.float32(-np.inf)))):
                row = base.copy()
                row[column] = cell
                probes.append(row)
    return np.vstack([rows, extra, unseen, missing, *([np.array(probes)] if probes else [])])


def check_answers(model: served.Model, fitted, rows: np.ndarray, classifier: bool):
    X = encode(model.metadata, rows)
    # Categories the CSV never had are -1 to Model, and their own string to the oracle.
    labels, proba = model.predict(X, probabilities=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unknown categories, feature names
        expected = fitted.predict(rows)
        if classifier:
            expected_proba = fitted.predict_proba(rows)
    # One row and a few rows at a time take other paths (forest.Forest._one_row,
    # forest.ADDED_ROW_BY_ROW, links.FEW): 30 rows alone, 15 three at a time, 15 at once.
    few = [model.predict(X[i:i + 1], probabilities=True) for i in range(30)] + [
        model.predict(X[i:i + 3], probabilities=True) for i in range(30, 45, 3)] + [
        model.predict(X[45:60], probabilities=True)]
    # A batch in blocks of a few rows, shared among three threads (forest.Ensemble.scores).
    with mock.patch.object(forest, "BLOCK_CELLS", 7 * len(model.computed.forest.roots)), \
            mock.patch.object(settings, "TREE_THREADS", 3):
        blocked_labels, blocked_proba = model.predict(X, probabilities=True)
    few_labels = np.concatenate([f[0] for f in few])
    if classifier:
        assert labels.tolist() == np.asarray(expected).astype(int).tolist()
        assert few_labels.tolist() == labels[:60].tolist()
        assert blocked_labels.tolist() == labels.tolist()
        np.testing.assert_allclose(proba, expected_proba, rtol=RTOL, atol=0)
        np.testing.assert_allclose(blocked_proba, expected_proba, rtol=RTOL, atol=0)
        np.testing.assert_allclose(np.concatenate([f[1] for f in few]), expected_proba[:60],
                                   rtol=RTOL, atol=0)
    else:
        np.testing.assert_allclose(labels, expected, rtol=RTOL, atol=0)
        np.testing.assert_allclose(few_labels, expected[:60], rtol=RTOL, atol=0)
        np.testing.assert_allclose(blocked_labels, expected, rtol=RTOL, atol=0)


@pytest.mark.parametrize("name", MODELS)
def test_served_by_numpy_exactly_as_the_library(table, name):
    directory, rows, score = table
    target, make, fit = MODELS[name]
    y = TARGETS[target](score)
    fitted = make().fit(rows, y, **fit)
    output = package(directory, fitted, rows, y, target, name)
    model = served.Model(*artifact.load(output))
    assert model.computed is not None, "served by NumPy, not the library"
    check_answers(model, fitted, probe_rows(fitted, rows), target in ("binary", "three"))


def test_the_default_one_hot_encoder_refuses_what_it_never_saw(table):
    """OneHotEncoder() raises on a category it did not see in training; served by NumPy,
    the request is refused (a 4xx naming the feature), not answered as all zeros."""
    directory, rows, score = table
    y = TARGETS["three"](score)
    fitted = pipe(RandomForestClassifier(10, random_state=0), numbers_then_one_hot()).fit(rows, y)
    model = served.Model(*artifact.load(package(directory, fitted, rows, y, "three", "strict")))
    assert model.computed is not None, "served by NumPy, not the library"
    check_answers(model, fitted, np.vstack([rows, make_rows(99, 200)]), True)
    unseen = rows[:3].copy()
    unseen[1, 3] = "purple"
    with pytest.raises(ValueError, match="unknown categor"):
        fitted.predict(unseen)
    with pytest.raises(InvalidRequest, match="colour: the model's encoder refuses"):
        model.predict(encode(model.metadata, unseen), probabilities=True)


def test_early_stopping_serves_the_best_iteration(table):
    directory, rows, score = table
    y = TARGETS["three"](score)
    numbers = rows[:, :3].astype(float)
    for fitted in (xgboost.XGBClassifier(**{**XGB, "n_estimators": 200},
                                         early_stopping_rounds=3),
                   lightgbm.LGBMClassifier(**{**LGB, "n_estimators": 200})):
        fit = ({"eval_set": [(numbers[200:], y[200:])], "verbose": False}
               if isinstance(fitted, xgboost.XGBModel) else
               {"eval_set": [(numbers[200:], y[200:])],
                "callbacks": [lightgbm.early_stopping(3, verbose=False)]})
        fitted.fit(numbers[:200], y[:200], **fit)
        best = (fitted.best_iteration if isinstance(fitted, xgboost.XGBModel)
                else fitted.best_iteration_)
        assert 0 < best < 150  # it stopped early
        csv = write_table(directory, rows[:, :3], y, "three")
        model = served.Model(*artifact.load(packaged(directory, fitted, csv, "three",
                                                     "stopped")))
        labels, proba = model.predict(numbers, probabilities=True)
        assert labels.tolist() == fitted.predict(numbers).tolist()
        np.testing.assert_allclose(proba, fitted.predict_proba(numbers), rtol=RTOL, atol=0)


@pytest.mark.parametrize("suffix", [".json", ".ubj", ".txt"])
def test_booster_files_are_served(table, suffix):
    """A Booster's save_model file, XGBoost's JSON or UBJSON or LightGBM's text."""
    directory, rows, score = table
    numbers = rows[:, :3].astype(float)
    y = TARGETS["binary"](score)
    path = directory / f"booster{suffix}"
    if suffix == ".txt":
        booster = lightgbm.train({"objective": "binary", "verbose": -1, "num_leaves": 7},
                                 lightgbm.Dataset(numbers, y), num_boost_round=20)
        expected = booster.predict(numbers)
    else:
        booster = xgboost.train({"objective": "binary:logistic", "max_depth": 3},
                                xgboost.DMatrix(numbers, y), num_boost_round=20)
        expected = booster.predict(xgboost.DMatrix(numbers))
    booster.save_model(str(path))
    csv = write_table(directory, rows[:, :3], y, "binary")
    output = directory / f"booster_{suffix[1:]}.joblib"
    assert train.main(["--model", str(path), "--csv", str(csv), "--target", "binary",
                       "--output", str(output)]) == 0
    model = served.Model(*artifact.load(output))
    assert model.metadata["versions"][("lightgbm" if suffix == ".txt" else "xgboost")]
    _, proba = model.predict(numbers, probabilities=True)
    np.testing.assert_allclose(proba[:, 1], expected, rtol=RTOL, atol=0)


def squared_error(y, predicted):
    """A custom objective: its gradient and hessian."""
    return predicted - y, np.ones_like(predicted)


REFUSED = {
    "xgboost gblinear": (lambda: xgboost.XGBClassifier(booster="gblinear", n_estimators=5),
                         "gblinear"),
    "xgboost dart": (lambda: xgboost.XGBClassifier(booster="dart", n_estimators=5), "dart"),
    "xgboost ranking": (lambda: xgboost.XGBClassifier(objective="rank:pairwise",
                                                      n_estimators=5), "rank:pairwise"),
    "xgboost custom objective": (lambda: xgboost.XGBRegressor(
        objective=squared_error, n_estimators=5), "custom objective"),
    "lightgbm linear_tree": (lambda: lightgbm.LGBMRegressor(linear_tree=True, n_estimators=5,
                                                            verbose=-1), "linear_tree"),
    "lightgbm rf": (lambda: lightgbm.LGBMRegressor(boosting_type="rf", n_estimators=5,
                                                   subsample=0.5, subsample_freq=1,
                                                   verbose=-1), "boosting='rf'"),
    "lightgbm cross_entropy": (lambda: lightgbm.LGBMRegressor(objective="cross_entropy",
                                                              n_estimators=5, verbose=-1),
                               "cross_entropy"),
}


@pytest.mark.parametrize("name", REFUSED)
def test_what_is_not_exact_is_refused_when_packaging(table, tmp_path, name):
    directory, rows, score = table
    make, named = REFUSED[name]
    numbers = rows[:, :3].astype(float)
    fitted = make()
    y = TARGETS["share" if "regress" in type(fitted).__name__.lower() else "binary"](score)
    fitted.fit(numbers, y)
    pickled = tmp_path / "model.pkl"
    joblib.dump(fitted, pickled)
    csv = write_table(tmp_path, rows[:, :3], y, "y")
    done = subprocess.run([sys.executable, "train.py", "--model", str(pickled), "--csv",
                           str(csv), "--target", "y", "--output", str(tmp_path / "out.joblib")],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 2, done.stderr
    assert named in done.stderr and "Traceback" not in done.stderr
    assert "is not served" in done.stderr
    assert not (tmp_path / "out.joblib").exists()


@pytest.mark.parametrize("estimator", ["hist-gradient-boosting", "random-forest"])
def test_train_fits_the_estimator_asked_for(table, tmp_path, estimator):
    directory, rows, score = table
    csv = write_table(tmp_path, rows, TARGETS["three"](score), "kind")
    output = tmp_path / "model.joblib"
    assert train.main(["--csv", str(csv), "--target", "kind", "--estimator", estimator,
                       "--output", str(output)]) == 0
    model = served.Model(*artifact.load(output))
    assert model.computed is not None
    fitted = joblib.load(output)
    check_answers(model, fitted, probe_rows(fitted, rows), classifier=True)


def test_the_serving_process_maps_no_training_library(table, tmp_path):
    """An XGBoost pipeline served: the function answers as XGBoost does, and no process of
    the server has scikit-learn's, XGBoost's or LightGBM's shared objects mapped."""
    directory, rows, score = table
    y = TARGETS["three"](score)
    fitted = pipe(xgboost.XGBClassifier(**XGB)).fit(rows, y)
    output = package(tmp_path, fitted, rows, y, "three", "served xgboost")
    with FunctionServer(env={"MODEL_PATH": str(output)}) as server:
        row = dict(zip([*NUMBERS, "colour"], rows[0].tolist()))
        row = {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()}
        reply = server.call("POST", row, {"Content-Type": "application/json"})
        assert reply.status == 200, reply.body
        assert reply.json()["prediction"] == fitted.predict(rows[:1]).tolist()
        mapped = "".join(Path(f"/proc/{pid}/maps").read_text() for pid in server.tree())
    for library in ("sklearn", "xgboost", "lightgbm", "scipy"):
        assert f"/{library}/" not in mapped, f"{library} is mapped in the serving process"


def test_a_batch_is_shared_among_threads_in_the_serving_process(table, tmp_path):
    """1,000 rows of a 100-tree forest are 100,000 (row x tree) cells, two blocks
    (forest.BLOCK_CELLS) computed on the serving worker's two threads, made after the fork:
    answered as scikit-learn answers them."""
    directory, rows, score = table
    y = TARGETS["three"](score)
    fitted = pipe(RandomForestClassifier(100, max_depth=6, random_state=0)).fit(rows, y)
    output = package(tmp_path, fitted, rows, y, "three", "threaded forest")
    batch = make_rows(11, 1000)
    instances = [[None if isinstance(v, float) and np.isnan(v) else v for v in row]
                 for row in batch.tolist()]
    with FunctionServer(env={"MODEL_PATH": str(output), "TREE_THREADS": "2"}) as server:
        reply = server.call("POST", {"instances": instances,
                                     "parameters": {"probabilities": True}},
                            {"Content-Type": "application/json"})
        assert reply.status == 200, reply.body
        # The worker's own thread and the pool's two, kept for the next batch.
        assert max(len(os.listdir(f"/proc/{pid}/task")) for pid in server.tree()) >= 3
    body = reply.json()
    assert body["predictions"] == fitted.predict(batch).tolist()
    found = [list(p.values()) for p in body["probabilities"]]  # in the classes' order
    np.testing.assert_allclose(found, fitted.predict_proba(batch), rtol=0, atol=5e-7)


def test_tree_threads_must_be_a_positive_integer():
    run = subprocess.run([sys.executable, "-c", "import iris_predict.settings"], cwd=ROOT,
                         env={**os.environ, "TREE_THREADS": "all"}, capture_output=True,
                         text=True, timeout=60)
    assert run.returncode != 0
    assert "TREE_THREADS must be a positive integer, got 'all'" in run.stderr


def test_a_pipeline_fitted_on_a_dataframe_by_column_names(table, tmp_path):
    """scikit-learn's own examples: pandas read the CSV, the ColumnTransformer picks columns
    by name. Served by NumPy (no pandas), answering as the pipeline does on the DataFrame."""
    import pandas as pd

    directory, rows, score = table
    y = TARGETS["three"](score)
    csv = write_table(tmp_path, rows, y, "kind")
    frame = pd.read_csv(csv).drop(columns=["kind"])
    columns = ColumnTransformer([
        ("numbers", "passthrough", list(NUMBERS)),
        ("colour", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1),
         ["colour"])])
    fitted = Pipeline([("columns", columns), ("model", HistGradientBoostingClassifier(
        max_iter=20, categorical_features=[3]))]).fit(frame, y)
    model = served.Model(*artifact.load(packaged(tmp_path, fitted, csv, "kind", "frame")))
    assert model.computed is not None
    labels, proba = model.predict(encode(model.metadata, rows), probabilities=True)
    assert labels.tolist() == fitted.predict(frame).tolist()
    np.testing.assert_allclose(proba, fitted.predict_proba(frame), rtol=RTOL, atol=0)


def test_a_dataframe_pipeline_on_other_columns_is_refused(table, tmp_path):
    import pandas as pd

    directory, rows, score = table
    y = TARGETS["binary"](score)
    csv = write_table(tmp_path, rows, y, "y")
    frame = pd.read_csv(csv).drop(columns=["y"]).rename(columns={"height": "tallness"})
    fitted = Pipeline([("columns", numbers_then_codes()), ("model",
                       DecisionTreeClassifier())]).fit(frame, y)
    pickled = tmp_path / "renamed.pkl"
    joblib.dump(fitted, pickled)
    done = subprocess.run([sys.executable, str(ROOT / "train.py"), "--model", str(pickled),
                           "--csv", str(csv), "--target", "y", "--output",
                           str(tmp_path / "out.joblib")], capture_output=True, text=True)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "tallness" in done.stderr


@pytest.mark.parametrize("damage", ["truncated", "nested", "huge count", "not a model"])
def test_a_damaged_booster_is_refused_not_crashed(damage):
    """The UBJSON reader on bytes that are not XGBoost's: a refusal (Unsupported), whatever
    the bytes say (the SHA-256 check comes first when serving; this is the reader alone)."""
    from iris_predict.model import boosters, compute, estimators, signature

    good = bytes(xgboost.XGBClassifier(n_estimators=2).fit(
        np.arange(20.0).reshape(10, 2), [0, 1] * 5).get_booster().save_raw("ubj"))
    data = {"truncated": good[:len(good) // 2], "nested": b"[" * 100_000,
            "huge count": b"[$d#L" + (2 ** 62).to_bytes(8, "big"),
            "not a model": b"{L\x00\x00\x00\x00\x00\x00\x00\x01aZ}"}[damage]
    features = [{"name": n, "type": "number", "min": 0.0, "max": 1.0, "mean": 0.5, "std": 1.0}
                for n in ("a", "b")]
    shape = signature.from_metadata({
        "name": "t", "task": "classification", "classes": ["0", "1"], "target": "y",
        "features": features, "estimator": "x", "metrics": {}, "versions": {},
        "sha256": "0" * 64})
    booster = boosters.Booster(boosters.XGBOOST, "3.2.0", data, 2, None)
    with pytest.raises(estimators.Unsupported):
        boosters.ensemble(booster, shape, compute.means(shape))


@pytest.mark.parametrize("compress", [3, ("gzip", 3), ("lzma", 3), ("bz2", 3)])
def test_a_compressed_joblib_says_to_dump_it_uncompressed(tmp_path, capsys, compress):
    rows = make_rows(3)
    y = TARGETS["binary"](score_of(rows))
    fitted = pipe(DecisionTreeClassifier(max_depth=3)).fit(rows, y)
    csv = write_table(tmp_path, rows, y, "y")
    joblib.dump(fitted, tmp_path / "small.pkl", compress=compress)
    assert train.main(["--model", str(tmp_path / "small.pkl"), "--csv", str(csv), "--target",
                       "y", "--output", str(tmp_path / "out.joblib")]) == 2
    assert "compress=0" in capsys.readouterr().err


def test_a_model_without_its_sidecar_says_how_to_package_it(tmp_path):
    from iris_predict.errors import ModelUnavailable

    path = tmp_path / "alone.joblib"
    joblib.dump(pipe(DecisionTreeClassifier()).fit(make_rows(3), [0, 1] * (ROWS // 2)), path)
    with pytest.raises(ModelUnavailable, match="train.py --model"):
        artifact.load(path)
