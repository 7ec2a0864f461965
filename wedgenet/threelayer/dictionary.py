"""The three-layer dictionary of Theorems 12 and 13, as a declarative spec.

The model (docs/threelayer.md): ``m`` parallel blocks, each one first-layer neuron followed by
one second-layer unit,

    f(x) = sum_j w3_j relu(w2_j relu(x . w1_j + b1_j) + b2_j) + b3,

trained on ``L(f(X), y) + (lam / 3) sum_j (||w1_j||_1^3 + |w2_j|^3 + |w3_j|^3)`` (biases
free; ``b1_j = 0`` for Theorem 12). After the rescaling of Lemma 27 it is the Lasso
``L(K z + t) + lam ||z||_1`` over the columns built here.

Columns
-------
A column is given by a first-layer *direction* ``w`` (unit l1 norm, both orientations), a
first-layer bias ``b`` (Theorem 12: ``b = 0``; Theorem 13: ``b = -x_l . w`` for a *bias
sample* ``l``), a *threshold sample* ``j0`` and a *shape*:

    u = relu(X w + b)
    up   (shape 0):  (u - u_j0)_+     second-layer unit  relu(+u - u_j0)
    down (shape 1):  (u_j0 - u)_+     second-layer unit  relu(-u + u_j0)

Directions are the normals of linear hyperplanes of ``R^d`` through ``d - 1`` independent
*generators* taken from a pool:

* Theorem 12 (``bias=False``): samples ``x_i``, differences ``x_i - x_j`` (``i < j``) and basis
  vectors ``e_k``;
* Theorem 13 (``bias=True``): differences ``x_i - x_j`` and basis vectors ``e_k`` (a direction
  only matters up to translation, so samples are not generators).

``generators="pairwise"`` takes every ``(d - 1)``-subset of the pool, as the theorems state.
``generators="threshold"`` (default) takes the subsets the proofs need: those whose
differences can all be written with the threshold sample (Theorem 12: all differences share one
sample, a *star*) or with the bias and threshold samples (Theorem 13: two samples cover every
difference). Both give the same optimum (measured exhaustively, docs/threelayer.md); the
smaller set differs from the full one only for ``d >= 3`` without biases and ``d >= 4`` with
them. Every direction is priced at every threshold (and bias sample): extra columns are valid
networks and cannot lower the optimum below the network problem's.

Pool indices: samples ``0..n-1`` (Theorem 12 only), then the differences in the order of
``np.triu_indices(n, 1)``, then the basis vectors. Decisions (independence, on-plane, ties of
sample values along a direction) are made in equilibrated working coordinates
(:func:`wedgenet.geometry.equilibrate`, centred for Theorem 13 only), with the thresholds of
:mod:`wedgenet.geometry` and :mod:`wedgenet.dictionary`, so they do not change when a feature is
scaled (or, Theorem 13, the data are translated).

Atoms
-----
A column is an :class:`~wedgenet.dictionary.Atoms` row: ``subsets[j] = [g_1, ..., g_{d-1}, l,
j0, shape]`` (``l = -1`` without bias), ``signs[j]``: the orientation ``s`` of ``w`` relative to
``cross(g_1, ..., g_{d-1})`` (the working-set key is the row and the sign), ``normals[j] =
(s w, b)`` with ``||w||_1 = 1`` in original coordinates.

Canonical columns
-----------------
Many (direction, bias sample, threshold, shape) give the same column, or one that differs only
by a constant and a sign (equivalent in the program, whose output bias is free). A column is
kept under one canonical form (:meth:`ThreeLayerDictionary.canonical`): the direction under the
lexicographically first admissible independent subset of the pool generators lying on it,
samples with equal values along the direction (ties) by the smallest index, zero columns
dropped, and

* without bias: ``down`` at the highest level is ``u_max - u``, the ``up`` column at the lowest
  level up to sign and a constant;
* with bias: ``up`` is ``relu(t - t_m)`` with ``m`` the later of ``l``, ``j0`` (stored as ``l =
  j0 = m``); a ``down`` column is a *ramp* ``clip(t_j0 - t, 0, t_j0 - t_l)``, a ReLU when ``l`` or
  ``j0`` is extreme; the ramps of orientation -1 equal those of orientation +1 up to sign and a
  constant and are stored with orientation +1; the linear column (``up`` at the lowest level)
  is stored with orientation +1.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from numpy.typing import NDArray

from wedgenet.dictionary import ON_PLANE_TOL, Atoms
from wedgenet.exceptions import WedgeNetError
from wedgenet.geometry import (
    DEPENDENT,
    DEPENDENT_TOL,
    UNDECIDED,
    classify,
    equilibrate,
    inverse_condition,
    subset_normals,
)
from wedgenet.validation import check_X

if TYPE_CHECKING:  # pragma: no cover
    from wedgenet.certificate import IndependentCheck

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
GeneratorSet = Literal["threshold", "pairwise"]

UP, DOWN = 0, 1
SHAPES = ("up", "down")
#: Candidate checks of the search for a canonical subset before it keeps the subset as found.
CANONICAL_MAX_CHECKS = 20000


# ----------------------------------------------------------------------------- counting
def _n_choose(n: int, k: int) -> int:
    return math.comb(n, k) if 0 <= k <= n else 0


def _cover_ok(edges: IntArray, tau: int) -> NDArray[np.bool_]:
    """Whether each edge set (B, m, 2) has a vertex cover of at most ``tau`` (1 or 2) samples.

    ``tau = 1``: all differences share a sample (a star); ``tau = 2``: two samples meet every
    difference. Empty sets and single edges always pass.
    """
    B, m = edges.shape[0], edges.shape[1]
    if m <= tau:
        return np.ones(B, dtype=bool)
    ok = np.zeros(B, dtype=bool)
    for a in (edges[:, 0, 0], edges[:, 0, 1]):  # a cover contains an end of the first edge
        touch = np.any(edges == a[:, None, None], axis=2)  # (B, m)
        if tau == 1:
            ok |= np.all(touch, axis=1)
            continue
        rest = ~touch
        first = np.argmax(rest, axis=1)  # first edge not covered by a
        none_left = ~np.any(rest, axis=1)
        e = edges[np.arange(B), first]  # (B, 2)
        for c in (e[:, 0], e[:, 1]):
            covered = touch | np.any(edges == c[:, None, None], axis=2)
            ok |= np.all(covered, axis=1)
        ok |= none_left
    return ok


@functools.cache
def _small_graph_counts(m: int, tau: int) -> tuple[int, ...]:
    """``N[v]``: edge sets of size ``m`` on the labelled vertices ``0..v-1`` that use every
    vertex and have a vertex cover of at most ``tau`` vertices (``v <= m + tau``)."""
    out = []
    for v in range(m + tau + 1):
        E = list(itertools.combinations(range(v), 2))
        if len(E) < m or v == 0:
            out.append(1 if (v == 0 and m == 0) else 0)
            continue
        sets = np.array(list(itertools.combinations(range(len(E)), m)), dtype=np.int64)
        if sets.size == 0:
            out.append(0)
            continue
        edges = np.array(E, dtype=np.int64)[sets]  # (S, m, 2)
        used = np.zeros((edges.shape[0], v), dtype=bool)
        for col in (0, 1):
            used[np.arange(edges.shape[0])[:, None], edges[:, :, col]] = True
        keep = np.all(used, axis=1) & _cover_ok(edges, tau)
        out.append(int(np.count_nonzero(keep)))
    return tuple(out)


def _n_edge_sets(n: int, m: int, tau: int) -> int:
    """Sets of ``m`` differences of ``n`` samples admissible for ``tau`` (see ``_cover_ok``)."""
    P = n * (n - 1) // 2
    if m <= tau:
        return _n_choose(P, m)
    if tau == 1:
        return n * _n_choose(n - 1, m)
    counts = _small_graph_counts(m, tau)
    return sum(c * _n_choose(n, v) for v, c in enumerate(counts))


def n_direction_subsets(
    n: int, d: int, *, bias: bool = True, generators: GeneratorSet = "threshold"
) -> int:
    """Number of generator subsets (candidate first-layer directions) enumerated.

    Parameters
    ----------
    n, d : int
        Samples and features.
    bias : bool, default True
        Theorem 13 (first-layer biases) or Theorem 12.
    generators : {"threshold", "pairwise"}
        The generator subsets (module docstring).

    Returns
    -------
    int
        Before dependent subsets are skipped; each gives two orientations.
    """
    if generators not in ("threshold", "pairwise"):
        raise WedgeNetError(f"generators must be 'threshold' or 'pairwise', got {generators!r}")
    k = d - 1
    P = n * (n - 1) // 2
    singles = d + (0 if bias else n)
    if generators == "pairwise":
        return _n_choose(singles + P, k)
    tau = 2 if bias else 1
    return sum(_n_edge_sets(n, m, tau) * _n_choose(singles, k - m) for m in range(k + 1))


def threelayer_dictionary_size(
    n: int, d: int, *, bias: bool = True, generators: GeneratorSet = "threshold"
) -> int:
    """Columns of the three-layer dictionary before anything is merged or skipped.

    Each generator subset gives 2 orientations x 2 shapes x ``n`` thresholds (x ``n`` bias
    samples for Theorem 13). Nothing is allocated; the distinct columns are far fewer
    (:meth:`ThreeLayerDictionary.materialize`).
    """
    per = 4 * n * (n if bias else 1)
    return n_direction_subsets(n, d, bias=bias, generators=generators) * per


# ----------------------------------------------------------------------------- index sets
@dataclass(frozen=True)
class FirstLayerIndexSet:
    """The generators a first-layer direction is orthogonal to.

    Attributes
    ----------
    samples : tuple of int
        Samples ``x_i`` (Theorem 12 only), ascending.
    differences : tuple of (int, int)
        Differences ``x_i - x_j`` (``i < j``), in pool order.
    directions : tuple of int
        Basis vectors ``e_k`` (0-based), ascending.
    sign : int
        The direction is ``sign * cross(generators)`` up to a positive factor (generators in
        pool order: samples, differences, basis vectors).
    """

    samples: tuple[int, ...] = ()
    differences: tuple[tuple[int, int], ...] = ()
    directions: tuple[int, ...] = ()
    sign: int = 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "samples": list(self.samples),
            "differences": [list(p) for p in self.differences],
            "directions": list(self.directions),
            "sign": int(self.sign),
        }


@dataclass
class DirectionChunk:
    """Valid directions of one chunk of generator subsets.

    Attributes
    ----------
    subsets : ndarray of shape (m, d - 1)
    normals : ndarray of shape (m, d)
        ``w`` for orientation +1, ``||w||_1 = 1``, original coordinates.
    n_subsets : int
        Subsets examined.
    n_undecided : int
        Subsets whose independence could not be decided (kept, counted).
    """

    subsets: IntArray
    normals: FloatArray
    n_subsets: int
    n_undecided: int = 0


# ----------------------------------------------------------------------------- dictionary
class ThreeLayerDictionary:
    """The dictionary of a three-layer network problem (module docstring).

    Parameters
    ----------
    X : array-like of shape (n, d)
    bias : bool, default True
        First-layer biases (Theorem 13); ``False``: Theorem 12.
    generators : {"threshold", "pairwise"}, default "threshold"
        Generator subsets of the first-layer directions.
    max_directions : int, optional
        Refuse dictionaries with more generator subsets than this.

    Attributes
    ----------
    n_samples, n_features : int
    subset_size_ : int
        ``d - 1``.
    pool_size : int
        Number of generators.
    n_subsets : int
        Generator subsets enumerated (:func:`n_direction_subsets`).
    center_, scale_ : ndarray of shape (d,)
        Equilibration ``z = (x - center_) / scale_``.
    """

    def __init__(
        self,
        X: Any,
        *,
        bias: bool = True,
        generators: GeneratorSet = "threshold",
        max_directions: int | None = None,
    ) -> None:
        X = check_X(X)
        if generators not in ("threshold", "pairwise"):
            raise WedgeNetError(
                f"generators must be 'threshold' or 'pairwise', got {generators!r}"
            )
        n, d = X.shape
        if bias and np.all(X == X[0]):
            raise WedgeNetError("the data have rank 0 (all samples identical)")
        if not bias and not np.any(X):
            raise WedgeNetError("the data have rank 0 (X is all zeros)")
        self.X = X
        self.bias = bool(bias)
        self.generators: GeneratorSet = generators
        self.n_samples, self.n_features = n, d
        Z, self.center_, self.scale_ = equilibrate(X, center=self.bias)
        self._Z = Z
        pi, pj = np.triu_indices(n, 1)
        self.pair_i_ = pi.astype(np.int64)
        self.pair_j_ = pj.astype(np.int64)
        self.n_pool_samples_ = 0 if self.bias else n
        self.diff_offset_ = self.n_pool_samples_
        self.basis_offset_ = self.diff_offset_ + int(pi.size)
        self.pool_size = self.basis_offset_ + d
        self.subset_size_ = d - 1
        parts = [] if self.bias else [Z]
        parts += [Z[pi] - Z[pj], np.eye(d)]
        G = np.concatenate(parts, axis=0)
        norms = np.linalg.norm(G, axis=1)
        self._unit_pool = G / np.where(norms > 0, norms, 1.0)[:, None]
        self._z_norms = np.linalg.norm(Z, axis=1)
        self.n_subsets = n_direction_subsets(n, d, bias=self.bias, generators=generators)
        if max_directions is not None and self.n_subsets > max_directions:
            raise WedgeNetError(
                f"the three-layer dictionary has {self.n_subsets:,} first-layer directions "
                f"(generator subsets), above the limit of {max_directions:,}; use fewer "
                "samples or features, or raise max_directions"
            )

    # ------------------------------------------------------------------ sizes
    @property
    def size(self) -> int:
        """Columns before merging (:func:`threelayer_dictionary_size`)."""
        return self.n_subsets * 4 * self.n_samples * (self.n_samples if self.bias else 1)

    @property
    def tau_(self) -> int:
        """Samples allowed to cover the differences of a ``threshold`` subset."""
        return 2 if self.bias else 1

    # ------------------------------------------------------------------ generators
    def pair_of(self, idx: int) -> tuple[int, int]:
        """``(i, j)`` of the difference generator at pool index ``idx``."""
        p = int(idx) - self.diff_offset_
        return int(self.pair_i_[p]), int(self.pair_j_[p])

    def pair_index(self, i: int, j: int) -> int:
        """Pool index of the difference ``x_i - x_j`` (``i < j``)."""
        n = self.n_samples
        i, j = int(i), int(j)
        return self.diff_offset_ + i * (2 * n - i - 1) // 2 + (j - i - 1)

    def generator_original(self, idx: int) -> FloatArray:
        """The generator in original coordinates."""
        idx = int(idx)
        if idx < self.diff_offset_:
            return self.X[idx].copy()
        if idx < self.basis_offset_:
            i, j = self.pair_of(idx)
            return np.asarray(self.X[i] - self.X[j])
        g = np.zeros(self.n_features)
        g[idx - self.basis_offset_] = 1.0
        return g

    def admissible(self, subsets: IntArray) -> NDArray[np.bool_]:
        """Which subsets (B, d - 1) belong to the generator set (all for ``pairwise``)."""
        subsets = _as_rows(subsets)
        if self.generators == "pairwise" or subsets.shape[1] <= self.tau_:
            return np.ones(subsets.shape[0], dtype=bool)
        isdiff = (subsets >= self.diff_offset_) & (subsets < self.basis_offset_)
        out = np.ones(subsets.shape[0], dtype=bool)
        counts = isdiff.sum(axis=1)
        for m in np.unique(counts):
            if m <= self.tau_:
                continue
            rows = np.flatnonzero(counts == m)
            p = subsets[rows][isdiff[rows]].reshape(rows.size, m) - self.diff_offset_
            edges = np.stack([self.pair_i_[p], self.pair_j_[p]], axis=2)
            out[rows] = _cover_ok(edges, self.tau_)
        return out

    # ------------------------------------------------------------------ enumeration
    def iter_subsets(self, chunk_size: int = 8192) -> Iterator[IntArray]:
        """Generator subsets in chunks of shape (B, d - 1), rows ascending (pool indices)."""
        k = self.subset_size_
        if k == 0:
            yield np.zeros((1, 0), dtype=np.int64)
            return
        if self.generators == "pairwise":
            it = itertools.combinations(range(self.pool_size), k)
            while True:
                flat = np.fromiter(
                    itertools.chain.from_iterable(itertools.islice(it, chunk_size)),
                    dtype=np.int64,
                )
                if flat.size == 0:
                    return
                yield flat.reshape(-1, k)
        singles = np.concatenate(
            [
                np.arange(self.n_pool_samples_, dtype=np.int64),
                np.arange(self.basis_offset_, self.pool_size, dtype=np.int64),
            ]
        )
        for m in range(k + 1):
            r = k - m
            if r > singles.size:
                continue
            for E in self._edge_set_blocks(m, chunk_size):
                eb = max(1, min(E.shape[0], chunk_size))
                sb = max(1, chunk_size // eb)
                for e0 in range(0, E.shape[0], eb):
                    Eb = E[e0 : e0 + eb]
                    for S in _combination_blocks(singles, r, sb):
                        rows = np.concatenate(
                            [np.repeat(Eb, S.shape[0], axis=0), np.tile(S, (Eb.shape[0], 1))],
                            axis=1,
                        )
                        rows.sort(axis=1)
                        yield rows

    def _edge_set_blocks(self, m: int, chunk_size: int) -> Iterator[IntArray]:
        """Admissible sets of ``m`` difference generators (pool indices), in blocks."""
        n = self.n_samples
        P = self.basis_offset_ - self.diff_offset_
        if m == 0:
            yield np.zeros((1, 0), dtype=np.int64)
            return
        if m <= self.tau_:
            base = np.arange(self.diff_offset_, self.basis_offset_, dtype=np.int64)
            yield from _combination_blocks(base, m, chunk_size)
            return
        if self.tau_ == 1:  # stars: m differences sharing the centre c
            for c in range(n):
                others = np.array([o for o in range(n) if o != c], dtype=np.int64)
                for other in _combination_blocks(others, m, chunk_size):
                    lo, hi = np.minimum(other, c), np.maximum(other, c)
                    idx = self.diff_offset_ + lo * (2 * n - lo - 1) // 2 + (hi - lo - 1)
                    yield np.sort(idx, axis=1)
            return
        for blk in _combination_blocks(np.arange(P, dtype=np.int64), m, chunk_size):
            edges = np.stack([self.pair_i_[blk], self.pair_j_[blk]], axis=2)
            keep = _cover_ok(edges, self.tau_)
            if np.any(keep):
                yield blk[keep] + self.diff_offset_

    # ------------------------------------------------------------------ directions
    def directions(
        self, subsets: IntArray
    ) -> tuple[IntArray, FloatArray, FloatArray, int]:
        """Directions of a chunk of subsets.

        Returns
        -------
        keep : ndarray of int
            Rows of ``subsets`` that are not dependent.
        normals : ndarray of shape (len(keep), d)
            ``w`` (orientation +1, that of ``cross`` of the original generators in pool order),
            ``||w||_1 = 1``, original coordinates.
        H : ndarray of shape (len(keep), d)
            The same directions as unit normals in working coordinates.
        n_undecided : int
            Subsets whose independence could not be decided reliably (kept).
        """
        subsets = _as_rows(subsets)
        B, d = subsets.shape[0], self.n_features
        if B == 0:
            return np.zeros(0, dtype=np.int64), np.zeros((0, d)), np.zeros((0, d)), 0
        if self.subset_size_ == 0:
            H = np.ones((B, 1))
            rc = np.ones(B)
        else:
            H, rc = subset_normals(self._unit_pool[subsets], unit_rows=True)
            # through e_k: w_k = 0 exactly (no rounding for the map back to amplify)
            rows, cols = np.nonzero(subsets >= self.basis_offset_)
            H[rows, subsets[rows, cols] - self.basis_offset_] = 0.0
        status = classify(rc)
        n_undecided = int(np.count_nonzero(status == UNDECIDED))
        keep = np.flatnonzero(status != DEPENDENT)
        H = H[keep]
        w = H / self.scale_
        wn = np.sum(np.abs(w), axis=1)
        good = np.isfinite(wn) & (wn > 0)
        keep, H, w, wn = keep[good], H[good], w[good], wn[good]
        return keep, w / wn[:, None], H, n_undecided

    def iter_directions(self, chunk_size: int = 8192) -> Iterator[DirectionChunk]:
        """Valid directions chunk by chunk (duplicates not merged)."""
        for subs in self.iter_subsets(chunk_size):
            keep, normals, _, n_und = self.directions(subs)
            yield DirectionChunk(subs[keep], normals, int(subs.shape[0]), n_und)

    # ------------------------------------------------------------------ columns
    def columns(self, atoms: Atoms, X: FloatArray | None = None) -> FloatArray:
        """Columns of ``atoms`` (n, m); with ``X``, the same blocks evaluated at ``X`` (the
        threshold value ``u_j0`` is always taken from the training sample ``j0``)."""
        m = len(atoms)
        n = self.n_samples
        if m == 0:
            return np.zeros((n if X is None else np.asarray(X).shape[0], 0))
        k = self.subset_size_
        j0 = atoms.subsets[:, k + 1]
        shape = atoms.subsets[:, k + 2]
        d = self.n_features
        U = np.maximum(self.X @ atoms.normals[:, :d].T + atoms.normals[:, d], 0.0)
        uj = U[j0, np.arange(m)]
        if X is not None:
            Xq = np.asarray(X, dtype=float)
            U = np.maximum(Xq @ atoms.normals[:, :d].T + atoms.normals[:, d], 0.0)
        out = np.where(shape == UP, U - uj, uj - U)
        return np.maximum(out, 0.0)

    def make_atoms(
        self,
        subsets: IntArray,
        normals: FloatArray,
        signs: IntArray,
        bias_samples: IntArray,
        thresholds: IntArray,
        shapes: IntArray,
    ) -> Atoms:
        """Atoms from direction subsets, their orientation-+1 normals ``w`` (m, d) and the
        orientation, bias sample (-1 without bias), threshold sample and shape of each."""
        signs = np.asarray(signs, dtype=np.int64)
        lb = np.asarray(bias_samples, dtype=np.int64)
        w = np.asarray(normals, dtype=float) * signs[:, None]
        b = -np.einsum("ij,ij->i", self.X[np.maximum(lb, 0)], w) if self.bias else np.zeros(
            len(signs)
        )
        rows = np.concatenate(
            [
                np.asarray(subsets, dtype=np.int64).reshape(len(signs), self.subset_size_),
                lb[:, None],
                np.asarray(thresholds, dtype=np.int64)[:, None],
                np.asarray(shapes, dtype=np.int64)[:, None],
            ],
            axis=1,
        )
        return Atoms(rows, np.concatenate([w, b[:, None]], axis=1), signs)

    # ------------------------------------------------------------------ canonical forms
    def _levels(self, H: FloatArray) -> tuple[IntArray, IntArray, IntArray, FloatArray]:
        """Levels of the samples along unit working normals ``H`` (u, d), orientation +1.

        Returns ``level`` (u, n) (0: lowest value of ``z . h``), ``rep`` (u, n) (the smallest
        sample index at each level; ``n`` past the last level), ``n_levels`` (u,) and the
        working values ``t`` (u, n). Consecutive sorted values are tied when ``|t_i - t_j| <=
        ON_PLANE_TOL ||z_i - z_j||`` (the difference lies on the hyperplane).
        """
        H = np.atleast_2d(np.asarray(H, dtype=float))
        u, n = H.shape[0], self.n_samples
        t = H @ self._Z.T
        order = np.argsort(t, axis=1, kind="stable")
        ts = np.take_along_axis(t, order, axis=1)
        Zs = self._Z[order]  # (u, n, d)
        dist = np.linalg.norm(Zs[:, 1:] - Zs[:, :-1], axis=2)
        new = np.concatenate(
            [np.ones((u, 1), dtype=bool), np.diff(ts, axis=1) > ON_PLANE_TOL * dist], axis=1
        )
        lev_sorted = np.cumsum(new, axis=1) - 1
        level = np.empty((u, n), dtype=np.int64)
        np.put_along_axis(level, order, lev_sorted, axis=1)
        return level, _level_reps(level), lev_sorted[:, -1] + 1, t

    def _free_levels(
        self, level: IntArray, n_levels: IntArray, t: FloatArray, s: int
    ) -> tuple[IntArray, IntArray, IntArray]:
        """Levels of ``u = relu(s t)`` (Theorem 12): the samples with ``s t_i <= 0`` (on-plane
        tolerance) and every level below the highest of them merge into level 0."""
        top = n_levels - 1
        lev = level if s > 0 else top[:, None] - level
        zero = s * t <= ON_PLANE_TOL * self._z_norms[None, :]
        zmax = np.where(zero, lev, -1).max(axis=1)
        newlev = np.where(lev <= zmax[:, None], 0, lev - np.maximum(zmax, 0)[:, None])
        return newlev, _level_reps(newlev), newlev.max(axis=1) + 1

    def canonical_thresholds(
        self,
        H: FloatArray,
        signs: IntArray,
        bias_samples: IntArray,
        thresholds: IntArray,
        shapes: IntArray,
        direction: IntArray | None = None,
    ) -> tuple[IntArray, IntArray, IntArray, IntArray, NDArray[np.bool_]]:
        """Canonical (orientation, bias sample, threshold, shape) of columns.

        ``H``: unit working normals (u, d) of the directions (orientation +1); ``direction``:
        the row of ``H`` of each column (default: all 0). Returns the four arrays and
        ``valid`` (False for zero columns). Rules: module docstring.
        """
        s = np.asarray(signs, dtype=np.int64)
        l_in = np.asarray(bias_samples, dtype=np.int64)
        j_in = np.asarray(thresholds, dtype=np.int64)
        sh = np.asarray(shapes, dtype=np.int64)
        p = np.zeros(s.size, dtype=np.int64) if direction is None else np.asarray(direction)
        level, rep, n_levels, t = self._levels(H)
        up = sh == UP
        if not self.bias:
            s_out, j_out, valid = s.copy(), j_in.copy(), np.ones(s.size, dtype=bool)
            sh_out = sh.copy()
            for sg in (1, -1):
                sel = np.flatnonzero(s == sg)
                if sel.size == 0:
                    continue
                lev, lrep, nlev = self._free_levels(level, n_levels, t, sg)
                ps = p[sel]
                a = lev[ps, j_in[sel]]
                ltop = nlev[ps] - 1
                to_up = ~up[sel] & (a == ltop)
                valid[sel] = np.where(up[sel], a < ltop, a > 0)
                j_out[sel] = np.where(to_up, lrep[ps, 0], lrep[ps, a])
                sh_out[sel] = np.where(to_up, UP, sh[sel])
            return s_out, np.full(s.size, -1, dtype=np.int64), j_out, sh_out, valid
        top = n_levels[p] - 1

        def lev_s(sv: IntArray, i: IntArray) -> IntArray:
            lv = level[p, i]
            return np.where(sv > 0, lv, top - lv)

        def rep_s(sv: IntArray, a: IntArray) -> IntArray:  # smallest index at level a (of sv)
            a = np.clip(a, 0, top)
            return np.where(sv > 0, rep[p, a], rep[p, top - a])

        def up_canon(sv: IntArray, a: IntArray) -> tuple[IntArray, IntArray, NDArray[np.bool_]]:
            # relu(t' - t'_m) at level a; the linear column (a = 0) with orientation +1
            lin = (a == 0) & (sv < 0)
            return np.where(lin, 1, sv), np.where(lin, rep[p, 0], rep_s(sv, a)), a < top

        la, ja = lev_s(s, l_in), lev_s(s, j_in)
        su, mu, oku = up_canon(s, np.maximum(la, ja))
        low, high = la == 0, ja == top
        s_low, m_low, ok_low = up_canon(-s, top - ja)  # relu(t'_j0 - t'): orientation -s
        s_high, m_high, ok_high = up_canon(s, la)  # const - relu(t' - t'_l)
        ramp = (ja > la) & ~low & ~high
        # ramp of orientation -1 at (l, j0) ~ ramp of orientation +1 at (j0, l)
        rl = np.where(s > 0, rep_s(s, la), rep_s(s, ja))
        rj = np.where(s > 0, rep_s(s, ja), rep_s(s, la))
        m_d = np.where(low, m_low, m_high)
        s_out = np.where(up, su, np.where(low, s_low, np.where(high, s_high, 1)))
        l_out = np.where(up, mu, np.where(ramp, rl, m_d))
        j_out = np.where(up, mu, np.where(ramp, rj, m_d))
        sh_out = np.where(up | ~ramp, UP, DOWN)
        ok_d = (ja > la) & np.where(low, ok_low, np.where(high, ok_high, True))
        valid = np.where(up, oku, ok_d)
        return s_out, l_out, j_out, sh_out, valid

    def _on_plane(self, H: FloatArray) -> IntArray:
        """Pool indices of the generators lying on the hyperplane with unit working normal
        ``H`` (d,): ``|g . h| <= ON_PLANE_TOL`` for the unit generator ``g``."""
        out: list[IntArray] = []
        level, _, _, tt = self._levels(H[None])
        level, t = level[0], tt[0]
        if not self.bias:
            out.append(np.flatnonzero(
                (self._z_norms > 0) & (np.abs(t) <= ON_PLANE_TOL * self._z_norms)
            ))
        # differences within a level (a level is a chain of ties), each tested itself
        sizes = np.bincount(level)
        diffs: list[int] = []
        for lv in np.flatnonzero(sizes >= 2):
            members = np.flatnonzero(level == lv)
            for i, j in itertools.combinations(members.tolist(), 2):
                dist = float(np.linalg.norm(self._Z[i] - self._Z[j]))
                if dist > 0 and abs(t[i] - t[j]) <= ON_PLANE_TOL * dist:
                    diffs.append(self.pair_index(i, j))
        out.append(np.array(sorted(diffs), dtype=np.int64))
        out.append(self.basis_offset_ + np.flatnonzero(np.abs(H) <= ON_PLANE_TOL))
        return np.concatenate(out).astype(np.int64)

    def _may_have_more(self, H: FloatArray) -> NDArray[np.bool_]:
        """Directions (u, d) that may lie on more than ``d - 1`` pool generators (an upper
        count: samples on the plane, pairs of tied samples, basis vectors on the plane)."""
        H = np.atleast_2d(H)
        level, _, _, t = self._levels(H)
        u, n = level.shape
        counts = np.zeros((u, n), dtype=np.int64)
        np.add.at(counts, (np.repeat(np.arange(u), n), level.ravel()), 1)
        on = (counts * (counts - 1) // 2).sum(axis=1)
        on += np.count_nonzero(np.abs(H) <= ON_PLANE_TOL, axis=1)
        if not self.bias:
            on += np.count_nonzero(np.abs(t) <= ON_PLANE_TOL * self._z_norms[None, :], axis=1)
        return np.asarray(on > self.subset_size_)

    def canonical_subset(self, subset: IntArray, H: FloatArray) -> IntArray:
        """The canonical subset of a direction: the lexicographically first admissible,
        independent ``d - 1`` generators lying on its hyperplane (``subset`` itself when the
        search exceeds :data:`CANONICAL_MAX_CHECKS` candidate checks)."""
        k = self.subset_size_
        subset = np.asarray(subset, dtype=np.int64)
        if k == 0:
            return subset
        cands = np.union1d(self._on_plane(H), subset)
        if cands.size == k:
            return subset
        budget = [CANONICAL_MAX_CHECKS]
        found = self._first_subset(cands.tolist(), [], 0, k, budget)
        return subset if found is None else np.array(found, dtype=np.int64)

    def _first_subset(
        self, cands: list[int], chosen: list[int], start: int, k: int, budget: list[int]
    ) -> list[int] | None:
        if len(chosen) == k:
            return chosen
        for pos in range(start, len(cands) - (k - len(chosen)) + 1):
            if budget[0] <= 0:
                return None
            budget[0] -= 1
            trial = chosen + [cands[pos]]
            if not self._admissible_list(trial):
                continue
            if inverse_condition(self._unit_pool[trial][None])[0] <= DEPENDENT_TOL:
                continue
            got = self._first_subset(cands, trial, pos + 1, k, budget)
            if got is not None:
                return got
        return None

    def _admissible_list(self, subset: list[int]) -> bool:
        """:meth:`admissible` for one (possibly partial) subset."""
        if self.generators == "pairwise":
            return True
        edges = [self.pair_of(g) for g in subset if self.diff_offset_ <= g < self.basis_offset_]
        if len(edges) <= self.tau_:
            return True
        return bool(_cover_ok(np.array([edges], dtype=np.int64), self.tau_)[0])

    def canonical_directions(
        self, subsets: IntArray
    ) -> tuple[IntArray, IntArray, FloatArray, FloatArray, IntArray]:
        """Canonical subsets of directions (B, d - 1).

        Returns the rows kept (non-dependent), their canonical subsets, the canonical
        subsets' orientation-+1 normals ``w`` (original coordinates) and unit working normals,
        and ``flip`` (+1 or -1): the orientation of the canonical subset's normal relative to
        the given one (a column with orientation ``s`` has orientation ``s * flip`` under the
        canonical subset).
        """
        subsets = _as_rows(subsets)
        keep, W, H, _ = self.directions(subsets)
        canon = subsets[keep].copy()
        flip = np.ones(keep.size, dtype=np.int64)
        if self.subset_size_ == 0 or keep.size == 0:
            return keep, canon, W, H, flip
        for r in np.flatnonzero(self._may_have_more(H)):
            c = self.canonical_subset(canon[r], H[r])
            if np.array_equal(c, canon[r]):
                continue
            kc, nc, Hc, _ = self.directions(c[None])
            # the same hyperplane (up to orientation), or keep the subset as found
            if kc.size and abs(float(Hc[0] @ H[r])) >= 1.0 - 1e-9:
                flip[r] = 1 if float(Hc[0] @ H[r]) >= 0 else -1
                canon[r], W[r], H[r] = c, nc[0], Hc[0]
        return keep, canon, W, H, flip

    def canonical(self, atoms: Atoms) -> Atoms:
        """The same columns under their canonical forms; zero columns dropped, duplicates
        (equal canonical rows) merged. Columns equal up to a constant and a sign are replaced
        by the canonical one (equivalent in a program with a free output bias)."""
        m = len(atoms)
        if m == 0:
            return atoms
        k = self.subset_size_
        if k == 0:
            uniq, inv = np.zeros((1, 0), dtype=np.int64), np.zeros(m, dtype=np.int64)
        else:
            uniq, inv = np.unique(atoms.subsets[:, :k], axis=0, return_inverse=True)
            inv = np.asarray(inv).reshape(-1)
        keep, canon, W, H, flip = self.canonical_directions(uniq)
        pos = np.full(uniq.shape[0], -1, dtype=np.int64)
        pos[keep] = np.arange(keep.size)
        p = pos[inv]
        rows = np.flatnonzero(p >= 0)
        p = p[rows]
        s2, l2, j2, sh2, ok = self.canonical_thresholds(
            H,
            atoms.signs[rows] * flip[p],
            atoms.subsets[rows, k],
            atoms.subsets[rows, k + 1],
            atoms.subsets[rows, k + 2],
            direction=p,
        )
        if not np.any(ok):
            return atoms.take(np.zeros(0, dtype=np.int64))
        p = p[ok]
        out = self.make_atoms(canon[p], W[p], s2[ok], l2[ok], j2[ok], sh2[ok])
        key = np.concatenate([out.subsets, out.signs[:, None]], axis=1)
        _, first = np.unique(key, axis=0, return_index=True)
        return out.take(np.sort(first))

    # ------------------------------------------------------------------ materialization
    def materialize(
        self, chunk_size: int = 8192, max_columns: int | None = 2_000_000
    ) -> tuple[Atoms, FloatArray]:
        """Every distinct canonical column: ``(atoms, K)`` with ``K`` of shape (n, m).

        Directions reached from several subsets are kept under their canonical subset,
        thresholds and shapes are canonicalized (:meth:`canonical_thresholds`), zero columns
        dropped and columns with identical values (to ``1e-12`` of the largest entry) kept
        once. For tests and benchmarks; mind the size.
        """
        n, k = self.n_samples, self.subset_size_
        if self.bias:
            grid = np.meshgrid([1, -1], np.arange(n), np.arange(n), [UP, DOWN], indexing="ij")
            ss, ll, jj, sh = (g.ravel() for g in grid)
        else:
            ss, jj, sh = (g.ravel() for g in np.meshgrid(
                [1, -1], np.arange(n), [UP, DOWN], indexing="ij"))
            ll = -np.ones_like(jj)
        q = ss.size
        parts: list[Atoms] = []
        total = 0
        for chunk in self.iter_subsets(chunk_size):
            keep, canon, W, H, _ = self.canonical_directions(chunk)
            own = np.flatnonzero(np.all(canon == chunk[keep], axis=1))
            if own.size == 0:
                continue
            step = max(1, 2**20 // q)
            for a in range(0, own.size, step):
                idx = own[a : a + step]
                p = np.repeat(np.arange(idx.size), q)
                s2, l2, j2, sh2, ok = self.canonical_thresholds(
                    H[idx], np.tile(ss, idx.size), np.tile(ll, idx.size),
                    np.tile(jj, idx.size), np.tile(sh, idx.size), direction=p,
                )
                key = np.unique(np.stack([p, s2, l2, j2, sh2], axis=1)[ok], axis=0)
                total += key.shape[0]
                if max_columns is not None and total > max_columns:
                    raise WedgeNetError(
                        f"materializing more than {max_columns:,} columns; raise max_columns"
                    )
                d_of = idx[key[:, 0]]
                parts.append(
                    self.make_atoms(
                        canon[d_of], W[d_of], key[:, 1], key[:, 2], key[:, 3], key[:, 4]
                    )
                )
        atoms = Atoms.concatenate(parts, k + 3, self.n_features)
        K = self.columns(atoms)
        nz = np.flatnonzero(np.any(K > 0, axis=0))
        atoms, K = atoms.take(nz), K[:, nz]
        if K.shape[1]:
            scale = float(np.max(np.abs(K)))
            Kr = np.round(K / (1e-12 * scale)).T
            _, first = np.unique(Kr, axis=0, return_index=True)
            first = np.sort(first)
            atoms, K = atoms.take(first), K[:, first]
        return atoms, K

    # ------------------------------------------------------------------ certificate hook
    def independent_max_score(self, V: FloatArray) -> IndependentCheck:
        """The maximum column score by an independent code path
        (:func:`wedgenet.threelayer.recheck.independent_max_score`)."""
        from wedgenet.threelayer.recheck import independent_max_score

        return independent_max_score(self, V)

    # ------------------------------------------------------------------ interpretation
    def index_set(self, subset: IntArray, sign: int) -> FirstLayerIndexSet:
        samples, diffs, dirs = [], [], []
        for g in np.asarray(subset, dtype=np.int64):
            if g < self.diff_offset_:
                samples.append(int(g))
            elif g < self.basis_offset_:
                diffs.append(self.pair_of(int(g)))
            else:
                dirs.append(int(g - self.basis_offset_))
        return FirstLayerIndexSet(tuple(samples), tuple(diffs), tuple(dirs), int(sign))

    def generator_label(self, idx: int) -> str:
        idx = int(idx)
        if idx < self.diff_offset_:
            return f"x[{idx}]"
        if idx < self.basis_offset_:
            i, j = self.pair_of(idx)
            return f"x[{i}]-x[{j}]"
        return f"e{idx - self.basis_offset_ + 1}"

    def formula(self, row: IntArray, sign: int) -> str:
        """A readable closed form of a column, e.g. ``(r(x) - r(x[4]))_+ with r(x) =
        relu(Vol+(P(x - x[2], x[1]-x[3])) / ||w||_1)``."""
        k = self.subset_size_
        row = np.asarray(row, dtype=np.int64)
        lb, j0, shape = int(row[k]), int(row[k + 1]), int(row[k + 2])
        gens = ", ".join(self.generator_label(g) for g in row[:k])
        s = "+" if sign > 0 else "-"
        arg = f"x - x[{lb}]" if self.bias else "x"
        if k == 0:
            inner = f"({arg})" if sign > 0 else f"-({arg})"
            h = f"relu({inner})"
        else:
            h = f"relu(Vol{s}(P({arg}, {gens})) / ||w||_1)"
        body = f"(r(x) - r(x[{j0}]))_+" if shape == UP else f"(r(x[{j0}]) - r(x))_+"
        return f"{body} with r(x) = {h}"

    def residual(self, subset: IntArray, w: FloatArray) -> float:
        """Orthogonality residual ``max |g . w| / (||g|| ||w||)`` over the generators."""
        worst = 0.0
        for g in np.asarray(subset, dtype=np.int64):
            vec = self.generator_original(int(g))
            den = float(np.linalg.norm(vec) * np.linalg.norm(w))
            if den > 0:
                worst = max(worst, abs(float(vec @ w)) / den)
        return worst


def _level_reps(level: IntArray) -> IntArray:
    """The smallest sample index at each level of each row of ``level`` (u, n); ``n`` where
    a row has fewer levels."""
    u, n = level.shape
    rep = np.full(u * n, n, dtype=np.int64)
    flat = (np.arange(u, dtype=np.int64)[:, None] * n + level).ravel()
    np.minimum.at(rep, flat, np.tile(np.arange(n, dtype=np.int64), u))
    return rep.reshape(u, n)


def _as_rows(subsets: Any) -> IntArray:
    """Subsets as a 2-D int array (one row for a 1-D subset)."""
    arr = np.asarray(subsets, dtype=np.int64)
    return arr.reshape(1, -1) if arr.ndim == 1 else arr


def _combination_blocks(items: IntArray, r: int, block: int) -> Iterator[IntArray]:
    """``itertools.combinations(items, r)`` as int arrays of at most ``block`` rows."""
    if r == 0:
        yield np.zeros((1, 0), dtype=np.int64)
        return
    if r > items.size:
        return
    it = itertools.combinations(items.tolist(), r)
    while True:
        flat = np.fromiter(
            itertools.chain.from_iterable(itertools.islice(it, max(block, 1))), dtype=np.int64
        )
        if flat.size == 0:
            return
        yield flat.reshape(-1, r)


__all__ = [
    "DOWN",
    "SHAPES",
    "UP",
    "DirectionChunk",
    "FirstLayerIndexSet",
    "ThreeLayerDictionary",
    "n_direction_subsets",
    "threelayer_dictionary_size",
]
