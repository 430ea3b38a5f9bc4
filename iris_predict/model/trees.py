"""scikit-learn's trees, forests and gradient boosting, read from a pickle and computed
without scikit-learn.

As for the linear models (estimators.py), the unpickler builds plain stand-ins in place of
the classes below, which keep the attributes `fit` set: a Tree's node array and values, a
HistGradientBoosting predictor's nodes and category bitsets, a loss's class. ensemble()
turns a tree of stand-ins into an Ensemble (forest.py) with the arithmetic each estimator's
predict and predict_proba follow in scikit-learn 1.9 (links.py): a DecisionTree's leaf
values, a forest's mean of them, a GradientBoosting's init score plus learning_rate times
each tree, a HistGradientBoosting's baseline plus each predictor. What it cannot express
exactly (multi-output, a custom init estimator, HistGradientBoosting's own category
encoder) raises Unsupported, and scikit-learn's own classes serve the model instead.
"""

import math

import numpy as np

from iris_predict.model import forest, links
from iris_predict.model.estimators import Fitted, Pipeline, Unsupported, preprocessing

# scikit-learn's TREE_LEAF: the child of a leaf.
TREE_LEAF = -1
# HistGradientBoosting's category bitsets: 8 words of 32 bits, raw categories 0..255.
CATEGORY_BITS = 256


class Part(Fitted):
    """A piece of a fitted estimator that is not an estimator itself (a Tree, a loss): built
    by calling its class, perhaps with arguments, and records no scikit-learn version."""

    checks_version = False

    def __init__(self, *args):
        self.args = args

    def __setstate__(self, state):
        # A Cython class's state is a tuple of its fields; a Python class's, its __dict__.
        if isinstance(state, dict):
            self.__dict__.update(state)
        else:
            self.state = state


def _cython_state(cls, checksum, state):
    """Cython's __pyx_unpickle_<class>(class, checksum, state), as a stand-in: the class,
    unchanged (the losses' state is their options, which the class name decides here)."""
    return cls()


def _part(name: str) -> type:
    return type(name, (Part,), {})


class DecisionTree(Fitted):
    pass


class Forest(Fitted):
    pass


class GradientBoosting(Fitted):
    pass


class HistGradientBoosting(Fitted):
    pass


class Dummy(Fitted):
    pass


_TREE = "sklearn.tree._classes"
_FOREST = "sklearn.ensemble._forest"
_LOSS_NAMES = ("HalfSquaredError", "AbsoluteError", "HuberLoss", "PinballLoss",
               "HalfPoissonLoss", "HalfGammaLoss", "HalfTweedieLoss", "HalfBinomialLoss",
               "HalfMultinomialLoss", "ExponentialLoss")
_LINKS = ("IdentityLink", "LogLink", "LogitLink", "HalfLogitLink", "MultinomialLogit",
          "Interval")
LOSSES = {name: _part(name) for name in _LOSS_NAMES}
STAND_INS = {
    ("sklearn.tree._tree", "Tree"): _part("Tree"),
    **{(_TREE, name): DecisionTree for name in (
        "DecisionTreeClassifier", "DecisionTreeRegressor", "ExtraTreeClassifier",
        "ExtraTreeRegressor")},
    **{(_FOREST, name): Forest for name in (
        "RandomForestClassifier", "RandomForestRegressor", "ExtraTreesClassifier",
        "ExtraTreesRegressor")},
    ("sklearn.ensemble._gb", "GradientBoostingClassifier"): GradientBoosting,
    ("sklearn.ensemble._gb", "GradientBoostingRegressor"): GradientBoosting,
    **{("sklearn.ensemble._hist_gradient_boosting.gradient_boosting", name):
       HistGradientBoosting for name in ("HistGradientBoostingClassifier",
                                         "HistGradientBoostingRegressor")},
    ("sklearn.ensemble._hist_gradient_boosting.binning", "_BinMapper"): _part("_BinMapper"),
    ("sklearn.ensemble._hist_gradient_boosting.predictor", "TreePredictor"):
        _part("TreePredictor"),
    ("sklearn.dummy", "DummyClassifier"): Dummy,
    ("sklearn.dummy", "DummyRegressor"): Dummy,
    ("sklearn.preprocessing._label", "LabelEncoder"): _part("LabelEncoder"),
    # HistGradientBoosting's scorer for early stopping: kept, never called.
    ("functools", "partial"): _part("partial"),
    ("sklearn.utils.validation", "check_array"): _part("check_array"),
    **{("sklearn._loss.loss", name): cls for name, cls in LOSSES.items()},
    **{("sklearn._loss._loss", f"Cy{name}"): _part(f"Cy{name}") for name in _LOSS_NAMES},
    **{("sklearn._loss._loss", f"__pyx_unpickle_Cy{name}"): _cython_state
       for name in _LOSS_NAMES},
    **{("sklearn._loss.link", name): _part(name) for name in _LINKS},
}


