"""Independent re-check of the maximum column score of a three-layer dictionary.

The certificate of a three-layer solve rests on the maximum score over every column, found
by the fused numba kernel of :mod:`wedgenet.threelayer.pricing` (sorting and running sums)
from directions built by :meth:`ThreeLayerDictionary.directions` (closed-form cofactor normals
for ``d <= 4``). :func:`independent_max_score` recomputes it by a different code path that
shares only the dictionary's subset sequence:

* its own equilibration and generator vectors (samples, differences, basis vectors);
* a normal per subset from the SVD null space of the row-normalized generators, with the
  inverse condition number classified by the thresholds of :mod:`wedgenet.geometry`;
* plain numpy, explicit columns: for every threshold sample the ``up`` and ``down`` columns
  of Theorem 12 as an ``n x n`` matrix per direction; for Theorem 13 the ReLU columns
  ``relu(t'_i - t'_m)`` and ``relu(t'_m - t'_i)`` explicitly, and the ramps from the
  identity ``ramp = relu(t'_j0 - t') - relu(t'_l - t')`` (for ``t'_l < t'_j0``): the largest
  ramp score is the largest minus the smallest ReLU score (no sorting, no running
  extremes).

Cost: ``O(n_subsets * n^2)`` (a few ``n^2`` entries per subset), against
``O(n_subsets * n log n)`` for the scan.
"""

from __future__ import annotations

import time

import numpy as np
from numpy.typing import NDArray

from wedgenet.certificate import IndependentCheck
from wedgenet.geometry import DEPENDENT_TOL, INDEPENDENT_TOL, one_blas_thread
from wedgenet.interrupt import checkpoint
from wedgenet.threelayer.dictionary import ThreeLayerDictionary

FloatArray = NDArray[np.float64]

#: Re-checks that would form more than this many entries (``4 n^2`` per subset) are not run
#: (and the result is not certified).
RECHECK_MAX_ENTRIES = 8_000_000_000


def recheck_entries(dictionary: ThreeLayerDictionary) -> int:
    """Entries the re-check forms: ``4 n^2`` per generator subset."""
    return 4 * dictionary.n_samples**2 * dictionary.n_subsets


