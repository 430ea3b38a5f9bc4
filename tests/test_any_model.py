"""Any tabular model train.py writes, served live through every protocol.

For wine (three classes), breast_cancer (two), diabetes (regression), all from
scikit-learn's bundled data, and a CSV this test writes with a category column
and missing cells, each trained by `train.py --csv` and served by a real
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
import subprocess
import sys

import joblib
import numpy as np
import pandas as pd
import pytest
import tritonclient.http as triton
from sklearn import datasets

from harness import ROOT, FunctionServer

JSON = {"Content-Type": "application/json"}
# Rounded to 6 digits by the API; two correct computations may differ by one unit there.
TOLERANCE = 1e-6
REGRESSION_TOLERANCE = 1e-9  # relative: NumPy's sums in another order than scikit-learn's


def _bundled(loader, target: str, labels=None):
    """A scikit-learn data set as (header, rows of strings, target column)."""
    data = loader()
    names = [n.replace(" ", "_").replace("/", "_") for n in data.feature_names]
    y = [labels[int(v)] for v in data.target] if labels else data.target.tolist()
    return [*names, target], [[*map(repr, row), str(t)] for row, t in zip(data.data.tolist(), y)]


def _shop():
    """A made-up table with a category column and missing cells, written by the test."""
    rng = np.random.default_rng(7)
    colours = ["red", "green", "blue"]
    rows = []
    for i in range(240):
        size = rng.normal(10, 3)
        colour = colours[rng.integers(3)]
        weight = rng.normal(50, 10)
        score = size * 0.8 + (2.5 if colour == "red" else -1 if colour == "blue" else 0) \
            - weight * 0.05 + rng.normal(0, 1)
        rows.append([
            "" if i % 17 == 3 else f"{size:.3f}",
            "NA" if i % 19 == 5 else ("" if i % 23 == 7 else colour),
            f"{weight:.2f}",
            "bought" if score > 6 else "left"])
    return ["size", "colour", "weight", "outcome"], rows


MODELS = {
    # name: (header, rows, target column)
    "wine": (*_bundled(datasets.load_wine, "cultivar", ["barolo", "grignolino", "barbera"]),
             "cultivar"),
    "breast_cancer": (*_bundled(datasets.load_breast_cancer, "diagnosis",
                                ["malignant", "benign"]), "diagnosis"),
    "diabetes": (*_bundled(datasets.load_diabetes, "progression"), "progression"),
    "shop": (*_shop(), "outcome"),
}


class Served:
    """A trained model, its server and what the test knows of it independently."""

    def __init__(self, name, path, server, header, rows, target):
        self.name, self.path, self.server = name, path, server
        self.meta = json.loads(path.with_suffix(".json").read_text())
        self.features = [h for h in header if h != target]
        self.pipeline = joblib.load(path)  # scikit-learn itself: the oracle
        column = header.index(target)
        sample = rows[::max(1, len(rows) // 12)][:12]
        self.cells = [[cell for j, cell in enumerate(row) if j != column] for row in sample]
        self.kinds = {f["name"]: f["type"] for f in self.meta["features"]}
        self.classes = self.meta.get("classes")

    def json_row(self, cells) -> list:
        """A row as a JSON client sends it: numbers as numbers, categories as strings."""
        return [None if cell in ("", "NA") else
                float(cell) if self.kinds[name] == "number" else cell
                for name, cell in zip(self.features, cells)]

    def frame(self, rows) -> pd.DataFrame:
        return pd.DataFrame(rows, columns=self.features)

    def X(self, rows) -> np.ndarray:
        """Rows as scikit-learn takes them: objects in feature order, NaN where missing."""
        return np.array([[np.nan if v is None else v for v in row] for row in rows],
                        dtype=object)

    def expected(self, rows) -> dict:
        X = self.X(rows)
        found = {"predict": self.pipeline.predict(X).tolist()}
        if self.classes:
            found["proba"] = self.pipeline.predict_proba(X)
            found["labels"] = [self.classes[k] for k in found["predict"]]
        return found

    def call(self, body, path="/", headers=JSON, query=""):
        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        return self.server.call("POST", data, headers, path=path + query)


@pytest.fixture(scope="module", params=list(MODELS))
def served(request, tmp_path_factory):
    name = request.param
    header, rows, target = MODELS[name]
    folder = tmp_path_factory.mktemp(name)
    table = folder / f"{name}.csv"
    with table.open("w", newline="") as f:
        csv.writer(f).writerows([header, *rows])
    path = folder / "model.joblib"
    subprocess.run([sys.executable, "train.py", "--csv", str(table), "--target", target,
                    "--output", str(path)], cwd=ROOT, check=True, capture_output=True)
    with FunctionServer(env={"MODEL_PATH": str(path)}) as server:
        yield Served(name, path, server, header, rows, target)


def close(got, expected, relative=False) -> bool:
    got, expected = np.asarray(got, dtype=float), np.asarray(expected, dtype=float)
    if relative:
        return np.allclose(got, expected, rtol=REGRESSION_TOLERANCE, atol=1e-9)
    return np.allclose(got, expected, rtol=0, atol=TOLERANCE)


def check(served: Served, predictions, labels=None, probabilities=None):
    """Answers against scikit-learn's for served.cells."""
    expected = served.expected([served.json_row(c) for c in served.cells])
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
    assert meta["name"] == served.name  # the CSV's stem
    assert [f["name"] for f in meta["features"]] == served.features
    assert meta["task"] == ("classification" if served.classes else "regression")
    if served.name == "shop":
        colour = next(f for f in meta["features"] if f["name"] == "colour")
        assert colour["type"] == "category" and colour["missing"] is True
        assert set(colour["categories"]) == {"red", "green", "blue"}
        assert math.isclose(sum(colour["categories"].values()), 1.0, abs_tol=1e-6)


