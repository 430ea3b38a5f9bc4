"""train.py --csv and --model, and the models they write as the function serves them.

The oracle is scikit-learn: each model file loaded with joblib.load and asked its own
predict, predict_proba and decision_function on the CSV's rows as the fitted pipeline takes
them (tests/models.py reads them back with the csv module). Expected model.json facts are
counted here from the rows. The function's Model gets the same rows as the protocols hand
it: numbers, and category codes computed here from model.json.
"""

import json
import math
import contextlib
import subprocess
import warnings

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_iris
from sklearn.ensemble import (AdaBoostRegressor, ExtraTreesClassifier, GradientBoostingClassifier,
                              GradientBoostingRegressor, HistGradientBoostingClassifier,
                              HistGradientBoostingRegressor, RandomForestClassifier,
                              RandomForestRegressor)
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.svm import SVC, SVR, LinearSVC
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

import train
from harness import ROOT
from iris_predict.errors import InvalidRequest
from iris_predict.model import artifact, served
from iris_predict.model.artifact import ModelUnavailable
from tests.models import COLOURS, KINDS, SOILS, encode, garden_csv, read_back, write_csv

NAMES = ("wine", "breast_cancer", "diabetes", "garden_kind", "garden_yield")
CLASSIFIERS = ("wine", "breast_cancer", "garden_kind")
# Relative to the size of the terms summed, how far two correct sums of the same terms may
# lie apart: each of at most ~40 terms (Z's columns, then the features) carries a rounding
# error of at most a few units of 2**-53 of its own size.
SUM_ROUNDING = 1e-13


def model(trained):
    """The model file as the function serves it."""
    return served.Model(*artifact.load(trained.path))


def oracle(trained):
    """The same file as scikit-learn itself loads it."""
    return joblib.load(trained.path)


# --- answers ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_train_py_models_are_served_by_numpy(trained_models, name):
    served_model = model(trained_models[name])
    assert served_model.linear is not None  # never falls back to scikit-learn
    assert served_model.signature.name == name


@pytest.mark.parametrize("name", NAMES)
def test_answers_are_scikit_learns_bitwise(trained_models, name):
    trained = trained_models[name]
    served_model, sklearn_model = model(trained), oracle(trained)
    labels, proba = served_model.predict(trained.X.copy(), probabilities=True)
    expected = sklearn_model.predict(trained.rows)
    if name in CLASSIFIERS:
        assert labels.tolist() == expected.tolist()  # classes_ are 0..C-1: indices
        assert np.array_equal(proba, sklearn_model.predict_proba(trained.rows))
    else:
        assert labels.dtype == np.float64 and proba is None
        assert np.array_equal(labels, expected)
    decision = served_model.decision(trained.X.copy())
    scores = sklearn_model.decision_function(trained.rows) if name in CLASSIFIERS else expected
    assert decision.shape == scores.shape and np.array_equal(decision, scores)
    only_labels, none = served_model.predict(trained.X.copy(), probabilities=False)
    assert np.array_equal(only_labels, labels) and none is None


@pytest.mark.parametrize("name", NAMES)
def test_one_row_at_a_time_too(trained_models, name):
    """One-row requests compute with one row; BLAS may sum a lone row differently."""
    trained = trained_models[name]
    served_model, sklearn_model = model(trained), oracle(trained)
    for i in range(0, len(trained.X), 23):
        labels, proba = served_model.predict(trained.X[i:i + 1].copy(), probabilities=True)
        if name in CLASSIFIERS:
            assert np.array_equal(proba, sklearn_model.predict_proba(trained.rows[i:i + 1]))
        else:
            assert np.array_equal(labels, sklearn_model.predict(trained.rows[i:i + 1]))


@pytest.mark.parametrize("name", ["garden_kind", "garden_yield"])
def test_unknown_and_missing_categories_as_scikit_learn_answers_them(trained_models, name):
    """A colour never seen in training is all-zero one-hot (code -1); a missing one the
    training's most frequent; missing numbers the training median."""
    trained = trained_models[name]
    rows = trained.rows[:40].copy()
    rows[::4, 1] = "purple"
    rows[1::4, 1] = math.nan
    rows[2::4, 0] = math.nan
    rows[3::4, 3] = math.nan
    X = encode(trained.metadata, rows)
    assert (X[::4, 1] == -1).all() and np.isnan(X[1::4, 1]).all()
    served_model, sklearn_model = model(trained), oracle(trained)
    labels, proba = served_model.predict(X, probabilities=True)
    if name == "garden_kind":
        assert np.array_equal(proba, sklearn_model.predict_proba(rows))
    else:
        assert np.array_equal(labels, sklearn_model.predict(rows))


