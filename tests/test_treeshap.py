"""Explanations of tree models (TreeSHAP), against the libraries' own and a brute-force oracle.

Every model test_trees.py serves is explained here. The oracles are outside the function:
- XGBoost's predict(pred_contribs=True) and LightGBM's predict(pred_contrib=True), on the
  columns the booster takes (the pipeline's own transform);
- shap.TreeExplainer(feature_perturbation="tree_path_dependent") for scikit-learn, where it
  takes the model;
- where it does not (GradientBoosting of several classes, HistGradientBoosting with its own
  categories), the definition itself: the path-dependent expected score of every subset of
  features, computed by recursion over the fitted trees (Lundberg et al. 2018, Algorithm 1),
  and the Shapley formula over all subsets.
And a property on random rows: the values plus the base equal the library's own raw score.
"""

import itertools
import math
import warnings

import lightgbm
import numpy as np
import pytest
import shap
import xgboost
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (GradientBoostingClassifier, HistGradientBoostingClassifier,
                              RandomForestClassifier)
from sklearn.preprocessing import OneHotEncoder

from iris_predict import settings
from iris_predict.model import artifact, served
from tests.models import encode
from tests.test_trees import (LGB, MODELS, RTOL, TARGETS, XGB, make_rows, package, pipe,
                              probe_rows, score_of)

# XGBoost computes its contributions in float32 (bst_float): 1e-6 of the score's scale is a
# few float32 roundings (2**-24 ~ 6e-8 each) over a path's dozen operations.
FLOAT32 = 1e-6
# Float64 throughout: the orders of summation differ, the results by a few ulps.
FLOAT64 = 1e-9

ONE_HOT = ColumnTransformer([
    ("numbers", "passthrough", [0, 1, 2]),
    ("colour", OneHotEncoder(handle_unknown="ignore", sparse_output=False), [3])])
EXTRA = {
    # A category's one-hot columns are summed into the colour's one value.
    "random forest one-hot": ("three", lambda: pipe(RandomForestClassifier(
        20, max_depth=6, random_state=0), ONE_HOT), {}),
    "xgboost one-hot": ("binary", lambda: pipe(xgboost.XGBClassifier(**XGB), ONE_HOT), {}),
    "lightgbm one-hot": ("three", lambda: pipe(lightgbm.LGBMClassifier(**LGB), ONE_HOT), {}),
    "hist gradient boosting three, no categories": ("three", lambda: pipe(
        HistGradientBoostingClassifier(max_iter=20, random_state=0)), {}),
}
ALL = {**MODELS, **EXTRA}
BRUTE_FORCE_ROWS = 25  # the definition costs 2**columns expected scores per row and tree


@pytest.fixture(autouse=True)
def no_row_limit(monkeypatch):
    """Hundreds of probe rows at once, past the serving limit (tested in test_explanations)."""
    monkeypatch.setattr(settings, "EXPLAIN_MAX_ROWS", 10_000)


@pytest.fixture(scope="module")
def fitted_models(tmp_path_factory):
    """{name: (fitted pipeline, served Model)}, fitted once for the module."""
    directory = tmp_path_factory.mktemp("treeshap")
    rows = make_rows(7)
    score = score_of(rows)
    found = {}

    def get(name):
        if name not in found:
            target, make, fit = ALL[name]
            y = TARGETS[target](score)
            fitted = make().fit(rows, y, **fit)
            path = package(directory, fitted, rows, y, target, name)
            found[name] = fitted, served.Model(*artifact.load(path)), rows
        return found[name]
    return get


def answered(model, X):
    """(labels, raw score of the answered class) as the function computes them."""
    labels, _ = model.predict(X, probabilities=False)
    return labels


