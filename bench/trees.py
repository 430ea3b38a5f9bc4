"""The tree models the bench serves beside the linear one, on one table, all made each run.

A 20-feature table (17 numbers with 5% missing cells, 3 categories), written here with a
fixed seed; on it, `train.py --csv` makes the linear pipeline (the reference), and the
models of issue 21 are fitted here and packaged by `train.py --model`: a 300-tree depth-6
XGBoost classifier, a 300-iteration depth-6 HistGradientBoosting classifier and a 100-tree
depth-10 random forest, each behind the same ColumnTransformer (numbers as they are,
categories as ordinal codes). Fitting needs the training libraries (requirements-train.txt),
so it runs in this interpreter, the project's dev venv; the models are served from the
bench's runtime venv like any other.

`python -m bench.trees DIRECTORY` makes them; `python -m bench.trees --batch DIRECTORY`
times 1,000-row batches in process, the function's NumPy against each library's own
predict_proba on the same rows (as the libraries default their threads), and `--explain`
times explanations of 1 and 100 rows against SHAP's own C++ TreeExplainer.
"""

import csv
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from harness import ROOT

ROWS = 5_000
QUICK_ROWS = 500  # `python -m bench --quick`: the same models, fitted in seconds
NUMBERS = 17
CATEGORIES = {"region": ("north", "south", "east", "west"), "plan": ("basic", "plus", "pro"),
              "channel": ("web", "store", "phone", "partner", "other")}
TARGET = "churned"
LINEAR, XGBOOST, HIST, FOREST = "linear", "xgboost", "hist-gradient-boosting", "random-forest"
MODELS = (LINEAR, XGBOOST, HIST, FOREST)
BATCH_ROWS = 1_000
EXPLAIN_ROWS = 100


def rows(seed: int = 21, count: int = ROWS) -> tuple:
    """(header, rows as written to the CSV, target): numbers with missing cells, categories."""
    rng = np.random.default_rng(seed)
    numbers = rng.normal(size=(count, NUMBERS))
    numbers[rng.random(numbers.shape) < 0.05] = np.nan
    picked = {name: rng.integers(0, len(values), count) for name, values in CATEGORIES.items()}
    score = (np.nansum(numbers[:, :6] * np.linspace(1, -1, 6), axis=1) + picked["plan"] * 0.5
             - (picked["region"] == 1) + rng.normal(0, 0.5, count))
    header = [f"x{j}" for j in range(NUMBERS)] + list(CATEGORIES) + [TARGET]
    table = [[("" if np.isnan(v) else round(float(v), 6)) for v in numbers[i]]
             + [CATEGORIES[name][picked[name][i]] for name in CATEGORIES] + [int(score[i] > 0)]
             for i in range(count)]
    return header, table


ONE_ROW = dict(zip([f"x{j}" for j in range(NUMBERS)] + list(CATEGORIES),
                   [0.25] * NUMBERS + ["south", "plus", "web"]))


# ONE_ROW as the pipelines' ColumnTransformer passes it to their last step: the numbers, then
# each category's OrdinalEncoder code (its index among the sorted categories).
ONE_ROW_CODED = [ONE_ROW[f"x{j}"] for j in range(NUMBERS)] + [
    sorted(values).index(ONE_ROW[name]) for name, values in CATEGORIES.items()]
# The XGBoost model's booster as XGBoost saves it, for MLServer's XGBoost runtime (not
# xgboost.json: that is the function's model.json of xgboost.joblib).
XGBOOST_BOOSTER = "xgboost-booster.json"


def model_path(directory: Path, name: str) -> Path:
    return directory / f"{name}.joblib"


def objects(table: list) -> np.ndarray:
    """The CSV's feature cells as the pipelines take them: floats (NaN) and strings."""
    return np.array([[np.nan if v == "" else v for v in row[:-1]] for row in table],
                    dtype=object)


def estimators() -> dict:
    """The fitted pipelines, by name (the training libraries imported here only)."""
    import xgboost
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OrdinalEncoder

    def pipe(final):
        columns = ColumnTransformer([
            ("numbers", "passthrough", list(range(NUMBERS))),
            ("categories", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1),
             list(range(NUMBERS, NUMBERS + len(CATEGORIES))))])
        return Pipeline([("columns", columns), ("model", final)])

    coded = list(range(NUMBERS, NUMBERS + len(CATEGORIES)))
    return {
        XGBOOST: pipe(xgboost.XGBClassifier(n_estimators=300, max_depth=6, random_state=0)),
        HIST: pipe(HistGradientBoostingClassifier(max_iter=300, max_depth=6,
                                                  early_stopping=False, random_state=0,
                                                  categorical_features=coded)),
        FOREST: pipe(RandomForestClassifier(100, max_depth=10, random_state=0)),
    }


