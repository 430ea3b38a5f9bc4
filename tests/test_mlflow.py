"""MLflow's scoring server paths, with bodies built by pandas as MLflow's documentation builds them.

Expected predictions come from scikit-learn itself (joblib.load of model.joblib).
"""

import hashlib
import json

import joblib
import pandas as pd
import pytest
from sklearn.datasets import load_iris

from harness import ROOT, FunctionServer

IRIS = load_iris()
LONG = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
SHORT = ["sl", "sw", "pl", "pw"]
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def estimator():
    """The shipped model as scikit-learn itself loads it: the oracle."""
    return joblib.load(ROOT / "model.joblib")


def frame(columns: list, rows=slice(None, None, 7)) -> pd.DataFrame:
    return pd.DataFrame(IRIS.data[rows], columns=columns)


def invoke(live, body):
    return live.call("POST", json.dumps(body), JSON, path="/invocations")


def split(df: pd.DataFrame) -> dict:
    return {"dataframe_split": df.to_dict(orient="split")}


BODIES = {
    # name: (columns, body built from a DataFrame as MLflow's docs build it)
    "dataframe_split, long names": (LONG, split),
    "dataframe_split, short names": (SHORT, split),
    "dataframe_records": (LONG, lambda df: {"dataframe_records": df.to_dict(orient="records")}),
    "instances as records": (SHORT, lambda df: {"instances": df.to_dict(orient="records")}),
    "instances as rows": (LONG, lambda df: {"instances": df.to_numpy().tolist()}),
    "inputs as columns": (SHORT, lambda df: {"inputs": df.to_dict(orient="list")}),
    "inputs as rows": (LONG, lambda df: {"inputs": df.to_numpy().tolist()}),
}


@pytest.mark.parametrize("name", BODIES)
def test_invocations_predict_as_scikit_learn(live, estimator, name):
    columns, build = BODIES[name]
    df = frame(columns)
    reply = invoke(live, build(df))
    assert reply.status == 200, reply.body
    assert reply.json() == {"predictions": estimator.predict(df.to_numpy()).tolist()}


def test_columns_in_another_order(live, estimator):
    df = frame(LONG)
    shuffled = df[["petal_width", "sepal_length", "petal_length", "sepal_width"]]
    reply = invoke(live, {"dataframe_split": shuffled.to_dict(orient="split")})
    assert reply.json()["predictions"] == estimator.predict(df.to_numpy()).tolist()


@pytest.mark.parametrize("body", [
    lambda df: {"dataframe_split": df.to_dict(orient="split")},
    lambda df: {"dataframe_records": df.to_dict(orient="records")},
    lambda df: {"inputs": df.to_dict(orient="list")},
], ids=["dataframe_split", "dataframe_records", "inputs as columns"])
def test_columns_besides_the_features_are_ignored_as_mlflow_ignores_them(live, estimator,
                                                                         body):
    """MLflow's schema enforcement drops inputs its signature does not name (and logs a
    warning); so does /invocations, for a DataFrame that carries an ID column, say."""
    df = frame(LONG)
    reply = invoke(live, body(df.assign(customer_id=range(len(df)), region="north")))
    assert reply.status == 200, reply.body
    assert reply.json() == {"predictions": estimator.predict(df.to_numpy()).tolist()}


def test_csv_as_pandas_writes_it(live, estimator):
    df = frame(LONG)
    reply = live.call("POST", df.to_csv(index=False), {"Content-Type": "text/csv"},
                      path="/invocations")
    assert reply.json() == {"predictions": estimator.predict(df.to_numpy()).tolist()}


@pytest.mark.parametrize("body, found", [
    ({"dataframe_split": {}, "instances": []}, "found dataframe_split, instances"),
    ({"dataframe_records": [], "inputs": [], "instances": []},
     "found dataframe_records, instances, inputs"),
    ({"data": [[5.1, 3.5, 1.4, 0.2]]}, "found none of them"),
    ({}, "found none of them"),
])
def test_not_exactly_one_format_is_a_400_that_says_which(live, body, found):
    reply = invoke(live, body)
    assert reply.status == 400
    assert reply.json() == {"error_code": "BAD_REQUEST", "message": (
        "the body must have exactly one of the fields dataframe_split, dataframe_records, "
        f"instances, inputs; {found}")}


