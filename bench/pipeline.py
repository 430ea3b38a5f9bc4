"""The train.py pipeline the bench serves beside iris: the README's own model, with categories.

docs/garden.csv (two numbers, two categories, missing cells), trained by
`train.py --csv` in the project venv, as the README's `make model` does, into a
Pipeline of a ColumnTransformer and a LogisticRegression; served with MODEL_PATH
like any model a user brings, and asked the README's one-row request.
"""

import subprocess
from pathlib import Path

from harness import ROOT

TABLE = ROOT / "docs" / "garden.csv"
TARGET = "kind"
# The README's request to that model, by the features' names.
ONE_ROW = {"height": 61.5, "colour": "red", "soil": "clay", "width": 12.0}


def make(bin_dir: Path, model: Path):
    """model (and its model.json sidecar), trained by train.py --csv; raises on failure."""
    model.parent.mkdir(parents=True, exist_ok=True)
    run = subprocess.run([str(bin_dir / "python"), "train.py", "--csv", str(TABLE),
                          "--target", TARGET, "--output", str(model)],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    if run.returncode != 0:
        raise RuntimeError(f"train.py --csv failed:\n{run.stderr[-2000:]}")
