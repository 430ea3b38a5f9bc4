"""Models that train.py --csv makes from tables written here, for tests of any layer.

Three from scikit-learn's bundled data (wine: 3 classes, breast_cancer: 2, diabetes:
regression) and two from a garden table generated here with a category column, missing
numbers and missing categories (garden_kind: 3 string classes, garden_yield: regression).
tests/conftest.py's session fixture `trained_models` trains them once into a temporary
directory; each is a Trained, whose `rows` are the CSV's feature rows as the fitted
pipeline takes them and `X` the same rows as the function's Model takes them (computed
here from model.json, independently of the function).
"""

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn import datasets

import train

GARDEN_ROWS = 240
COLOURS = ("red", "green", "blue", "white")
SOILS = ("clay", "sand", "loam")
KINDS = ("rose", "tulip", "iris")


@dataclass
class Trained:
    name: str
    path: Path             # the model file; its sidecar is path.with_suffix(".json")
    csv: Path
    target: str
    rows: np.ndarray       # the CSV's features: an object array, floats (NaN) and strings (NaN)
    y: list                # the CSV's target cells
    X: np.ndarray          # the same rows as Model takes them: numbers, category codes

    @property
    def metadata(self) -> dict:
        return json.loads(self.path.with_suffix(".json").read_text())


def write_csv(path: Path, header: list, rows: list) -> Path:
    """A CSV as a spreadsheet writes it; None is an empty cell."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows([["" if v is None else v for v in row] for row in rows])
    return path


def bundled_csv(directory: Path, name: str) -> tuple:
    """(CSV path, target) of one of scikit-learn's bundled data sets."""
    data = getattr(datasets, f"load_{name}")()
    target = "target"
    header = [n.replace(" ", "_") for n in data.feature_names] + [target]
    rows = [[*map(repr, x), repr(t) if isinstance(t, float) else int(t)]
            for x, t in zip(data.data.tolist(), data.target.tolist())]
    return write_csv(directory / f"{name}.csv", header, rows), target


def garden_csv(directory: Path, target: str) -> tuple:
    """(CSV path, target): a table with categories and missing cells, target "kind" (three
    string classes) or "yield" (a number), both following the features plus noise."""
    rng = np.random.default_rng(15)
    height = rng.normal(50, 12, GARDEN_ROWS)
    width = rng.uniform(5, 30, GARDEN_ROWS)
    colour = rng.choice(COLOURS, GARDEN_ROWS, p=[0.4, 0.3, 0.2, 0.1])
    soil = rng.choice(SOILS, GARDEN_ROWS)
    colour_effect = {"red": 1.0, "green": -0.5, "blue": 0.3, "white": 0.0}
    score = (height - 50) / 12 + np.array([colour_effect[c] for c in colour]) \
        + (soil == "clay") * 0.8 + rng.normal(0, 0.4, GARDEN_ROWS)
    kinds = np.array(KINDS)[np.digitize(score, [-0.5, 0.6])]
    yields = 3 * height + 2 * width + 10 * (soil == "loam") + rng.normal(0, 5, GARDEN_ROWS)
    rows = []
    for i in range(GARDEN_ROWS):
        rows.append([
            None if i % 11 == 3 else round(float(height[i]), 3),
            None if i % 13 == 5 else str(colour[i]),
            str(soil[i]),
            "NA" if i % 17 == 7 else round(float(width[i]), 3),
            str(kinds[i]) if target == "kind" else round(float(yields[i]), 3),
        ])
    path = directory / f"garden_{target}.csv"
    return write_csv(path, ["height", "colour", "soil", "width", target], rows), target


def read_back(path: Path, target: str) -> tuple:
    """(rows as an object array, target cells): the CSV read with the csv module, as the
    fitted pipeline takes it: numbers as floats, other cells as strings, NaN where empty."""
    with open(path, newline="") as f:
        lines = list(csv.reader(f))
    header, body = lines[0], lines[1:]
    t = header.index(target)
    columns = [j for j in range(len(header)) if j != t]
    numeric = {j: all(_float(line[j]) is not None or line[j] in ("", "NA") for line in body)
               for j in columns}
    rows = np.array([[_cell(line[j], numeric[j]) for j in columns] for line in body],
                    dtype=object)
    return rows, [line[t] for line in body]


def _float(cell: str):
    try:
        return float(cell)
    except ValueError:
        return None


def _cell(cell: str, numeric: bool):
    if cell in ("", "NA"):
        return math.nan
    return float(cell) if numeric else cell


def encode(metadata: dict, rows: np.ndarray) -> np.ndarray:
    """Object rows as Model takes them (DESIGN.md): numbers as they are, NaN where missing;
    a category as its index in model.json's categories, -1 if not there, NaN where missing."""
    X = np.empty(rows.shape)
    for j, feature in enumerate(metadata["features"]):
        if feature["type"] == "number":
            X[:, j] = rows[:, j].astype(float)
            continue
        order = list(feature["categories"])
        X[:, j] = [math.nan if isinstance(v, float) else order.index(v) if v in order else -1
                   for v in rows[:, j]]
    return X


TABLES = {
    "wine": lambda d: bundled_csv(d, "wine"),
    "breast_cancer": lambda d: bundled_csv(d, "breast_cancer"),
    "diabetes": lambda d: bundled_csv(d, "diabetes"),
    "garden_kind": lambda d: garden_csv(d, "kind"),
    "garden_yield": lambda d: garden_csv(d, "yield"),
}


# Tree models of two of those tables (train.py --csv --estimator), served by NumPy alike.
TREE_MODELS = {
    "garden_kind_boosted": ("garden_kind", "hist-gradient-boosting"),
    "garden_yield_forest": ("garden_yield", "random-forest"),
}


def train_all(directory: Path) -> dict:
    """{name: Trained} for every table in TABLES (the linear baseline) and each of
    TREE_MODELS, trained by train.py --csv into directory."""
    found = {}
    runs = [(name, write, "linear") for name, write in TABLES.items()] + [
        (name, TABLES[table], estimator) for name, (table, estimator) in TREE_MODELS.items()]
    for name, write, estimator in runs:
        path, target = write(directory)
        model = directory / f"{name}.joblib"
        assert train.main(["--csv", str(path), "--target", target, "--estimator", estimator,
                           "--output", str(model)]) == 0
        rows, y = read_back(path, target)
        metadata = json.loads(model.with_suffix(".json").read_text())
        found[name] = Trained(name, model, path, target, rows, y, encode(metadata, rows))
    return found