@pytest.mark.parametrize("body, message", [
    ({"dataframe_records": [{"sl": 5.1, "sw": 3.5, "pl": 1.4}]},
     "dataframe_records[0] is missing pw"),
    ({"dataframe_split": {"columns": ["sl", "sw", "pl", "x"], "data": [[1, 2, 3, 4]]}},
     "dataframe_split[0] is missing pw"),  # x is ignored, as MLflow ignores it
    ({"dataframe_records": [{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4,
                             "petal_widht": 0.2}]}, '(did you mean "petal_width"?)'),
    ({"dataframe_split": {"columns": LONG, "data": [[1, 2, 3]]}},
     "dataframe_split.data[0] must be an array of 4 values"),
    ({"instances": [[5.1, 3.5, 1.4, -1]]}, "instances[0][3] (petal_width) must be a number"),
    ({"inputs": {"sl": [1, 2], "sw": [1]}}, "all of the same length"),
    ({"instances": [[5.1, 3.5, 1.4, 0.2]], "params": {"top_k": 2}}, "params must be empty"),
    ([[5.1, 3.5, 1.4, 0.2]], "got array"),
])
def test_bad_rows_are_mlflow_errors(live, body, message):
    reply = invoke(live, body)
    assert reply.status == 400
    assert reply.json()["error_code"] == "BAD_REQUEST" and message in reply.json()["message"]


def test_health_and_version(live):
    for path in ("/ping", "/health"):
        assert live.call("GET", path=path).status == 200
    reply = live.call("GET", path="/version")
    assert reply.status == 200 and reply.headers["content-type"].startswith("text/plain")
    assert reply.body.decode() == hashlib.sha256(
        (ROOT / "model.joblib").read_bytes()).hexdigest()[:12]


def test_other_methods_and_types_are_mlflow_errors(live):
    reply = live.call("GET", path="/invocations")
    assert reply.status == 405 and reply.headers["allow"] == "POST, OPTIONS"
    assert reply.json()["error_code"] == "BAD_REQUEST"
    reply = live.call("POST", "x", {"Content-Type": "text/plain"}, path="/invocations")
    assert reply.status == 415 and "application/json or text/csv" in reply.json()["message"]


def test_without_a_model_ping_is_503(tmp_path):
    with FunctionServer(env={"MODEL_PATH": str(tmp_path / "gone.joblib")}) as broken:
        for path in ("/ping", "/health"):
            reply = broken.call("GET", path=path)
            assert reply.status == 503
            assert reply.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"
        reply = broken.call("POST", {"instances": [[5.1, 3.5, 1.4, 0.2]]}, path="/invocations")
        assert reply.status == 503 and reply.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"


@pytest.mark.parametrize("labels", [None, (2, 10, 30)], ids=["strings", "numbers"])
def test_a_model_fitted_on_labels_is_answered_its_labels(tmp_path, labels):
    """MLflow's server answers a scikit-learn classifier with its own predict(): for a model
    fitted on the labels themselves (strings, or numbers other than 0..k-1), the labels."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OrdinalEncoder

    import train
    from tests.models import garden_csv, read_back, write_csv
    csv, target = garden_csv(tmp_path, "kind")
    rows, y = read_back(csv, target)
    if labels is not None:  # the same table, its kinds written as numbers
        y = [labels[sorted(set(y)).index(v)] for v in y]
        cells = [[None if isinstance(v, float) and v != v else v for v in row] + [t]
                 for row, t in zip(rows.tolist(), y)]
        csv = write_csv(tmp_path / "numbered.csv", ["height", "colour", "soil", "width", target],
                        cells)
    fitted = Pipeline([("columns", ColumnTransformer([
        ("numbers", "passthrough", [0, 3]),
        ("categories", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1),
         [1, 2])])), ("model", RandomForestClassifier(10, random_state=0))]).fit(rows, y)
    joblib.dump(fitted, tmp_path / "fitted.joblib")
    model = tmp_path / "served.joblib"
    assert train.main(["--model", str(tmp_path / "fitted.joblib"), "--csv", str(csv),
                       "--target", target, "--output", str(model), "--no-holdout"]) == 0
    records = [{name: (None if isinstance(v, float) and v != v else v)
                for name, v in zip(["height", "colour", "soil", "width"], row)}
               for row in rows[:40].tolist()]
    with FunctionServer(env={"MODEL_PATH": str(model)}) as server:
        reply = invoke(server, {"dataframe_records": records})
    assert reply.status == 200, reply.body
    assert reply.json()["predictions"] == fitted.predict(rows[:40]).tolist()
