"""Shape predictions into the JSON each kind of request expects."""

import numpy as np

from iris_predict.protocols.batch import Batch, BigQueryOutput, Kind
from iris_predict.features import FEATURES, NAMES
from iris_predict.model.served import FEW_ROWS, Model

PROBABILITY_DIGITS = 6
ROUNDING = 10.0 ** PROBABILITY_DIGITS


def answer(batch: Batch, model: Model) -> dict:
    """The response body for a validated batch."""
    wants_proba = batch.probabilities or batch.output is BigQueryOutput.JSON
    labels, proba = model.predict(batch.X, wants_proba) if len(batch.X) else ([], None)
    explanations = explain(model, batch.X, labels) if batch.explain else None
    labels = labels.tolist() if isinstance(labels, np.ndarray) else list(labels)
    classes = model.classes
    species = [classes[k] for k in labels]
    probabilities = _probabilities(model, proba) if proba is not None else None
    warnings = _warnings(model, batch.X)

    if batch.kind is Kind.SINGLE:
        # "prediction": [k] is the tutorial's answer; old clients read only that.
        body = {"prediction": labels, "species": species[0],
                "probabilities": probabilities[0], "warnings": warnings}
    elif batch.kind is Kind.CALLS:
        return {"replies": _replies(batch, labels, species, probabilities, warnings)}
    else:
        body = {"predictions": labels, "species": species}
        if probabilities is not None:
            body["probabilities"] = probabilities
        body["warnings"] = warnings
    if explanations is not None:
        body["explanations"] = explanations
    return body


def explain(model: Model, X: np.ndarray, labels) -> list:
    """One {feature: contribution} per row: Model.explain, rounded like probabilities."""
    contributions = np.round(model.explain(X, labels), PROBABILITY_DIGITS)
    return [dict(zip(NAMES, row)) for row in contributions.tolist()]


def _probabilities(model: Model, proba: np.ndarray) -> list:
    """{species: probability} per row, rounded as np.round(proba, PROBABILITY_DIGITS) rounds:
    p * 10**digits to the nearest integer, ties to even, divided back."""
    if len(proba) <= FEW_ROWS:  # NumPy's overhead per call outweighs the work here
        rounded = [[round(p * ROUNDING) / ROUNDING for p in row] for row in proba.tolist()]
    else:
        proba *= ROUNDING
        np.rint(proba, out=proba)
        proba /= ROUNDING
        rounded = proba.tolist()
    classes = model.classes
    return [dict(zip(classes, row)) for row in rounded]


def _warnings(model: Model, X: np.ndarray) -> list:
    """One entry per out-of-training-range value: the model extrapolates there."""
    found = []
    for row, col, value in model.out_of_range(X):
        name, _, unit = FEATURES[col]
        lo, hi = model.ranges[col]
        found.append({
            "row": row, "feature": name, "value": value, "min": lo, "max": hi,
            "message": f"{name} {value:g} {unit} is outside the training range "
                       f"{lo:g}-{hi:g} {unit}; the prediction is an extrapolation",
        })
    return found


def _replies(batch: Batch, labels, species, probabilities, warnings) -> list:
    """One reply per call, in order; None (SQL NULL) where a call had a NULL argument."""
    if batch.output is BigQueryOutput.CLASS:
        scored = labels
    elif batch.output is BigQueryOutput.SPECIES:
        scored = species
    else:
        by_row = [[] for _ in labels]
        for w in warnings:
            by_row[w["row"]].append({k: v for k, v in w.items() if k != "row"})
        scored = [{"class": k, "species": s, "probabilities": p, "warnings": ws}
                  for k, s, p, ws in zip(labels, species, probabilities or [], by_row)]
    if len(scored) == batch.total:  # no NULL rows: the replies are the scores, in order
        return scored
    replies = [None] * batch.total
    for i, reply in zip(batch.present, scored):
        replies[i] = reply
    return replies
