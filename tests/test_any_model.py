"""Any tabular model train.py writes, served live through every protocol.

For wine (three classes), breast_cancer (two), diabetes (regression), all from
scikit-learn's bundled data, and a garden table with category columns and
missing cells (tests/models.py), each trained by `train.py --csv` and served by a real
functions-framework server with MODEL_PATH: every protocol's answers must equal
scikit-learn's own predict and predict_proba, computed here on the pipeline
joblib loads, and the explanations must differ between two rows exactly as
scikit-learn's decision_function does. The clients are the real ones: urllib,
pandas' bodies for MLflow, tritonclient for the Open Inference Protocol.
"""

import csv
import io
import json
import math
import re
import subprocess
import sys

import joblib
import numpy as np
import pandas as pd
import pytest
import tritonclient.http as triton

from harness import ROOT, FunctionServer
from tests.models import COLOURS, TABLES, TREE_MODELS

JSON = {"Content-Type": "application/json"}
# Rounded to 6 digits by the API; two correct computations may differ by one unit there.
TOLERANCE = 1e-6
REGRESSION_TOLERANCE = 1e-9  # relative: NumPy's sums in another order than scikit-learn's


class Served:
    """A trained model (tests/models.py), its server and what the test knows of it."""

    def __init__(self, trained, server):
        self.name, self.path, self.csv, self.server = (trained.name, trained.path, trained.csv,
                                                       server)
        self.meta = trained.metadata
        self.model = self.meta["name"]  # the CSV's stem; tree models share their table's
        self.features = [f["name"] for f in self.meta["features"]]
        self.kinds = {f["name"]: f["type"] for f in self.meta["features"]}
        self.classes = self.meta.get("classes")
        self.pipeline = joblib.load(trained.path)  # scikit-learn itself: the oracle
        sample = trained.rows[::max(1, len(trained.rows) // 12)][:12]
        # Rows as a JSON client sends them: numbers, categories' strings, null where missing.
        self.rows = [[None if isinstance(v, float) and math.isnan(v) else v for v in row]
                     for row in sample.tolist()]

    def X(self, rows) -> np.ndarray:
        """Rows as scikit-learn takes them: objects in feature order, NaN where missing."""
        return np.array([[np.nan if v is None else v for v in row] for row in rows],
                        dtype=object)

    def expected(self, rows) -> dict:
        X = self.X(rows)
        found = {"predict": self.pipeline.predict(X).tolist()}
        if self.classes:
            found["proba"] = self.pipeline.predict_proba(X)
            # train.py fits on class indices: prediction k is model.json's class k.
            assert self.pipeline.classes_.tolist() == list(range(len(self.classes)))
            found["labels"] = [self.classes[k] for k in found["predict"]]
        return found

    def call(self, body, path="/", headers=JSON, query=""):
        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        return self.server.call("POST", data, headers, path=path + query)


@pytest.fixture(scope="module", params=[*TABLES, *TREE_MODELS])
def served(request, trained_models):
    trained = trained_models[request.param]
    with FunctionServer(env={"MODEL_PATH": str(trained.path)}) as server:
        yield Served(trained, server)


def close(got, expected, relative=False) -> bool:
    got, expected = np.asarray(got, dtype=float), np.asarray(expected, dtype=float)
    if relative:
        return np.allclose(got, expected, rtol=REGRESSION_TOLERANCE, atol=1e-9)
    return np.allclose(got, expected, rtol=0, atol=TOLERANCE)


def check(served: Served, predictions, labels=None, probabilities=None):
    """Answers against scikit-learn's for served.rows."""
    expected = served.expected([row for row in served.rows])
    if not served.classes:
        assert close(predictions, expected["predict"], relative=True)
        return
    assert predictions == expected["predict"]
    if labels is not None:
        assert labels == expected["labels"]
    if probabilities is not None:
        rows = [[p[c] for c in served.classes] for p in probabilities]
        assert close(rows, expected["proba"])


def test_metadata_is_the_signature(served):
    meta = served.server.call("GET").json()
    assert meta["name"] == served.csv.stem
    assert [f["name"] for f in meta["features"]] == served.features
    assert meta["task"] == ("classification" if served.classes else "regression")
    header = next(csv.reader(served.csv.open()))
    assert served.features == [h for h in header if h != served.meta["target"]]
    if served.name.startswith("garden"):
        colour = next(f for f in meta["features"] if f["name"] == "colour")
        assert colour["type"] == "category" and colour["missing"] is True
        assert set(colour["categories"]) == set(COLOURS)
        assert math.isclose(sum(colour["categories"].values()), 1.0, abs_tol=1e-6)


def test_one_object_per_row(served):
    target = served.meta["target"]
    answers = [served.call(dict(zip(served.features, row))).json()
               for row in served.rows]
    check(served, [a["prediction"][0] for a in answers],
          [a[target] for a in answers] if served.classes else None,
          [a["probabilities"] for a in answers] if served.classes else None)
    if not served.classes:
        assert all("probabilities" not in a for a in answers)
        assert [a[target] for a in answers] == [a["prediction"][0] for a in answers]


@pytest.mark.parametrize("as_objects", [False, True])
def test_instances(served, as_objects):
    rows = [row for row in served.rows]
    if as_objects:
        rows = [dict(zip(served.features, row)) for row in rows]
    body = served.call({"instances": rows, "parameters": {"probabilities": True}}).json()
    check(served, body["predictions"], body[served.meta["target"]] if served.classes else None,
          body.get("probabilities"))


def test_bigquery_calls(served):
    rows = [row for row in served.rows]
    replies = served.call({"calls": rows}).json()["replies"]
    if served.classes:
        check(served, [served.classes.index(label) for label in replies], replies)
        classes = served.call({"calls": rows, "userDefinedContext": {"output": "class"}})
        check(served, classes.json()["replies"])
    else:
        check(served, replies)
    full = served.call({"calls": rows, "userDefinedContext": {"output": "json"}}).json()
    target = served.meta["target"]
    if served.classes:
        check(served, [r["class"] for r in full["replies"]], [r[target] for r in full["replies"]],
              [r["probabilities"] for r in full["replies"]])
    else:
        check(served, [r[target] for r in full["replies"]])


def test_csv_in_and_out_keeps_other_columns(served):
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["id", *served.features])
    writer.writerows([f"row-{i}", *("" if v is None else v for v in row)]
                     for i, row in enumerate(served.rows))
    reply = served.call(out.getvalue(), headers={"Content-Type": "text/csv",
                                                 "Accept": "text/csv"})
    assert reply.status == 200, reply.body
    table = list(csv.DictReader(io.StringIO(reply.body.decode())))
    assert [line["id"] for line in table] == [f"row-{i}" for i in range(len(served.rows))]
    target = served.meta["target"]
    if served.classes:
        check(served, [int(line["class"]) for line in table], [line[target] for line in table],
              [{c: float(line[f"probability_{c}"]) for c in served.classes} for line in table])
    else:
        check(served, [float(line[target]) for line in table])


@pytest.mark.parametrize("orient", ["split", "records"])
def test_mlflow_invocations_with_pandas_bodies(served, orient):
    frame = pd.DataFrame(served.rows, columns=served.features)
    body = {f"dataframe_{orient}": json.loads(frame.to_json(orient=orient))}
    reply = served.call(body, path="/invocations")
    assert reply.status == 200, reply.body
    check(served, reply.json()["predictions"])


def test_open_inference_with_tritonclient(served):
    client = triton.InferenceServerClient(url=served.server.url.removeprefix("http://"))
    meta = client.get_model_metadata(served.model)
    rows = [row for row in served.rows]
    if all(kind == "number" for kind in served.kinds.values()) \
            and not any(f["missing"] for f in served.meta["features"]):
        X = np.array(rows, dtype=np.float64)
        tensor = triton.InferInput(meta["inputs"][0]["name"], list(X.shape), "FP64")
        tensor.set_data_from_numpy(X)
        inputs = [tensor]
    else:  # one input per column, as MLServer's pandas codec sends a data frame
        assert [i["name"] for i in meta["inputs"]] == served.features
        inputs = []
        for j, (name, kind) in enumerate(served.kinds.items()):
            column = [row[j] for row in rows]
            if kind == "number":
                values = np.array([np.nan if v is None else v for v in column],
                                  dtype=np.float64).reshape(-1, 1)
                tensor = triton.InferInput(name, [len(rows), 1], "FP64")
            else:
                values = np.array([(v or "").encode() for v in column],
                                  dtype=np.object_).reshape(-1, 1)
                tensor = triton.InferInput(name, [len(rows), 1], "BYTES")
            tensor.set_data_from_numpy(values)
            inputs.append(tensor)
    result = client.infer(served.model, inputs)
    client.close()
    check(served, result.as_numpy("predict").tolist())
    if served.classes:
        assert close(result.as_numpy("predict_proba"),
                     served.expected(rows)["proba"])


def test_explanations_add_up_to_the_decision_function(served):
    """Each row's explanations plus its base value are scikit-learn's decision_function of
    the class answered (a regressor's: its prediction), and two rows' explanations of one
    class differ by the difference of it: linear models measured from the average
    training row, tree models (TreeSHAP) from the expected score."""
    rows = [row for row in served.rows]
    X = served.X(rows)
    if served.classes:
        scores = served.pipeline.decision_function(X)
        if scores.ndim == 1:  # two classes: the score is class 1's; class 0's, its negation
            scores = np.column_stack([-scores, scores])
        predicted = served.pipeline.predict(X).tolist()
        score = scores[np.arange(len(rows)), predicted]
        # Each row is explained for its predicted class: take two rows of the same class.
        i, j = next((i, j) for i in range(len(rows)) for j in range(i + 1, len(rows))
                    if predicted[i] == predicted[j])
    else:
        i, j = 0, 1
        score = served.pipeline.predict(X)
    body = served.call({"instances": rows, "explain": True}).json()
    assert body["measured_from"] == ("expected score" if served.name in TREE_MODELS
                                     else "average training row")
    sums = np.array([sum(e.values()) for e in body["explanations"]])
    # Each contribution and base is rounded to 6 digits: half a unit each, at most.
    rounding = 1e-6 * (len(served.features) + 1)
    np.testing.assert_allclose(sums + body["base_values"], score, rtol=1e-9, atol=rounding)
    assert math.isclose(sums[i] - sums[j], score[i] - score[j], rel_tol=1e-9,
                        abs_tol=rounding)
    # Every way of asking gives the same explanations: the query, the body, parameters.
    one = dict(zip(served.features, rows[i]))
    for answer in (served.call(one, query="?explain=true").json(),
                   served.call({**one, "explain": True}).json(),
                   served.call({"instances": [rows[i]], "parameters": {"explain": True}}).json()):
        assert answer["explanations"] == [body["explanations"][i]]
        assert answer["base_values"] == [body["base_values"][i]]


def test_refusals_name_the_feature_and_what_is_allowed(served):
    meta = served.meta
    number = next((f for f in meta["features"] if f["type"] == "number"), None)
    row = dict(zip(served.features, served.rows[0]))
    if number and not number["missing"]:
        bad = served.call({**row, number["name"]: "a lot"})
        assert bad.status == 400
        assert bad.json()["error"] == f'{number["name"]} must be a finite number, got string "a lot"'

        missing = served.call({**row, number["name"]: None})
        assert missing.status == 400 and number["name"] in missing.json()["error"]
    category = next((f for f in meta["features"] if f["type"] == "category"), None)
    if category:
        bad = served.call({**row, category["name"]: 3})
        assert bad.status == 400
        assert bad.json()["error"].startswith(f'{category["name"]} must be one of the categories')
        unseen = served.call({**row, category["name"]: "purple"})
        assert unseen.status == 200
        assert [w["feature"] for w in unseen.json()["warnings"]] == [category["name"]]
        assert "purple" in unseen.json()["warnings"][0]["message"]
        expected = served.expected([[("purple" if name == category["name"] else row[name])
                                     for name in served.features]])
        assert unseen.json()["prediction"] == expected["predict"]


def test_cli_takes_the_features_as_options(served):
    row = served.rows[0]
    args = []
    for name, value in zip(served.features, row):
        if value is not None:
            # The documented rule: each run of other characters than letters and digits is "-".
            args += ["--" + re.sub(r"[^0-9A-Za-z]+", "-", name).strip("-"), str(value)]
            assert name.isascii()  # test_cli has the rule for other letters
    done = subprocess.run([sys.executable, "main.py", *args], cwd=ROOT, capture_output=True,
                          text=True, env={"MODEL_PATH": str(served.path), "PATH": "/usr/bin"})
    assert done.returncode == 0, done.stderr
    expected = served.expected([row])
    if served.classes:
        assert done.stdout.strip() == expected["labels"][0]
    else:
        assert close([float(done.stdout)], expected["predict"], relative=True)
