"""Train the iris classifier and write model.joblib plus its model.json sidecar.

    python train.py [--output model.joblib]

Uses scikit-learn's bundled iris data (no download) and fixed seeds, so two
runs give the same model. The sidecar records what the function serves as
metadata, what it checks before loading (versions and the file's SHA-256) and what drift
reports compare served measurements with (training means, ranges and binned shares).
"""

import argparse
import hashlib
import json
import platform
import warnings
from pathlib import Path

import joblib
import numpy as np
import sklearn
from sklearn.base import clone
from sklearn.datasets import load_iris
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_validate, train_test_split

from drift import reference
from iris_predict.model.artifact import sidecar_path
from iris_predict.features import FEATURES

SEED = 42
CV_FOLDS = 10
HOLDOUT_FRACTION = 0.2


# An L2-regularised logistic regression has exactly one optimum. lbfgs stops near it, where
# floating-point details decide (its ftol is fixed at 64 eps inside scikit-learn, so even
# tol=1e-15 leaves ~1e-5 between machines); Newton steps converge quadratically, so every
# machine lands within ~1e-14 of it (README "The model and retraining").
SOLVER_TOL = 1e-12
SOLVER_MAX_ITER = 100


def make_estimator():
    """The served estimator; README 'The model and retraining' explains the choice."""
    return LogisticRegression(solver="newton-cholesky", tol=SOLVER_TOL, max_iter=SOLVER_MAX_ITER)


def evaluate(estimator, X, y):
    """Held-out and cross-validated scores, all from fixed splits."""
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=HOLDOUT_FRACTION, stratify=y, random_state=SEED
    )
    holdout = clone(estimator).fit(X_train, y_train)
    folds = StratifiedKFold(CV_FOLDS, shuffle=True, random_state=SEED)
    cv = cross_validate(estimator, X, y, cv=folds, scoring=("accuracy", "neg_log_loss"))
    return {
        "holdout_accuracy": round(float(holdout.score(X_test, y_test)), 4),
        "holdout_rows": int(len(y_test)),
        "cv_folds": CV_FOLDS,
        "cv_accuracy_mean": round(float(cv["test_accuracy"].mean()), 4),
        "cv_accuracy_std": round(float(cv["test_accuracy"].std()), 4),
        "cv_log_loss_mean": round(float(-cv["test_neg_log_loss"].mean()), 4),
    }


def train(output: Path) -> dict:
    """Fit on all 150 flowers, write the artifact and sidecar, return the sidecar."""
    iris = load_iris()
    X, y = iris.data, iris.target
    estimator = make_estimator()
    with warnings.catch_warnings():
        # A model that stopped short of the optimum is not reproducible across machines.
        warnings.simplefilter("error", ConvergenceWarning)
        metrics = evaluate(estimator, X, y)
        estimator.fit(X, y)

    output.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(estimator, output)
    metadata = {
        "estimator": repr(estimator),
        "features": [
            {"name": name, "alias": alias, "unit": unit, "min": float(lo), "max": float(hi),
             "mean": round(float(mean), 12), "std": round(float(std), 12)}
            for (name, alias, unit), lo, hi, mean, std in zip(
                FEATURES, X.min(axis=0), X.max(axis=0), X.mean(axis=0), X.std(axis=0))
        ],
        "classes": [str(c) for c in iris.target_names],
        "training_rows": int(len(y)),
        # Per feature, bins across the training range and the training share in each: the
        # reference distribution of drift reports (drift.py, docs/drift.md).
        "training_distribution": reference(X),
        "metrics": metrics,
        "versions": {
            "python": platform.python_version(),
            "scikit-learn": sklearn.__version__,
            "joblib": joblib.__version__,
            "numpy": np.__version__,
        },
        "sha256": hashlib.sha256(output.read_bytes()).hexdigest(),
    }
    sidecar_path(output).write_text(json.dumps(metadata, indent=2) + "\n")
    return metadata


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path(__file__).with_name("model.joblib"),
                        help="where to write the model (default: model.joblib beside this file)")
    args = parser.parse_args(argv)
    metadata = train(args.output)
    m = metadata["metrics"]
    print(f"wrote {args.output} and {sidecar_path(args.output)}")
    print(f"held-out accuracy: {m['holdout_accuracy']:.4f} ({m['holdout_rows']} rows)")
    print(f"{m['cv_folds']}-fold CV accuracy: {m['cv_accuracy_mean']:.4f} ± {m['cv_accuracy_std']:.4f}")


if __name__ == "__main__":
    main()
