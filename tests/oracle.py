"""Expected answers from outside the code under test: known flowers and scikit-learn itself.

The function predicts without importing scikit-learn (iris_predict/model/estimators.py);
here scikit-learn loads the same model.joblib and answers with its own
predict_proba, and the training range comes from the iris data set, not from
model.json. The API rounds probabilities to 6 digits (half to even); two
correct computations may differ in the last bit before rounding and so by one
unit of the 6th digit after it, hence TOLERANCE.
"""

import functools
import math

import joblib
import numpy as np
from sklearn.datasets import load_iris

from harness import ROOT

CLASSES = ("setosa", "versicolor", "virginica")
NAMES = ("sepal_length", "sepal_width", "petal_length", "petal_width")
ALIASES = ("sl", "sw", "pl", "pw")
# Rows 1, 51 and 101 of Fisher's iris data: one flower of each species, in cm.
FLOWERS = {
    "setosa": [5.1, 3.5, 1.4, 0.2],
    "versicolor": [7.0, 3.2, 4.7, 1.4],
    "virginica": [6.3, 3.3, 6.0, 2.5],
}
# The tutorial's flower: sepal length 3.0 cm is below the shortest training flower (4.3 cm).
TUTORIAL = [3.0, 2.0, 1.0, 1.0]
TUTORIAL_WARNING = ("sepal_length 3 cm is outside the training range 4.3-7.9 cm; "
                    "the prediction is an extrapolation")
TOLERANCE = 1e-6  # one unit of the 6th digit: see the module docstring


@functools.cache
def estimator():
    """model.joblib as scikit-learn loads it."""
    return joblib.load(ROOT / "model.joblib")


@functools.cache
def _training_range():
    data = load_iris().data
    return data.min(axis=0).tolist(), data.max(axis=0).tolist()


def species(rows) -> list[str]:
    """scikit-learn's predicted species for each row."""
    return [CLASSES[k] for k in estimator().predict(np.array(rows, dtype=float))]


def probabilities(rows) -> list[dict]:
    """scikit-learn's predict_proba for each row, rounded as the API documents."""
    proba = estimator().predict_proba(np.array(rows, dtype=float))
    return [dict(zip(CLASSES, (round(p * 1e6) / 1e6 for p in row))) for row in proba.tolist()]


def warnings(rows) -> list[dict]:
    """The warnings for values outside the iris data's range; all fields but the message."""
    lows, highs = _training_range()
    return [{"row": i, "feature": NAMES[j], "value": float(value), "min": lows[j], "max": highs[j]}
            for i, row in enumerate(rows) for j, value in enumerate(row)
            if not lows[j] <= value <= highs[j]]


def single(row: list) -> dict:
    """The answer to one flower, warnings without their message."""
    (name,) = species([row])
    return {"prediction": [CLASSES.index(name)], "species": name,
            "probabilities": probabilities([row])[0], "warnings": warnings([row])}


def instances(rows: list, with_probabilities: bool) -> dict:
    """The answer to {"instances": rows}, warnings without their message."""
    names = species(rows)
    answer = {"predictions": [CLASSES.index(name) for name in names], "species": names}
    if with_probabilities:
        answer["probabilities"] = probabilities(rows)
    answer["warnings"] = warnings(rows)
    return answer


def replies(calls: list, output: str) -> dict:
    """The answer to BigQuery {"calls": calls} asking for `output`: None for a call with a NULL."""
    found = []
    for call in calls:
        if None in call:
            found.append(None)
            continue
        (name,) = species([call])
        if output == "json":
            found.append({"class": CLASSES.index(name), "species": name,
                          "probabilities": probabilities([call])[0],
                          "warnings": [{k: v for k, v in w.items() if k != "row"}
                                       for w in warnings([call])]})
        else:
            found.append(name if output == "species" else CLASSES.index(name))
    return {"replies": found}


def close(got, expected) -> bool:
    """JSON values equal but for floats, which may differ by TOLERANCE."""
    if isinstance(expected, float) and isinstance(got, (int, float)):
        return math.isclose(got, expected, rel_tol=0, abs_tol=TOLERANCE)
    if isinstance(expected, dict):
        return (isinstance(got, dict) and got.keys() == expected.keys()
                and all(close(got[k], v) for k, v in expected.items()))
    if isinstance(expected, list):
        return (isinstance(got, list) and len(got) == len(expected)
                and all(close(g, e) for g, e in zip(got, expected)))
    return type(got) is type(expected) and got == expected


def without_messages(answer):
    """An answer with its warnings' message texts left out, to compare with the oracle's."""
    if isinstance(answer, dict):
        return {k: without_messages(v) for k, v in answer.items()
                if not (k == "message" and "feature" in answer)}
    if isinstance(answer, list):
        return [without_messages(v) for v in answer]
    return answer