# --- model.json ------------------------------------------------------------------------------

def test_model_json_of_a_table_with_categories_and_missing_cells(trained_models):
    trained = trained_models["garden_kind"]
    meta = trained.metadata
    rows = trained.rows
    assert (meta["name"], meta["task"], meta["target"]) == ("garden_kind", "classification", "kind")
    assert meta["classes"] == sorted(KINDS) and meta["training_rows"] == len(rows)
    height, colour, soil, width = meta["features"]
    assert [f["name"] for f in meta["features"]] == ["height", "colour", "soil", "width"]
    assert (height["type"], height["missing"], width["type"], width["missing"]) == \
        ("number", True, "number", True)  # empty cells and "NA"
    present = rows[:, 0][[not math.isnan(v) for v in rows[:, 0]]].astype(float)
    assert height["min"] == present.min() and height["max"] == present.max()
    assert height["mean"] == pytest.approx(present.mean(), abs=1e-12)
    assert height["std"] == pytest.approx(present.std(), abs=1e-12)
    assert "bounds" not in height  # any finite number
    seen = [v for v in rows[:, 1] if isinstance(v, str)]
    assert colour == {"name": "colour", "type": "category", "missing": True, "categories": {
        c: pytest.approx(seen.count(c) / len(seen), abs=1e-12) for c in sorted(COLOURS)}}
    assert soil["type"] == "category" and soil["missing"] is False
    assert list(soil["categories"]) == sorted(SOILS)
    assert set(meta["training_distribution"]) == {"height", "width"}  # numbers only
    assert set(meta["metrics"]) == {"holdout_accuracy", "holdout_log_loss", "holdout_rows"}


@pytest.mark.parametrize("name, task, classes", [
    ("wine", "classification", ["0", "1", "2"]),
    ("breast_cancer", "classification", ["0", "1"]),
    ("diabetes", "regression", None),
])
def test_model_json_of_bundled_data(trained_models, name, task, classes):
    meta = trained_models[name].metadata
    assert meta["task"] == task and meta.get("classes") == classes
    assert all(f["type"] == "number" and f["missing"] is False for f in meta["features"])
    expected = {"r2", "mae", "rmse"} if task == "regression" else {"accuracy", "log_loss"}
    assert set(meta["metrics"]) == {f"holdout_{k}" for k in expected | {"rows"}}


def test_metrics_are_held_out_scores(trained_models):
    """Refit on train.py's split here; its held-out R² is what model.json records."""
    from sklearn.base import clone
    from sklearn.metrics import r2_score
    from sklearn.model_selection import train_test_split
    trained = trained_models["diabetes"]
    y = np.array([float(v) for v in trained.y])
    X_train, X_test, y_train, y_test = train_test_split(
        trained.rows, y, test_size=0.2, random_state=train.SEED)
    fitted = clone(oracle(trained)).fit(X_train, y_train)
    assert trained.metadata["metrics"]["holdout_r2"] == \
        pytest.approx(r2_score(y_test, fitted.predict(X_test)), abs=1e-6)


# --- explanations ----------------------------------------------------------------------------

def _iris():
    path, rows = ROOT / "model.joblib", load_iris().data[::7]
    return served.Model(*artifact.load(path)), joblib.load(path), rows, rows


def _score(sklearn_model, rows, task_classes: int, k: int):
    """scikit-learn's score of class k (binary: decision_function for 1, its negation for 0)."""
    if task_classes == 0:
        return sklearn_model.predict(rows)
    scores = sklearn_model.decision_function(rows)
    if scores.ndim == 1:
        return scores if k == 1 else -scores
    return scores[:, k]