def ensemble(estimator, signature, means: list) -> forest.Ensemble:
    """The Ensemble computing this tree of stand-ins; Unsupported says why it cannot."""
    steps = estimator.steps if isinstance(estimator, Pipeline) else [(None, estimator)]
    *transforms, (_, final) = steps
    build = BUILDERS.get(type(final))
    if build is None:
        raise Unsupported(f"the final step is {type(final).__name__}, not a tree ensemble")
    try:
        columns, _, inputs = preprocessing([step for _, step in transforms], signature,
                                           means)
        return build(final, signature, columns, inputs)
    except (AttributeError, TypeError, ValueError, IndexError, KeyError, OverflowError) as e:
        raise Unsupported(f"its attributes are not a fitted model's: {e!r}") from None


def _classes(estimator, signature) -> int:
    """The number of classes (0: a regressor), checked against the signature."""
    classes = getattr(estimator, "classes_", None)
    if not signature.classifier:
        if classes is not None:
            raise Unsupported("it is a classifier, but the signature is a regressor's")
        return 0
    count = len(signature.classes)
    if classes is None or (classes.tolist() != list(range(count)) and
                           [str(c) for c in classes.tolist()] != list(signature.classes)):
        raise Unsupported("its classes are not the signature's")
    return count


def _tree_arrays(tree) -> tuple:
    """A fitted Tree's nodes as forest.concatenate takes them: scikit-learn compares X cast
    to float32 with a float64 threshold, x <= t, which for a float32 x is x <= the largest
    float32 not above t."""
    state = tree.__dict__
    nodes = state["nodes"]
    threshold = nodes["threshold"]
    narrow = threshold.astype(np.float32)
    narrow = np.where(narrow.astype(np.float64) > threshold,
                      np.nextafter(narrow, np.float32(-np.inf)), narrow)
    return (nodes["feature"], narrow, nodes["missing_go_to_left"].astype(bool),
            nodes["left_child"], nodes["right_child"]), state["values"], \
        nodes["weighted_n_node_samples"]


def _single_output(estimator):
    if getattr(estimator, "n_outputs_", 1) != 1:
        raise Unsupported("it predicts several outputs")


def _trees(estimators: list, classes: int) -> tuple:
    """(Forest, leaf values, covers) of scikit-learn trees: per node (N,) values for
    regression trees, (N, classes) proportions for classification trees, in the order
    given."""
    arrays, values, covers = zip(*(_tree_arrays(e.tree_) for e in estimators))
    leaves = [v[:, 0, :classes] if classes else v[:, 0, 0] for v in values]
    return forest.concatenate(list(arrays), np.float32), np.concatenate(leaves), \
        np.concatenate(covers)


def _decision_tree(estimator, signature, columns, inputs):
    _single_output(estimator)
    return _forest_of([estimator], estimator, signature, columns, inputs)


def _random_forest(estimator, signature, columns, inputs):
    _single_output(estimator)
    return _forest_of(list(estimator.estimators_), estimator, signature, columns, inputs)


def _forest_of(trees: list, estimator, signature, columns, inputs) -> forest.Ensemble:
    classes = _classes(estimator, signature)
    nodes, values, covers = _trees(trees, classes)
    link = links.Proportions() if classes else links.Identity()
    return forest.Ensemble(columns, nodes, nodes.renumbered(values), link, average=True,
                           covers=nodes.renumbered(covers), inputs=inputs)


