"""The train.py pipeline the bench serves beside iris: a table with a category column.

A garden table written here (two numbers, two categories, missing cells), trained
by `train.py --csv` in the project venv into a Pipeline of a ColumnTransformer and
a LogisticRegression, served with MODEL_PATH like any model a user brings.
"""

import csv
import subprocess
from pathlib import Path

import numpy as np

from harness import ROOT

ROWS = 600
COLOURS = ("red", "green", "blue", "white")
SOILS = ("clay", "loam", "sand")
KINDS = ("shrub", "herb", "tree")
HEADER = ("height", "colour", "soil", "width", "kind")
# One row in the function's own protocol, by the features' names.
ONE_ROW = {"height": 52.5, "colour": "red", "soil": "clay", "width": 12.0}


def write_table(path: Path) -> Path:
    """A CSV whose `kind` follows the other columns plus noise; some cells left empty."""
    rng = np.random.default_rng(15)
    height = rng.normal(50, 12, ROWS)
    width = rng.uniform(5, 30, ROWS)
    colour = rng.choice(COLOURS, ROWS, p=[0.4, 0.3, 0.2, 0.1])
    soil = rng.choice(SOILS, ROWS)
    effect = {"red": 1.0, "green": -0.5, "blue": 0.3, "white": 0.0}
    score = (height - 50) / 12 + np.array([effect[c] for c in colour]) \
        + (soil == "clay") * 0.8 + rng.normal(0, 0.4, ROWS)
    kind = np.array(KINDS)[np.digitize(score, [-0.5, 0.6])]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(HEADER)
        for i in range(ROWS):
            writer.writerow(["" if i % 11 == 3 else round(float(height[i]), 2),
                             "" if i % 13 == 5 else colour[i], soil[i],
                             "NA" if i % 17 == 7 else round(float(width[i]), 2), kind[i]])
    return path


def make(bin_dir: Path, model: Path):
    """model (and its model.json sidecar), trained by train.py --csv; raises on failure."""
    table = write_table(model.parent / "garden.csv")
    run = subprocess.run([str(bin_dir / "python"), "train.py", "--csv", str(table),
                          "--target", "kind", "--output", str(model)],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    if run.returncode != 0:
        raise RuntimeError(f"train.py --csv failed:\n{run.stderr[-2000:]}")
