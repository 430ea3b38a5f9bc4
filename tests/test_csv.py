"""CSV tables on "/": scored like instances, answered in JSON or, when asked, in CSV.

Expected values come from scikit-learn itself (joblib.load of model.joblib); the
CSV answers are read back with pandas, as an analyst would read them.
"""

import io

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_iris

from iris_predict import settings
from harness import ROOT

IRIS = load_iris()
X = IRIS.data[::15]
LONG = "sepal_length,sepal_width,petal_length,petal_width"
SHORT = "sl,sw,pl,pw"
CSV = {"Content-Type": "text/csv"}
ROUNDING = 5e-7  # the answers' probabilities are rounded to 6 decimals


@pytest.fixture(scope="module")
def estimator():
    """The shipped model as scikit-learn itself loads it: the oracle."""
    return joblib.load(ROOT / "model.joblib")


def table(rows: np.ndarray, header: str | None, order=(0, 1, 2, 3)) -> str:
    lines = [header] if header else []
    lines += [",".join(repr(float(row[j])) for j in order) for row in rows]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("header, order", [
    (LONG, (0, 1, 2, 3)), (SHORT, (0, 1, 2, 3)), (None, (0, 1, 2, 3)),
    ("pw,pl,sw,sl", (3, 2, 1, 0)),
])
def test_a_table_is_scored_like_instances(live, estimator, header, order):
    reply = live.call("POST", table(X, header, order), CSV)
    assert reply.status == 200 and reply.headers["content-type"] == "application/json"
    body = reply.json()
    assert body["predictions"] == estimator.predict(X).tolist()
    assert body["species"] == [IRIS.target_names[k] for k in estimator.predict(X)]


def test_accept_csv_answers_a_table(live, estimator):
    reply = live.call("POST", table(X, LONG), {**CSV, "Accept": "text/csv"})
    assert reply.status == 200 and reply.headers["content-type"].startswith("text/csv")
    answer = pd.read_csv(io.BytesIO(reply.body))
    assert list(answer.columns) == ["class", "species", *(
        f"probability_{name}" for name in IRIS.target_names)]
    assert answer["class"].tolist() == estimator.predict(X).tolist()
    assert answer["species"].tolist() == [IRIS.target_names[k] for k in answer["class"]]
    np.testing.assert_allclose(answer.iloc[:, 2:].to_numpy(), estimator.predict_proba(X),
                               rtol=0, atol=ROUNDING)


def test_a_json_batch_may_ask_for_csv_too(live, estimator):
    reply = live.call("POST", {"instances": X.tolist()}, {"Accept": "application/json;q=0.5, "
                                                                    "text/csv"})
    assert pd.read_csv(io.BytesIO(reply.body))["class"].tolist() == \
        estimator.predict(X).tolist()


def test_a_spreadsheets_table_with_crlf_and_bom_is_fine(live, estimator):
    body = "\ufeff" + table(X, LONG).replace("\n", "\r\n")
    reply = live.call("POST", body.encode(), CSV)
    assert reply.json()["predictions"] == estimator.predict(X).tolist()