def make(directory: Path, count: int = ROWS):
    """Every model of MODELS in directory, each beside its model.json; raises on failure."""
    directory.mkdir(parents=True, exist_ok=True)
    header, table = rows(count=count)
    csv_path = directory / "table.csv"
    with open(csv_path, "w", newline="") as f:
        csv.writer(f).writerows([header, *table])
    X, y = objects(table), np.array([row[-1] for row in table])
    commands = [["--csv", str(csv_path), "--target", TARGET, "--output",
                 str(model_path(directory, LINEAR))]]
    import joblib
    for name, estimator in estimators().items():
        pickled = directory / f"{name}.pkl"
        joblib.dump(estimator.fit(X, y), pickled)
        if name == XGBOOST:
            estimator[-1].save_model(directory / XGBOOST_BOOSTER)
        commands.append(["--model", str(pickled), "--csv", str(csv_path), "--target", TARGET,
                         "--output", str(model_path(directory, name))])
    for arguments in commands:
        run = subprocess.run([sys.executable, "train.py", *arguments], cwd=ROOT,
                             capture_output=True, text=True, timeout=600)
        if run.returncode != 0:
            raise RuntimeError(f"train.py {' '.join(arguments)} failed:\n{run.stderr[-2000:]}")


def batch_seconds(directory: Path, rounds: int = 7, calls: int = 5) -> dict:
    """{model: {"function_ms", "library_ms"}}: median time of one 1,000-row batch, the
    function's NumPy (Model.predict with probabilities) against the library's predict_proba
    of the same pipeline, both in this process. The two take turns, a run of calls each,
    and the first calls of a run are not timed: the libraries' OpenMP threads keep spinning
    a while after their work, and would otherwise be timed against the function."""
    import joblib

    sys.path.insert(0, str(ROOT))
    from iris_predict.model import artifact, served
    from tests.models import encode

    _, table = rows(seed=5, count=BATCH_ROWS)
    X_objects = objects(table)
    found = {}
    for name in MODELS[1:]:
        model = served.Model(*artifact.load(model_path(directory, name)))
        X = encode(model.metadata, X_objects)
        library = joblib.load(directory / f"{name}.pkl")
        times = {"function_ms": (lambda: model.predict(X.copy(), probabilities=True), []),
                 "library_ms": (lambda: library.predict_proba(X_objects), [])}
        for _ in range(rounds):
            for call, taken in times.values():
                for run in range(2 + calls):
                    started = time.perf_counter()
                    call()
                    if run >= 2:
                        taken.append(time.perf_counter() - started)
        found[name] = {key: statistics.median(taken) * 1e3 for key, (_, taken) in times.items()}
    return found


def explain_seconds(directory: Path, rounds: int = 7) -> dict:
    """{model: {"one_ms", "hundred_ms", "shap_hundred_ms", "shap_one_ms", "first_ms"}}: median
    time of explaining one row and 100 rows in process (Model.explain: TreeSHAP in NumPy),
    against SHAP's own C++ TreeExplainer (tree_path_dependent) on the same rows, which shap
    runs on the trees it parsed from the model. For XGBoost shap would call XGBoost's own
    pred_contribs instead, so its trees are handed to shap as a list: its own C++ then."""
    import warnings

    import joblib
    import shap

    sys.path.insert(0, str(ROOT))
    from iris_predict.model import artifact, served
    from tests.models import encode

    _, table = rows(seed=5, count=EXPLAIN_ROWS)
    X_objects = objects(table)
    found = {}
    for name in MODELS[1:]:
        model = served.Model(*artifact.load(model_path(directory, name)))
        X = encode(model.metadata, X_objects)
        labels, _ = model.predict(X, probabilities=False)
        started = time.perf_counter()
        model.explain(X[:1], labels[:1])  # builds the leaves' paths, once per instance
        first = time.perf_counter() - started
        fitted = joblib.load(directory / f"{name}.pkl")
        Z = np.asarray(fitted[:-1].transform(X_objects), dtype=np.float64)
        parsed = shap.TreeExplainer(fitted[-1], feature_perturbation="tree_path_dependent")
        own = shap.TreeExplainer(parsed.model.trees, feature_perturbation="tree_path_dependent")
        times = {key: [] for key in ("one_ms", "hundred_ms", "shap_one_ms", "shap_hundred_ms")}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for _ in range(rounds):
                for key, call in (
                        ("one_ms", lambda: model.explain(X[:1], labels[:1])),
                        ("hundred_ms", lambda: model.explain(X, labels)),
                        ("shap_one_ms", lambda: own.shap_values(Z[:1], check_additivity=False)),
                        ("shap_hundred_ms", lambda: own.shap_values(Z, check_additivity=False))):
                    started = time.perf_counter()
                    call()
                    times[key].append(time.perf_counter() - started)
        found[name] = {key: statistics.median(t) * 1e3 for key, t in times.items()}
        found[name]["first_ms"] = first * 1e3
    return found


def measure_batches(directory: Path) -> dict:
    """batch_seconds in a fresh process of this interpreter (the libraries stay out of ours)."""
    return _in_a_fresh_process("--batch", directory)


def measure_explanations(directory: Path) -> dict:
    """explain_seconds in a fresh process of this interpreter."""
    return _in_a_fresh_process("--explain", directory)


def _in_a_fresh_process(flag: str, directory: Path) -> dict:
    run = subprocess.run([sys.executable, "-m", "bench.trees", flag, str(directory)],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    if run.returncode != 0:
        raise RuntimeError(f"bench.trees {flag} failed:\n{run.stderr[-2000:]}")
    return json.loads(run.stdout)


if __name__ == "__main__":
    if sys.argv[1] == "--batch":
        print(json.dumps(batch_seconds(Path(sys.argv[2]))))
    elif sys.argv[1] == "--explain":
        print(json.dumps(explain_seconds(Path(sys.argv[2]))))
    else:
        make(Path(sys.argv[1]))
