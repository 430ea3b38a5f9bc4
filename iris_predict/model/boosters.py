"""XGBoost and LightGBM models, read from their own model formats and computed without them.

The threat and the design: unpickling an XGBClassifier or an LGBMClassifier imports its
library and runs what the pickle asks, so serving never does. train.py converts the fitted
model when packaging (convert.py, where the library may be imported): the booster's own
documented format, XGBoost's UBJSON (save_raw("ubj")) or LightGBM's text model
(model_to_string()), goes into model.joblib inside a Booster stand-in below, with what the
scikit-learn wrapper adds (its classes, the iterations it predicts with). Serving unpickles
only that plain class through the allowlist, then parses the bytes here: data, not code.

The arithmetic follows each library's predictor (forest.py, links.py):
- XGBoost: float32 features, `x < split_condition` goes left, a missing value goes to the
  default child, a category in the split's set goes right and any other left; the score
  starts at the base margin (base_score through the objective's link, in float32) and adds
  each tree's leaf in float32.
- LightGBM: float64 features, `x <= threshold` goes left; a node's missing type says what
  is missing (NaN, or zero too; with none, NaN is taken as 0.0) and where it goes; a
  category in the split's bitset goes left, any other (or NaN, or negative) right; the score
  starts at 0 and adds each tree's leaf in float64.
"""

import struct

import numpy as np

from iris_predict.model import forest, links
from iris_predict.model.estimators import Pipeline, Unsupported, preprocessing

XGBOOST, LIGHTGBM = "xgboost", "lightgbm"


class Booster:
    """A converted XGBoost or LightGBM model: {library, version, model (bytes or text),
    classes (0 for a regressor), iterations (None: all)}, set by convert.py."""

    checks_version = False  # packaging recorded the library's version in model.json

    def __init__(self, library: str = "", version: str = "", model=b"", classes: int = 0,
                 iterations: int | None = None):
        self.library, self.version, self.model = library, version, model
        self.classes, self.iterations = classes, iterations

    def __repr__(self) -> str:
        return f"{self.library} {self.version} booster (loaded without {self.library})"


STAND_INS = {("iris_predict.model.boosters", "Booster"): Booster}


def ensemble(estimator, signature, means: list) -> forest.Ensemble:
    steps = estimator.steps if isinstance(estimator, Pipeline) else [(None, estimator)]
    *transforms, (_, final) = steps
    if not isinstance(final, Booster):
        raise Unsupported(f"the final step is {type(final).__name__}, not a booster")
    columns, _, inputs = preprocessing([step for _, step in transforms], signature, means)
    if bool(final.classes) != signature.classifier or \
            (final.classes and final.classes != len(signature.classes)):
        raise Unsupported(f"the booster answers {final.classes or 'no'} classes, unlike "
                          "the signature")
    try:
        build = {XGBOOST: xgboost, LIGHTGBM: lightgbm}[final.library]
        return build(final, columns, inputs)
    except (KeyError, IndexError, TypeError, ValueError, OverflowError, RecursionError,
            struct.error) as e:
        raise Unsupported(f"its {final.library} model cannot be read: {e!r}") from None


# --- XGBoost ---------------------------------------------------------------------------------

XGBOOST_OBJECTIVES = ("binary:logistic", "multi:softprob", "multi:softmax",
                      "reg:squarederror", "reg:logistic", "count:poisson", "reg:absoluteerror",
                      "reg:pseudohubererror", "reg:quantileerror", "reg:squaredlogerror",
                      "reg:gamma", "reg:tweedie")
_LOG_LINK = ("count:poisson", "reg:gamma", "reg:tweedie")
_LOGISTIC = ("binary:logistic", "reg:logistic")


