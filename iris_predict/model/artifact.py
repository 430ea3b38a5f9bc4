"""Read model.joblib and its model.json sidecar, refusing anything suspect.

Unpickling runs code, and a model pickled by another scikit-learn version can
load "successfully" and then answer wrongly. So before the estimator is used:
the sidecar must name the scikit-learn installed here (read from its
distribution's metadata: serving what train.py fits never imports
scikit-learn), the file's SHA-256 must match the sidecar, it is unpickled
through an allowlist of classes (safe_unpickle.py), the version recorded
inside the pickle must match too, and the estimator must take the
signature's features and answer its classes.

A linear model, a tree ensemble and their preprocessing (estimators.py,
trees.py, boosters.py) are read with stand-ins and served by NumPy
(compute.py); anything else on the allowlist, or a pipeline with a step or
option NumPy cannot reproduce, is read again with scikit-learn's own classes
and served by them.
"""

import hashlib
import importlib.metadata
import json
import warnings
from pathlib import Path

from iris_predict.errors import ModelUnavailable
from iris_predict.model import compute, estimators, safe_unpickle, signature

REQUIRED_FIELDS = ("estimator", "features", "metrics", "versions", "sha256")
# A pickle of protocol 2 and later starts with its PROTO opcode; joblib.dump's are protocol 5.
PICKLE_START = b"\x80"
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
        trained_with = metadata["versions"]["scikit-learn"]
        missing = [k for k in REQUIRED_FIELDS if k not in metadata]
    except FileNotFoundError:
        raise ModelUnavailable(
            f"model metadata {path} is missing: train.py writes it beside the model; for a "
            f"model you fitted, package it with: python train.py --model FITTED --csv "
            f"TRAINING.csv --target COLUMN --output {model_path}") from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise ModelUnavailable(f"model metadata {path} is unreadable: {e!r}") from None
    if missing:
        raise ModelUnavailable(f"model metadata {path} lacks {', '.join(missing)}")
    try:
        signature.from_metadata(metadata)
    except signature.SignatureError as e:
        raise ModelUnavailable(f"model metadata {path} is not a signature: {e}") from None
    installed = installed_sklearn()
    if trained_with != installed:
        raise ModelUnavailable(
            f"model was trained with scikit-learn {trained_with} but {installed} "
            "is installed; retrain with train.py or pin the same version")
    return metadata


def load(model_path: Path):
    """Return (estimator, metadata, computed) or raise ModelUnavailable.

    The estimator is a tree of stand-ins where NumPy computes it (compute.py: `computed`
    does), else scikit-learn's own object (and `computed` is None).
    """
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
    shape = signature.from_metadata(metadata)
    estimator = unpickle(data, model_path, stand_ins=True)
    computed = None
    if estimator is not None:
        installed = installed_sklearn()  # read once: each read parses its metadata file
        for part in estimators.parts(estimator):
            if part.checks_version and part.sklearn_version != installed:
                raise ModelUnavailable(
                    f"model file {model_path} was pickled by scikit-learn "
                    f"{part.sklearn_version} but {installed} is installed; "
                    "retrain with train.py")
        computed = compute.with_numpy(estimator, shape)
        if computed is None:
            estimator = None  # not arithmetic NumPy reproduces: scikit-learn's own, then
    if estimator is None:
        estimator = unpickle(data, model_path, stand_ins=False)
        problem = _misfit(estimator, shape)
        if problem:
            raise ModelUnavailable(f"model file {model_path} {problem}")
    return estimator, metadata, computed


def unpickle(data: bytes, model_path: Path, stand_ins: bool):
    """The unpickled object; None where stand-ins were asked for and scikit-learn is needed."""
    if data[:1] != PICKLE_START:  # joblib's compressors write their own headers first
        raise ModelUnavailable(
            f"model file {model_path} is not a plain joblib pickle (compressed, perhaps): "
            "only uncompressed files are read; dump it with joblib.dump(model, path, "
            "compress=0)")
    with warnings.catch_warnings():
        # scikit-learn only warns when one of its pickles comes from another version;
        # here that must fail (matched by message: importing its warning class would
        # import scikit-learn).
        warnings.filterwarnings("error", message=SKLEARN_VERSION_WARNING)
        try:
            return safe_unpickle.loads(data, stand_ins)
        except safe_unpickle.NeedsScikitLearn:
            return None
        except safe_unpickle.RefusedGlobal as e:
            raise ModelUnavailable(f"model file {model_path} was refused: {e}") from None
        except Exception as e:
            if SKLEARN_VERSION_WARNING in str(e):
                raise ModelUnavailable(
                    f"model file {model_path} was pickled by another scikit-learn than the "
                    f"{installed_sklearn()} installed ({e}); retrain with train.py") from None
            raise ModelUnavailable(f"model file {model_path} cannot be loaded: {e!r}") from None


def _misfit(estimator, shape: signature.Signature) -> str:
    """Why scikit-learn's estimator does not serve the signature; "" if it does."""
    width = getattr(estimator, "n_features_in_", None)
    if width != len(shape.features):
        return f"takes {width} features, but its metadata lists {len(shape.features)}"
    if not hasattr(estimator, "predict"):
        return f"holds a {type(estimator).__name__}, which cannot predict"
    classes = getattr(estimator, "classes_", None)
    if shape.classifier:
        if classes is None or not hasattr(estimator, "predict_proba"):
            return "is not a classifier with predict_proba, but its metadata is a classifier's"
        if [str(c) for c in classes.tolist()] != list(shape.classes) \
                and classes.tolist() != list(range(len(shape.classes))):
            return f"predicts classes {classes.tolist()}, but its metadata lists {shape.classes}"
    elif classes is not None:
        return "is a classifier, but its metadata is a regressor's"
    return ""
