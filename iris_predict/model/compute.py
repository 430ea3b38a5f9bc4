"""What computes a model with NumPy alone, as its library would: a Linear (estimators.py) or
an Ensemble of trees (trees.py, boosters.py), whichever can take the fitted model exactly.
None means scikit-learn's own methods serve it (docs/model.md lists what is which)."""

import importlib
import math

from iris_predict.model import estimators

# (module, function), tried in turn. The tree evaluators' modules are imported only where
# the model is not linear: a linear model's cold start imports none of them (~5 ms).
BUILDERS = (("iris_predict.model.estimators", "linear"), ("iris_predict.model.trees", "ensemble"),
            ("iris_predict.model.boosters", "ensemble"))


def means(shape) -> list:
    """Each feature's training mean (NaN for a category): a bare estimator's reference row."""
    return [f.mean if f.number else math.nan for f in shape.features]


def with_numpy(estimator, shape):
    """The Linear or Ensemble that computes this tree of stand-ins, or None."""
    for module, name in BUILDERS:
        build = getattr(importlib.import_module(module), name)
        try:
            return build(estimator, shape, means(shape))
        except estimators.Unsupported:
            continue
    return None
