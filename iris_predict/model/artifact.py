"""Read model.joblib and its model.json sidecar, refusing anything suspect.

Unpickling runs code, and a model pickled by another scikit-learn version can
load "successfully" and then answer wrongly. So before the estimator is used:
the sidecar must name the scikit-learn installed here (read from its
distribution's metadata: serving never imports scikit-learn), the file's
SHA-256 must match the sidecar, it is unpickled through an allowlist of
classes (safe_unpickle.py), the version recorded inside the pickle must match
too, and the estimator must have the shape we serve.
"""

import hashlib
import importlib.metadata
import json
import warnings
from pathlib import Path

import numpy as np

from iris_predict.model import safe_unpickle, signature
from iris_predict.errors import ModelUnavailable
from iris_predict.features import NAMES
from iris_predict.model.logistic import LogisticRegressionState

REQUIRED_FIELDS = ("estimator", "features", "classes", "metrics", "versions", "sha256")
# What Model reads of each feature: its training range, and its mean for explanations.
FEATURE_FIELDS = ("min", "max", "mean")
# What scikit-learn warns with when it unpickles an estimator from another version.
SKLEARN_VERSION_WARNING = "Trying to unpickle estimator"


def sidecar_path(model_path: Path) -> Path:
    return model_path.with_suffix(".json")


def installed_sklearn() -> str:
    """The scikit-learn version installed, from its metadata (nothing is imported)."""
    try:
        return importlib.metadata.version("scikit-learn")
    except importlib.metadata.PackageNotFoundError:
        raise ModelUnavailable("scikit-learn is not installed; requirements.txt pins it, "
                               "and the model must match that version") from None


def read_metadata(model_path: Path) -> dict:
    """The sidecar's contents, checked for the fields we rely on and this runtime's sklearn."""
    path = sidecar_path(model_path)
    try:
        metadata = json.loads(path.read_text())
        names = tuple(f["name"] for f in metadata["features"])
        trained_with = metadata["versions"]["scikit-learn"]
        missing = [k for k in REQUIRED_FIELDS if k not in metadata]
        missing += sorted({f"features[].{k}" for f in metadata["features"]
                           for k in FEATURE_FIELDS if not isinstance(f.get(k), (int, float))})
    except FileNotFoundError:
        raise ModelUnavailable(f"model metadata {path} is missing") from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise ModelUnavailable(f"model metadata {path} is unreadable: {e!r}") from None
    if missing:
        raise ModelUnavailable(f"model metadata {path} lacks {', '.join(missing)}")
    try:
        signature.from_metadata(metadata)
    except signature.SignatureError as e:
        raise ModelUnavailable(f"model metadata {path} is not a signature: {e}") from None
    if names != NAMES:
        raise ModelUnavailable(f"model metadata {path} lists features {names}, expected {NAMES}")
    installed = installed_sklearn()
    if trained_with != installed:
        raise ModelUnavailable(
            f"model was trained with scikit-learn {trained_with} but {installed} "
            "is installed; retrain with train.py or pin the same version")
    return metadata


def load(model_path: Path):
    """Return (estimator, metadata) or raise ModelUnavailable."""
    metadata = read_metadata(model_path)
    try:
        data = model_path.read_bytes()
    except OSError as e:
        raise ModelUnavailable(f"model file {model_path} cannot be read: {e.strerror}") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != metadata["sha256"]:
        raise ModelUnavailable(
            f"model file {model_path} has SHA-256 {digest}, but its metadata records "
            f"{metadata['sha256']}; refusing to unpickle it")
    estimator = _unpickle(data, model_path)
    pickled_with = getattr(estimator, "sklearn_version", None)
    if isinstance(estimator, LogisticRegressionState) and pickled_with != installed_sklearn():
        raise ModelUnavailable(
            f"model file {model_path} was pickled by scikit-learn {pickled_with} but "
            f"{installed_sklearn()} is installed; retrain with train.py")
    if not _fits(estimator, len(metadata["classes"])):
        raise ModelUnavailable(f"model file {model_path} does not hold a fitted iris classifier")
    return estimator, metadata


def _unpickle(data: bytes, model_path: Path):
    with warnings.catch_warnings():
        # scikit-learn only warns when one of its pickles comes from another version;
        # here that must fail (matched by message: importing its warning class would
        # import scikit-learn).
        warnings.filterwarnings("error", message=SKLEARN_VERSION_WARNING)
        try:
            return safe_unpickle.loads(data)
        except safe_unpickle.RefusedGlobal as e:
            raise ModelUnavailable(f"model file {model_path} was refused: {e}") from None
        except Exception as e:
            raise ModelUnavailable(f"model file {model_path} cannot be loaded: {e!r}") from None


def _fits(estimator, n_classes: int) -> bool:
    """True if the estimator takes the iris features and predicts class indices."""
    classes = getattr(estimator, "classes_", None)
    if getattr(estimator, "n_features_in_", None) != len(NAMES) or classes is None \
            or list(classes) != list(range(n_classes)):
        return False
    if isinstance(estimator, LogisticRegressionState):  # the arrays Model.predict reads
        coef, intercept = getattr(estimator, "coef_", None), getattr(estimator, "intercept_", None)
        return (n_classes > 2
                and type(coef) is np.ndarray and coef.dtype == np.float64
                and coef.shape == (n_classes, len(NAMES))
                and type(intercept) is np.ndarray and intercept.dtype == np.float64
                and intercept.shape == (n_classes,))
    return True