@pytest.mark.parametrize("name", ("iris",) + NAMES)
def test_explanations_differ_by_exactly_the_difference_of_scores(trained_models, name):
    """For two rows, the sum of class k's explanations differs by exactly the difference of
    decision_function(x)[k]: each feature's share is exact, measured from the same point."""
    if name == "iris":
        served_model, sklearn_model, X, rows = _iris()
    else:
        trained = trained_models[name]
        served_model, sklearn_model, X, rows = model(trained), oracle(trained), trained.X, \
            trained.rows
    classes = len(served_model.signature.classes or ())
    for k in range(max(classes, 1)):
        labels = np.full(len(X), k)
        parts, _ = served_model.explain(X.copy(), labels)
        assert parts.shape == X.shape
        score = _score(sklearn_model, rows, classes, k)
        total = parts.sum(axis=1)
        gap, expected = total[1:] - total[0], score[1:] - score[0]
        size = np.abs(parts).sum(axis=1)[1:] + np.abs(parts[0]).sum() + np.abs(score).max()
        assert (np.abs(gap - expected) <= SUM_ROUNDING * size).all()


def test_explanations_per_input_feature_are_the_issues_formulas(trained_models):
    """A scaled number: coef / scale * (x - mean); a one-hot category: the sum over its
    columns of coef * (indicator - training share), from the fitted pipeline's attributes."""
    trained = trained_models["garden_yield"]
    pipeline = oracle(trained)
    columns, ridge = pipeline.named_steps["columns"], pipeline.named_steps["model"]
    numbers = columns.named_transformers_["numbers"]
    imputed = numbers.named_steps["impute"].transform(trained.rows[:, [0, 3]])
    scaler = numbers.named_steps["scale"]
    coef = ridge.coef_
    expected_numbers = coef[:2] / scaler.scale_ * (imputed - scaler.mean_)
    categories = columns.named_transformers_["categories"]
    onehot = categories.transform(trained.rows[:, [1, 2]])
    encoder = categories.named_steps["onehot"]
    meta = trained.metadata["features"]
    shares = np.concatenate([[meta[j]["categories"][c] for c in known]
                             for j, known in zip((1, 2), encoder.categories_)])
    terms = coef[2:] * (onehot - shares)
    colours = len(encoder.categories_[0])
    expected = np.column_stack([expected_numbers[:, 0], terms[:, :colours].sum(axis=1),
                                terms[:, colours:].sum(axis=1), expected_numbers[:, 1]])
    got, _ = model(trained).explain(trained.X.copy(), np.zeros(len(trained.X), dtype=int))
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


def test_a_model_without_an_exact_split_cannot_explain(tmp_path):
    path, _ = _package(tmp_path, KNeighborsClassifier())
    with pytest.raises(InvalidRequest, match="explanations need a linear model or a tree "
                                             "ensemble.*KNeighborsClassifier"):
        served.Model(*artifact.load(path)).explain(np.zeros((1, 4)), [0])


# --- packaging a fitted model ----------------------------------------------------------------

def _garden(tmp_path, target="kind"):
    csv, target = garden_csv(tmp_path, target)
    rows, y = read_back(csv, target)
    return csv, target, rows, y


def _encoded_pipeline(final):
    """A user's pipeline: one-hot categories (strings), numbers as they are (imputed)."""
    from sklearn.impute import SimpleImputer
    return Pipeline([
        ("columns", ColumnTransformer([
            ("numbers", SimpleImputer(strategy="mean"), [0, 3]),
            ("categories", make_pipeline(SimpleImputer(strategy="most_frequent"),
                                         OneHotEncoder(handle_unknown="ignore")), [1, 2])])),
        ("model", final)])


def _package(tmp_path, final, target="kind"):
    csv, target, rows, y = _garden(tmp_path, target)
    fitted = _encoded_pipeline(final).fit(rows, y if target == "kind" else np.array(y, float))
    joblib.dump(fitted, tmp_path / "fitted.joblib")
    output = tmp_path / "packaged.joblib"
    code = train.main(["--model", str(tmp_path / "fitted.joblib"), "--csv", str(csv),
                       "--target", target, "--output", str(output)])
    assert code == 0
    return output, (fitted, rows, y)


