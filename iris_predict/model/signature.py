"""The model's signature: what model.json says the model takes and answers.

Every fact a request is checked against or an answer is shaped by comes from
here, never from constants in the code, so the same code serves any model that
train.py writes: its name, its task, its target's name, its classes and, per
feature, the name, type, alias, unit, the bounds a value must be within to be
answered at all, the training range, mean and spread of numbers, the categories
seen in training with their shares, and whether a value may be missing.
A sidecar that breaks these rules stops the model from loading (artifact.py),
with a message naming the field.
"""

import math
from typing import NamedTuple

CLASSIFICATION, REGRESSION = "classification", "regression"
TASKS = (CLASSIFICATION, REGRESSION)
NUMBER, CATEGORY = "number", "category"
TYPES = (NUMBER, CATEGORY)
# JSON Schema's keywords, so the bounds carry over into the OpenAPI contract as they are.
MINIMUM, EXCLUSIVE_MINIMUM = "minimum", "exclusiveMinimum"
MAXIMUM, EXCLUSIVE_MAXIMUM = "maximum", "exclusiveMaximum"
BOUND_KEYWORDS = (MINIMUM, EXCLUSIVE_MINIMUM, MAXIMUM, EXCLUSIVE_MAXIMUM)
# A category is served as its index among the feature's categories; one training never saw,
# as this.
UNKNOWN_CODE = -1


class SignatureError(ValueError):
    """model.json does not describe a model this function can serve."""


class Feature(NamedTuple):
    """One input column, in the order the estimator takes them."""

    name: str
    type: str                      # NUMBER or CATEGORY
    alias: str | None = None       # a short name requests may use instead (iris: "sl")
    unit: str | None = None        # shown in messages and forms (iris: "cm")
    missing: bool = False          # may a request leave the value out (null, an empty cell)
    bounds: tuple = ()             # ((keyword, value), ...): outside them a value is refused
    low: float = -math.inf         # the bounds as numbers, for checking:
    high: float = math.inf         # low < x (or <=), x < high (or <=)
    low_inclusive: bool = True
    high_inclusive: bool = True
    min: float | None = None       # numbers: the training range, mean and standard deviation
    max: float | None = None
    mean: float | None = None
    std: float | None = None
    categories: tuple = ()         # categories: the values seen in training, in order
    shares: tuple = ()             # and the share of training rows with each

    @property
    def number(self) -> bool:
        return self.type == NUMBER

    def allowed(self) -> str:
        """What a value of this feature must be, as a message says it."""
        if not self.number:
            shown = ", ".join(f'"{c}"' for c in self.categories[:12])
            more = ", …" if len(self.categories) > 12 else ""
            return f"one of the categories {shown}{more} (a string)"
        parts = []
        if self.low > -math.inf:
            parts.append(f"{'at least' if self.low_inclusive else 'greater than'} {self.low:g}")
        if self.high < math.inf:
            parts.append(f"{'at most' if self.high_inclusive else 'less than'} {self.high:g}")
        unit = f" ({self.unit})" if self.unit else ""
        return f"a number {' and '.join(parts)}{unit}" if parts else f"a finite number{unit}"


class Signature(NamedTuple):
    """The model as model.json describes it."""

    name: str
    task: str
    target: str
    classes: tuple | None          # classification: class k is classes[k]
    # What the estimator's own predict() answers for class k (its classes_: labels, or
    # numbers); None where that is k itself, as for every model train.py fits.
    predict_values: tuple | None
    features: tuple                # Feature, in the estimator's column order
    names: tuple                   # the features' names, in order
    aliases: tuple                 # their aliases, in order, if every feature has one; else ()
    numeric: bool                  # every feature a number that may not be missing

    @property
    def classifier(self) -> bool:
        return self.task == CLASSIFICATION


