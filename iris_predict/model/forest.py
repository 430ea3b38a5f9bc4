"""Tree ensembles computed with NumPy: every tree of a model walked at once, as its library
walks each one.

Every family (scikit-learn's trees, forests and boosting, XGBoost, LightGBM) is flattened
into one table of nodes (trees.py and boosters.py build it) and one rule per node: a row
goes right when its value is > the node's threshold, a missing value goes where the node
sends it, and a category goes where the node's table of categories says. Leaves point at
themselves with an infinite threshold, so a walk of the deepest tree's depth leaves every
row at its leaf in every tree: (rows x trees) node indices, a few NumPy operations per
level instead of a Python loop per row and tree.

Exactness comes from each library's own arithmetic, kept here:
- the type features are compared in: float32 for scikit-learn's trees, forests and
  GradientBoosting (they cast X to float32 and compare with a float64 threshold, so the
  threshold is rounded down to the float32 below it) and for XGBoost (float32, `x <
  threshold`, so the threshold becomes the float32 just below it); float64 for
  HistGradientBoosting and LightGBM;
- the order leaves are summed in: one tree after another from the model's starting score
  (np.cumsum adds sequentially, as the libraries' loops do; np.sum would add pairwise),
  in float32 for XGBoost;
- the link from score to answer (outputs.py), with the exp of the library's own C library.
"""

from dataclasses import dataclass, field

import numpy as np

from iris_predict.model import treeshap
from iris_predict.model.estimators import BINARY, EXPECTED_SCORE

# LightGBM's kZeroThreshold (a float, compared as a double): |x| <= it is "zero".
LIGHTGBM_ZERO = float(np.float32(1e-35))
# Up to this many rows, category splits are answered before the walk (Categories.answered):
# S lookups per row beat a masked step per level for a few rows, not for a batch.
ANSWERED_FIRST = 16
# Rows walked together: a block's (rows x trees) arrays stay in the CPU's caches (measured:
# 256 rows walk 1,000 in 0.7x the time of all at once for 300 trees).
BLOCK_ROWS = 256
# One row: every node decided at once where the forest has at most this many nodes per
# (tree x level) the walk visits; with more (deep forests: 60 per visit in a depth-10 random
# forest) deciding nodes the row never reaches costs more than a level's gathers (measured
# on the bench's models: XGBoost 300x6, 7 nodes per visit, 82 µs against 117).
EVERY_NODE = 8


@dataclass(frozen=True)
class Categories:
    """Category splits: per categorical node a row of its table says which codes go right.

    Columns 0..width-1 are the codes the model was fitted on, column `width` any other
    value (negative, too large: the library's rule for a category it never saw), column
    width + 1 a missing value."""

    nodes: np.ndarray   # (N,) bool: is the node a category split
    slot: np.ndarray    # (N,) intp: where its row starts in the flattened table
    table: np.ndarray   # (splits * (width + 2),) bool: goes right
    width: int
    # For a few rows, each split's answer is computed first, as a column of its own put
    # before Z's (0 or 1, threshold 0.5): the walk then has no category step per level.
    split_feature: np.ndarray | None = None    # (S,) intp: the Z column each split tests
    split_slot: np.ndarray | None = None       # (S,) intp: its table row's start
    virtual_feature: np.ndarray | None = None  # (N,) intp: feature + S, or the split's column
    virtual_threshold: np.ndarray | None = None

    def answered(self, Z: np.ndarray) -> np.ndarray:
        """[each split's answer (1.0 right), Z]: what virtual_feature indexes."""
        goes_right = self.table.take(self.split_slot + self.codes(Z[:, self.split_feature]))
        return np.concatenate([goes_right.astype(Z.dtype), Z], axis=1)

    def codes(self, flat: np.ndarray) -> np.ndarray:
        """Each value's column in a table row, computed once per request, not per level."""
        inside = (flat >= 0) & (flat < self.width)  # NaN: False
        codes = np.where(inside, flat, self.width).astype(np.intp)
        codes[np.isnan(flat)] = self.width + 1
        return codes

    def decide(self, index, position, codes, go_right):
        """go_right at the category splits among the nodes `index` reached."""
        split = self.nodes.take(index)
        if split.any():
            go_right[split] = self.table.take(self.slot.take(index[split])
                                              + codes.take(position[split]))