@pytest.mark.parametrize("final, target", [
    (RandomForestClassifier(n_estimators=5, random_state=0), "kind"),
    (GradientBoostingClassifier(n_estimators=5, random_state=0), "kind"),
    (HistGradientBoostingClassifier(max_iter=5), "kind"),
    (KNeighborsClassifier(), "kind"),
    pytest.param(SVC(probability=True, random_state=0), "kind", marks=pytest.mark.filterwarnings(
        "ignore:The `probability` parameter was deprecated:FutureWarning")),
    (ExtraTreesClassifier(n_estimators=5, random_state=0), "kind"),
    (DecisionTreeClassifier(random_state=0), "kind"),
    (RandomForestRegressor(n_estimators=5, random_state=0), "yield"),
    (GradientBoostingRegressor(n_estimators=5, random_state=0), "yield"),
    (HistGradientBoostingRegressor(max_iter=5), "yield"),
    (KNeighborsRegressor(), "yield"),
    (SVR(), "yield"),
    (DecisionTreeRegressor(random_state=0), "yield"),
], ids=lambda v: type(v).__name__ if not isinstance(v, str) else v)
def test_packaged_estimators_answer_as_scikit_learn(tmp_path, final, target):
    """Common estimators, in a pipeline of scikit-learn's own steps (its default sparse
    one-hot): trees by NumPy, the rest by scikit-learn, fed the rows as strings and floats,
    unknown categories as the strings sent."""
    output, (fitted, rows, y) = _package(tmp_path, final, target)
    meta = json.loads(output.with_suffix(".json").read_text())
    served_model = served.Model(*artifact.load(output))
    assert served_model.linear is None
    rows = rows.copy()
    rows[::5, 1] = "purple"
    X = encode(meta, rows)
    unknown = [(i, 1, "purple") for i in range(0, len(rows), 5)]  # as Batch.unknown holds them
    labels, proba = served_model.predict(X, True, unknown)
    if target == "kind":
        assert meta["classes"] == sorted(KINDS)  # the estimator's classes_, as strings
        assert [meta["classes"][k] for k in labels] == fitted.predict(rows).tolist()
        assert np.array_equal(proba, fitted.predict_proba(rows))
        assert set(meta["metrics"]) == {"csv_accuracy", "csv_log_loss", "csv_rows",
                                        "holdout_accuracy", "holdout_log_loss", "holdout_rows"}
    else:
        assert np.array_equal(labels, fitted.predict(rows)) and proba is None
        assert set(meta["metrics"]) == {"csv_r2", "csv_mae", "csv_rmse", "csv_rows",
                                        "holdout_r2", "holdout_mae", "holdout_rmse",
                                        "holdout_rows"}


def test_a_packaged_linear_pipeline_is_served_by_numpy(tmp_path):
    """A user's StandardScaler + LogisticRegression on numbers: the NumPy path, bitwise."""
    csv, target = tmp_path / "iris.csv", "species"
    iris = load_iris()
    species = iris.target_names[iris.target]
    write_csv(csv, [*(name for name, _, _ in train.IRIS_FEATURES), target],
              [[*map(repr, x), s] for x, s in zip(iris.data.tolist(), species.tolist())])
    fitted = make_pipeline(StandardScaler(), LogisticRegression(C=0.5)).fit(iris.data, species)
    joblib.dump(fitted, tmp_path / "fitted.joblib")
    output = tmp_path / "out.joblib"
    assert train.main(["--model", str(tmp_path / "fitted.joblib"), "--csv", str(csv),
                       "--target", target, "--output", str(output)]) == 0
    served_model = served.Model(*artifact.load(output))
    assert served_model.linear is not None
    labels, proba = served_model.predict(iris.data.copy(), True)
    assert np.array_equal(proba, fitted.predict_proba(iris.data))
    assert list(served_model.signature.classes) == iris.target_names.tolist()


def _refusal(tmp_path, capsys, fitted, csv, target):
    joblib.dump(fitted, tmp_path / "fitted.joblib")
    code = train.main(["--model", str(tmp_path / "fitted.joblib"), "--csv", str(csv),
                       "--target", target, "--output", str(tmp_path / "out.joblib")])
    assert code == 2
    assert not (tmp_path / "out.json").exists()
    return capsys.readouterr().err


