"""Wedge-product dictionaries: oriented hyperplanes through subsets of generators.

Every dictionary of the paper's two-layer theorems is one object here (docs/conventions.md
section 3). Samples are lifted to ``[x, 1]`` when neurons have biases; a hyperplane through
``D - 1`` generators (lifted samples and, for ``p = 1``, basis directions ``e_k`` /
``[e_k, 0]``) has normal ``(w, b) = cross(g_1, ..., g_{D-1})`` and gives the two feature
columns

    K[:, j] = relu( X @ (s * w) + s * b ) / ||w||_p,     s in {+1, -1}

===============================  ========  ========================================  =====
paper                            neurons   generators (subsets of size D - 1)        norm
===============================  ========  ========================================  =====
Thm 1 (d = 1)                    biased    one lifted point                          any
Thm 2, 4                         no bias   rows of X and basis vectors e_k           l1
Thm 15, 17                       no bias   rows of X                                 l2
Thm 3, 5                         biased    d lifted points (affine hull of d rows)   l2
Thm 16, d-dimensional form       biased    lifted points and [e_k, 0], >= 1 point    l1
Thm 14 (vector output)           either    as above (group norm in the program)      l1/l2
===============================  ========  ========================================  =====

Subsets whose generators are linearly dependent are skipped. A hyperplane reached from
several subsets (collinear samples, antipodal samples) is kept once, under its *canonical*
index set: the lexicographically first independent subset of the generators lying on it,
decided per column from the column's own values, so chunks never need global state.

Scale-free decisions
--------------------
In exact arithmetic the set of hyperplanes (which subsets are independent, which generators
lie on which hyperplane, the canonical index sets, the rank) does not change when a feature or
the whole data set is scaled by a positive factor, nor, for biased neurons, when the data are
translated. Every such decision is therefore made in *equilibrated working coordinates*
(:func:`wedgenet.geometry.equilibrate`): samples centred (biased neurons), each feature
divided by its RMS (constant features stay, as exact zeros), generators normalized to unit
length. Then

* a subset is dependent / undecided / independent by the inverse condition number of its
  unit generators (thresholds :data:`~wedgenet.geometry.DEPENDENT_TOL` = 1e-12 and
  :data:`~wedgenet.geometry.INDEPENDENT_TOL` = 1e-10, see :mod:`wedgenet.geometry`); dependent
  subsets are skipped, *undecided* ones are kept when their normal is usable and counted
  (:attr:`HyperplaneChunk.n_undecided`, ``hyperplanes(..., return_undecided=True)``);
* a generator lies on a hyperplane when ``|g . h| <= ON_PLANE_TOL`` for the unit generator
  and the unit normal in working coordinates;
* for ``p = 2`` the (linear, or for biased neurons affine) rank ``r`` is the number of
  singular values of the equilibrated data above ``RANK_RTOL * max(n, d) * sigma_1``;
  rank-deficient data are reduced to ``r`` coordinates by that SVD (Lemma 23).

Normals are computed there and mapped back exactly: ``w = w_z / s`` (``s``: feature scales),
or for a rank reduction the minimum-l2-norm ``w`` with the same values on the data (the
neuron of Lemma 23), and ``b = b_z - w . c``; only then are they scaled to ``||w||_p = 1`` in
the *original* coordinates (the p-norm is that of the original weights, the column is
``relu(X w + b)`` on the original ``X``). The map has a positive determinant, so a normal's
orientation is that of ``cross`` of the original lifted generators. For ``p = 1`` there is no
reduction: with the basis directions in the generator set the enumeration is exact for any
rank (a constant feature is simply constant), while the l1 norm is not invariant under it.

Accuracy of the normalization: a working-coordinate normal is accurate to ``O(eps)``
absolutely; mapped back, ``w_k = u_k / s_k``, so when feature scales differ by a ratio ``R``
the rounding of a component that should vanish can add up to ``eps * R`` (relative) to
``||w||_p``. The closed forms (``D <= 4``) keep exact structural zeros, and components of
directions ``e_k`` in the subset are set to exactly zero, so this matters only for SVD normals
(``D > 4`` or nearly degenerate subsets) of hyperplanes nearly parallel to a small-scale
feature, and only for scale ratios approaching ``1 / eps``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, overload

import numpy as np
from numpy.typing import NDArray

from wedgenet.exceptions import DictionaryTooLarge, WedgeNetError
from wedgenet.geometry import (
    DEPENDENT,
    DEPENDENT_TOL,
    INDEPENDENT_TOL,
    UNDECIDED,
    classify,
    equilibrate,
    inverse_condition,
    one_blas_thread,
    subset_normals,
)
from wedgenet.interrupt import checkpoint
from wedgenet.network import IndexSet

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

#: A generator lies on a hyperplane when ``|g . h| <= ON_PLANE_TOL`` for the unit generator
#: and the unit normal, both in equilibrated working coordinates.
ON_PLANE_TOL = 1e-9
#: Relative tolerance for the numerical rank of the (equilibrated) data:
#: ``sigma_i > RANK_RTOL * max(n, d) * sigma_1``.
RANK_RTOL = 1e-10
#: A normal is unusable when its weight part ``||w_z||`` (unit normal, working coordinates)
#: is below this; a valid hyperplane through a sample has ``||w_z|| >= 1 / sqrt(1 + n d)``.
WEIGHT_TOL = 1e-12

Source = Literal["exhaustive", "sample", "given"]


@dataclass
class Atoms:
    """A batch of oriented, normalized hyperplanes (dictionary columns).

    Attributes
    ----------
    subsets : ndarray of shape (m, D - 1)
        Generator-pool indices: ``0..n-1`` are samples, ``n + k`` is basis direction ``e_k``.
    normals : ndarray of shape (m, d + 1)
        Oriented normals ``s * (w, b)`` in the original coordinates with ``||w||_p = 1``
        (``b = 0`` for bias-free dictionaries).
    signs : ndarray of shape (m,)
        Orientation ``s`` relative to ``cross(generators)``.
    """

    subsets: IntArray
    normals: FloatArray
    signs: IntArray

    def __len__(self) -> int:
        return int(self.signs.shape[0])

    def take(self, idx: IntArray | Sequence[int]) -> Atoms:
        idx = np.asarray(idx, dtype=np.int64)
        return Atoms(self.subsets[idx], self.normals[idx], self.signs[idx])

    @classmethod
    def oriented(cls, subsets: IntArray, normals: FloatArray, signs: IntArray | None) -> Atoms:
        """Atoms of hyperplanes with orientation +1 ``normals``: with the given ``signs``, or
        both orientations (all +1 rows, then all -1 rows) when ``signs`` is None."""
        if signs is not None:
            return cls(subsets, normals * signs[:, None], signs)
        m = subsets.shape[0]
        return cls(
            np.concatenate([subsets, subsets]),
            np.concatenate([normals, -normals]),
            np.concatenate([np.ones(m, dtype=np.int64), -np.ones(m, dtype=np.int64)]),
        )

    @staticmethod
    def concatenate(parts: Sequence[Atoms], n_gen: int, n_features: int) -> Atoms:
        if not parts:
            return Atoms(
                np.zeros((0, n_gen), dtype=np.int64),
                np.zeros((0, n_features + 1)),
                np.zeros(0, dtype=np.int64),
            )
        return Atoms(
            np.concatenate([a.subsets for a in parts]),
            np.concatenate([a.normals for a in parts]),
            np.concatenate([a.signs for a in parts]),
        )


@dataclass
class HyperplaneChunk:
    """The valid hyperplanes of one chunk of subsets (see :meth:`WedgeDictionary.hyperplanes`).

    Attributes
    ----------
    subsets : ndarray of shape (m, D - 1)
        The kept subsets (pool indices).
    normals : ndarray of shape (m, d + 1)
        Their normals, orientation +1, ``||w||_p = 1`` in original coordinates.
    signs : ndarray of shape (m,) or None
        Given orientations (``source="given"``), None otherwise (both orientations).
    n_subsets : int
        Subsets examined in the chunk (kept or not).
    n_undecided : int
        Subsets whose independence could not be decided reliably (kept when usable).
    """

    subsets: IntArray
    normals: FloatArray
    signs: IntArray | None
    n_subsets: int
    n_undecided: int = 0


def features(X: FloatArray, normals: FloatArray) -> FloatArray:
    """Dictionary columns ``relu(X @ w + b)`` for normals of shape (m, d + 1)."""
    X = np.asarray(X, dtype=float)
    out = X @ normals[:, :-1].T
    out += normals[:, -1]
    np.maximum(out, 0.0, out=out)
    return out


def _first_distinct_rows(rows: IntArray, limit: int) -> IntArray:
    """The distinct rows of ``rows`` in order of first appearance, at most ``limit``.

    Rows are grouped by a 64-bit hash (one stable sort) and compared exactly with their
    neighbour in that order, so distinct rows are never merged; equal rows separated by a
    hash collision (odds ~ len(rows)^2 / 2^64) would both be kept, as a duplicate column.
    """
    n = rows.shape[0]
    if n == 0:
        return rows
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    mult = np.random.default_rng(0x5EED).integers(1, 2**62, size=rows.shape[1], dtype=np.int64)
    h = rows.astype(np.uint64) @ (mult.astype(np.uint64) | np.uint64(1))  # wraps mod 2^64
    order = np.argsort(h, kind="stable")
    hs = h[order]
    tie = np.flatnonzero(hs[1:] == hs[:-1]) + 1  # positions (in hash order) of equal hashes
    dup = np.zeros(n, dtype=bool)
    if tie.size:
        dup[tie] = np.all(rows[order[tie]] == rows[order[tie - 1]], axis=1)
    first = np.sort(order[~dup])
    return rows[first[:limit]]


def _n_choose(n: int, k: int) -> int:
    return math.comb(n, k) if 0 <= k <= n else 0


def dictionary_size(n: int, d: int, p: int = 1, bias: bool = True, rank: int | None = None) -> int:
    """Number of columns of the exhaustive dictionary, before dropping degenerate subsets.

    Parameters
    ----------
    n, d : int
        Number of samples and features.
    p : {1, 2}
        Regularization norm (``p = 1`` adds the basis directions to the generators).
    bias : bool
        Biased neurons (generators lifted to ``R^(d+1)``).
    rank : int, optional
        Rank of the data (linear rank, or affine rank for biased ``p = 2``); ``min(n, d)``
        (or ``d``) by default. Only used for ``p = 2``.

    Returns
    -------
    int
        Twice the number of generator subsets (both orientations). Nothing is allocated.
    """
    if p not in (1, 2):
        raise WedgeNetError(f"p must be 1 or 2, got {p!r}")
    if p == 1:
        k = d if bias else d - 1
        pool = n + d
        count = _n_choose(pool, k)
        if bias:
            count -= _n_choose(d, k)  # subsets of directions only give w = 0
        return 2 * count
    r = min(d, n) if rank is None else int(rank)
    k = r if bias else r - 1
    return 2 * _n_choose(n, k)


class WedgeDictionary:
    """The wedge-product dictionary of a dataset.

    Parameters
    ----------
    X : array-like of shape (n, d)
        Training inputs (rows are samples); for deeper layers, the layer's input activations.
    p : {1, 2}, default 1
        Norm of the first-layer weights in the regularizer. ``p = 1`` gives the exact
        dictionaries (Thm 2/4, 16), ``p = 2`` the approximate ones (Thm 3/5, 15/17).
    bias : bool, default True
        Whether hidden neurons have (unregularized) biases.
    source : {"exhaustive", "sample", "given"}, default "exhaustive"
        Enumerate every subset, sample ``n_hyperplanes`` subsets at random, or use the
        explicit ``index_sets``.
    n_hyperplanes : int, optional
        Number of hyperplanes to sample (each gives two columns) for ``source="sample"``.
    index_sets : sequence of IndexSet, optional
        Explicit subsets for ``source="given"``; an index set's ``sign`` fixes its
        orientation (use both signs for both columns).
    seed : int, default 0
        Seed of the sampler.
    max_columns : int, optional
        Refuse an exhaustive dictionary larger than this (:class:`DictionaryTooLarge`).

    Attributes
    ----------
    n_samples, n_features : int
    rank_ : int
        Rank used to build the generators (``d`` when no reduction happened).
    dim_ : int
        ``D``, dimension of the homogeneous space the hyperplanes live in.
    subset_size_ : int
        ``D - 1``.
    generators_ : ndarray of shape (n + n_directions, D)
        The generator pool in working coordinates: equilibrated samples ``(x - center_) /
        scale_`` (reduced by ``basis_`` for a ``p = 2`` rank reduction), lifted for biased
        neurons, then the basis directions (``p = 1``).
    center_, scale_ : ndarray of shape (d,)
        Equilibration (``center_`` is zero without bias; ``scale_ > 0``).
    basis_ : ndarray of shape (d, rank_) or None
        Orthonormal basis (in equilibrated coordinates) of a ``p = 2`` rank reduction.
    """

    def __init__(
        self,
        X: FloatArray,
        *,
        p: int = 1,
        bias: bool = True,
        source: Source = "exhaustive",
        n_hyperplanes: int | None = None,
        index_sets: Sequence[IndexSet] | None = None,
        seed: int = 0,
        max_columns: int | None = None,
    ) -> None:
        X = np.asarray(X, dtype=float)
        if X.ndim != 2:
            raise WedgeNetError(f"X must be 2-dimensional (n, d), got shape {X.shape}")
        if not np.all(np.isfinite(X)):
            raise WedgeNetError("X contains NaN or infinite values")
        if p not in (1, 2):
            raise WedgeNetError(f"p must be 1 or 2, got {p!r}")
        if source not in ("exhaustive", "sample", "given"):
            raise WedgeNetError(f"unknown dictionary source {source!r}")
        self.X = X
        self.p = int(p)
        self.bias = bool(bias)
        self.source: Source = source
        self.seed = int(seed)
        self.n_samples, self.n_features = X.shape
        self._setup_coordinates()
        if source == "sample":
            if n_hyperplanes is None or int(n_hyperplanes) < 1:
                raise WedgeNetError("source='sample' needs n_hyperplanes >= 1")
        if source == "given" and index_sets is None:
            raise WedgeNetError("source='given' needs index_sets")
        self.n_hyperplanes = None if n_hyperplanes is None else int(n_hyperplanes)
        self.index_sets = None if index_sets is None else list(index_sets)
        if source == "exhaustive" and max_columns is not None and self.size > max_columns:
            raise DictionaryTooLarge(self.size, max_columns)

    # ------------------------------------------------------------------ coordinates
    def _setup_coordinates(self) -> None:
        """Equilibrated working coordinates, the rank (``p = 2``) and the generator pool.

        Sets ``center_``, ``scale_`` (original -> equilibrated: ``z = (x - center_) /
        scale_``), ``basis_`` (for a ``p = 2`` rank reduction: orthonormal ``(d, r)`` basis in
        equilibrated coordinates, else None), ``rank_``, ``generators_`` (working
        coordinates) and the unit generators used for every decision.
        """
        X = self.X
        n, d = X.shape
        if n == 1 and self.bias:
            raise WedgeNetError(
                "the data have rank 0: one sample (n_samples=1) defines no hyperplane; "
                "biased neurons need at least 2 distinct samples"
            )
        if self.p == 1:
            if not np.any(X) and not self.bias:
                raise WedgeNetError("the data have rank 0 (X is all zeros)")
            if self.bias and n > 0 and np.all(X == X[0]):
                raise WedgeNetError("the data have rank 0 (all samples identical)")
        Z, self.center_, self.scale_ = equilibrate(X, center=self.bias)
        self.basis_: FloatArray | None = None
        self._weight_map: FloatArray | None = None
        Zw = Z
        if self.p == 2:
            with one_blas_thread():  # small SVDs: threads only add overhead
                s = np.linalg.svd(Z, compute_uv=False) if n and d else np.zeros(0)
            tol = RANK_RTOL * (s[0] if s.size else 0.0) * max(n, d)
            r = int(np.sum(s > tol)) if s.size and s[0] > 0 else 0
            if r == 0:
                raise WedgeNetError(
                    "the data have rank 0 (all samples identical"
                    + ("" if self.bias else " to zero")
                    + "): no hyperplane separates them"
                )
            if r < d:
                self.basis_ = self._reduction_basis(Z, r)
                Zw = Z @ self.basis_
                # Minimum-l2-norm original weights with the values of the reduced normal on
                # the data: w = M (M^T M)^-1 u with M = diag(s) basis (= Q R^-T u).
                Q, R = np.linalg.qr(self.scale_[:, None] * self.basis_)
                self._weight_map = np.linalg.solve(R, Q.T).T  # (d, r)
            self.rank_ = r
        else:
            self.rank_ = d
        r = Zw.shape[1]
        self.dim_ = r + 1 if self.bias else r
        self.subset_size_ = self.dim_ - 1
        points = np.concatenate([Zw, np.ones((n, 1))], axis=1) if self.bias else Zw
        if self.p == 1:
            dirs = np.eye(r, self.dim_)
            self.generators_ = np.concatenate([points, dirs], axis=0)
            self.n_directions_ = r
        else:
            self.generators_ = points
            self.n_directions_ = 0
        norms = np.linalg.norm(self.generators_, axis=1)
        self._unit_generators = self.generators_ / np.where(norms > 0, norms, 1.0)[:, None]
        self._points_w = Zw  # working coordinates of the samples

    def _reduction_basis(self, Z: FloatArray, r: int) -> FloatArray:
        """Top-``r`` right singular vectors of ``Z``, oriented as the former basis.

        The former reduction used the SVD of the (centred) original data; its orientation
        convention is kept (the basis sign is flipped when the two ``r``-dimensional
        coordinate systems have opposite orientation), so that given index sets keep their
        orientation.
        """
        centered = self.X - self.X.mean(axis=0) if self.bias else self.X
        with one_blas_thread():
            _, _, vt = np.linalg.svd(Z, full_matrices=False)
            _, _, vt_old = np.linalg.svd(centered, full_matrices=False)
        basis = np.ascontiguousarray(vt[:r].T)
        L = basis.T @ (self.scale_[:, None] * vt_old[:r].T)
        if np.linalg.slogdet(L)[0] < 0:
            basis[:, -1] *= -1.0
        return basis

    @property
    def pool_size(self) -> int:
        return self.n_samples + self.n_directions_

    @property
    def size(self) -> int:
        """Columns of the exhaustive dictionary (both orientations, before skipping)."""
        return dictionary_size(
            self.n_samples,
            self.n_features if self.p == 1 else self.rank_,
            self.p,
            self.bias,
            rank=self.rank_,
        )

    @property
    def n_subsets(self) -> int:
        """Number of generator subsets the source yields (before skipping and merging)."""
        if self.source == "exhaustive":
            return self.size // 2
        if self.source == "sample":
            assert self.n_hyperplanes is not None
            return min(self.n_hyperplanes, self.size // 2)
        assert self.index_sets is not None
        return len(self.index_sets)

    # ------------------------------------------------------------------ subsets
    def _valid_combo(self, combo: IntArray) -> IntArray:
        """Mask out subsets of basis directions only (they give w = 0 when biased)."""
        if self.p == 1 and self.bias and combo.shape[1] > 0:
            return combo[combo[:, 0] < self.n_samples]
        return combo

    def iter_subsets(
        self, chunk_size: int = 4096, start: int = 0, stop: int | None = None
    ) -> Iterator[IntArray]:
        """Generator subsets in chunks of shape (B, D - 1) (pool indices, ascending).

        ``start``/``stop`` select a range of the source's subsets, so that independent
        workers can scan disjoint parts of the same dictionary.
        """
        if self.source == "exhaustive":
            yield from self._combinations(chunk_size, start, stop)
        elif self.source == "sample":
            subs = self._sample_subsets()[start:stop]
            for i in range(0, subs.shape[0], chunk_size):
                yield subs[i : i + chunk_size]
        else:
            subs = self._given_subsets()[0][start:stop]
            for i in range(0, subs.shape[0], chunk_size):
                yield subs[i : i + chunk_size]

    @property
    def n_raw_subsets(self) -> int:
        """Length of the raw subset sequence that ``start``/``stop`` index."""
        if self.source == "exhaustive":
            return _n_choose(self.pool_size, self.subset_size_)
        if self.source == "sample":
            return int(self._sample_subsets().shape[0])
        return len(self.index_sets or ())

    def _sample_subsets(self) -> IntArray:
        cached = getattr(self, "_sampled", None)
        if cached is not None:
            return cached
        assert self.n_hyperplanes is not None
        k, P = self.subset_size_, self.pool_size
        total = self.size // 2
        if self.n_hyperplanes >= total:
            subs = np.concatenate(list(self._combinations(65536)), axis=0)
        else:
            rng = np.random.default_rng(self.seed)
            subs = np.zeros((0, k), dtype=np.int64)
            need = self.n_hyperplanes
            for _ in range(1000):
                if need <= 0:
                    break
                checkpoint("sampling the dictionary")
                draw = rng.integers(0, P, size=(2 * need + 16, k))
                ok = np.ones(draw.shape[0], dtype=bool)
                for lo in range(0, draw.shape[0], 262144):  # blocks: cancellable
                    checkpoint("sampling the dictionary")
                    block = np.sort(draw[lo : lo + 262144], axis=1)
                    draw[lo : lo + 262144] = block
                    if k > 1:
                        ok[lo : lo + 262144] = np.all(np.diff(block, axis=1) > 0, axis=1)
                checkpoint("sampling the dictionary")
                # distinct rows in order of first appearance, the earlier rounds' first
                subs = _first_distinct_rows(
                    np.concatenate([subs, self._valid_combo(draw[ok])]), self.n_hyperplanes
                )
                need = self.n_hyperplanes - subs.shape[0]
        self._sampled = subs
        return subs

    def _combinations(
        self, chunk_size: int, start: int = 0, stop: int | None = None
    ) -> Iterator[IntArray]:
        """All (D-1)-subsets of the generator pool, in lexicographic order, by chunks.

        Ranks ``start``/``stop`` count raw combinations; subsets of basis directions only
        (w = 0 for biased neurons) are skipped lazily.
        """
        k = self.subset_size_
        it = itertools.islice(itertools.combinations(range(self.pool_size), k), start, stop)
        while True:
            flat = np.fromiter(
                itertools.chain.from_iterable(itertools.islice(it, chunk_size)),
                dtype=np.int64,
            )
            if flat.size == 0 and k > 0:
                return
            combo = flat.reshape(-1, k) if k > 0 else np.zeros((1, 0), dtype=np.int64)
            combo = self._valid_combo(combo)
            if combo.shape[0]:
                yield combo
            if k == 0:
                return

    def _given_subsets(self) -> tuple[IntArray, IntArray]:
        cached = getattr(self, "_given", None)
        if cached is not None:
            return cached
        assert self.index_sets is not None
        k = self.subset_size_
        n = self.n_samples
        rows, signs = [], []
        for s in self.index_sets:
            pool = [int(i) for i in s.samples] + [n + int(j) for j in s.directions]
            if len(pool) != k:
                raise WedgeNetError(
                    f"index set {s.to_dict()} has {len(pool)} generators; this dictionary "
                    f"needs {k} (D - 1)"
                )
            if any(i < 0 or i >= n for i in s.samples) or any(
                j < 0 or j >= self.n_directions_ for j in s.directions
            ):
                raise WedgeNetError(f"index set {s.to_dict()} refers to unknown samples/directions")
            rows.append(sorted(pool))
            signs.append(1 if s.sign >= 0 else -1)
        out = (
            np.array(rows, dtype=np.int64).reshape(-1, k),
            np.array(signs, dtype=np.int64),
        )
        self._given = out
        return out

    # ------------------------------------------------------------------ hyperplanes
    @overload
    def hyperplanes(
        self, subsets: IntArray, *, dedupe: bool = ..., return_undecided: Literal[False] = ...
    ) -> tuple[IntArray, FloatArray]: ...

    @overload
    def hyperplanes(
        self, subsets: IntArray, *, dedupe: bool = ..., return_undecided: Literal[True]
    ) -> tuple[IntArray, FloatArray, int]: ...

    def hyperplanes(
        self, subsets: IntArray, *, dedupe: bool = True, return_undecided: bool = False
    ) -> tuple[IntArray, FloatArray] | tuple[IntArray, FloatArray, int]:
        """Unit-norm hyperplanes of a chunk of subsets.

        Parameters
        ----------
        subsets : ndarray of shape (B, D - 1)
            Generator-pool indices.
        dedupe : bool, default True
            Keep a hyperplane only under its canonical index set.
        return_undecided : bool, default False
            Also return the number of *undecided* subsets (independence measure between
            :data:`~wedgenet.geometry.DEPENDENT_TOL` and
            :data:`~wedgenet.geometry.INDEPENDENT_TOL`); they are kept when usable.

        Returns
        -------
        keep : ndarray of int
            Rows of ``subsets`` that give a valid (independent or undecided, canonical)
            hyperplane.
        normals : ndarray of shape (len(keep), d + 1)
            The normals mapped to the original coordinates and scaled to ``||w||_p = 1``,
            orientation ``+1`` (that of ``cross`` of the original lifted generators).
        n_undecided : int
            Only with ``return_undecided=True``.
        """
        d = self.n_features
        B = subsets.shape[0]
        if B == 0:
            empty = (np.zeros(0, dtype=np.int64), np.zeros((0, d + 1)))
            return (*empty, 0) if return_undecided else empty
        # unit normals in working coordinates
        H, rcond = subset_normals(self._unit_generators[subsets], unit_rows=True)
        if self.n_directions_:
            # A hyperplane through direction e_k has w_k = 0 exactly. The closed forms give
            # exact zeros; SVD null vectors carry rounding there, which the map back to the
            # original units (w_k = u_k / s_k) would amplify by the scale ratio of features.
            rows, cols = np.nonzero(subsets >= self.n_samples)
            H[rows, subsets[rows, cols] - self.n_samples] = 0.0
        status = classify(rcond)
        n_undecided = int(np.count_nonzero(status == UNDECIDED))
        r = self.dim_ - 1 if self.bias else self.dim_
        Hw = H[:, :r]
        ok = (status != DEPENDENT) & (np.einsum("ij,ij->i", Hw, Hw) > WEIGHT_TOL**2)
        idx = np.flatnonzero(ok)
        H = H[idx]
        if dedupe and idx.size:
            canon = self._canonical(subsets[idx], H)
            idx, H = idx[canon], H[canon]
        normals = self.to_original(H)
        wnorm = np.linalg.norm(normals[:, :d], ord=self.p, axis=1)
        good = (wnorm > 0) & np.isfinite(wnorm)
        out = idx[good], normals[good] / wnorm[good, None]
        return (*out, n_undecided) if return_undecided else out

    def to_working(self, normals: FloatArray) -> FloatArray:
        """Map original neurons ``(w, b)`` (B, d + 1) to working-coordinate normals (B, D).

        The working normal has the same values on the data as the neuron: ``g_i . h =
        w . x_i + b`` for every sample (components of ``w`` outside the span of a ``p = 2``
        rank reduction do not act on the data and are dropped). ``b`` is ignored without
        bias.
        """
        normals = np.asarray(normals, dtype=float).reshape(-1, self.n_features + 1)
        w, b = normals[:, :-1], normals[:, -1]
        u = w * self.scale_  # w . x = (w * scale) . z + w . center
        if self.basis_ is not None:
            u = u @ self.basis_
        if not self.bias:
            return np.ascontiguousarray(u)
        return np.ascontiguousarray(np.concatenate([u, (b + w @ self.center_)[:, None]], axis=1))

    def to_original(self, H: FloatArray) -> FloatArray:
        """Map working-coordinate normals (B, D) to original ``(w, b)`` (B, d + 1)."""
        d = self.n_features
        r = self.dim_ - 1 if self.bias else self.dim_
        u = H[:, :r]
        b = H[:, r] if self.bias else np.zeros(H.shape[0])
        w = u @ self._weight_map.T if self._weight_map is not None else u / self.scale_
        out = np.empty((H.shape[0], d + 1))
        out[:, :d] = w
        out[:, d] = b - w @ self.center_ if self.bias else 0.0
        return out

    def _canonical(self, subsets: IntArray, H: FloatArray) -> NDArray[np.bool_]:
        """True where the subset is the canonical index set of its hyperplane.

        ``H``: unit normals in working coordinates. On-plane and rank decisions use the unit
        generators in equilibrated coordinates (scale-free) and the same independence test
        as the enumeration, so the canonical subset is itself a kept subset.
        """
        return np.array(
            [c == [int(i) for i in s] for s, c in zip(subsets, self._canonical_subsets(
                subsets, H, stop_outside=True), strict=True)],
            dtype=bool,
        ).reshape(-1)

    def _canonical_subsets(
        self, subsets: IntArray, H: FloatArray, *, stop_outside: bool = False
    ) -> list[list[int]]:
        """The canonical index set of each hyperplane: the lexicographically first
        independent ``D - 1`` of the generators lying on it (greedy, ascending).

        ``stop_outside``: stop as soon as the greedy choice leaves the subset's own prefix
        (enough to decide whether the subset is canonical; thousands of generators can lie
        on one hyperplane of sparse data).
        """
        B = H.shape[0]
        on = np.abs(self._unit_generators @ H.T) <= ON_PLANE_TOL  # (P, B)
        k = self.subset_size_
        if k:
            on[subsets, np.arange(B)[:, None]] = True  # a subset's own generators
        counts = on.sum(axis=0)
        out = [[int(i) for i in s] for s in subsets]
        for j in np.flatnonzero(counts > k):
            own = out[j]
            chosen: list[int] = []
            if stop_outside:
                for i in np.flatnonzero(on[:, j]):
                    trial = self._unit_generators[chosen + [int(i)]][None]
                    if inverse_condition(trial)[0] > DEPENDENT_TOL:
                        chosen.append(int(i))
                        if len(chosen) == k or chosen[-1] != own[len(chosen) - 1]:
                            break
            else:
                # full greedy by Gram-Schmidt (one projection per member instead of an SVD;
                # callers validate the result with the exact test of `hyperplanes`)
                Q = np.zeros((0, self._unit_generators.shape[1]))
                for i in np.flatnonzero(on[:, j]):
                    g = self._unit_generators[i]
                    r = g - Q.T @ (Q @ g)
                    nr = float(np.linalg.norm(r))
                    if nr > INDEPENDENT_TOL ** 0.5:
                        chosen.append(int(i))
                        Q = np.vstack([Q, r / nr])
                        if len(chosen) == k:
                            break
            out[j] = chosen
        return out

    def canonical_atoms(self, atoms: Atoms) -> Atoms:
        """The same oriented hyperplanes, each under its canonical index set.

        Columns found by a search may be reached through a non-canonical subset (on sparse
        data many generators lie on one hyperplane); the scan's deduplication would drop
        them. Here they are re-expressed on the canonical subset (same hyperplane, same
        orientation) instead. Duplicates are not removed.
        """
        if len(atoms) == 0 or self.subset_size_ == 0:
            return atoms
        H, _ = subset_normals(self._unit_generators[atoms.subsets], unit_rows=True)
        subs = np.array(self._canonical_subsets(atoms.subsets, H), dtype=np.int64)
        if subs.shape != atoms.subsets.shape:  # a greedy choice came up short: keep as is
            return atoms
        keep, normals = self.hyperplanes(subs, dedupe=False)
        if keep.size != len(atoms):
            return atoms
        signs = np.where(np.einsum("ij,ij->i", atoms.normals, normals) >= 0, 1, -1)
        return Atoms(subs, normals * signs[:, None], signs.astype(np.int64))

    # ------------------------------------------------------------------ atoms
    def iter_hyperplane_chunks(
        self,
        chunk_size: int = 4096,
        start: int = 0,
        stop: int | None = None,
        *,
        dedupe: bool = True,
    ) -> Iterator[HyperplaneChunk]:
        """Valid hyperplanes chunk by chunk, with the count of undecided subsets.

        As :meth:`iter_hyperplanes`, yielding :class:`HyperplaneChunk` (which also says how
        many subsets were examined and how many were undecided).
        """
        given_signs = self._given_subsets()[1] if self.source == "given" else None
        offset = start
        for subs in self.iter_subsets(chunk_size, start, stop):
            checkpoint("building the dictionary")
            keep, normals, n_und = self.hyperplanes(
                subs, dedupe=dedupe and given_signs is None, return_undecided=True
            )
            signs = None
            if given_signs is not None:
                signs = given_signs[offset : offset + subs.shape[0]][keep]
            yield HyperplaneChunk(subs[keep], normals, signs, int(subs.shape[0]), n_und)
            offset += subs.shape[0]

    def iter_hyperplanes(
        self,
        chunk_size: int = 4096,
        start: int = 0,
        stop: int | None = None,
        *,
        dedupe: bool = True,
    ) -> Iterator[tuple[IntArray, FloatArray, IntArray | None]]:
        """Valid hyperplanes chunk by chunk: ``(subsets, normals, signs)``.

        ``normals`` have orientation +1 (see :meth:`hyperplanes`); ``signs`` are the given
        orientations for ``source="given"`` and None otherwise (both orientations). Given
        index sets are never merged; ``dedupe`` applies to the other sources. For the number
        of undecided subsets use :meth:`iter_hyperplane_chunks`.
        """
        for chunk in self.iter_hyperplane_chunks(chunk_size, start, stop, dedupe=dedupe):
            yield chunk.subsets, chunk.normals, chunk.signs

    def n_undecided(self, chunk_size: int = 16384) -> int:
        """Number of undecided subsets of the whole source (one enumeration)."""
        return sum(c.n_undecided for c in self.iter_hyperplane_chunks(chunk_size, dedupe=False))

    def iter_atoms(
        self, chunk_size: int = 4096, start: int = 0, stop: int | None = None
    ) -> Iterator[Atoms]:
        """Valid oriented hyperplanes, chunk by chunk (both orientations unless given)."""
        for subs, normals, signs in self.iter_hyperplanes(chunk_size, start, stop):
            yield Atoms.oriented(subs, normals, signs)

    def atoms(self, chunk_size: int = 65536) -> Atoms:
        """All atoms of the dictionary (materialized; mind :attr:`size`)."""
        return Atoms.concatenate(
            list(self.iter_atoms(chunk_size)), self.subset_size_, self.n_features
        )

    def features(self, atoms: Atoms, X: FloatArray | None = None) -> FloatArray:
        """Columns ``K`` of shape (n, m) for ``atoms`` evaluated at ``X`` (default: the data)."""
        return features(self.X if X is None else X, atoms.normals)

    # ------------------------------------------------------------------ interpretation
    def index_set(self, subset: IntArray, sign: int) -> IndexSet:
        n = self.n_samples
        samples = tuple(int(i) for i in subset if i < n)
        directions = tuple(int(i - n) for i in subset if i >= n)
        return IndexSet(samples=samples, directions=directions, sign=int(sign))

    def generators_original(self, subset: IntArray) -> FloatArray:
        """Generators of a subset in original homogeneous coordinates, shape (D - 1, d + 1)."""
        n, d = self.n_samples, self.n_features
        rows = []
        for i in subset:
            g = np.zeros(d + 1)
            if i < n:
                g[:d] = self.X[i]
                g[d] = 1.0 if self.bias else 0.0
            else:
                g[int(i - n)] = 1.0
            rows.append(g)
        return np.array(rows).reshape(len(rows), d + 1)

    def residual(self, subset: IntArray, normal: FloatArray) -> float:
        """Orthogonality residual ``max |g . h| / (||g|| ||h||)`` over the subset."""
        G = self.generators_original(subset)
        if G.shape[0] == 0:
            return 0.0
        num = np.abs(G @ normal)
        den = np.linalg.norm(G, axis=1) * np.linalg.norm(normal)
        return float(np.max(num / np.where(den > 0, den, 1.0)))

    def formula(self, subset: IntArray, sign: int) -> str:
        """A readable closed form of the neuron, e.g. ``dist+(x, Aff(x[3], x[17]))``."""
        n = self.n_samples
        s = "+" if sign > 0 else "-"
        pts = [f"x[{int(i)}]" for i in subset if i < n]
        dirs = [f"e{int(i - n) + 1}" for i in subset if i >= n]
        if self.p == 2:
            hull = "Aff" if self.bias else "Span"
            return f"dist{s}(x, {hull}({', '.join(pts)}))"
        if self.bias:
            if self.n_features == 1 and len(pts) == 1:
                return f"relu(x - {pts[0]})" if sign > 0 else f"relu({pts[0]} - x)"
            gens = ", ".join([f"[{q}, 1]" for q in pts] + dirs)
            return f"Vol{s}(P([x, 1], {gens})) / ||w||_1"
        gens = ", ".join(pts + dirs)
        if not gens:
            return f"relu({s}x)"
        return f"Vol{s}(P(x, {gens})) / ||x({gens})||_1"