def columns_of(fitted, rows, as_fitted: bool = False) -> np.ndarray:
    """The matrix the final estimator takes: the pipeline's own transform, as floats or
    (as_fitted) in the dtype it was fitted on (objects, for HistGradientBoosting's own
    category encoder)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        Z = fitted[:-1].transform(rows)
        return Z if as_fitted else np.asarray(Z, dtype=np.float64)


def per_input(values: np.ndarray, fitted) -> np.ndarray:
    """Sum the columns of one input feature (one-hot) into it: columns -> 4 inputs."""
    names = fitted[:-1].get_feature_names_out().tolist()
    inputs = np.zeros((len(values), 4))
    for j, name in enumerate(names):
        column = name.split("__", 1)[1]
        index = int(column[1:].split("_")[0])  # x0, x1, x2, x3 or x3_red ...
        inputs[:, index] += values[:, j]
    return inputs


def library_values(fitted, rows, labels, binary_single: bool) -> tuple:
    """(values per input feature, base) of the answered class, from the library."""
    final = fitted[-1]
    Z = columns_of(fitted, rows)
    if isinstance(final, xgboost.XGBModel):
        booster = final.get_booster()
        found = booster.predict(xgboost.DMatrix(Z, feature_types=booster.feature_types,
                                                enable_categorical=True), pred_contribs=True)
    elif isinstance(final, lightgbm.LGBMModel):
        found = final.booster_.predict(Z, pred_contrib=True)
        if found.shape[1] != Z.shape[1] + 1:  # classes side by side
            found = found.reshape(len(Z), -1, Z.shape[1] + 1)
    else:
        explainer = shap.TreeExplainer(final, feature_perturbation="tree_path_dependent")
        values = np.asarray(explainer.shap_values(Z, check_additivity=False))
        base = np.ravel(explainer.expected_value)
        if values.ndim == 3:  # (rows, columns, classes)
            values = np.concatenate([values, np.broadcast_to(
                base[None, None, :], (len(Z), 1, len(base)))], axis=1).transpose(0, 2, 1)
        else:
            values = np.concatenate([values, np.full((len(Z), 1), base[0])], axis=1)
        found = values
    found = np.asarray(found, dtype=np.float64)
    if found.ndim == 3:
        found = found[np.arange(len(Z)), labels]
    if binary_single:
        found = found * np.where(labels == 1, 1.0, -1.0)[:, None]
    return per_input(found[:, :-1], fitted), found[:, -1]


# --- the definition, by brute force, for what shap.TreeExplainer does not take ----------

def sklearn_tree(tree, scale: float, column: int = 0):
    """(left, right, cover, value, feature, goes_left(z, node)) of a scikit-learn Tree."""
    def goes_left(z, node):
        x = z[tree.feature[node]]
        if np.isnan(x):
            return bool(tree.missing_go_to_left[node])
        return np.float32(x) <= tree.threshold[node]
    return (tree.children_left, tree.children_right, tree.weighted_n_node_samples,
            scale * tree.value[:, 0, column], tree.feature, goes_left)


def hist_tree(predictor):
    """The same of a HistGradientBoosting TreePredictor, on the columns it takes."""
    nodes = predictor.nodes

    def goes_left(z, node):
        x = z[nodes["feature_idx"][node]]
        if np.isnan(x):
            return bool(nodes["missing_go_to_left"][node])
        if nodes["is_categorical"][node]:
            if x < 0:
                return bool(nodes["missing_go_to_left"][node])
            words = predictor.raw_left_cat_bitsets[nodes["bitset_idx"][node]]
            return bool((int(words[int(x) // 32]) >> (int(x) % 32)) & 1)
        return x <= nodes["num_threshold"][node]
    leaf = nodes["is_leaf"].astype(bool)
    return (np.where(leaf, -1, nodes["left"].astype(np.intp)),
            np.where(leaf, -1, nodes["right"].astype(np.intp)),
            nodes["count"].astype(float), nodes["value"], nodes["feature_idx"], goes_left)


def expected(tree, z, known: frozenset, node: int = 0) -> float:
    """The tree's expected score given the features `known` (Algorithm 1)."""
    left, right, cover, value, feature, goes_left = tree
    if left[node] < 0:
        return float(value[node])
    if int(feature[node]) in known:
        return expected(tree, z, known, left[node] if goes_left(z, node) else right[node])
    return (cover[left[node]] * expected(tree, z, known, left[node])
            + cover[right[node]] * expected(tree, z, known, right[node])) / cover[node]


def shapley(trees: list, z: np.ndarray, start: float) -> tuple:
    """(Shapley value per column, base) of the sum of trees' expected scores."""
    width = len(z)
    cache = {}

    def v(subset):
        if subset not in cache:
            cache[subset] = start + sum(expected(t, z, subset) for t in trees)
        return cache[subset]
    values = np.zeros(width)
    for i in range(width):
        others = [j for j in range(width) if j != i]
        for size in range(width):
            weight = math.factorial(size) * math.factorial(width - size - 1) / \
                math.factorial(width)
            for subset in itertools.combinations(others, size):
                known = frozenset(subset)
                values[i] += weight * (v(known | {i}) - v(known))
    return values, v(frozenset())


def brute_force(fitted, rows, labels) -> tuple:
    """(values per input feature, base) of the answered class, by the definition."""
    final = fitted[-1]
    Z = columns_of(fitted, rows)
    found, bases = [], []
    if isinstance(final, GradientBoostingClassifier):
        classes = final.estimators_.shape[1]
        prior = final._raw_predict_init(Z[:1])[0]
        for z, label in zip(Z, labels):
            k = int(label) if classes > 1 else 0
            trees = [sklearn_tree(stage[k].tree_, final.learning_rate)
                     for stage in final.estimators_]
            values, base = shapley(trees, z, float(prior[k]))
            sign = -1.0 if classes == 1 and label == 0 else 1.0
            found.append(sign * values)
            bases.append(sign * base)
        return per_input(np.array(found), fitted), np.array(bases)
    # HistGradientBoosting: its trees take its own preprocessor's columns, categories first.
    recoded = final._preprocessor.transform(columns_of(fitted, rows, as_fitted=True)) \
        if final._preprocessor is not None else Z
    flags = np.asarray(final.is_categorical_ if final.is_categorical_ is not None
                       else np.zeros(Z.shape[1], dtype=bool))
    order = np.concatenate([np.flatnonzero(flags), np.flatnonzero(~flags)]) \
        if final._preprocessor is not None else np.arange(Z.shape[1])
    single = final.n_trees_per_iteration_ == 1
    for z, label in zip(recoded, labels):
        k = 0 if single else int(label)
        trees = [hist_tree(iteration[k]) for iteration in final._predictors]
        values, base = shapley(trees, z, float(np.ravel(final._baseline_prediction)[k]))
        sign = -1.0 if single and final._loss.__class__.__name__ == "HalfBinomialLoss" \
            and label == 0 else 1.0
        in_z = np.zeros(Z.shape[1])
        in_z[order] = values
        found.append(sign * in_z)
        bases.append(sign * base)
    return per_input(np.array(found), fitted), np.array(bases)