@dataclass(frozen=True)
class Zeros:
    """LightGBM's zero_as_missing nodes: a value that is zero goes where a missing one does."""

    nodes: np.ndarray   # (N,) bool


@dataclass(frozen=True)
class Forest:
    """All the trees' nodes, numbered level by level so that a node's two children are
    next to each other: a row's next node is child + (does it go right), one gather and
    one add per level instead of choosing between two."""

    dtype: type                 # np.float32 or np.float64: what features are compared in
    feature: np.ndarray         # (N,) intp: the column each node tests (leaves: 0)
    threshold: np.ndarray       # (N,) dtype: x > threshold goes right (leaves: +inf)
    nan_right: np.ndarray       # (N,) bool: a missing x goes right (leaves: False)
    child: np.ndarray           # (N,) intp: the left child; the right one is next (leaves:
                                # themselves)
    roots: np.ndarray           # (T,) intp
    depth: int                  # levels below the deepest tree's root
    order: np.ndarray | None = None  # (N,) the node each one was in the trees given
    categories: Categories | None = None
    zeros: Zeros | None = None

    def renumbered(self, values: np.ndarray) -> np.ndarray:
        """Per-node values of the trees as given (concatenated), in this Forest's order."""
        return values[self.order]

    def leaves(self, Z: np.ndarray) -> np.ndarray:
        """(rows, trees): the leaf each row reaches in each tree."""
        if len(Z) > BLOCK_ROWS:
            return np.concatenate([self._leaves(Z[i:i + BLOCK_ROWS])
                                   for i in range(0, len(Z), BLOCK_ROWS)])
        return self._leaves(Z)

    def _leaves(self, Z: np.ndarray) -> np.ndarray:
        Z = np.ascontiguousarray(Z, dtype=self.dtype)
        missing = bool(np.isnan(Z).any())
        feature, threshold, categories = self.feature, self.threshold, self.categories
        if categories is not None and len(Z) <= ANSWERED_FIRST:
            Z = categories.answered(Z)
            feature, threshold = categories.virtual_feature, categories.virtual_threshold
            categories = None
        if len(Z) == 1 and len(feature) <= EVERY_NODE * len(self.roots) * self.depth:
            return self._one_row(Z[0], feature, threshold, missing)[None, :]
        n, width = Z.shape
        flat = Z.ravel()
        index = np.repeat(self.roots[None, :], n, axis=0)
        starts = (np.arange(n) * width)[:, None] if n > 1 else None
        codes = categories.codes(flat) if categories is not None else None
        for _ in range(self.depth):
            position = feature.take(index)
            if starts is not None:
                position += starts
            x = flat.take(position)
            go_right = x > threshold.take(index)  # NaN: False, then as the node says
            if missing:
                go_right |= np.isnan(x) & self.nan_right.take(index)
            if self.zeros is not None:
                zero = self.zeros.nodes.take(index) & (np.abs(x) <= LIGHTGBM_ZERO)
                go_right[zero] = self.nan_right.take(index[zero])
            if codes is not None:
                categories.decide(index, position, codes, go_right)
            index = self.child.take(index)
            index += go_right
        return index


    def decisions(self, Z: np.ndarray) -> np.ndarray:
        """(rows, N) bool: at every node, does each row go right (leaves: False)."""
        Z = np.ascontiguousarray(Z, dtype=self.dtype)
        x = Z[:, self.feature]
        go_right = x > self.threshold
        go_right |= np.isnan(x) & self.nan_right
        if self.zeros is not None:
            zero = self.zeros.nodes & (np.abs(x) <= LIGHTGBM_ZERO)
            go_right = np.where(zero, self.nan_right, go_right)
        if self.categories is not None:
            splits = np.flatnonzero(self.categories.nodes)
            codes = self.categories.codes(x[:, splits])
            go_right[:, splits] = self.categories.table[self.categories.slot[splits] + codes]
        return go_right

    def _one_row(self, row, feature, threshold, missing) -> np.ndarray:
        """One row's leaves: every node's decision at once (a few vectorised steps over all
        N nodes), then the walk is two gathers and an add per level."""
        x = row.take(feature)
        go_right = x > threshold
        if missing:
            go_right |= np.isnan(x) & self.nan_right
        if self.zeros is not None:
            zero = self.zeros.nodes & (np.abs(x) <= LIGHTGBM_ZERO)
            go_right[zero] = self.nan_right[zero]
        steps = self.child + go_right  # each node's next node
        index = self.roots
        for _ in range(self.depth):
            index = steps.take(index)
        return index


