"""Turn a fitted XGBoost or LightGBM model into what serving reads: a Booster
(iris_predict/model/boosters.py) holding the library's own model format, never a pickle of
the library's classes.

Only train.py imports this module, and only it imports xgboost or lightgbm (from
requirements-train.txt): the serving process never does, and the deployed bundle leaves
this file out (.gcloudignore). A pickled model is the user's own
file, loaded here with joblib as they would load it themselves; what is written for serving
is data that the allowlist unpickler reads without either library.
"""

import copy
import importlib
import math
import re
from pathlib import Path

from iris_predict.model import boosters

BOOSTER_FILES = {".json": boosters.XGBOOST, ".ubj": boosters.XGBOOST,
                 ".txt": boosters.LIGHTGBM}
LIBRARIES = (boosters.XGBOOST, boosters.LIGHTGBM)


class ConversionError(Exception):
    """The model cannot be converted; the message names the option and what is served."""


def library(name: str):
    try:
        return importlib.import_module(name)
    except ImportError:
        raise ConversionError(
            f"packaging a {name} model needs {name} installed in this environment: "
            "make train-requirements (README, 'Your own model')") from None


def names_library(obj) -> str | None:
    """The booster library whose class this object is, if any."""
    module = type(obj).__module__.split(".")[0]
    return module if module in LIBRARIES else None


def read_booster_file(path: Path) -> tuple:
    """(Booster, version) from a model saved by Booster.save_model."""
    name = BOOSTER_FILES[path.suffix.lower()]
    lib = library(name)
    try:
        booster = lib.Booster(model_file=str(path))
    except Exception as e:  # whatever the library raises on a file it cannot read
        # The first line, without "[12:00:00] /path/to/source.h:88: ": XGBoost's messages
        # go on with its C++ stack trace.
        first = re.sub(r"^\[[0-9:]+\] \S+: ", "", (str(e).strip().splitlines() or [""])[0])
        raise ConversionError(f"{name} cannot read {path}: {first}") from None
    if name == boosters.XGBOOST:
        return _xgboost(booster, None, lib.__version__), lib.__version__
    return _lightgbm(booster, None, lib.__version__), lib.__version__


def convert(fitted) -> tuple:
    """(what to pickle, {library: version}): fitted with an XGBoost or LightGBM estimator
    (alone or a Pipeline's last step) replaced by a Booster; fitted itself otherwise."""
    steps = getattr(fitted, "steps", None)
    final = steps[-1][1] if steps else fitted
    name = names_library(final)
    if name is None:
        return fitted, {}
    lib = library(name)
    if callable(getattr(final, "objective", None)):
        raise ConversionError("a custom objective (a Python function) is not served: its "
                             "link is unknown; use one of the built-in objectives")
    if name == boosters.XGBOOST:
        missing = final.get_params().get("missing", math.nan)
        if not (isinstance(missing, float) and math.isnan(missing)):
            raise ConversionError(f"missing={missing!r} is not served: only NaN marks a "
                                 "missing value (the default)")
        classes = int(getattr(final, "n_classes_", 0) or 0)
        try:
            iterations = final.best_iteration + 1
        except AttributeError:
            iterations = None
        converted = _xgboost(final.get_booster(), iterations, lib.__version__, classes)
    else:
        classes = int(getattr(final, "n_classes_", 0) or 0) if hasattr(final, "classes_") \
            else 0
        converted = _lightgbm(final.booster_, final.best_iteration_ or None, lib.__version__,
                              classes)
    if not steps:
        return converted, {name: lib.__version__}
    pipeline = copy.copy(fitted)
    pipeline.steps = [*steps[:-1], (steps[-1][0], converted)]
    return pipeline, {name: lib.__version__}


def _xgboost(booster, iterations, version: str, classes: int | None = None):
    raw = bytes(booster.save_raw("ubj"))
    learner = boosters.read_ubjson(raw)["learner"]
    problem = boosters.xgboost_problem(learner)
    if problem:
        raise ConversionError(f"this XGBoost model is not served: {problem}")
    if iterations is None and "best_iteration" in learner["attributes"]:
        # What XGBClassifier.load_model(file).predict uses: the early-stopping best.
        iterations = int(learner["attributes"]["best_iteration"]) + 1
    if classes is None:
        objective = learner["objective"]["name"]
        count = int(learner["learner_model_param"]["num_class"])
        classes = 2 if objective == "binary:logistic" else count if count > 1 else 0
    return boosters.Booster(boosters.XGBOOST, version, raw, classes, iterations)


def _lightgbm(booster, iterations, version: str, classes: int | None = None):
    text = booster.model_to_string(num_iteration=iterations)
    header, trees = boosters.read_lightgbm(text)
    problem = boosters.lightgbm_problem(header, trees)
    if problem:
        raise ConversionError(f"this LightGBM model is not served: {problem}")
    if classes is None:
        objective = header["objective"].split()[0]
        classes = 2 if objective == "binary" else int(header.get("num_class", 1)) \
            if objective == "multiclass" else 0
    return boosters.Booster(boosters.LIGHTGBM, version, text, classes, None)