def test_one_object_per_row(served):
    target = served.meta["target"]
    answers = [served.call(dict(zip(served.features, served.json_row(c)))).json()
               for c in served.cells]
    check(served, [a["prediction"][0] for a in answers],
          [a[target] for a in answers] if served.classes else None,
          [a["probabilities"] for a in answers] if served.classes else None)
    if not served.classes:
        assert all("probabilities" not in a for a in answers)
        assert [a[target] for a in answers] == [a["prediction"][0] for a in answers]


@pytest.mark.parametrize("as_objects", [False, True])
def test_instances(served, as_objects):
    rows = [served.json_row(c) for c in served.cells]
    if as_objects:
        rows = [dict(zip(served.features, row)) for row in rows]
    body = served.call({"instances": rows, "parameters": {"probabilities": True}}).json()
    check(served, body["predictions"], body[served.meta["target"]] if served.classes else None,
          body.get("probabilities"))


def test_bigquery_calls(served):
    rows = [served.json_row(c) for c in served.cells]
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
    writer.writerows([f"row-{i}", *cells] for i, cells in enumerate(served.cells))
    reply = served.call(out.getvalue(), headers={"Content-Type": "text/csv",
                                                 "Accept": "text/csv"})
    assert reply.status == 200, reply.body
    table = list(csv.DictReader(io.StringIO(reply.body.decode())))
    assert [line["id"] for line in table] == [f"row-{i}" for i in range(len(served.cells))]
    target = served.meta["target"]
    if served.classes:
        check(served, [int(line["class"]) for line in table], [line[target] for line in table],
              [{c: float(line[f"probability_{c}"]) for c in served.classes} for line in table])
    else:
        check(served, [float(line[target]) for line in table])


@pytest.mark.parametrize("orient", ["split", "records"])
def test_mlflow_invocations_with_pandas_bodies(served, orient):
    frame = served.frame([served.json_row(c) for c in served.cells])
    body = {f"dataframe_{orient}": json.loads(frame.to_json(orient=orient))}
    reply = served.call(body, path="/invocations")
    assert reply.status == 200, reply.body
    check(served, reply.json()["predictions"])


def test_open_inference_with_tritonclient(served):
    client = triton.InferenceServerClient(url=served.server.url.removeprefix("http://"))
    meta = client.get_model_metadata(served.name)
    rows = [served.json_row(c) for c in served.cells]
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
    result = client.infer(served.name, inputs)
    client.close()
    check(served, result.as_numpy("predict").tolist())
    if served.classes:
        assert close(result.as_numpy("predict_proba"),
                     served.expected(rows)["proba"])


def test_explanations_differ_as_the_decision_function(served):
    """For two rows, the explanations of one class differ by exactly the difference of
    scikit-learn's decision_function for that class (a regressor's: its prediction)."""
    rows = [served.json_row(c) for c in served.cells]
    X = served.X(rows)
    if served.classes:
        scores = served.pipeline.decision_function(X)
        if scores.ndim == 1:  # two classes: the score is class 1's; class 0's, its negation
            scores = np.column_stack([-scores, scores])
        predicted = served.pipeline.predict(X).tolist()
        # Each row is explained for its predicted class: take two rows of the same class.
        i, j = next((i, j) for i in range(len(rows)) for j in range(i + 1, len(rows))
                    if predicted[i] == predicted[j])
        expected = scores[i, predicted[i]] - scores[j, predicted[i]]
    else:
        i, j = 0, 1
        predicted = served.pipeline.predict(X)
        expected = predicted[i] - predicted[j]
    body = served.call({"instances": [rows[i], rows[j]], "explain": True}).json()
    first, second = (sum(e.values()) for e in body["explanations"])
    # Each contribution is rounded to 6 digits: half a unit each, at most.
    assert math.isclose(first - second, expected, rel_tol=1e-9,
                        abs_tol=1e-6 * len(served.features))


def test_refusals_name_the_feature_and_what_is_allowed(served):
    meta = served.meta
    number = next((f for f in meta["features"] if f["type"] == "number"), None)
    row = dict(zip(served.features, served.json_row(served.cells[0])))
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
    row = served.json_row(served.cells[0])
    args = []
    for name, value in zip(served.features, row):
        if value is not None:
            args += [f"--{name.replace('_', '-')}", str(value)]
    done = subprocess.run([sys.executable, "main.py", *args], cwd=ROOT, capture_output=True,
                          text=True, env={"MODEL_PATH": str(served.path), "PATH": "/usr/bin"})
    assert done.returncode == 0, done.stderr
    expected = served.expected([row])
    if served.classes:
        assert done.stdout.strip() == expected["labels"][0]
    else:
        assert close([float(done.stdout)], expected["predict"], relative=True)
