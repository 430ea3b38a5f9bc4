"""Exact explanations of a tree ensemble's score: path-dependent TreeSHAP, one leaf at a time.

Path-dependent TreeSHAP (Lundberg et al., "Consistent Individualized Feature Attribution for
Tree Ensembles", 2018) values a set S of known features by the tree's expected score when
the others are unknown: a split on a known feature sends the row its own way, a split on an
unknown one sends it both ways, weighted by the share of the training data (the node's
cover) that went each way. A feature's SHAP value is its Shapley value in that game.

The design: one leaf at a time, all leaves and rows at once, in NumPy. A leaf of value v
whose path tests d distinct features takes, for each of them, z_j (the product of
cover(child) / cover(node) over the path's splits on j) and o_j (1 if the row goes the
path's way at every one of them, else 0). Its part of the expected score given S is
v * prod_{j in S} o_j * prod_{j not in S} z_j, and its part of feature i's Shapley value is

    v * (o_i - z_i) * sum_k k! (d-1-k)! / d! * e_k(j != i),

e_k the sum over k-subsets of the other features of prod o * prod z. That weighted sum is
the integral over [0, 1] of prod_{j != i} (z_j (1 - u) + o_j u) du (the weights are Beta
integrals), a polynomial of degree d - 1, which Gauss-Legendre quadrature with ceil(d / 2)
nodes integrates exactly. With F(u) the product over all d features:
- o_i = 1: the value is v (1 - z_i) * integral F(u) / (z_i + (1 - z_i) u);
- o_i = 0: the factor is z_i (1 - u), and the value is -v * integral F(u) / (1 - u), the
  same for every such feature of the leaf (and 0 where z_i is 0, as it must be).
So a leaf costs O(d * nodes) per row instead of the recursion's O(d^2), and the work is a
few array operations over (rows, leaves, features) instead of a Python loop per node. The
values plus the base (the expected score, sum v * prod z) add up to the row's score.
"""

from typing import NamedTuple

import numpy as np

# Rows explained together: their (rows x leaves x slots) arrays stay near this many cells
# (8 MiB of float64), so memory stays flat whatever the batch.
CELLS = 1 << 20


class Paths(NamedTuple):
    """Every leaf's path from its tree's root, its distinct features in `slots` columns;
    a leaf with fewer pads its last slots with z = o = 1, a factor of 1 that adds 0."""

    leaf: np.ndarray     # (L,) the leaf's node
    tree: np.ndarray     # (L,) its tree
    steps: np.ndarray    # (L, K) the splits on the path (pad: the leaf, which goes left)
    right: np.ndarray    # (L, K) bool: the path goes right there (pad: False)
    slot: np.ndarray     # (L, K) the slot of the split's feature (pad: 0)
    feature: np.ndarray  # (L, S) each slot's column of Z (pad: 0)
    zero: np.ndarray     # (L, S) each slot's z (pad: 1)