def xgboost(booster: Booster, columns, inputs) -> forest.Ensemble:
    learner = read_ubjson(booster.model)["learner"]
    objective = learner["objective"]["name"]
    gbtree = learner["gradient_booster"]
    problem = xgboost_problem(learner)
    if problem:
        raise Unsupported(problem)
    model = gbtree["model"]
    groups = np.asarray(model["tree_info"], dtype=np.intp)
    trees = model["trees"]
    if booster.iterations is not None:
        stop = int(np.asarray(model["iteration_indptr"])[booster.iterations])
        trees, groups = trees[:stop], groups[:stop]
    width = max([0] + [int(np.max(t["categories"])) + 1 for t in trees if len(t["categories"])])
    arrays, values, splits = _xgboost_trees(trees, width)
    nodes = forest.concatenate(arrays, np.float32, categories=(splits, width) if width else None)
    param = learner["learner_model_param"]
    outputs = max(1, int(param["num_class"]))
    base = np.asarray(_floats(param["base_score"]), dtype=np.float32)  # one, or one per class
    start = np.array([_base_margin(objective, b) for b in np.broadcast_to(base, outputs)],
                     dtype=np.float32)
    link = {
        "binary:logistic": links.FloatLogistic(), "reg:logistic": links.FloatLogistic(True),
        "multi:softprob": links.FloatSoftmax(), "multi:softmax": links.FloatSoftmax(True),
    }.get(objective) or (links.FloatExp() if objective in _LOG_LINK else links.Identity())
    covers = np.concatenate([np.asarray(t["sum_hessian"], dtype=np.float64) for t in trees])
    return forest.Ensemble(columns, nodes, nodes.renumbered(values), link,
                           start=start, groups=groups, covers=nodes.renumbered(covers),
                           inputs=inputs)


def xgboost_problem(learner: dict) -> str:
    """What in this XGBoost model is not served exactly ("" if nothing)."""
    objective = learner["objective"]["name"]
    gbtree = learner["gradient_booster"]
    if gbtree["name"] != "gbtree":
        return (f"booster {gbtree['name']!r} is not served (gbtree is; dart and gblinear "
                "are not)")
    if objective not in XGBOOST_OBJECTIVES:
        return (f"objective {objective!r} is not served; these are: "
                f"{', '.join(XGBOOST_OBJECTIVES)}")
    param = learner["learner_model_param"]
    if int(param.get("num_target", 1)) != 1:
        return "a model of several targets is not served"
    if gbtree["model"]["cats"].get("enc"):
        return ("categories recorded from a DataFrame are not served; encode them with an "
                "OrdinalEncoder in a Pipeline instead")
    if any(int(t["tree_param"]["size_leaf_vector"]) > 1 for t in gbtree["model"]["trees"]):
        return "vector leaves (multi_strategy='multi_output_tree') are not served"
    return ""


def _floats(value) -> list:
    """base_score: a float, or in XGBoost 3 the text of a vector, "[5E-1]"."""
    if isinstance(value, str):
        return [float(v) for v in value.strip("[]").split(",")]
    return [float(value)]


def _base_margin(objective: str, base: np.float32) -> np.float32:
    """ObjFunction::ProbToMargin of base_score, in float32 with the C library's logf."""
    if objective in _LOGISTIC:
        return -links.c_logf(np.float32(1.0) / base - np.float32(1.0))
    if objective in _LOG_LINK:
        return links.c_logf(base)
    return base