def concatenate(trees: list, dtype, categories: tuple | None = None,
                zeros: list | None = None) -> Forest:
    """One Forest from per-tree node arrays.

    trees: per tree (feature, threshold, nan_left, left, right), children -1 at leaves,
    thresholds already in the `<=` form. categories: (per tree a {node: table} dict, width),
    each table a bool array of width + 2 (Categories); zeros: per tree an (N_t,) bool array.
    """
    sizes = [len(t[0]) for t in trees]
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.intp)
    feature = np.concatenate([t[0] for t in trees]).astype(np.intp)
    threshold = np.concatenate([t[1] for t in trees]).astype(dtype)
    nan_left = np.concatenate([t[2] for t in trees]).astype(bool)
    left = np.concatenate([np.where(t[3] < 0, -1, t[3] + o) for t, o in zip(trees, offsets)])
    right = np.concatenate([np.where(t[4] < 0, -1, t[4] + o) for t, o in zip(trees, offsets)])
    leaf = left < 0
    feature[leaf] = 0
    threshold[leaf] = np.inf
    nan_left[leaf] = True
    # Level by level over every tree at once: each split's children, side by side.
    order, level, depth = [offsets], offsets, 0
    while True:
        splits = level[~leaf[level]]
        if not len(splits):
            break
        level = np.stack([left[splits], right[splits]], axis=1).ravel()
        order.append(level)
        depth += 1
    order = np.concatenate(order)
    if len(order) != len(feature):
        raise ValueError("the trees' nodes are not each reached once from their roots")
    new = np.empty(len(order), dtype=np.intp)
    new[order] = np.arange(len(order))
    child = np.where(leaf, new, new[np.where(leaf, 0, left)])[order]
    feature, threshold = feature[order], threshold[order]
    table = _categories(*categories, offsets, len(feature)) if categories else None
    if table is not None:
        nodes, slot = table.nodes[order], table.slot[order]
        splits = np.flatnonzero(nodes)
        virtual_feature = feature + len(splits)
        virtual_feature[splits] = np.arange(len(splits))
        virtual_threshold = threshold.copy()
        virtual_threshold[splits] = 0.5
        table = Categories(nodes, slot, table.table, table.width, feature[splits], slot[splits],
                           virtual_feature, virtual_threshold)
    return Forest(dtype, feature, threshold, ~nan_left[order], child,
                  new[offsets], depth, order, table,
                  Zeros(np.concatenate(zeros)[order]) if zeros is not None else None)


def _categories(per_tree: list, width: int, offsets, count: int) -> Categories | None:
    nodes = np.zeros(count, dtype=bool)
    slot = np.zeros(count, dtype=np.intp)
    tables = []
    for splits, offset in zip(per_tree, offsets.tolist()):
        for i, table in splits.items():
            nodes[offset + i] = True
            slot[offset + i] = len(tables)
            tables.append(table)
    if not tables:
        return None
    # Stored as "goes right", flattened: a node's entry is slot + code.
    return Categories(nodes, slot * (width + 2), ~np.array(tables, dtype=bool).ravel(), width)


def summed(values: np.ndarray, leaves: np.ndarray, start) -> np.ndarray:
    """start + each tree's leaf value, added one tree after another: (rows,) for values (N,)
    and leaves (rows, trees), in values' dtype."""
    terms = np.empty((len(leaves), leaves.shape[1] + 1), dtype=values.dtype)
    terms[:, 0] = start
    values.take(leaves, out=terms[:, 1:])
    return np.cumsum(terms, axis=1, out=terms)[:, -1]


@dataclass(frozen=True)
class Recode:
    """Columns reordered, the first len(known) of them replaced by their index in known
    (sorted values; another value, or a missing one, becomes NaN)."""

    order: np.ndarray           # (width,) intp: the input column of each output column
    known: tuple                # per leading output column: its sorted known values

    def transform(self, Z: np.ndarray) -> np.ndarray:
        Z = Z[:, self.order]
        for j, known in enumerate(self.known):
            values = Z[:, j]
            index = np.searchsorted(known, values).clip(0, max(len(known) - 1, 0))
            hit = len(known) > 0 and (known[index] == values)
            Z[:, j] = np.where(hit, index, np.nan)
        return Z