def paths(child: np.ndarray, roots: np.ndarray, feature: np.ndarray,
          covers: np.ndarray) -> Paths:
    """The Paths of a forest.Forest's nodes (child, roots, feature) with their covers."""
    count = len(child)
    nodes = np.arange(count)
    split = child != nodes
    parent = nodes.copy()
    parent[child[split]] = nodes[split]
    parent[child[split] + 1] = nodes[split]
    goes_right = np.zeros(count, dtype=bool)
    goes_right[child[split] + 1] = True
    leaf = np.flatnonzero(~split)
    # Up from each leaf to its root: column k is k + 1 levels above the leaf.
    at, steps, right, fraction = leaf, [], [], []
    while True:
        above = parent[at]
        moved = above != at
        if not moved.any():
            break
        steps.append(np.where(moved, above, leaf))
        right.append(moved & goes_right[at])
        with np.errstate(divide="ignore", invalid="ignore"):
            share = np.where(moved, covers[at] / covers[above], 1.0)
        fraction.append(np.where(np.isfinite(share), share, 0.0))  # a node of cover 0
        at = above
    tree_of_root = np.empty(count, dtype=np.intp)
    tree_of_root[roots] = np.arange(len(roots))
    tree = tree_of_root[at]
    if not steps:  # every tree a single leaf
        empty = np.zeros((len(leaf), 1), dtype=np.intp)
        return Paths(leaf, tree, leaf[:, None], empty.astype(bool), empty, empty,
                     np.ones((len(leaf), 1)))
    steps, right, fraction = (np.stack(a, axis=1) for a in (steps, right, fraction))
    real = steps != leaf[:, None]
    tested = np.where(real, feature[steps], np.iinfo(np.intp).max)
    # A slot per distinct feature: its rank among the leaf's features.
    order = np.argsort(tested, axis=1, kind="stable")
    ordered = np.take_along_axis(tested, order, axis=1)
    first = np.ones(ordered.shape, dtype=bool)
    first[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    rank = np.cumsum(first, axis=1) - 1
    slot = np.empty_like(rank)
    np.put_along_axis(slot, order, rank, axis=1)
    slot = np.where(real, slot, 0)
    width = int((first & (ordered != np.iinfo(np.intp).max)).sum(axis=1).max())
    rows = np.arange(len(leaf))
    features = np.zeros((len(leaf), width), dtype=np.intp)
    zero = np.ones((len(leaf), width))
    for k in range(steps.shape[1]):
        on = real[:, k]
        features[rows[on], slot[on, k]] = tested[on, k]
        zero[rows[on], slot[on, k]] *= fraction[on, k]
    return Paths(leaf, tree, steps, right, slot, features, zero)


class Explainer(NamedTuple):
    """The SHAP values of one score (a class's, or the value) from some of the leaves."""

    steps: np.ndarray    # (L, K), right and slot: as Paths, for these leaves
    right: np.ndarray
    flat_slot: np.ndarray  # (L, K): the (leaf, slot) of each step in a row of L * S cells
    low: np.ndarray      # (Q, L, S): z (1 - u_q), a slot's factor where the row leaves
    high: np.ndarray     # (Q, L, S): z + (1 - z) u_q, where it follows
    kept: np.ndarray     # (Q, L, S): w_q v (1 - z) / high: a followed slot's share per node
    dropped: np.ndarray  # (Q, L): w_q v / (1 - u_q): a left slot's (negated) share
    order: np.ndarray    # (L * S,): the cells sorted by input feature
    starts: np.ndarray   # where each input feature's run of cells starts in that order
    inputs: np.ndarray   # the input feature of each run
    base: float          # the expected score: start + sum v * prod z

    @classmethod
    def of(cls, found: Paths, chosen: np.ndarray, values: np.ndarray, start: float,
           inputs: np.ndarray) -> "Explainer":
        """For the leaves `chosen` (indices into found) of values `values`; inputs: the
        input feature of each column of Z."""
        zero, slots = found.zero[chosen], found.zero.shape[1]
        nodes, weights = np.polynomial.legendre.leggauss(max(1, (slots + 1) // 2))
        u, w = (nodes + 1) / 2, weights / 2  # on [0, 1]
        low = zero[None] * (1 - u)[:, None, None]
        high = zero[None] + (1 - zero)[None] * u[:, None, None]
        kept = w[:, None, None] * values[None, :, None] * (1 - zero)[None] / high
        dropped = (w / (1 - u))[:, None] * values[None, :]
        cells = inputs[found.feature[chosen]].ravel()
        order = np.argsort(cells, kind="stable")
        starts = np.flatnonzero(np.r_[True, np.diff(cells[order]) != 0])
        slot = found.slot[chosen]
        flat_slot = np.arange(len(chosen))[:, None] * slots + slot
        base = float(start + np.sum(values * zero.prod(axis=1)))
        return cls(found.steps[chosen], found.right[chosen], flat_slot, low, high, kept,
                   dropped, order, starts, cells[order][starts], base)

    def values(self, go_right: np.ndarray, width: int) -> np.ndarray:
        """(rows, width): each input feature's SHAP value, from every node's decision for
        each row (rows, nodes), as forest.Forest.decisions answers."""
        leaves, slots = self.kept.shape[1:]
        block = max(1, CELLS // max(1, leaves * slots))
        found = np.zeros((len(go_right), width))
        for i in range(0, len(go_right), block):
            part = self._cells(go_right[i:i + block])
            found[i:i + block, self.inputs] = np.add.reduceat(part[:, self.order],
                                                              self.starts, axis=1)
        return found

    def _cells(self, go_right: np.ndarray) -> np.ndarray:
        """(rows, L * S): each leaf's part of each slot's value."""
        rows, (leaves, slots) = len(go_right), self.kept.shape[1:]
        follows = np.ones((rows, leaves * slots), dtype=bool)
        for k in range(self.steps.shape[1]):
            follows[:, self.flat_slot[:, k]] &= go_right[:, self.steps[:, k]] == self.right[:, k]
        follows = follows.reshape(rows, leaves, slots)
        # F(u_q) per (row, leaf): the product of every slot's factor.
        product = np.empty((len(self.low), rows, leaves))
        for q, (low, high) in enumerate(zip(self.low, self.high)):
            product[q] = np.where(follows[:, :, 0], high[:, 0], low[:, 0])
            for j in range(1, slots):
                product[q] *= np.where(follows[:, :, j], high[:, j], low[:, j])
        kept = product[0][:, :, None] * self.kept[0]
        dropped = product[0] * self.dropped[0]
        for q in range(1, len(product)):
            kept += product[q][:, :, None] * self.kept[q]
            dropped += product[q] * self.dropped[q]
        return np.where(follows, kept, -dropped[:, :, None]).reshape(rows, leaves * slots)