@pytest.mark.parametrize("final, refused, nearest", [
    (MLPClassifier(max_iter=5, random_state=0),
     "sklearn.neural_network._multilayer_perceptron.MLPClassifier", "Classifier"),
    (LinearSVC(), "sklearn.svm._classes.LinearSVC", "SVC"),
    (SGDClassifier(random_state=0), "sklearn.linear_model._stochastic_gradient.SGDClassifier",
     "LogisticRegression"),
    (AdaBoostRegressor(n_estimators=3, random_state=0),
     "sklearn.ensemble._weight_boosting.AdaBoostRegressor", "Regressor"),
], ids=lambda v: type(v).__name__ if not isinstance(v, str) else None)
def test_packaging_refuses_an_estimator_off_the_allowlist_naming_it(tmp_path, capsys, final,
                                                                    refused, nearest):
    """The refused class by name, and the served one nearest to it, of its own kind."""
    target = "yield" if "Regressor" in refused else "kind"
    csv, target, rows, y = _garden(tmp_path, target)
    fitted = _encoded_pipeline(final)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a few iterations: not converged
        fitted.fit(rows, y if target == "kind" else np.array(y, float))
    err = _refusal(tmp_path, capsys, fitted, csv, target)
    assert f"refused global {refused}: not in the allowlist" in err
    first = err.split("the nearest served: ")[1].split(",")[0]
    assert first.endswith(nearest), err


def test_packaging_refuses_a_model_of_other_columns(tmp_path, capsys):
    csv, target, rows, y = _garden(tmp_path)
    fitted = _encoded_pipeline(RandomForestClassifier(n_estimators=2)).fit(
        np.column_stack([rows, rows[:, :1]]), y)
    err = _refusal(tmp_path, capsys, fitted, csv, target)
    assert "the model takes 5 features, but the CSV has 4 columns besides 'kind'" in err


def test_packaging_serves_a_dataframe_model_selecting_columns_by_name(tmp_path):
    csv, target, rows, y = _garden(tmp_path)
    frame = pd.DataFrame(rows, columns=["height", "colour", "soil", "width"])
    frame[["height", "width"]] = frame[["height", "width"]].astype(float)
    fitted = Pipeline([("columns", ColumnTransformer([
        ("numbers", "passthrough", ["height"]),
        ("categories", OneHotEncoder(handle_unknown="ignore", sparse_output=False),
         ["soil"])])),
        ("model", DecisionTreeClassifier(random_state=0))]).fit(frame, y)
    joblib.dump(fitted, tmp_path / "fitted.joblib")
    output = tmp_path / "out.joblib"
    assert train.main(["--model", str(tmp_path / "fitted.joblib"), "--csv", str(csv),
                       "--target", target, "--output", str(output)]) == 0
    served_model = served.Model(*artifact.load(output))
    assert served_model.computed is not None  # NumPy, by the names mapped onto the features
    labels, proba = served_model.predict(encode(served_model.metadata, rows), True)
    classes = served_model.metadata["classes"]
    assert [classes[k] for k in labels] == fitted.predict(frame).tolist()
    assert np.array_equal(proba, fitted.predict_proba(frame))


def test_packaging_refuses_columns_in_another_order(tmp_path, capsys):
    csv, target, rows, y = _garden(tmp_path)
    frame = pd.DataFrame(rows[:, [3, 1, 2, 0]], columns=["width", "colour", "soil", "height"])
    fitted = DecisionTreeClassifier().fit(frame[["width", "height"]].astype(float).fillna(0)
                                          .assign(a=0, b=0), y)
    err = _refusal(tmp_path, capsys, fitted, csv, target)
    assert "the model was fitted on columns ['width', 'height', 'a', 'b']" in err


def test_the_unpickler_refuses_an_unknown_class_naming_it(tmp_path):
    model_path = tmp_path / "model.joblib"
    joblib.dump(MLPClassifier(), model_path)
    meta = json.loads((ROOT / "model.json").read_text())
    import hashlib
    meta["sha256"] = hashlib.sha256(model_path.read_bytes()).hexdigest()
    model_path.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(ModelUnavailable, match="refused global sklearn.neural_network."
                                               "_multilayer_perceptron.MLPClassifier"):
        artifact.load(model_path)


# --- reading a CSV ---------------------------------------------------------------------------

