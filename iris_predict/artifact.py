"""Read model.joblib and its model.json sidecar, refusing anything suspect.

Unpickling runs code, and a model pickled by another scikit-learn version can
load "successfully" and then answer wrongly. So before the estimator is used:
the sidecar must match this runtime's scikit-learn version, the file's SHA-256
must match the sidecar, it is unpickled through an allowlist of classes
(safe_unpickle.py), and the estimator must have the shape we serve.
"""

import hashlib
import json
import warnings
from pathlib import Path

import sklearn
from sklearn.exceptions import InconsistentVersionWarning

from iris_predict import safe_unpickle
from iris_predict.features import NAMES


REQUIRED_FIELDS = ("estimator", "features", "classes", "metrics", "versions", "sha256")


class ModelUnavailable(Exception):
    """The model cannot be served; the message says why (for logs and 503s)."""


def sidecar_path(model_path: Path) -> Path:
    return model_path.with_suffix(".json")


def read_metadata(model_path: Path) -> dict:
    """The sidecar's contents, checked for the fields we rely on and this runtime's sklearn."""
    path = sidecar_path(model_path)
    try:
        metadata = json.loads(path.read_text())
        names = tuple(f["name"] for f in metadata["features"])
        trained_with = metadata["versions"]["scikit-learn"]
        missing = [k for k in REQUIRED_FIELDS if k not in metadata]
    except FileNotFoundError:
        raise ModelUnavailable(f"model metadata {path} is missing") from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ModelUnavailable(f"model metadata {path} is unreadable: {e!r}") from None
    if missing:
        raise ModelUnavailable(f"model metadata {path} lacks {', '.join(missing)}")
    if names != NAMES:
        raise ModelUnavailable(f"model metadata {path} lists features {names}, expected {NAMES}")
    if trained_with != sklearn.__version__:
        raise ModelUnavailable(
            f"model was trained with scikit-learn {trained_with} but {sklearn.__version__} "
            "is installed; retrain with train.py or pin the same version"
        )
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
            f"{metadata['sha256']}; refusing to unpickle it"
        )
    estimator = _unpickle(data, model_path)
    classes = getattr(estimator, "classes_", None)
    if getattr(estimator, "n_features_in_", None) != len(NAMES) or classes is None \
            or list(classes) != list(range(len(metadata["classes"]))):
        raise ModelUnavailable(f"model file {model_path} does not hold a fitted iris classifier")
    return estimator, metadata


def _unpickle(data: bytes, model_path: Path):
    with warnings.catch_warnings():
        # sklearn only warns when a pickle comes from another version; here it must fail.
        warnings.simplefilter("error", InconsistentVersionWarning)
        try:
            return safe_unpickle.loads(data)
        except safe_unpickle.RefusedGlobal as e:
            raise ModelUnavailable(f"model file {model_path} was refused: {e}") from None
        except Exception as e:
            raise ModelUnavailable(f"model file {model_path} cannot be loaded: {e!r}") from None