def recheck_max_columns(dictionary: ThreeLayerDictionary) -> int:
    """The largest dictionary (in columns, :attr:`ThreeLayerDictionary.size`) whose re-check
    stays within :data:`RECHECK_MAX_ENTRIES`, for :func:`wedgenet.certificate.certify`."""
    n = dictionary.n_samples
    per_subset_columns = 4 * n * (n if dictionary.bias else 1)
    return int(RECHECK_MAX_ENTRIES // (4 * n * n) * per_subset_columns)


class _Pool:
    """Generator vectors in equilibrated coordinates, written independently."""

    def __init__(self, D: ThreeLayerDictionary) -> None:
        X = np.asarray(D.X, dtype=float)
        n, d = X.shape
        center = X.mean(axis=0) if D.bias else np.zeros(d)
        Xc = X - center
        if D.bias:
            Xc[:, X.max(axis=0) == X.min(axis=0)] = 0.0
        amax = np.abs(Xc).max(axis=0)
        unit = np.where(amax > 0, amax, 1.0)
        rms = amax * np.sqrt(np.mean((Xc / unit) ** 2, axis=0))
        self.scale = np.where(rms > 0, rms, 1.0)
        Z = Xc / self.scale
        rows = [] if D.bias else [Z[i] for i in range(n)]
        rows += [Z[i] - Z[j] for i in range(n) for j in range(i + 1, n)]
        rows += list(np.eye(d))
        self.G = np.array(rows, dtype=float).reshape(-1, d)
        self.n_dirs_at = D.pool_size - d
        self.d = d

    def normals(self, subsets: NDArray[np.int64]) -> tuple[FloatArray, int]:
        """Unit-l1 original ``w`` of the non-dependent subsets; count of undecided ones."""
        B, k = subsets.shape
        d = self.d
        if k == 0:
            return np.ones((B, 1)), 0
        G = self.G[subsets]
        norms = np.linalg.norm(G, axis=2, keepdims=True)
        Gn = G / np.where(norms > 0, norms, 1.0)
        _, s, vt = np.linalg.svd(Gn, full_matrices=True)
        H = vt[:, d - 1, :]
        rc = s[:, -1] / np.where(s[:, 0] > 0, s[:, 0], 1.0)
        rc[np.any(norms[:, :, 0] == 0, axis=1)] = 0.0
        rows, cols = np.nonzero(subsets >= self.n_dirs_at)
        H[rows, subsets[rows, cols] - self.n_dirs_at] = 0.0
        undecided = int(np.count_nonzero((rc > DEPENDENT_TOL) & (rc < INDEPENDENT_TOL)))
        w = H[rc > DEPENDENT_TOL] / self.scale
        wn = np.abs(w).sum(axis=1)
        ok = np.isfinite(wn) & (wn > 0)
        return w[ok] / wn[ok, None], undecided


def _block_max(T: FloatArray, v: FloatArray, bias: bool) -> float:
    """Maximum |score| over every column of the directions with values ``T`` (B, n), both
    orientations."""
    best = 0.0
    if not bias:
        for sgn in (1.0, -1.0):
            U = np.maximum(sgn * T, 0.0)
            Dm = U[:, None, :] - U[:, :, None]  # [b, j0, i] = u_i - u_j0
            up = np.maximum(Dm, 0.0) @ v
            down = np.maximum(-Dm, 0.0) @ v
            best = max(best, float(np.abs(up).max()), float(np.abs(down).max()))
        return best
    Dm = T[:, None, :] - T[:, :, None]  # [b, m, i] = t_i - t_m
    A = np.maximum(Dm, 0.0) @ v  # relu(t - t_m): orientation +1
    R = np.maximum(-Dm, 0.0) @ v  # relu(t_m - t): orientation -1
    best = max(float(np.abs(A).max()), float(np.abs(R).max()))
    # ramps (relu(t'_j0 - t') - relu(t'_l - t') for t'_l < t'_j0): orientation +1 scores
    # R(j0) - R(l), orientation -1 scores A(j0) - A(l); the largest |difference| over all
    # pairs is max - min (a pair with t_l = t_j0 has equal values, a zero difference)
    for S in (R, A):
        best = max(best, float(np.max(S.max(axis=1) - S.min(axis=1))))
    return best


def independent_max_score(
    dictionary: ThreeLayerDictionary, V: FloatArray, *, chunk_size: int = 8192,
    block_entries: int = 2**19,
) -> IndependentCheck:
    """Re-enumerate ``dictionary`` and score every column by an independent code path.

    Parameters
    ----------
    dictionary : ThreeLayerDictionary
    V : ndarray of shape (n,) or (n, 1)
    chunk_size : int
        Subsets per chunk (one batched SVD each).
    block_entries : int
        Directions are scored ``max(1, block_entries // n^2)`` at a time.

    Returns
    -------
    IndependentCheck
        ``n_columns`` counts the columns of the dictionary's family (before merging).
    """
    t0 = time.perf_counter()
    X = np.asarray(dictionary.X, dtype=float)
    n = X.shape[0]
    v = np.asarray(V, dtype=float).reshape(n)
    pool = _Pool(dictionary)
    block = max(1, int(block_entries) // max(n * n, 1))
    best = 0.0
    n_sub = n_und = n_dir = 0
    with one_blas_thread():
        for subs in dictionary.iter_subsets(chunk_size):
            checkpoint("re-checking the certificate")
            n_sub += subs.shape[0]
            W, und = pool.normals(subs)
            n_und += und
            n_dir += W.shape[0]
            for i in range(0, W.shape[0], block):
                T = W[i : i + block] @ X.T
                best = max(best, _block_max(T, v, dictionary.bias))
    per = 4 * n * (n if dictionary.bias else 1)
    return IndependentCheck(
        max_score=best,
        n_columns=n_dir * per,
        n_undecided=n_und,
        n_subsets=n_sub,
        seconds=time.perf_counter() - t0,
    )


__all__ = [
    "RECHECK_MAX_ENTRIES",
    "independent_max_score",
    "recheck_entries",
    "recheck_max_columns",
]