def from_metadata(meta: dict) -> Signature:
    """The signature in a model.json's contents; SignatureError names what is wrong."""
    task = meta.get("task", CLASSIFICATION)
    if task not in TASKS:
        raise SignatureError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    classes = meta.get("classes")
    if task == CLASSIFICATION:
        if not (isinstance(classes, list) and len(classes) >= 2
                and all(isinstance(c, str) for c in classes) and len(set(classes)) == len(classes)):
            raise SignatureError("classes must list at least two distinct class names")
        classes = tuple(classes)
    else:
        classes = None
    predict_values = _predict_values(meta.get("predict_values"), classes)
    features = meta.get("features")
    if not isinstance(features, list) or not features:
        raise SignatureError("features must list at least one feature")
    parsed = tuple(_feature(f, i) for i, f in enumerate(features))
    names = tuple(f.name for f in parsed)
    if len(set(names)) != len(names):
        raise SignatureError("features has a name twice")
    aliases = tuple(f.alias for f in parsed)
    if None in aliases:
        aliases = ()
    elif len(set(aliases)) != len(aliases) or set(aliases) & set(names):
        raise SignatureError("feature aliases must be distinct from each other and the names")
    for key in ("name", "target"):
        if not isinstance(meta.get(key), str) or not meta[key]:
            raise SignatureError(f"{key} must be a non-empty string")
    return Signature(name=meta["name"], task=task, target=meta["target"], classes=classes,
                     predict_values=predict_values, features=parsed, names=names, aliases=aliases,
                     numeric=all(f.number and not f.missing for f in parsed))


def _predict_values(values, classes) -> tuple | None:
    if values is None or classes is None:
        return None
    if not (isinstance(values, list) and len(values) == len(classes)
            and all(type(v) in (str, int, float, bool) for v in values)
            and len(set(values)) == len(values)):
        raise SignatureError("predict_values must list one distinct string or number per class")
    return None if values == list(range(len(classes))) else tuple(values)


def _feature(spec, index: int) -> Feature:
    where = f"features[{index}]"
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or not spec["name"]:
        raise SignatureError(f"{where} must be an object with a name")
    kind = spec.get("type", NUMBER)
    if kind not in TYPES:
        raise SignatureError(f"{where}.type must be one of {', '.join(TYPES)}, got {kind!r}")
    common = {"name": spec["name"], "type": kind, "alias": _text(spec, "alias", where),
              "unit": _text(spec, "unit", where), "missing": spec.get("missing", False)}
    if not isinstance(common["missing"], bool):
        raise SignatureError(f"{where}.missing must be true or false")
    if kind == CATEGORY:
        categories = spec.get("categories")
        if not (isinstance(categories, dict) and categories
                and all(_finite(s) and 0 <= s <= 1 for s in categories.values())):
            raise SignatureError(f"{where}.categories must map each category to its share")
        return Feature(**common, categories=tuple(categories), shares=tuple(categories.values()))
    stats = {key: spec.get(key) for key in ("min", "max", "mean", "std")}
    if not all(_finite(v) for v in stats.values()):
        raise SignatureError(f"{where} must have a number for each of min, max, mean and std")
    bounds = spec.get("bounds", {})
    if not isinstance(bounds, dict) or not set(bounds) <= set(BOUND_KEYWORDS) \
            or not all(_finite(v) for v in bounds.values()):
        raise SignatureError(f"{where}.bounds may hold only numbers for "
                             f"{', '.join(BOUND_KEYWORDS)}")
    low, low_inclusive = max(((bounds[k], k == MINIMUM) for k in (MINIMUM, EXCLUSIVE_MINIMUM)
                              if k in bounds), default=(-math.inf, True),
                             key=lambda bound: (bound[0], not bound[1]))  # exclusive is stricter
    high, high_inclusive = min(((bounds[k], k == MAXIMUM) for k in (MAXIMUM, EXCLUSIVE_MAXIMUM)
                                if k in bounds), default=(math.inf, True))
    return Feature(**common, bounds=tuple(bounds.items()), low=float(low), high=float(high),
                   low_inclusive=low_inclusive, high_inclusive=high_inclusive,
                   **{k: float(v) for k, v in stats.items()})


def _text(spec: dict, key: str, where: str):
    value = spec.get(key)
    if value is not None and (not isinstance(value, str) or not value):
        raise SignatureError(f"{where}.{key} must be a non-empty string")
    return value


def _finite(value) -> bool:
    return type(value) in (int, float) and math.isfinite(value)