@dataclass(frozen=True)
class Ensemble:
    """A tree model's answers from served X: the trees' leaves summed, then its link."""

    columns: object             # estimators.Columns: served X -> Z, what the trees take
    forest: Forest
    values: np.ndarray          # (N,) leaf values, or (N, classes) for classification trees
    link: object                # links.Link: scores -> labels, probabilities or values
    start: np.ndarray | None = None   # boosting: (K,) the score before the first tree
    groups: np.ndarray | None = None  # boosting: (T,) which of the K scores each tree adds to
    average: bool = False       # a forest: the mean of its trees' values
    recode: Recode | None = None  # HistGradientBoosting's own category encoding of Z
    # For explanations (treeshap.py): each node's cover, the share of the training data
    # that reached it, and the input feature of each column the trees take.
    covers: np.ndarray | None = None   # (N,) in the Forest's order
    inputs: np.ndarray | None = None   # (columns,) intp
    _explainers: dict = field(default_factory=dict, compare=False, repr=False)

    MEASURED_FROM = EXPECTED_SCORE  # TreeSHAP's base

    @property
    def kind(self) -> str:
        return self.link.kind

    def scores(self, X: np.ndarray) -> np.ndarray:
        """(rows, K): the summed (or averaged) trees, as the library adds them."""
        Z = self.columns.transform(X)
        leaves = self.forest.leaves(Z if self.recode is None else self.recode.transform(Z))
        if self.average:
            total = np.cumsum(self.values[leaves], axis=1)[:, -1]
            total /= len(self.forest.roots)
            return total if total.ndim == 2 else total[:, None]
        if len(self.start) == 1:
            return summed(self.values, leaves, self.start[0])[:, None]
        scores = np.empty((len(leaves), len(self.start)), dtype=self.values.dtype)
        for k, start in enumerate(self.start):
            scores[:, k] = summed(self.values, leaves[:, self.groups == k], start)
        return scores

    def predict(self, X: np.ndarray, probabilities: bool):
        return self.link.answer(self.scores(X), probabilities)

    def contributions(self, X: np.ndarray, labels) -> tuple:
        """((rows, features) SHAP values, (rows,) base values) of the score of class
        labels[i] (a regressor: of its score), per input feature: a row's values add up to
        its score minus the base, the expected score (treeshap.py). Binary with one score:
        class 0's score is taken as its negation, as for the linear models."""
        Z = self.columns.transform(X)
        go_right = self.forest.decisions(Z if self.recode is None else self.recode.transform(Z))
        labels = np.asarray(labels, dtype=np.intp)
        per_class = self.values.ndim == 2 if self.average else len(self.start) > 1
        scores = labels if per_class else np.zeros(len(X), dtype=np.intp)
        found, base = np.zeros(X.shape), np.zeros(len(X))
        for score in np.unique(scores).tolist():
            rows = np.flatnonzero(scores == score)
            explainer = self._explainer(score)
            found[rows] = explainer.values(go_right[rows], X.shape[1])
            base[rows] = explainer.base
        if self.kind == BINARY and not per_class:
            sign = np.where(labels == 1, 1.0, -1.0)
            found *= sign[:, None]
            base *= sign
        return found, base

    def _explainer(self, score: int) -> treeshap.Explainer:
        """Built on first use (a few ms for hundreds of trees), kept for the next request."""
        explainer = self._explainers.get(score)
        if explainer is None:
            if "paths" not in self._explainers:
                f = self.forest
                self._explainers["paths"] = treeshap.paths(f.child, f.roots, f.feature,
                                                           self.covers)
            found = self._explainers["paths"]
            if self.average:
                chosen = np.arange(len(found.leaf))
                values = self.values[found.leaf] if self.values.ndim == 1 \
                    else self.values[found.leaf, score]
                values, start = values / len(self.forest.roots), 0.0
            else:
                chosen = np.flatnonzero(self.groups[found.tree] == score)
                values, start = self.values[found.leaf[chosen]], float(self.start[score])
            explainer = treeshap.Explainer.of(found, chosen, values.astype(np.float64),
                                              start, self.inputs)
            self._explainers[score] = explainer
        return explainer

    def decision(self, X: np.ndarray) -> np.ndarray | None:
        """decision_function(X) as scikit-learn shapes it; None for a forest (it has none)."""
        if self.average:
            return None
        scores = self.scores(X).astype(np.float64)
        return scores[:, 0] if scores.shape[1] == 1 else scores
