"""Tree ensembles computed with NumPy: every tree of a model walked at once, as its library
walks each one.

Every family (scikit-learn's trees, forests and boosting, XGBoost, LightGBM) is flattened
into one table of nodes (trees.py and boosters.py build it), and every node into one test:
a row goes right when its value in one column of Views is > the node's cut. The views are
Z's columns as each node's rule reads them (a missing value made +inf where the node sends
it right, a category made 1.0 where the node's table sends it right...), computed once per
request, so that the walk itself has no rule but `>`: two gathers, a comparison and an
add per level over (rows x trees) node indices. Leaves point at themselves with an
infinite cut, so a walk of the deepest tree's depth leaves every row at its leaf in every
tree.

Exactness comes from each library's own arithmetic, kept here:
- the type features are compared in: float32 for scikit-learn's trees, forests and
  GradientBoosting (they cast X to float32 and compare with a float64 threshold, so the
  threshold is rounded down to the float32 below it) and for XGBoost (float32, `x <
  threshold`, so the threshold becomes the float32 just below it); float64 for
  HistGradientBoosting and LightGBM;
- the order leaves are summed in: one tree after another from the model's starting score
  (summed(): NumPy adds along the trees' axis sequentially, as the libraries' loops do,
  where along a row it would add pairwise), in float32 for XGBoost;
- the link from score to answer (links.py), with the exp of the library's own C library.
"""

import functools
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from iris_predict import settings
from iris_predict.model import treeshap
from iris_predict.model.estimators import BINARY, EXPECTED_SCORE

# LightGBM's kZeroThreshold (a float, compared as a double): |x| <= it is "zero".
LIGHTGBM_ZERO = float(np.float32(1e-35))
# Rows walked together: as many as make this many (rows x trees) cells, so that a block's
# node indices (8 bytes a cell, a few arrays) stay in a core's L2 cache (measured on 1,000
# rows and 300 trees: blocks of 192 rows 7.0-7.2 ms, 256 7.1-10, 512 9.5-14); a batch's
# blocks are shared among settings.TREE_THREADS threads (NumPy lets go of the GIL as it
# works).
BLOCK_CELLS = 1 << 16
# Rows from which the trees' leaf values are added by np.add.reduce along the trees' axis, a
# tree at a time over all rows (measured: 256 rows of 300 trees 80 µs against np.cumsum's
# 360, which adds a row at a time). Both add in order, but with one row the trees' axis is
# the fast one, where reduce adds pairwise; below this many rows, np.cumsum.
ADDED_ROW_BY_ROW = 8
# One row: the nodes of the first levels are all decided at once (three vectorised steps),
# then a level costs one gather; the deeper levels, wider than this many nodes per tree,
# are walked as a batch is, deciding only the nodes the row reaches. (Measured on the bench's
# models, one row's walk in µs, by the levels decided at once, 0 to all: HistGradientBoosting
# 22, 20, 18, 17, 16 (levels of up to 7 nodes a tree), 17, 21; XGBoost 22 ... 16, 16 (up to
# 8.7), 15, 16; a depth-10 random forest 26 ... 21, 20 (up to 8), 21, 27 ... 60.)
DECIDED_AT_ONCE = 9


# How a view reads its feature, in place on a block of views (rows x views of that rule).
# A missing value compares False with any cut, so by itself it goes left.
def _missing_right(v):
    np.copyto(v, np.inf, where=np.isnan(v))


def _is_missing(v):
    """The node's cut is +inf and a missing value goes right: every value left but those."""
    v[...] = np.isnan(v)


def _zero_left(v):
    """LightGBM's zero_as_missing: zero goes where a missing value goes."""
    np.copyto(v, np.nan, where=np.abs(v) <= LIGHTGBM_ZERO)


def _zero_right(v):
    np.copyto(v, np.inf, where=~(np.abs(v) > LIGHTGBM_ZERO))  # NaN too


def _zero_is_missing(v):
    v[...] = ~(np.abs(v) > LIGHTGBM_ZERO)


# In the order Views keeps them (categories last: they read a table besides).
RULES = (_missing_right, _is_missing, _zero_left, _zero_right, _zero_is_missing)