MALFORMED = {
    # name: (body, message naming the line and column)
    "a word": ("sl,sw,pl,pw\n5.1,3.5,1.4,0.2\n6.3,abc,6.0,2.5\n",
               'line 3, column 2 (sepal_width) must be a number greater than 0 and at most 100 '
               '(cm), got string "abc"'),
    "a missing column": (f"{LONG}\n5.1,3.5,1.4\n", "line 2 has 3 columns, expected 4"),
    "out of bounds": ("5.1,3.5,1.4,0.2\n5.1,3.5,1.4,0\n", "line 2, column 4 (petal_width)"),
    "an empty cell": ("pw,pl,sw,sl\n0.2,,3.5,5.1\n",
                      "line 2, column 2 (petal_length) is empty; petal_length must be a number "
                      "greater than 0 and at most 100 (cm)"),
    "semicolons": ("sl;sw;pl;pw\n5.1;3.5;1.4;0.2\n",
                   'line 1 has a cell holding "sl;sw;pl;pw": the table seems separated by '
                   'semicolons, but the CSV separator must be a comma'),
    "semicolons, no header": ("5,1;3,5;1,4;0,2\n", "separated by semicolons, but the CSV "
                                                    "separator must be a comma"),
    "tabs": ("sl\tsw\tpl\tpw\n5.1\t3.5\t1.4\t0.2\n", "separated by tabs"),
    "newlines lost (curl -d)": (f"{LONG}5.1,3.5,1.4,0.27.0,3.2,4.7,1.4",
                                "were its newlines lost? curl -d strips them: send the file with "
                                "--data-binary @FILE"),
    "newlines lost, no header": ("5.1,3.5,1.4,0.27.0,3.2,4.7,1.4", "line 1 has 7 columns, "
                                 "expected 4 (sepal_length, sepal_width, petal_length, "
                                 "petal_width); the body is one line: were its newlines lost?"),
    "mixed names": ("sl,sw,pl,petal_width\n5.1,3.5,1.4,0.2\n",
                    'line 1, column 4: the header mixes long and short names: "petal_width" is '
                    'the other form of "pw"; use sl, sw, pl, pw'),
    "a header without a feature": ("sl,sw,pl,width\n5.1,3.5,1.4,0.2\n",
                                   'line 1: the header is missing pw (its columns "width" are '
                                   'not features)'),
    "a misspelt feature": ("sl,sw,pl,petal_widht\n5.1,3.5,1.4,0.2\n",
                           'line 1, column 4: the header has unknown column "petal_widht" '
                           '(did you mean "petal_width"?)'),
    "a repeated header": ("sl,sw,sl,pw\n5.1,3.5,1.4,0.2\n", 'line 1, column 3: the header repeats'),
    "a short header": ("sl,sw,pl\n5.1,3.5,1.4\n", "line 1: the header is missing pw"),
    "bad quoting": ('sl,sw,pl,pw\n5.1,"3.5"x,1.4,0.2\n', "malformed at line 2"),
    "no rows": (f"{LONG}\n", "the CSV body has no rows"),
    "not UTF-8": (b"sl,sw,pl,pw\n5.1,3.5,1.4,\xff\n", "not valid UTF-8"),
}


@pytest.mark.parametrize("name", MALFORMED)
def test_a_malformed_table_is_400_naming_line_and_column(live, name):
    body, message = MALFORMED[name]
    reply = live.call("POST", body, CSV)
    assert reply.status == 400
    assert message in reply.json()["error"]


def test_the_batch_limit_holds(client, monkeypatch):
    monkeypatch.setattr(settings, "MAX_BATCH_ROWS", 5)
    reply = client.post("/", content=table(IRIS.data[:6], LONG), headers=CSV)
    assert reply.status_code == 413 and "limit of 5" in reply.json()["error"]
    assert client.post("/", content=table(IRIS.data[:5], LONG), headers=CSV).status_code == 200


def test_the_body_limit_holds(client, monkeypatch):
    monkeypatch.setattr(settings, "MAX_BODY_BYTES", 100)
    reply = client.post("/", content=table(IRIS.data[:10], LONG), headers=CSV)
    assert reply.status_code == 413 and "limit of 100" in reply.json()["error"]


def test_columns_the_model_does_not_use_come_back_first(live, estimator):
    """An id and the true label, as spreadsheets have them: not fed to the model, repeated
    first in a CSV answer so rows join back; a JSON answer is as without them."""
    rows = [f"flower-{i},{IRIS.target_names[t]},{','.join(map(repr, x))},note {i}"
            for i, (x, t) in enumerate(zip(X.tolist(), IRIS.target[::15]))]
    body = "\n".join([f"id,species,{LONG},comment", *rows]) + "\n"
    reply = live.call("POST", body, {**CSV, "Accept": "text/csv"})
    assert reply.status == 200, reply.body
    answer = pd.read_csv(io.BytesIO(reply.body))
    assert list(answer.columns[:3]) == ["id", "species", "comment"]
    assert answer["id"].tolist() == [f"flower-{i}" for i in range(len(X))]
    assert answer["comment"].tolist() == [f"note {i}" for i in range(len(X))]
    assert answer["class"].tolist() == estimator.predict(X).tolist()
    as_json = live.call("POST", body, CSV).json()
    assert as_json["predictions"] == estimator.predict(X).tolist()
