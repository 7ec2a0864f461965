"""Streamed pricing of the three-layer dictionary: every threshold of a direction in one pass.

For a dual point ``v`` (scalar output) and a direction ``w`` with values ``t = X w``, the
columns of ``w`` are priced without forming them (module docstring of
:mod:`wedgenet.threelayer.dictionary` for the columns). One stable sort of ``t`` orders the
samples for both orientations (``relu(s t)`` is monotone in ``s t``), and running sums of ``v``
and ``v * t`` along that order give every score:

* Theorem 12, ``u = relu(s t)`` sorted ascending, sample ``j0`` at position ``r``:

      up(j0)   = sum_{after r} v_i u_i - u_j0 sum_{after r} v_i
      down(j0) = u_j0 sum_{before r} v_i - sum_{before r} v_i u_i

  (tied samples contribute ``0`` on either side, so no grouping is needed);
* Theorem 13, ``t' = s t`` sorted ascending: the ``up`` columns are the ReLUs
  ``relu(t' - t'_m)``, ``A(m) = sum_{after} v_i (t'_i - t'_m)``; every ``down`` column with
  ``t'_l < t'_j0`` is the ramp ``relu(t'_j0 - t') - relu(t'_l - t')``, whose score is
  ``R(j0) - R(l)`` with ``R(m) = sum_{before} v_i (t'_m - t'_i)``, so the best ramp over all
  ``n^2`` pairs ``(l, j0)`` follows from the running minimum and maximum of ``R``.

Cost per direction: one ``O(n log n)`` sort (kept between scans when the directions fit
in memory, it does not depend on ``v``) and ``O(n)`` sums for ``4 n`` (Theorem 12) or
``4 n^2`` (Theorem 13) columns. The kernel returns, per direction, the best column of each
orientation and shape (4 scores with their bias and threshold samples), which is what
column generation needs: the maximum over the dictionary and its best violators.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
from numba import njit, prange
from numpy.typing import NDArray

import wedgenet.pricing  # noqa: F401  (sets numba's fork-safe threading layer first)
from wedgenet.dictionary import Atoms
from wedgenet.exceptions import WedgeNetError
from wedgenet.threelayer.dictionary import DOWN, UP, DirectionChunk, ThreeLayerDictionary

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


@njit(parallel=True, fastmath=True, cache=True)
def _threelayer_scores(
    TS: np.ndarray,
    order: np.ndarray,
    v: np.ndarray,
    biased: bool,
    score: np.ndarray,
    bias_sample: np.ndarray,
    threshold: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """Best column per (direction, orientation, shape) from the sorted values ``TS[b]`` of
    each direction (ascending) and their samples ``order[b]``: ``score[b, q]`` with ``q = 2 *
    (s == -1) + shape``, its bias sample (-1 without bias) and threshold sample."""
    B, n = TS.shape
    for b in prange(B):
        for q in range(4):
            score[b, q] = 0.0
            bias_sample[b, q] = -1
            threshold[b, q] = order[b, 0]
        for si in range(2):
            sgn = 1.0 if si == 0 else -1.0
            tot_v = 0.0
            tot_vt = 0.0
            for r in range(n):
                i = order[b, r]
                val = sgn * TS[b, r]
                if not biased and val < 0.0:
                    val = 0.0
                tot_v += v[i]
                tot_vt += v[i] * val
            bef_v = 0.0
            bef_vt = 0.0
            best_up = -1.0
            best_dn = -1.0
            # running extremes of R over earlier positions (ramps, Theorem 13)
            rmin = 0.0
            rmax = 0.0
            rmin_at = -1
            rmax_at = -1
            for rr in range(n):
                # ascending values of sgn * t: the sorted order, reversed for sgn = -1
                r = rr if si == 0 else n - 1 - rr
                i = order[b, r]
                val = sgn * TS[b, r]
                if not biased and val < 0.0:
                    val = 0.0
                aft_v = tot_v - bef_v - v[i]
                aft_vt = tot_vt - bef_vt - v[i] * val
                up = abs(aft_vt - val * aft_v)
                if up > best_up:
                    best_up = up
                    score[b, 2 * si] = up
                    threshold[b, 2 * si] = i
                    bias_sample[b, 2 * si] = i if biased else -1
                R = val * bef_v - bef_vt
                if not biased:
                    dn = abs(R)
                    if dn > best_dn:
                        best_dn = dn
                        score[b, 2 * si + 1] = dn
                        threshold[b, 2 * si + 1] = i
                elif rr > 0:
                    c1 = R - rmin
                    c2 = rmax - R
                    if c1 > best_dn:
                        best_dn = c1
                        score[b, 2 * si + 1] = c1
                        threshold[b, 2 * si + 1] = i
                        bias_sample[b, 2 * si + 1] = order[b, rmin_at]
                    if c2 > best_dn:
                        best_dn = c2
                        score[b, 2 * si + 1] = c2
                        threshold[b, 2 * si + 1] = i
                        bias_sample[b, 2 * si + 1] = order[b, rmax_at]
                if biased:
                    if rmin_at < 0 or R < rmin:
                        rmin = R
                        rmin_at = r
                    if rmax_at < 0 or R > rmax:
                        rmax = R
                        rmax_at = r
                bef_v += v[i]
                bef_vt += v[i] * val
            if biased and best_dn < 0.0:  # n == 1: no pair
                score[b, 2 * si + 1] = 0.0
                bias_sample[b, 2 * si + 1] = order[b, 0]
                threshold[b, 2 * si + 1] = order[b, 0]


def sorted_values(X: FloatArray, normals: FloatArray) -> tuple[FloatArray, IntArray]:
    """``t = X w`` of each direction sorted ascending (B, n), and the samples in that order
    (a stable sort: tied samples by index). Independent of the dual point, so a scan can
    keep them between iterations."""
    T = np.asarray(normals, dtype=float) @ np.asarray(X, dtype=float).T
    order = np.argsort(T, axis=1, kind="stable")
    return np.ascontiguousarray(np.take_along_axis(T, order, axis=1)), np.ascontiguousarray(
        order, dtype=np.int64
    )


def sorted_scores(
    TS: FloatArray, order: IntArray, v: FloatArray, *, bias: bool
) -> tuple[FloatArray, IntArray, IntArray]:
    """:func:`direction_scores` from :func:`sorted_values`."""
    B = TS.shape[0]
    score = np.zeros((B, 4))
    ls = np.zeros((B, 4), dtype=np.int64)
    js = np.zeros((B, 4), dtype=np.int64)
    if B and TS.shape[1]:
        _threelayer_scores(TS, order, np.ascontiguousarray(v, dtype=float), bool(bias), score,
                           ls, js)
    return score, ls, js


def direction_scores(
    X: FloatArray, normals: FloatArray, v: FloatArray, *, bias: bool
) -> tuple[FloatArray, IntArray, IntArray]:
    """Best score of each orientation and shape of each direction.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    normals : ndarray of shape (B, d)
        Directions ``w`` (orientation +1).
    v : ndarray of shape (n,)
        Dual point.
    bias : bool
        Theorem 13 (bias samples ``l``) or Theorem 12.

    Returns
    -------
    score, bias_sample, threshold : ndarrays of shape (B, 4)
        Column ``q = 2 * (orientation == -1) + shape`` (shape 0: up, 1: down).
    """
    TS, order = sorted_values(X, normals)
    return sorted_scores(TS, order, v, bias=bias)


_SIGNS = np.array([1, 1, -1, -1], dtype=np.int64)
_SHAPES = np.array([UP, DOWN, UP, DOWN], dtype=np.int64)


@dataclass
class _SortedChunk:
    directions: DirectionChunk
    values: FloatArray | None = None  # sorted t (B, n), when kept
    order: IntArray | None = None


@dataclass
class ThreeLayerColumns:
    """A :class:`ThreeLayerDictionary` as a streamed column source
    (:class:`wedgenet.pricing.ColumnSource`).

    Each scan yields, per direction, the best column of each orientation and shape (4 atoms)
    with its score, so the maximum and the best violators are exact over every column. When
    the directions with their sorted values (``n`` floats and ``n`` indices per direction)
    take at most ``cache_bytes``, the first scan keeps them and later scans only run the
    ``O(n)`` sweeps; otherwise every scan enumerates and sorts afresh.
    """

    dictionary: ThreeLayerDictionary
    chunk_size: int = 8192
    cache_bytes: int = 256 * 2**20
    #: Undecided subsets met by the most recent complete scan.
    last_n_undecided: int = field(default=0, init=False)
    _cache: list[_SortedChunk] | None = field(default=None, init=False, repr=False)

    def _chunks(self) -> Iterable[_SortedChunk]:
        if self._cache is not None:
            return self._cache
        D = self.dictionary
        per = 8 * (D.subset_size_ + D.n_features + 2 * D.n_samples)
        keep = D.n_subsets * per <= self.cache_bytes
        chunks = (_SortedChunk(c) for c in D.iter_directions(self.chunk_size))
        if not keep:
            return chunks
        cache = []
        for c in chunks:
            c.values, c.order = sorted_values(D.X, c.directions.normals)
            cache.append(c)
        self._cache = cache
        return cache

    def scored_chunks(self, V: FloatArray) -> Iterator[tuple[Atoms, FloatArray]]:
        D = self.dictionary
        V = np.asarray(V, dtype=float)
        if V.ndim == 2 and V.shape[1] != 1:
            raise WedgeNetError("three-layer pricing supports scalar output only")
        v = V.reshape(-1)
        n_undecided = 0
        for c in self._chunks():
            chunk = c.directions
            n_undecided += chunk.n_undecided
            B = chunk.subsets.shape[0]
            if B == 0:
                continue
            if c.values is None or c.order is None:
                TS, order = sorted_values(D.X, chunk.normals)
            else:
                TS, order = c.values, c.order
            score, ls, js = sorted_scores(TS, order, v, bias=D.bias)
            atoms = D.make_atoms(
                np.repeat(chunk.subsets, 4, axis=0),
                np.repeat(chunk.normals, 4, axis=0),
                np.tile(_SIGNS, B),
                ls.reshape(-1),
                js.reshape(-1),
                np.tile(_SHAPES, B),
            )
            yield atoms, score.reshape(-1)
        self.last_n_undecided = n_undecided

    def canonical(self, atoms: Atoms) -> Atoms:
        return self.dictionary.canonical(atoms)

    def columns(self, atoms: Atoms) -> FloatArray:
        return self.dictionary.columns(atoms)


__all__ = ["ThreeLayerColumns", "direction_scores", "sorted_scores", "sorted_values"]