def _gradient_boosting(estimator, signature, columns, inputs):
    classes = _classes(estimator, signature)
    stages = estimator.estimators_[:estimator.n_estimators_]
    per_stage = stages.shape[1]
    # predict_stages adds scale * value[leaf] to the score: the product is taken once here.
    nodes, values, covers = _trees([t for stage in stages for t in stage], 0)
    values = estimator.learning_rate * values
    start = _gb_start(estimator, classes)
    loss = type(estimator._loss).__name__
    if classes == 2:
        link = links.Logistic(strict=False, scale=2.0 if loss == "ExponentialLoss" else 1.0)
    elif classes:
        link = links.Softmax()
    else:
        link = links.Identity()
    return forest.Ensemble(columns, nodes, nodes.renumbered(values), link, start=start,
                           groups=np.tile(np.arange(per_stage), len(stages)),
                           covers=nodes.renumbered(covers), inputs=inputs)


def _gb_start(estimator, classes: int) -> np.ndarray:
    """_init_raw_predictions of the init estimator, which is a DummyClassifier (its class
    prior), a DummyRegressor (its constant) or "zero"."""
    init = estimator.init_
    width = estimator.estimators_.shape[1]
    if isinstance(init, str) and init == "zero":
        return np.zeros(width)
    if not isinstance(init, Dummy):
        raise Unsupported("its init estimator is not the default")
    if not classes:
        return np.asarray(init.constant_, dtype=np.float64).reshape(width)
    if init.strategy != "prior":
        raise Unsupported(f"its init estimator's strategy is {init.strategy!r}")
    eps = np.finfo(np.float64).eps
    prior = np.clip(np.asarray(init.class_prior_, dtype=np.float64), eps, 1 - eps)
    if classes == 2:
        p = float(prior[1])
        loss = type(estimator._loss).__name__
        logit = math.log(p / (1 - p))  # scipy.special.logit's arithmetic
        return np.array([0.5 * logit if loss == "ExponentialLoss" else logit])
    # MultinomialLogit.link: log(p / gmean(p)), scipy's gmean being exp(mean(log(p))).
    p = prior[None, :]
    return np.log(p / np.exp(np.mean(np.log(p), axis=1))[:, None])[0]


def _hist_gradient_boosting(estimator, signature, columns, inputs):
    classes = _classes(estimator, signature)
    arrays, values, tables, covers = _predictors_arrays(
        [p for iteration in estimator._predictors for p in iteration],
        _known_categories(estimator._bin_mapper))
    per_iteration = estimator.n_trees_per_iteration_
    nodes = forest.concatenate(arrays, np.float64, categories=(tables, CATEGORY_BITS))
    loss = type(estimator._loss).__name__
    if classes == 2:
        link = links.Logistic(strict=True)
    elif classes:
        link = links.Softmax()
    elif loss in ("HalfPoissonLoss", "HalfGammaLoss", "HalfTweedieLoss"):
        link = links.NumpyExp()
    else:
        link = links.Identity()
    recode = _recode(estimator)
    # Its own encoding folded into the pipeline's OrdinalEncoder tables, where it follows one.
    folded = recode and columns.recoded(recode.order, recode.known)
    return forest.Ensemble(folded or columns, nodes, nodes.renumbered(values),
                           link, start=np.asarray(estimator._baseline_prediction,
                                                  dtype=np.float64).reshape(per_iteration),
                           groups=np.tile(np.arange(per_iteration),
                                          len(estimator._predictors)),
                           recode=None if folded else recode,
                           covers=nodes.renumbered(covers.astype(np.float64)),
                           # The trees take the columns in the recoded order.
                           inputs=inputs if recode is None else inputs[recode.order])