class Views(NamedTuple):
    """The columns the nodes compare: each is one column of Z read by one rule.

    Views of the same rule are side by side (`rules`: (rule, start, stop) each), values
    as they are first, categories last. A category view is one table of the model (one
    per distinct set of codes on a column, however many nodes test it), its row read at
    one search of the value among `edges`: column 0 for a negative value, k + 1 for a code k
    the model was fitted on (a value in [k, k + 1)), then any larger value and +inf (the
    library's rule for a category it never saw), then a missing value, NaN; the view is
    1.0 where the table sends the row right, and the node's cut 0.5."""

    dtype: type                 # np.float32 or np.float64: what features are compared in
    source: np.ndarray          # (C,) intp: the column of Z each view reads
    rules: tuple                # ((rule, start, stop), ...)
    categories: int             # the first category view
    slot: np.ndarray | None     # (category views,) intp: where its table row starts
    table: np.ndarray | None    # (tables * (width + 4),) bool: goes right
    edges: np.ndarray | None    # [0, 1, ..., width, inf, NaN]: a value's column in a row

    def of(self, Z: np.ndarray) -> np.ndarray:
        """(rows, C): every view of Z's rows."""
        V = np.ascontiguousarray(Z, dtype=self.dtype).take(self.source, axis=1)
        for rule, start, stop in self.rules:
            rule(V[:, start:stop])
        if self.slot is not None:
            codes = self.edges.searchsorted(V[:, self.categories:], side="right")
            codes += self.slot
            V[:, self.categories:] = self.table.take(codes)
        return V


class Forest(NamedTuple):
    """All the trees' nodes, numbered level by level so that a node's two children are
    next to each other: a row's next node is child + (does it go right), one gather and
    one add per level instead of choosing between two."""

    views: Views
    view: np.ndarray            # (N,) intp: the view each node compares (leaves: 0)
    cut: np.ndarray             # (N,) dtype: view > cut goes right (leaves: +inf)
    child: np.ndarray           # (N,) intp: the left child; the right one is next (leaves:
                                # themselves)
    roots: np.ndarray           # (T,) intp
    depth: int                  # levels below the deepest tree's root
    feature: np.ndarray         # (N,) intp: the column of Z each node tests (explanations)
    order: np.ndarray           # (N,) the node each one was in the trees given
    deep: int                   # the first level walked node by node for one row (_one_row)
    decided: int                # the nodes above it

    def renumbered(self, values: np.ndarray) -> np.ndarray:
        """Per-node values of the trees as given (concatenated), in this Forest's order."""
        return values[self.order]

    def leaves(self, Z: np.ndarray) -> np.ndarray:
        """(trees, rows): the leaf each row reaches in each tree."""
        V = self.views.of(Z)
        if len(V) == 1:
            return self._one_row(V[0])[:, None]
        n, width = V.shape
        flat = V.ravel()
        starts = (np.arange(n) * width)[None, :]
        roots = self.roots[:, None]
        if not self.depth:
            return np.repeat(roots, n, axis=1)
        # The first level's nodes are the roots, the same for every row.
        right = flat.take(self.view.take(roots) + starts) > self.cut.take(roots)
        index = self.child.take(roots) + right
        # The indices are the Forest's own, always in range: "wrap" spares take the bounds
        # check "raise" makes of each (10% of the walk).
        for _ in range(self.depth - 1):
            position = self.view.take(index, mode="wrap")
            if n > 1:
                position += starts
            right = flat.take(position, mode="wrap") > self.cut.take(index, mode="wrap")
            index = self.child.take(index, mode="wrap")
            index += right
        return index

    def decisions(self, Z: np.ndarray) -> np.ndarray:
        """(rows, N) bool: at every node, does each row go right (leaves: False)."""
        return self.views.of(Z)[:, self.view] > self.cut

    def _one_row(self, views) -> np.ndarray:
        """One row's leaves: every decision of the first `decided` nodes at once (the
        levels above `deep`), a gather per level; below, the nodes the row reaches."""
        steps = self.child[:self.decided] + (
            views.take(self.view[:self.decided]) > self.cut[:self.decided])
        index = self.roots
        for _ in range(self.deep):
            index = steps.take(index)
        for _ in range(self.depth - self.deep):
            right = views.take(self.view.take(index)) > self.cut.take(index)
            index = self.child.take(index)
            index += right
        return index


