"""What computes a model with NumPy alone, as its library would: a Linear (estimators.py) or
an Ensemble of trees (trees.py, boosters.py), whichever can take the fitted model exactly.
None means scikit-learn's own methods serve it (docs/model.md lists what is which)."""

import math

from iris_predict.model import boosters, estimators, trees

BUILDERS = (estimators.linear, trees.ensemble, boosters.ensemble)


def means(shape) -> list:
    """Each feature's training mean (NaN for a category): a bare estimator's reference row."""
    return [f.mean if f.number else math.nan for f in shape.features]


def with_numpy(estimator, shape):
    """The Linear or Ensemble that computes this tree of stand-ins, or None."""
    for build in BUILDERS:
        try:
            return build(estimator, shape, means(shape))
        except estimators.Unsupported:
            continue
    return None