def _xgboost_trees(trees: list, width: int) -> tuple:
    """(per tree its nodes as forest.concatenate takes them, the leaf values concatenated,
    per tree the table of each category split). All trees' arrays are read at once (tree by
    tree, this was 13 µs a tree)."""
    sizes = [len(tree["left_children"]) for tree in trees]
    ends = np.cumsum(sizes).tolist()

    def joined(key: str, dtype) -> np.ndarray:
        return np.concatenate([tree[key] for tree in trees]).astype(dtype)

    left, right = joined("left_children", np.intp), joined("right_children", np.intp)
    condition = joined("split_conditions", np.float32)
    leaf = left < 0
    # x < c, for float32 x and c, is x <= the float32 just below c.
    threshold = np.where(leaf, condition, np.nextafter(condition, np.float32(-np.inf)))
    values = np.where(leaf, condition, np.float32(0))
    default_left = joined("default_left", bool)
    columns = (joined("split_indices", np.intp), threshold, default_left,
               np.where(leaf, -1, left), np.where(leaf, -1, right))
    arrays = [tuple(c[end - size:end] for c in columns) for size, end in zip(sizes, ends)]
    splits = [{} for _ in trees]
    for tree, found, size, end in zip(trees, splits, sizes, ends):
        categories = np.asarray(tree["categories"], dtype=np.intp)
        for node, start, count in zip(np.asarray(tree["categories_nodes"]).tolist(),
                                      np.asarray(tree["categories_segments"]).tolist(),
                                      np.asarray(tree["categories_sizes"]).tolist()):
            # common::Decision: a category in the set goes right; another (unseen, negative,
            # too large) left; a missing value goes to the default child.
            table = np.ones(width + 2, dtype=bool)
            table[categories[start:start + count]] = False
            table[-1] = default_left[end - size + node]
            found[node] = table
    return arrays, values, splits


# --- LightGBM --------------------------------------------------------------------------------

LIGHTGBM_OBJECTIVES = ("binary", "multiclass", "regression", "regression_l1", "huber", "fair",
                       "quantile", "mape", "poisson", "gamma", "tweedie")
_LIGHTGBM_LOG = ("poisson", "gamma", "tweedie")
_CATEGORICAL, _DEFAULT_LEFT = 1, 2
_NONE, _ZERO, _NAN = 0, 1, 2


def lightgbm(booster: Booster, columns, inputs) -> forest.Ensemble:
    header, trees = read_lightgbm(booster.model)
    if header.get("version") != "v4" or not trees:
        raise Unsupported("it is not a LightGBM v4 text model")
    problem = lightgbm_problem(header, trees)
    if problem:
        raise Unsupported(problem)
    per_iteration = int(header["num_tree_per_iteration"])
    if booster.iterations is not None:
        trees = trees[:booster.iterations * per_iteration]
    width = 32 * max([0] + [int(np.diff(_numbers(t, "cat_boundaries", np.intp)).max())
                            for t in trees if int(t.get("num_cat", 0))])
    arrays, values, splits, zeros = zip(*(_lightgbm_tree(t, width) for t in trees))
    nodes = forest.concatenate(list(arrays), np.float64,
                               categories=(list(splits), width) if width else None,
                               zeros=list(zeros) if any(z.any() for z in zeros) else None)
    objective, *options = header["objective"].split()
    option = dict(o.split(":", 1) for o in options)
    if objective == "binary":
        link = links.Logistic(strict=False, scale=float(option.get("sigmoid", 1)),
                              by_probability=True)
    elif objective == "multiclass":
        link = links.CSoftmax()
    elif objective in _LIGHTGBM_LOG:
        link = links.CExp()
    else:
        link = links.Identity()
    return forest.Ensemble(columns, nodes, nodes.renumbered(np.concatenate(values)), link,
                           start=np.zeros(per_iteration),
                           groups=np.arange(len(trees)) % per_iteration,
                           covers=nodes.renumbered(np.concatenate([_counts(t) for t in trees])),
                           inputs=inputs)


def lightgbm_problem(header: dict, trees: list) -> str:
    """What in this LightGBM model is not served exactly ("" if nothing)."""
    objective, *options = header.get("objective", "custom").split()
    if objective not in LIGHTGBM_OBJECTIVES:
        return (f"objective {objective!r} is not served; these are: "
                f"{', '.join(LIGHTGBM_OBJECTIVES)}")
    if "sqrt" in options:
        return "regression with reg_sqrt is not served"
    if "average_output" in header:
        return "boosting='rf' (averaged trees) is not served"
    if any(t.get("is_linear", "0") != "0" for t in trees):
        return "linear_tree is not served: its leaves are linear models, not values"
    if header.get("pandas_categorical", "null") not in ("null", ""):
        return ("categories recorded from a DataFrame are not served; encode them with an "
                "OrdinalEncoder in a Pipeline instead")
    return ""


