"""Pricing: scoring every column of a dictionary against a dual point, streamed.

For a dual point ``V`` (n, c) the score of column ``k_j`` is ``||k_j^T V||_2``; columns with
score above ``lam`` violate the dual constraints. A wedge dictionary is scanned hyperplane by
hyperplane without ever forming its columns: a fused kernel computes, for each hyperplane
``h = (w, b)``, ``u_i = x_i . w + b`` on the fly and accumulates

    relu(u)^T V          (orientation +1)
    relu(-u)^T V = relu(u)^T V - u^T V      (orientation -1)

so one pass over the data prices both orientations, with memory ``O(chunk)``.

Scans split into disjoint ranges of the subset sequence (``start``/``stop``) and the partial
results merge exactly (:func:`merge_pricing`), which is how several workers share one scan.

A scan also counts the subsets whose independence could not be decided reliably
(:attr:`PricingResult.n_undecided`, see :mod:`wedgenet.dictionary`); they are priced like
every other column, but a result that depends on them is not certified.
"""

from __future__ import annotations

import heapq
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numba
import numpy as np
from numba import njit, prange
from numpy.typing import NDArray

from wedgenet.dictionary import Atoms, HyperplaneChunk, WedgeDictionary, features
from wedgenet.interrupt import checkpoint
from wedgenet.programs import column_scores

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

# GNU OpenMP (numba's default parallel backend here) aborts any child forked after a parallel
# region ran, which breaks subprocesses, Celery prefork pools and process pools. The
# workqueue layer is fork-safe; NUMBA_THREADING_LAYER still overrides.
if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "workqueue"  # type: ignore[attr-defined]


@njit(parallel=True, fastmath=True, cache=True)
def _scores_scalar(
    Xl: np.ndarray, H: np.ndarray, v: np.ndarray, pos: np.ndarray, neg: np.ndarray
) -> None:  # pragma: no cover - compiled
    n, D1 = Xl.shape
    for b in prange(H.shape[0]):
        p = 0.0
        tot = 0.0
        for i in range(n):
            u = 0.0
            for k in range(D1):
                u += Xl[i, k] * H[b, k]
            t = u * v[i]
            tot += t
            if u > 0.0:
                p += t
        pos[b] = abs(p)
        neg[b] = abs(p - tot)


@njit(parallel=True, fastmath=True, cache=True)
def _scores_group(
    Xl: np.ndarray, H: np.ndarray, V: np.ndarray, pos: np.ndarray, neg: np.ndarray
) -> None:  # pragma: no cover - compiled
    n, D1 = Xl.shape
    c = V.shape[1]
    for b in prange(H.shape[0]):
        p = np.zeros(c)
        tot = np.zeros(c)
        for i in range(n):
            u = 0.0
            for k in range(D1):
                u += Xl[i, k] * H[b, k]
            for q in range(c):
                t = u * V[i, q]
                tot[q] += t
                if u > 0.0:
                    p[q] += t
        s1 = 0.0
        s2 = 0.0
        for q in range(c):
            s1 += p[q] * p[q]
            s2 += (p[q] - tot[q]) * (p[q] - tot[q])
        pos[b] = np.sqrt(s1)
        neg[b] = np.sqrt(s2)