@pytest.mark.parametrize("header, rows, target, message", [
    (["a", "b", "t"], [[1, 2, 3]] * 12 + [[1, 2]], "t", "line 14 has 2 cells; the header has 3"),
    (["a", "b", "t"], [[1, 2, 3]] * 12, "c", "has no column 'c'"),
    (["a", "a", "t"], [[1, 2, 3]] * 12, "t", "must name every column once"),
    (["a", "b", "t"], [[1, 2, 3]] * 5, "t", "has 5 rows with a t; at least 10"),
    (["a", "b", "t"], [[1, None, 3]] * 12, "t", "column 'b' of"),
    (["a", "t"], [[1, "x"]] * 12, "t", "needs two classes at least"),
], ids=["ragged", "no target", "duplicate", "few rows", "empty column", "one class"])
def test_unreadable_tables_are_refused_with_a_reason(tmp_path, capsys, header, rows, target,
                                                     message):
    csv = write_csv(tmp_path / "t.csv", header, rows)
    assert train.main(["--csv", str(csv), "--target", target,
                       "--output", str(tmp_path / "m.joblib")]) == 2
    assert message in capsys.readouterr().err


def _rows(count, *columns):
    """count rows of the columns' functions of the row's index."""
    return [[column(i) for column in columns] for i in range(count)]


def _table(header, rows):
    return lambda tmp_path: write_csv(tmp_path / "t.csv", header, rows)


def _cells(text: str):
    def write(tmp_path):
        (tmp_path / "t.csv").write_bytes(text.encode("latin-1"))
        return tmp_path / "t.csv"
    return write


SPREAD = lambda i: round(math.sin(i) * 7, 3)  # noqa: E731 (a column: numbers, not classes)
KIND = lambda i: "ab"[i % 2]  # noqa: E731
GOOD = _table(["x", "y"], _rows(40, SPREAD, KIND))

# (id, the CSV, the options after --csv, what the one line must say)
BAD_RUNS = [
    ("continuous target as classes", _table(["x", "mpg"], _rows(40, KIND, SPREAD)),
     ["--target", "mpg", "--task", "classification"],
     "mpg has 40 distinct values, not all whole numbers ('5.89'): a quantity, to be "
     "predicted with --task regression"),
    ("an identifier as the target", _table(["x", "name"], _rows(40, SPREAD, lambda i: f"car{i}")),
     ["--target", "name"], "name has 40 distinct values in 40 rows, too many to learn as classes"),
    ("numbers that overflow scaling", _table(["x", "y"], _rows(40, lambda i: (-1e308, 1e308)[
        i % 2], KIND)), ["--target", "y"], "x has numbers beyond ±1e+150"),
    ("an infinite feature", _table(["x", "y"], _rows(40, lambda i: "inf" if i == 4 else i, KIND)),
     ["--target", "y"], "column 'x' of"),
    ("an infinite target", _table(["x", "y"], _rows(40, KIND, lambda i: "-inf" if i == 9 else i)),
     ["--target", "y", "--task", "regression"], "y has '-inf': a target must be finite"),
    ("a target in another case", GOOD, ["--target", "Y"], "(did you mean 'y'?)"),
    ("an empty target", GOOD, ["--target", ""], "--target is empty"),
    ("an output that is a directory", GOOD, ["--target", "y", "--output", "."],
     ": Is a directory"),
    ("an output under a file", GOOD, ["--target", "y", "--output", "t.csv/m.joblib"],
     "cannot write"),
    ("not UTF-8", _cells("x,y\n" + "\xe9,a\n" * 20), ["--target", "y"], "cannot read"),
    ("an unreadable booster file", GOOD, ["--target", "y", "--model", "t.json"],
     "xgboost cannot read"),
    ("a model file that is missing", GOOD, ["--target", "y", "--model", "gone.joblib"],
     "cannot read"),
    ("a model file that is not a pickle", GOOD, ["--target", "y", "--model", "t.csv"],
     "is not a plain joblib pickle"),
    ("holdout without a model", GOOD, ["--target", "y", "--no-holdout"],
     "--no-holdout goes with --model"),
    ("a unit of no column", GOOD, ["--target", "y", "--unit", "X=kg"],
     "has no feature column 'X' (did you mean 'x'?)"),
    ("a unit of a category", _table(["x", "c", "y"], _rows(40, SPREAD, KIND, KIND)),
     ["--target", "y", "--unit", "c=kg"], "'c' is a category, which has no unit"),
    ("a unit without its column", GOOD, ["--target", "y", "--unit", "kg"],
     "--unit takes COLUMN=UNIT"),
]