def concatenate(trees: list, dtype, categories: tuple | None = None,
                zeros: list | None = None) -> Forest:
    """One Forest from per-tree node arrays.

    trees: per tree (feature, threshold, nan_left, left, right), children -1 at leaves,
    thresholds already in the `<=` form. categories: (per tree a {node: table} dict, width),
    each table a bool array of width + 2 saying which go left: codes 0..width-1, any other
    value, a missing one; zeros: per tree an (N_t,) bool array of LightGBM's
    zero_as_missing nodes.
    """
    sizes = [len(t[0]) for t in trees]
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.intp)
    feature = np.concatenate([t[0] for t in trees]).astype(np.intp)
    threshold = np.concatenate([t[1] for t in trees]).astype(dtype)
    nan_left = np.concatenate([t[2] for t in trees]).astype(bool)
    shift = np.repeat(offsets, sizes)  # each node's tree's first node
    left = np.concatenate([t[3] for t in trees]).astype(np.intp)
    leaf = left < 0
    left = np.where(leaf, -1, left + shift)
    right = np.concatenate([t[4] for t in trees]).astype(np.intp)
    right = np.where(right < 0, -1, right + shift)
    feature[leaf] = 0
    # Level by level over every tree at once: each split's children, side by side.
    order, level, depth = [offsets], offsets, 0
    while True:
        splits = level[~leaf[level]]
        if not len(splits):
            break
        level = np.stack([left[splits], right[splits]], axis=1).ravel()
        order.append(level)
        depth += 1
    widths = [len(level) for level in order]
    deep = next((d for d, nodes in enumerate(widths[:depth])
                 if nodes > DECIDED_AT_ONCE * len(offsets)), depth)
    order = np.concatenate(order)
    if len(order) != len(feature):
        raise ValueError("the trees' nodes are not each reached once from their roots")
    new = np.empty(len(order), dtype=np.intp)
    new[order] = np.arange(len(order))
    child = np.where(leaf, new, new[np.where(leaf, 0, left)])[order]
    tables = _tables(categories[0], offsets) if categories else {}
    zero = np.concatenate(zeros) if zeros is not None else np.zeros(len(feature), dtype=bool)
    views, view, cut = _views(dtype, feature, threshold, ~nan_left, zero, leaf, tables,
                              categories[1] if categories else 0)
    return Forest(views, view[order], cut[order], child, new[offsets], depth, feature[order],
                  order, deep, sum(widths[:deep]))


def _tables(per_tree: list, offsets) -> dict:
    """{node: its table, as "goes right"} over the concatenated trees."""
    return {offset + i: ~np.asarray(table, dtype=bool)
            for splits, offset in zip(per_tree, offsets.tolist()) for i, table in splits.items()}