def oracle_of(name: str, fitted):
    final = fitted[-1]
    if isinstance(final, GradientBoostingClassifier) and (
            final.estimators_.shape[1] > 1 or final.loss == "exponential"):
        return brute_force  # shap takes two classes only, and its exponential base is off
    if hasattr(final, "_predictors") and final._preprocessor is not None:
        return brute_force  # shap reads its trees' columns as the pipeline's
    return None


def binary_single(model) -> bool:
    """One score for two classes: class 0's values are the negated score's."""
    return model.computed.kind == "binary" and model.computed.values.ndim == 1 and \
        len(model.computed.start if model.computed.start is not None else ()) == 1


@pytest.mark.parametrize("name", ALL)
def test_values_are_the_libraries_own(fitted_models, name):
    fitted, model, rows = fitted_models(name)
    probe = probe_rows(fitted, rows)
    oracle = oracle_of(name, fitted)
    if oracle is not None:  # by the definition: a few rows, picked to cover NaN and unseen
        probe = probe[np.r_[0:10, 300:305, 500:505, 520:525]][:BRUTE_FORCE_ROWS]
    X = encode(model.metadata, probe)
    labels = answered(model, X)
    values, base = model.explain(X, labels)
    if oracle is None:
        expected_values, expected_base = library_values(fitted, probe, labels,
                                                        binary_single(model))
    else:
        expected_values, expected_base = oracle(fitted, probe, labels)
    tolerance = FLOAT32 if isinstance(fitted[-1], xgboost.XGBModel) else FLOAT64
    scale = max(1.0, np.abs(expected_values).max(), np.abs(expected_base).max())
    np.testing.assert_allclose(values, expected_values, rtol=0, atol=tolerance * scale)
    np.testing.assert_allclose(base, expected_base, rtol=0, atol=tolerance * scale)
    # One row at a time takes the same way: the same values.
    for i in range(0, len(X), max(1, len(X) // 7)):
        one, one_base = model.explain(X[i:i + 1], labels[i:i + 1])
        np.testing.assert_allclose(one[0], values[i], rtol=0, atol=FLOAT64 * scale)
        assert one_base[0] == pytest.approx(base[i], abs=FLOAT64 * scale)


def raw_score(fitted, rows, labels, model) -> np.ndarray:
    """The library's own raw score of the answered class: margin, or identity value."""
    final = fitted[-1]
    Z = columns_of(fitted, rows)
    if isinstance(final, xgboost.XGBModel):
        booster = final.get_booster()
        scores = booster.predict(xgboost.DMatrix(Z, feature_types=booster.feature_types,
                                                 enable_categorical=True), output_margin=True)
    elif isinstance(final, lightgbm.LGBMModel):
        scores = final.booster_.predict(Z, raw_score=True)
    elif hasattr(final, "_predictors"):  # HistGradientBoosting
        scores = final._raw_predict(columns_of(fitted, rows, as_fitted=True))
    elif hasattr(final, "_raw_predict"):  # GradientBoosting
        scores = final._raw_predict(np.ascontiguousarray(Z, dtype=np.float32))
    elif hasattr(final, "predict_proba"):  # a forest's or a tree's class proportions
        scores = final.predict_proba(Z)
    else:
        scores = final.predict(Z)
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim == 2 and scores.shape[1] > 1:
        return scores[np.arange(len(Z)), labels]
    scores = scores.ravel()
    return scores * np.where(labels == 1, 1.0, -1.0) if binary_single(model) else scores


@pytest.mark.parametrize("name", ALL)
def test_values_and_base_add_up_to_the_score_on_random_rows(fitted_models, name):
    """The property, on rows drawn anew (NaN, unseen categories, every seed's own)."""
    fitted, model, _ = fitted_models(name)
    for seed in range(5):
        rows = make_rows(1000 + seed, 60)
        rows[np.random.default_rng(seed).random(60) < 0.1, 3] = "never seen"
        X = encode(model.metadata, rows)
        labels = answered(model, X)
        values, base = model.explain(X, labels)
        score = raw_score(fitted, rows, labels, model)
        # XGBoost's margin is a float32 sum; the values' sum is the float64 one.
        tolerance = FLOAT32 if isinstance(fitted[-1], xgboost.XGBModel) else FLOAT64
        np.testing.assert_allclose(values.sum(axis=1) + base, score, rtol=tolerance,
                                   atol=tolerance * max(1.0, np.abs(score).max()))