def _recode(estimator) -> forest.Recode | None:
    """With categorical features, HistGradientBoosting's own _preprocessor: a
    ColumnTransformer that puts its OrdinalEncoder's codes of the categorical columns first
    (an unknown value or a missing one: NaN), then the other columns as they are."""
    if estimator._preprocessor is None:
        return None
    flags = np.asarray(estimator.is_categorical_, dtype=bool)
    (_, encoder, _), (_, numerical, _), *rest = estimator._preprocessor.transformers_
    if any(not (isinstance(step, str) and step == "drop") for _, step, _ in rest) \
            or type(numerical).__name__ != "FunctionTransformer" \
            or encoder.handle_unknown != "use_encoded_value" \
            or encoder.unknown_value == encoder.unknown_value \
            or encoder.encoded_missing_value == encoder.encoded_missing_value:
        raise Unsupported("its own category encoder is not the one it makes")
    known = []
    for values in encoder.categories_:
        values = np.asarray(values, dtype=np.float64)
        known.append(values[~np.isnan(values)])
    return forest.Recode(np.concatenate([np.flatnonzero(flags), np.flatnonzero(~flags)]),
                         tuple(known))


def _known_categories(bin_mapper) -> dict:
    """{feature: bool (CATEGORY_BITS,)}: the raw categories each categorical feature saw."""
    state = bin_mapper.__dict__
    flags = state.get("is_categorical_")
    known = {}
    for f, categorical in enumerate([] if flags is None else flags.tolist()):
        if categorical:
            seen = np.zeros(CATEGORY_BITS, dtype=bool)
            seen[np.asarray(state["bin_thresholds_"][f]).astype(np.intp)] = True
            known[f] = seen
    return known


def _predictors_arrays(predictors: list, known: dict) -> tuple:
    """TreePredictors' nodes (per tree, as forest.concatenate takes them), leaf values and
    covers (concatenated), and per tree the table of each category split.

    Their predict (_predictor.pyx): a missing value goes where missing_go_to_left says; at a
    category split, a category in raw_left_cat_bitsets goes left, another known one right,
    and a negative or unknown one is taken as missing. All trees' nodes are read at once
    (per tree, this was 13 µs of a 300-tree model's 4 ms)."""
    states = [p.__dict__ for p in predictors]
    sizes = [len(state["nodes"]) for state in states]
    ends = np.cumsum(sizes).tolist()
    # Copied tree by tree: np.concatenate would promote the record's fields pair by pair,
    # 5 ms for 300 trees.
    nodes = np.empty(ends[-1], dtype=states[0]["nodes"].dtype)
    for state, size, end in zip(states, sizes, ends):
        nodes[end - size:end] = state["nodes"]
    leaf = nodes["is_leaf"].astype(bool)
    left = np.where(leaf, TREE_LEAF, nodes["left"].astype(np.intp))
    right = np.where(leaf, TREE_LEAF, nodes["right"].astype(np.intp))
    missing_left = nodes["missing_go_to_left"].astype(bool)
    columns = (nodes["feature_idx"], nodes["num_threshold"], missing_left, left, right)
    arrays = [tuple(c[end - size:end] for c in columns) for size, end in zip(sizes, ends)]
    tables = [{} for _ in predictors]
    splits = np.flatnonzero(nodes["is_categorical"].astype(bool) & ~leaf)
    if len(splits):
        counts = [len(state["raw_left_cat_bitsets"]) for state in states]
        bitsets = np.concatenate([state["raw_left_cat_bitsets"] for state in states])
        tree = np.searchsorted(ends, splits, side="right")
        first_bitset = np.cumsum([0] + counts[:-1])
        words = bitsets[nodes["bitset_idx"][splits] + first_bitset[tree]]
        goes_left = ((words[:, :, None] >> np.arange(32, dtype=np.uint32)) & 1).astype(
            bool).reshape(len(splits), -1)
        seen = np.stack([known[int(f)] for f in nodes["feature_idx"][splits].tolist()])
        missing = missing_left[splits][:, None]
        found = np.concatenate([np.where(seen, goes_left, missing), missing, missing], axis=1)
        starts = np.array([0] + ends[:-1])
        for t, node, table in zip(tree.tolist(), (splits - starts[tree]).tolist(), found):
            tables[t][node] = table
    return arrays, nodes["value"], tables, nodes["count"]


BUILDERS = {
    DecisionTree: _decision_tree,
    Forest: _random_forest,
    GradientBoosting: _gradient_boosting,
    HistGradientBoosting: _hist_gradient_boosting,
}