def hyperplane_scores(
    X: FloatArray, normals: FloatArray, V: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Scores of both orientations of each hyperplane, without forming the columns.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    normals : ndarray of shape (B, d + 1)
        ``(w, b)`` per hyperplane (orientation +1).
    V : ndarray of shape (n, c)

    Returns
    -------
    pos, neg : ndarrays of shape (B,)
        ``||relu(X w + b)^T V||`` and ``||relu(-(X w + b))^T V||``.
    """
    Xl = np.ascontiguousarray(np.concatenate([X, np.ones((X.shape[0], 1))], axis=1))
    H = np.ascontiguousarray(normals, dtype=float)
    pos = np.empty(H.shape[0])
    neg = np.empty(H.shape[0])
    if V.shape[1] == 1:
        _scores_scalar(Xl, H, np.ascontiguousarray(V[:, 0]), pos, neg)
    else:
        _scores_group(Xl, H, np.ascontiguousarray(V), pos, neg)
    return pos, neg


class ColumnSource(Protocol):
    """A dictionary that can be priced chunk by chunk and evaluated on a working set.

    A source that enumerates generator subsets may also expose an attribute
    ``last_n_undecided`` (int): the number of undecided subsets met by its most recent
    complete ``scored_chunks`` pass; :func:`price` reports it (0 when absent).
    """

    def scored_chunks(self, V: FloatArray) -> Iterable[tuple[Atoms, FloatArray]]: ...

    def canonical(self, atoms: Atoms) -> Atoms: ...

    def columns(self, atoms: Atoms) -> FloatArray: ...


@dataclass
class DictionaryColumns:
    """A :class:`WedgeDictionary` (or a range of it) as a streamed column source.

    Column generation scans the same dictionary many times. When its hyperplanes (subsets
    and normals) take at most ``cache_bytes``, the first scan keeps them and later scans only
    run the scoring kernel; larger dictionaries are enumerated afresh on every scan, so that
    memory stays bounded by the chunk size.
    """

    dictionary: WedgeDictionary
    chunk_size: int = 16384
    start: int = 0
    stop: int | None = None
    cache_bytes: int = 64 * 2**20
    #: Undecided subsets met by the most recent complete scan (see :class:`ColumnSource`).
    last_n_undecided: int = field(default=0, init=False)
    _cache: list[HyperplaneChunk] | None = field(default=None, init=False, repr=False)

    def _hyperplane_chunks(self) -> Iterable[HyperplaneChunk]:
        if self._cache is not None:
            return self._cache
        D = self.dictionary
        # Duplicated hyperplanes only repeat scores; they are merged when they enter the
        # working set (see canonical), so the scan skips that check.
        chunks = D.iter_hyperplane_chunks(self.chunk_size, self.start, self.stop, dedupe=False)
        stop = D.n_raw_subsets if self.stop is None else min(self.stop, D.n_raw_subsets)
        size = max(stop - self.start, 0) * 8 * (D.subset_size_ + D.n_features + 2)
        if size > self.cache_bytes:
            return chunks
        self._cache = list(chunks)
        return self._cache

    def scored_chunks(self, V: FloatArray) -> Iterator[tuple[Atoms, FloatArray]]:
        D = self.dictionary
        n_undecided = 0
        for chunk in self._hyperplane_chunks():
            n_undecided += chunk.n_undecided
            signs = chunk.signs
            pos, neg = hyperplane_scores(D.X, chunk.normals, V)
            scores = np.concatenate([pos, neg]) if signs is None else np.where(signs > 0, pos, neg)
            yield Atoms.oriented(chunk.subsets, chunk.normals, signs), scores
        self.last_n_undecided = n_undecided

    def columns(self, atoms: Atoms) -> FloatArray:
        """The dictionary columns of ``atoms``, shape (n, len(atoms))."""
        return features(self.dictionary.X, atoms.normals)

    def canonical(self, atoms: Atoms) -> Atoms:
        """The atoms under their canonical index sets, one per oriented hyperplane.

        The scan does not deduplicate, so its top scores can all be copies of a few
        hyperplanes through many samples (a feature with few distinct values: half the
        samples on one hyperplane), reached through non-canonical subsets. Those are
        re-expressed on their canonical subset (:meth:`WedgeDictionary.canonical_atoms`)
        instead of dropped, which emptied the working set."""
        D = self.dictionary
        if D.source == "given" or len(atoms) == 0:
            return atoms
        keep, _ = D.hyperplanes(atoms.subsets, dedupe=True)
        if keep.size == len(atoms):
            return atoms
        mapped = D.canonical_atoms(atoms)
        keep, _ = D.hyperplanes(mapped.subsets, dedupe=True)
        mapped = mapped.take(keep)
        rows = np.c_[mapped.subsets, mapped.signs]
        _, first = np.unique(rows, axis=0, return_index=True)
        return mapped.take(np.sort(first))


@dataclass
class MaterializedColumns:
    """An explicit matrix ``K`` as a column source (for tests and benchmarks).

    Column ``j`` is the atom with ``subsets[j, 0] == j``; the normals are not used.
    """

    K: FloatArray
    chunk_size: int = 16384

    @property
    def atoms(self) -> Atoms:
        m = self.K.shape[1]
        return Atoms(
            np.arange(m, dtype=np.int64)[:, None], np.zeros((m, 1)), np.ones(m, dtype=np.int64)
        )

    def scored_chunks(self, V: FloatArray) -> Iterator[tuple[Atoms, FloatArray]]:
        atoms = self.atoms
        for i in range(0, self.K.shape[1], self.chunk_size):
            sl = slice(i, i + self.chunk_size)
            yield atoms.take(np.arange(self.K.shape[1])[sl]), column_scores(self.K[:, sl], V)

    def canonical(self, atoms: Atoms) -> Atoms:
        return atoms

    def columns(self, atoms: Atoms) -> FloatArray:
        return self.K[:, atoms.subsets[:, 0]]


@dataclass
class PricingResult:
    """Outcome of a scan: the maximum score, and the best atoms above the threshold.

    Serializable by :meth:`to_dict` / :meth:`from_dict` so that partial scans done by several
    workers can be collected and merged (:func:`merge_pricing`).

    Attributes
    ----------
    max_score : float
    n_columns : int
    top_scores : ndarray
    top_atoms : Atoms
    n_undecided : int
        Subsets of the scanned range whose independence could not be decided reliably (they
        were priced when usable); nonzero forbids a certificate.
    """

    max_score: float
    n_columns: int
    top_scores: FloatArray
    top_atoms: Atoms
    n_undecided: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "max_score": float(self.max_score),
            "n_columns": int(self.n_columns),
            "top_scores": self.top_scores.tolist(),
            "subsets": self.top_atoms.subsets.tolist(),
            "normals": self.top_atoms.normals.tolist(),
            "signs": self.top_atoms.signs.tolist(),
            "n_undecided": int(self.n_undecided),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], subset_size: int, n_features: int) -> PricingResult:
        return cls(
            max_score=float(data["max_score"]),
            n_columns=int(data["n_columns"]),
            top_scores=np.asarray(data["top_scores"], dtype=float),
            top_atoms=Atoms(
                np.asarray(data["subsets"], dtype=np.int64).reshape(-1, subset_size),
                np.asarray(data["normals"], dtype=float).reshape(-1, n_features + 1),
                np.asarray(data["signs"], dtype=np.int64),
            ),
            n_undecided=int(data.get("n_undecided", 0)),
        )


def price(source: ColumnSource, V: FloatArray, n_top: int, threshold: float) -> PricingResult:
    """Scan every column of ``source`` against ``V``.

    Returns the maximum score, the ``n_top`` highest-scoring atoms with score above
    ``threshold`` and the number of undecided subsets met (``source.last_n_undecided`` when
    the source has it, else 0).
    """
    heap: list[tuple[float, int, int]] = []
    kept: dict[int, Atoms] = {}
    proto: Atoms | None = None
    max_score = 0.0
    n_cols = 0
    for cid, (atoms, scores) in enumerate(source.scored_chunks(V)):
        checkpoint("pricing")
        proto = atoms if proto is None else proto
        n_cols += scores.shape[0]
        if scores.size == 0:
            continue
        max_score = max(max_score, float(scores.max()))
        cand = np.flatnonzero(scores > threshold)
        if cand.size == 0:
            continue
        if cand.size > n_top:
            cand = cand[np.argpartition(-scores[cand], n_top - 1)[:n_top]]
        used = False
        for row in cand:
            item = (float(scores[row]), cid, int(row))
            if len(heap) < n_top:
                heapq.heappush(heap, item)
                used = True
            elif item > heap[0]:
                heapq.heapreplace(heap, item)
                used = True
        if used:
            kept[cid] = atoms
    best = sorted(heap, reverse=True)
    if best:
        top = Atoms.concatenate([kept[cid].take([row]) for _, cid, row in best], 0, 0)
    elif proto is not None:
        top = proto.take(np.zeros(0, dtype=np.int64))
    else:
        top = Atoms(np.zeros((0, 0), dtype=np.int64), np.zeros((0, 0)), np.zeros(0, np.int64))
    n_undecided = int(getattr(source, "last_n_undecided", 0))
    return PricingResult(
        max_score, n_cols, np.array([s for s, _, _ in best]), top, n_undecided=n_undecided
    )


def merge_pricing(parts: Sequence[PricingResult], n_top: int) -> PricingResult:
    """Combine scans of disjoint ranges into the scan of their union."""
    if not parts:
        raise ValueError("nothing to merge")
    scores = np.concatenate([p.top_scores for p in parts])
    atoms = (
        Atoms.concatenate([p.top_atoms for p in parts if len(p.top_atoms)], 0, 0)
        if any(len(p.top_atoms) for p in parts)
        else parts[0].top_atoms
    )
    order = np.argsort(-scores, kind="stable")[:n_top]
    return PricingResult(
        max_score=max(p.max_score for p in parts),
        n_columns=sum(p.n_columns for p in parts),
        top_scores=scores[order],
        top_atoms=atoms.take(order) if len(atoms) else atoms,
        n_undecided=sum(p.n_undecided for p in parts),
    )


def split_ranges(n_raw: int, n_parts: int) -> list[tuple[int, int]]:
    """Split ``range(n_raw)`` into ``n_parts`` contiguous ranges of near-equal size."""
    n_parts = max(1, min(n_parts, max(n_raw, 1)))
    edges = np.linspace(0, n_raw, n_parts + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a]


__all__ = [
    "ColumnSource",
    "DictionaryColumns",
    "MaterializedColumns",
    "PricingResult",
    "features",
    "hyperplane_scores",
    "merge_pricing",
    "price",
    "split_ranges",
]