def read_lightgbm(text: str) -> tuple:
    """(header {key: value}, [per tree {key: value}]) of a LightGBM text model; a line
    without "=" (average_output) is a key with the value ""."""
    body, _, tail = text.partition("\nend of trees")
    header, *trees = [_pairs(block) for block in body.split("\nTree=")]
    for line in tail.splitlines():
        if line.startswith("pandas_categorical:"):
            header["pandas_categorical"] = line.partition(":")[2]
    return header, trees


def _pairs(block: str) -> dict:
    return dict(line.partition("=")[::2] for line in block.splitlines() if line)


def _numbers(tree: dict, key: str, dtype) -> np.ndarray:
    return np.array(tree[key].split(), dtype=np.float64).astype(dtype) if tree.get(key) \
        else np.zeros(0, dtype=dtype)


def _counts(tree: dict) -> np.ndarray:
    """The rows that reached each node (splits, then leaves): LightGBM's TreeSHAP covers."""
    if int(tree["num_leaves"]) == 1:  # a tree of one leaf: no split to weigh
        return np.ones(1)
    return np.concatenate([_numbers(tree, "internal_count", np.float64),
                           _numbers(tree, "leaf_count", np.float64)])


def _lightgbm_tree(tree: dict, width: int) -> tuple:
    """Nodes 0..L-2 are the splits, L-1.. the leaves (a child ~i is leaf i)."""
    leaves = int(tree["num_leaves"])
    values = _numbers(tree, "leaf_value", np.float64)
    splits_count = leaves - 1
    if splits_count == 0:
        empty = np.zeros(1, dtype=np.intp)
        return ((empty, np.zeros(1), np.ones(1, dtype=bool), empty - 1, empty - 1), values,
                {}, np.zeros(1, dtype=bool))

    def child(c):
        return np.where(c < 0, splits_count + ~c, c)

    left = child(_numbers(tree, "left_child", np.intp))
    right = child(_numbers(tree, "right_child", np.intp))
    decision = _numbers(tree, "decision_type", np.intp)
    threshold = np.array(tree["threshold"].split(), dtype=np.float64)
    missing = (decision >> 2) & 3
    default_left = (decision & _DEFAULT_LEFT).astype(bool)
    # NumericalDecision: with missing type None a NaN is taken as 0.0.
    nan_left = np.where(missing == _NONE, 0.0 <= threshold, default_left)
    categorical = (decision & _CATEGORICAL).astype(bool)
    splits = {}
    if categorical.any():
        boundaries = _numbers(tree, "cat_boundaries", np.intp)
        words = _numbers(tree, "cat_threshold", np.uint32)
        for node in np.flatnonzero(categorical).tolist():
            k = int(threshold[node])
            bits = words[boundaries[k]:boundaries[k + 1]]
            # CategoricalDecision: a category in the bitset goes left; any other, a
            # negative one or a missing one (NaN) goes right.
            table = np.zeros(width + 2, dtype=bool)
            inside = ((bits[:, None] >> np.arange(32, dtype=np.uint32)) & 1).astype(
                bool).ravel()
            table[:len(inside)] = inside
            splits[node] = table
    feature = _numbers(tree, "split_feature", np.intp)
    tail = np.zeros(leaves, dtype=np.intp)
    arrays = (np.concatenate([feature, tail]), np.concatenate([threshold, np.zeros(leaves)]),
              np.concatenate([nan_left & ~categorical, np.ones(leaves, dtype=bool)]),
              np.concatenate([left, tail - 1]), np.concatenate([right, tail - 1]))
    zeros = np.concatenate([(missing == _ZERO) & ~categorical, np.zeros(leaves, dtype=bool)])
    return arrays, np.concatenate([np.zeros(splits_count), values]), splits, zeros