def _views(dtype, feature, threshold, nan_right, zero, leaf, tables: dict, width: int):
    """(Views, each node's view, each node's cut) in the trees' own node numbering: a view
    per distinct (rule, column, table) among the splits, in that order."""
    cut = threshold.copy()
    cut[leaf] = np.inf
    # Each split's rule, as its place in (value, *RULES, category).
    on_missing = ~leaf & nan_right & np.isinf(threshold) & (threshold > 0)
    rule = np.select(
        [~nan_right & zero, on_missing & zero, on_missing, nan_right & zero, nan_right],
        [RULES.index(r) + 1 for r in (_zero_left, _zero_is_missing, _is_missing, _zero_right,
                                      _missing_right)], 0)
    cut[on_missing] = 0.5
    table = np.full(len(feature), -1)
    distinct_tables = {}
    for node, goes_right in tables.items():
        table[node] = distinct_tables.setdefault(goes_right.tobytes(), len(distinct_tables))
    categorical = table >= 0
    rule[categorical], cut[categorical] = len(RULES) + 1, 0.5
    splits = np.flatnonzero(~leaf)
    # (rule, column, table) as one integer, in that order: np.unique of a row of three sorts
    # rows as records, ten times slower.
    columns, kinds = int(feature.max(initial=0)) + 1, len(distinct_tables) + 1
    keys = (rule[splits] * columns + feature[splits]) * kinds + table[splits] + 1
    distinct, found = np.unique(keys if len(splits) else np.zeros(1, int),
                                return_inverse=True)  # one view at least
    distinct = np.stack([distinct // kinds // columns, distinct // kinds % columns,
                         distinct % kinds - 1], axis=1)
    view = np.zeros(len(feature), dtype=np.intp)
    view[splits] = found.ravel()[:len(splits)]
    places = distinct[:, 0]
    rules = tuple((r, int(np.searchsorted(places, place + 1)),
                   int(np.searchsorted(places, place + 1, side="right")))
                  for place, r in enumerate(RULES) if (places == place + 1).any())
    first = int(np.searchsorted(places, len(RULES) + 1))
    chosen = [np.frombuffer(goes_right, dtype=bool) for goes_right, n in
              sorted(distinct_tables.items(), key=lambda item: item[1])]
    # Each table as Views reads it: [unknown, codes..., unknown, unknown (+inf), missing].
    chosen = [np.concatenate([t[width:width + 1], t[:width], t[width:width + 1], t[width:]])
              for t in (chosen[t] for t in distinct[first:, 2])]
    edges = np.concatenate([np.arange(width + 1), [np.inf, np.nan]]).astype(dtype)
    views = Views(dtype, distinct[:, 1].astype(np.intp), rules, first,
                  np.arange(len(chosen), dtype=np.intp) * (width + 4) if chosen else None,
                  np.concatenate(chosen) if chosen else None, edges if chosen else None)
    return views, view, cut


def summed(values: np.ndarray, leaves: np.ndarray, start=None) -> np.ndarray:
    """start + each tree's leaf value, added one tree after another, in values' dtype:
    (rows,) for values (N,) and leaves (trees, rows); (rows, K) for values (N, K)."""
    first = 0 if start is None else 1
    terms = np.empty((first + len(leaves),) + leaves.shape[1:] + values.shape[1:],
                     dtype=values.dtype)
    terms[:first] = start
    values.take(leaves, axis=0, out=terms[first:], mode="wrap")
    if terms.shape[1] < ADDED_ROW_BY_ROW:
        return np.cumsum(terms, axis=0)[-1]
    # Along the slow axis NumPy adds one tree after another (pairwise summation is along
    # the fast one only), many rows per instruction.
    return np.add.reduce(terms, axis=0)


class Recode(NamedTuple):
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


@functools.cache
def _threads(process: int) -> ThreadPoolExecutor:
    """The threads a batch is computed on, made on first use in each process (a fork
    inherits none of its parent's threads, so a pool made before it would wait forever)."""
    return ThreadPoolExecutor(settings.TREE_THREADS, thread_name_prefix="trees")


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
        """(rows, K): the summed (or averaged) trees, as the library adds them; a batch in
        blocks of about BLOCK_CELLS cells, as many for each thread."""
        blocks = -(-len(X) * len(self.forest.roots) // BLOCK_CELLS)
        if blocks <= 1:
            return self._scores(X)
        threads = settings.TREE_THREADS
        size = -(-len(X) // (-(-blocks // threads) * threads))
        parts = [X[i:i + size] for i in range(0, len(X), size)]
        pool = _threads(os.getpid()) if threads > 1 else None
        return np.concatenate(list((pool.map if pool else map)(self._scores, parts)))

    def _scores(self, X: np.ndarray) -> np.ndarray:
        Z = self.columns.transform(X)
        leaves = self.forest.leaves(Z if self.recode is None else self.recode.transform(Z))
        if self.average:
            total = summed(self.values, leaves)
            total /= len(self.forest.roots)
            return total if total.ndim == 2 else total[:, None]
        if len(self.start) == 1:
            return summed(self.values, leaves, self.start[0])[:, None]
        scores = np.empty((leaves.shape[1], len(self.start)), dtype=self.values.dtype)
        for k, start in enumerate(self.start):
            scores[:, k] = summed(self.values, leaves[self.groups == k], start)
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