@pytest.mark.parametrize("write, options, message", [case[1:] for case in BAD_RUNS],
                         ids=[case[0] for case in BAD_RUNS])
def test_bad_tables_and_options_are_one_line_and_exit_2(tmp_path, capsys, monkeypatch, write,
                                                        options, message):
    """No traceback: one line that says what is wrong (argparse's own errors: its usage,
    then one line), exit 2, and nothing written."""
    csv = write(tmp_path)
    (tmp_path / "t.json").write_text('{"learner": 3}')  # a booster's file, damaged
    monkeypatch.chdir(tmp_path)
    options = [*options, *([] if "--output" in options else ["--output", "m.joblib"])]
    argparse_refuses = options[1] == "" or "--no-holdout" in options or "kg" in options
    with pytest.raises(SystemExit) if argparse_refuses else contextlib.nullcontext():
        assert train.main(["--csv", str(csv), *options]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert message in lines[-1], err
    assert len(lines) == 1 or lines[-1].startswith("train.py: error:"), err
    assert not (tmp_path / "m.joblib").exists() and not (tmp_path / "m.json").exists()


def test_units_and_decimals_are_recorded(tmp_path):
    """--unit names a number's unit; decimals are the most its cells were written with."""
    rows = _rows(40, lambda i: f"{1970 + i % 13}", lambda i: f"{1500 + 37.5 * i:.1f}", KIND)
    rows[3][1] = "1.5e3"  # 1500: no decimals
    csv = write_csv(tmp_path / "t.csv", ["year", "weight", "y"], rows)
    assert train.main(["--csv", str(csv), "--target", "y", "--unit", "weight=kg",
                       "--output", str(tmp_path / "m.joblib")]) == 0
    year, weight = json.loads((tmp_path / "m.json").read_text())["features"]
    assert (year["decimals"], "unit" in year) == (0, False)
    assert (weight["decimals"], weight["unit"]) == (1, "kg")


def test_rows_left_out_are_printed_and_recorded(tmp_path, capsys):
    """Rows without a target: counted, their lines named, in model.json and on stderr."""
    rows = _rows(40, SPREAD, lambda i: "" if i in (3, 17) else KIND(i))
    rows[5][0] = "nan"  # pandas' missing number: missing, not text
    csv = write_csv(tmp_path / "t.csv", ["x", "y"], rows)
    assert train.main(["--csv", str(csv), "--target", "y",
                       "--output", str(tmp_path / "m.joblib")]) == 0
    meta = json.loads((tmp_path / "m.json").read_text())
    assert meta["left_out_rows"] == [{"reason": "the target is missing", "rows": 2,
                                      "lines": [5, 19]}]  # the header is line 1
    assert meta["training_rows"] == 38
    assert meta["features"][0]["type"] == "number" and meta["features"][0]["missing"]
    assert "left out 2 rows: the target is missing (lines 5, 19)" in capsys.readouterr().err


def test_a_class_of_one_row_is_held_out_without_a_crash(tmp_path):
    """The 80% may lack a class: its probability is 0 there, and the log loss is scored."""
    kinds = ["a", "b"] * 20 + ["c"]
    csv = write_csv(tmp_path / "t.csv", ["x", "y"], _rows(41, SPREAD, kinds.__getitem__))
    assert train.main(["--csv", str(csv), "--target", "y",
                       "--output", str(tmp_path / "m.joblib")]) == 0
    meta = json.loads((tmp_path / "m.json").read_text())
    assert meta["classes"] == ["a", "b", "c"] and meta["metrics"]["holdout_rows"] == 9


def test_packaging_scores_a_refitted_copy_on_held_out_rows(tmp_path, capsys):
    """csv_ scores the model on the CSV's rows (here its training rows: a perfect score that
    means nothing), holdout_ a clone fitted on train.py's 80% on the other 20%."""
    from sklearn.base import clone
    from sklearn.model_selection import train_test_split
    csv, target, rows, y = _garden(tmp_path)
    fitted = _encoded_pipeline(DecisionTreeClassifier(random_state=0)).fit(rows, y)
    joblib.dump(fitted, tmp_path / "fitted.joblib")
    args = ["--model", str(tmp_path / "fitted.joblib"), "--csv", str(csv), "--target", target,
            "--output", str(tmp_path / "out.joblib")]
    assert train.main(args) == 0
    out = capsys.readouterr().out
    metrics = json.loads((tmp_path / "out.json").read_text())["metrics"]
    assert metrics["csv_accuracy"] == 1.0  # a tree grown to purity on these very rows
    codes = np.searchsorted(sorted(KINDS), y)
    X_train, X_test, y_train, y_test = train_test_split(
        rows, codes, test_size=0.2, stratify=codes, random_state=train.SEED)
    held_out = clone(fitted).fit(X_train, y_train).score(X_test, y_test)
    assert metrics["holdout_accuracy"] == pytest.approx(held_out, abs=1e-6)
    assert held_out < 0.95
    assert "not a held-out score" in out
    assert train.main([*args, "--no-holdout"]) == 0
    metrics = json.loads((tmp_path / "out.json").read_text())["metrics"]
    assert not any(key.startswith("holdout_") for key in metrics)


@pytest.mark.parametrize("labels, fitted_on, advice", [
    (KINDS, "codes", "the model was fitted on the codes 0..2 of its classes"),
    (("0", "1", "2"), "labels", "the CSV's target holds numbers where the model's classes"),
])
def test_labels_and_codes_that_do_not_match_say_how_to_fix_them(tmp_path, capsys, labels,
                                                                 fitted_on, advice):
    csv, target, rows, y = _garden(tmp_path)
    codes = np.searchsorted(sorted(KINDS), y)
    csv = write_csv(tmp_path / "coded.csv", ["height", "colour", "soil", "width", "kind"], [
        [*row, labels[code]] for row, code in zip(
            [[None if isinstance(v, float) and math.isnan(v) else v for v in r]
             for r in rows.tolist()], codes)])
    fitted = _encoded_pipeline(DecisionTreeClassifier(random_state=0)).fit(
        rows, codes if fitted_on == "codes" else np.array(sorted(KINDS))[codes])
    err = _refusal(tmp_path, capsys, fitted, csv, target)
    assert "that are not among the model's classes" in err and advice in err


def test_a_text_target_cannot_be_regressed(tmp_path, capsys):
    csv = write_csv(tmp_path / "t.csv", ["a", "t"], [[i, "xy"[i % 2]] for i in range(12)])
    assert train.main(["--csv", str(csv), "--target", "t", "--task", "regression",
                       "--output", str(tmp_path / "m.joblib")]) == 2
    assert "a regression target must be numbers; t has 'x'" in capsys.readouterr().err


@pytest.mark.parametrize("values, task", [
    ([0, 1, 2] * 10, "classification"),           # few whole numbers: labels
    (list(range(30)), "regression"),              # many whole numbers: a quantity
    ([0.5, 1.5] * 15, "regression"),              # fractions
    (["yes", "no", "maybe"] * 10, "classification"),
])
def test_the_task_is_inferred_from_the_target(tmp_path, values, task):
    csv = write_csv(tmp_path / "t.csv", ["a", "t"], [[i % 7, v] for i, v in enumerate(values)])
    assert train.main(["--csv", str(csv), "--target", "t",
                       "--output", str(tmp_path / "m.joblib")]) == 0
    assert json.loads((tmp_path / "m.json").read_text())["task"] == task


@pytest.mark.parametrize("estimator", [None, "random-forest"])
def test_make_model_trains_a_csv(tmp_path, estimator):
    csv, target = garden_csv(tmp_path, "kind")
    output = tmp_path / "garden.joblib"
    run = subprocess.run(["make", "-s", "model", f"CSV={csv}", f"TARGET={target}",
                          f"OUTPUT={output}", *([f"ESTIMATOR={estimator}"] if estimator else [])],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    metadata = json.loads(output.with_suffix(".json").read_text())
    assert metadata["name"] == "garden_kind"
    assert ("RandomForestClassifier" in metadata["estimator"]) == bool(estimator)
    assert f"wrote {output}" in run.stdout