# --- UBJSON ----------------------------------------------------------------------------------

_SCALARS = {ord(m): struct.Struct(f) for m, f in
            (("i", ">b"), ("U", ">B"), ("I", ">h"), ("l", ">i"), ("L", ">q"), ("d", ">f"),
             ("D", ">d"))}
_ARRAYS = {ord(m): np.dtype(f) for m, f in
           (("i", ">i1"), ("U", ">u1"), ("I", ">i2"), ("l", ">i4"), ("L", ">i8"),
            ("d", ">f4"), ("D", ">f8"))}
_CONSTANTS = {ord("T"): True, ord("F"): False, ord("Z"): None}
_DOLLAR, _HASH, _END_ARRAY, _END_OBJECT = b"$#]}"


def read_ubjson(data: bytes):
    """The value of a UBJSON document (ubjson.org), as XGBoost writes it: typed arrays of
    numbers become NumPy arrays (one np.frombuffer each, not a Python float per number),
    read-only views of `data` in its big-endian order, which NumPy reads as any other."""
    data = bytes(data)
    value, end = _value(data, 0, None)
    if end != len(data):
        raise ValueError(f"{len(data) - end} bytes after the UBJSON document")
    return value


def _value(data: bytes, at: int, marker):
    if marker is None:
        marker, at = data[at], at + 1
    scalar = _SCALARS.get(marker)
    if scalar is not None:
        return scalar.unpack_from(data, at)[0], at + scalar.size
    if marker == 0x5B:  # [
        return _array(data, at)
    if marker == 0x7B:  # {
        return _object(data, at)
    if marker in (0x53, 0x48):  # S, H: a string, a high-precision number's text
        size, at = _count(data, at)
        return data[at:at + size].decode(), at + size
    if marker in _CONSTANTS:
        return _CONSTANTS[marker], at
    if marker == 0x43:  # C
        return chr(data[at]), at + 1
    raise ValueError(f"UBJSON marker {marker!r} at byte {at - 1}")


def _count(data: bytes, at: int) -> tuple:
    scalar = _SCALARS.get(data[at])
    if scalar is None or data[at] in (0x64, 0x44):
        raise ValueError(f"UBJSON length at byte {at} is not an integer")
    count = scalar.unpack_from(data, at + 1)[0]
    if count < 0:
        raise ValueError(f"UBJSON length {count}")
    return count, at + 1 + scalar.size


def _header(data: bytes, at: int) -> tuple:
    """(element type marker or None, count or None, position) of an optimised container."""
    kind = count = None
    if data[at] == _DOLLAR:
        kind, at = data[at + 1], at + 2
    if data[at] == _HASH:
        count, at = _count(data, at + 1)
    return kind, count, at


def _array(data: bytes, at: int):
    kind, count, at = _header(data, at)
    dtype = _ARRAYS.get(kind)
    if dtype is not None and count is not None:
        end = at + count * dtype.itemsize
        if end > len(data):
            raise ValueError("UBJSON array beyond the end of the file")
        return np.frombuffer(data, dtype, count, at), end
    items = []
    if count is None:
        while data[at] != _END_ARRAY:
            item, at = _value(data, at, kind)
            items.append(item)
        return items, at + 1
    for _ in range(count):
        item, at = _value(data, at, kind)
        items.append(item)
    return items, at


def _object(data: bytes, at: int):
    kind, count, at = _header(data, at)
    found = {}
    while (data[at] != _END_OBJECT) if count is None else (len(found) < count):
        size, at = _count(data, at)
        key = data[at:at + size].decode()
        found[key], at = _value(data, at + size, kind)
    return found, at + (1 if count is None else 0)
