"""Batched geometric-algebra primitives (paper Sec. 2.2 and 6.1).

All routines act on a batch of ``B`` subsets at once. A subset of ``D - 1`` generators in
``R^D`` is an array of shape ``(B, D - 1, D)`` (generators as rows).

Conventions follow Definition 4 of the paper: the generalized cross product of
``g_1, ..., g_{D-1}`` is the vector ``w`` with

    w . x = det[x, g_1, ..., g_{D-1}]      (generators as columns)

so that for ``D = 2`` it is the clockwise rotation ``(a, b) -> (b, -a)`` and for ``D = 3`` the
usual cross product ``g_1 x g_2``.

Deciding independence
---------------------
Whether ``D - 1`` generators are linearly independent is decided by a scale-free number, the
*inverse condition number* ``rcond = sigma_min / sigma_max`` of the generator matrix with its
rows normalized to unit length (:func:`subset_normals`, :func:`inverse_condition`). Callers
compute it in equilibrated coordinates (:func:`equilibrate`: centred for biased neurons,
every feature divided by its RMS), so that it does not change when a feature, or the whole
data set, is scaled by a positive factor or (biased neurons) translated. Two thresholds:

* ``rcond <= DEPENDENT_TOL`` (1e-12): dependent at rounding level, the subset is skipped.
  Equilibrated coordinates carry a relative error of a few ``eps`` per entry (centring and
  scaling are each correctly rounded; the rounding of the mean is a common translation, which
  keeps dependent subsets dependent), and the SVD adds ``O(eps * k)``: an exactly dependent
  subset of up to 64 generators measures below ~3e-14, 30x under the threshold.
* ``rcond >= INDEPENDENT_TOL`` (1e-10): independent. By Weyl's inequality rounding of
  ~1e-14 cannot lift an exactly dependent subset this far.
* in between: *undecided*. Such a subset is kept when its normal is usable (a nearly
  degenerate but valid hyperplane is a legitimate neuron, and pricing extra neurons never
  invalidates a lower bound) and counted, so that a solve does not claim a certificate that
  depends on the call. Random data practically never fall there (for three random points
  in the plane the probability is of order 1e-10 per subset).

The old test ``||cross|| / prod ||g_i|| <= DEGENERACY_TOL`` (normalized volume) is not used for
decisions any more: the volume of ``k`` well independent but correlated unit vectors is the
product of ``k`` singular values and falls below any fixed threshold when ``k`` is large
(30 standardized features), while ``rcond`` does not.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from numpy.typing import NDArray
from threadpoolctl import ThreadpoolController

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

#: Normalized-volume threshold of the former degeneracy test; kept for external callers that
#: test :func:`normalized_volume`. The dictionary decides by :data:`DEPENDENT_TOL` instead.
DEGENERACY_TOL = 1e-10
#: Below this normalized volume the closed-form cofactor result is recomputed by an SVD.
REFINE_TOL = 1e-5
#: ``rcond`` at or below this: linearly dependent at rounding level (skipped).
DEPENDENT_TOL = 1e-12
#: ``rcond`` at or above this: independent; in between a subset is *undecided*.
INDEPENDENT_TOL = 1e-10
#: Status codes returned by :func:`classify`.
DEPENDENT, UNDECIDED, INDEPENDENT = 0, 1, 2


def _cofactor_cross(G: FloatArray) -> FloatArray:
    """Closed-form cross products for ``D <= 4`` by cofactor expansion."""
    B, k, D = G.shape
    if D == 1:
        return np.ones((B, 1))
    if D == 2:
        return np.stack([G[:, 0, 1], -G[:, 0, 0]], axis=1)
    if D == 3:
        return np.cross(G[:, 0, :], G[:, 1, :])
    if D == 4:
        a0, a1, a2, a3 = (G[:, 0, j] for j in range(4))
        b0, b1, b2, b3 = (G[:, 1, j] for j in range(4))
        c0, c1, c2, c3 = (G[:, 2, j] for j in range(4))
        # 2 x 2 minors of the rows [b; c]; w_i = (-1)^i * det(minor of [a; b; c] without
        # column i), so that w . x = det[x; a; b; c].
        m01, m02, m03 = b0 * c1 - b1 * c0, b0 * c2 - b2 * c0, b0 * c3 - b3 * c0
        m12, m13, m23 = b1 * c2 - b2 * c1, b1 * c3 - b3 * c1, b2 * c3 - b3 * c2
        out = np.empty((B, 4))
        out[:, 0] = a1 * m23 - a2 * m13 + a3 * m12
        out[:, 1] = -(a0 * m23 - a2 * m03 + a3 * m02)
        out[:, 2] = a0 * m13 - a1 * m03 + a3 * m01
        out[:, 3] = -(a0 * m12 - a1 * m02 + a2 * m01)
        return out
    raise ValueError("closed forms only for D <= 4")


def _svd_cross(G: FloatArray) -> FloatArray:
    """Cross products by SVD (stable for any ``D``); magnitude is the ``(D-1)``-volume."""
    B, k, D = G.shape
    if B == 0:
        return np.zeros((0, D))
    # Null vector of the (D-1) x D matrix of generators: last right singular vector. Many
    # tiny LAPACK calls: multithreaded BLAS only adds overhead (and is pathological on a
    # loaded machine), so run them on one thread.
    with one_blas_thread():
        _, s, vt = np.linalg.svd(G, full_matrices=True)
    q = vt[:, -1, :]
    # Magnitude: (D-1)-volume = product of singular values; sign: det[q, g_1, ..., g_{D-1}].
    vol = np.prod(s, axis=1)
    M = np.concatenate([q[:, None, :], G], axis=1)  # rows q, g_1, ...
    sign = np.sign(np.linalg.det(M))
    sign[sign == 0] = 1.0
    return q * (sign * vol)[:, None]


def cross(G: FloatArray, *, refine: bool = True) -> FloatArray:
    """Generalized cross product of ``D - 1`` vectors in ``R^D``, batched.

    Parameters
    ----------
    G : ndarray of shape (B, D - 1, D) or (D - 1, D)
        Generators, as rows.
    refine : bool, default True
        Recompute nearly degenerate subsets (normalized volume below ``REFINE_TOL``) by an
        SVD instead of trusting the cofactor closed form, which cancels there.

    Returns
    -------
    ndarray of shape (B, D) or (D,)
        ``w`` with ``w . x = det[x, g_1, ..., g_{D-1}]``; zero (up to rounding) iff the
        generators are linearly dependent. ``||w||_2`` is the volume of the parallelotope
        ``P(g_1, ..., g_{D-1})``.

    Examples
    --------
    >>> cross(np.array([[1.0, 1.0]]))        # Sec. 3.4: *(e1 + e2) = e1 - e2
    array([ 1., -1.])
    """
    G = np.asarray(G, dtype=float)
    single = G.ndim == 2
    if single:
        G = G[None]
    if G.ndim != 3 or G.shape[1] != G.shape[2] - 1:
        raise ValueError(f"expected generators of shape (B, D-1, D), got {G.shape}")
    D = G.shape[2]
    if D <= 4:
        W = _cofactor_cross(G)
        if refine and G.shape[0]:
            scale = np.prod(np.linalg.norm(G, axis=2), axis=1)
            ratio = np.linalg.norm(W, axis=1) / np.where(scale > 0, scale, 1.0)
            bad = (ratio < REFINE_TOL) & (scale > 0)
            if np.any(bad):
                W[bad] = _svd_cross(G[bad])
    else:
        W = _svd_cross(G)
    return W[0] if single else W


def normalized_volume(G: FloatArray, W: FloatArray | None = None) -> FloatArray:
    """``Vol(P(g_1..g_{D-1})) / prod ||g_i||`` in [0, 1]: 0 for dependent generators."""
    G = np.asarray(G, dtype=float)
    if W is None:
        W = cross(G)
    scale = np.prod(np.linalg.norm(G, axis=-1), axis=-1)
    return np.linalg.norm(W, axis=-1) / np.where(scale > 0, scale, 1.0)


def parallelotope_volume(x: FloatArray, G: FloatArray) -> FloatArray:
    """Signed D-volume ``det[x, g_1, ..., g_{D-1}]`` of ``P(x, g_1, ..., g_{D-1})``.

    Parameters
    ----------
    x : ndarray of shape (n, D)
        Query points.
    G : ndarray of shape (B, D - 1, D)
        Generator subsets.

    Returns
    -------
    ndarray of shape (n, B)
    """
    return np.asarray(x, dtype=float) @ cross(G).T


def simplex_volume(x: FloatArray, vertices: FloatArray) -> FloatArray:
    """Signed volume of the simplex ``Delta(x, v_1, ..., v_D)`` in ``R^D``.

    ``vertices`` has shape (B, D, D) (D vertices of dimension D per subset); the result,
    shape (n, B), is ``det[v_1 - x, ..., v_D - x] / D!`` up to the orientation convention
    ``det[x - v_D, v_1 - v_D, ..., v_{D-1} - v_D] / D!``.
    """
    x = np.asarray(x, dtype=float)
    V = np.asarray(vertices, dtype=float)
    D = V.shape[2]
    base = V[:, -1, :]  # (B, D)
    edges = V[:, :-1, :] - base[:, None, :]  # (B, D-1, D)
    w = cross(edges)  # (B, D)
    vol = x @ w.T - np.einsum("bd,bd->b", base, w)[None, :]
    return vol / float(np.prod(np.arange(1, D + 1)))


def distance_to_span(x: FloatArray, G: FloatArray) -> FloatArray:
    """Signed distance of points to ``Span(g_1, ..., g_{D-1})`` (a hyperplane through 0).

    Returns shape (n, B); NaN where the generators are dependent.
    """
    w = cross(G)
    norm = np.linalg.norm(w, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (np.asarray(x, dtype=float) @ w.T) / np.where(norm > 0, norm, np.nan)


def distance_to_affine_hull(x: FloatArray, P: FloatArray) -> FloatArray:
    """Signed distance of points in ``R^d`` to ``Aff(p_1, ..., p_d)``, batched.

    Parameters
    ----------
    x : ndarray of shape (n, d)
    P : ndarray of shape (B, d, d)
        ``d`` points per subset, as rows.

    Returns
    -------
    ndarray of shape (n, B)
        ``cross(p_1 - p_d, ..., p_{d-1} - p_d) . (x - p_d) / ||cross(...)||_2`` (Sec. 6.1);
        NaN where the points are affinely dependent.
    """
    x = np.asarray(x, dtype=float)
    P = np.asarray(P, dtype=float)
    base = P[:, -1, :]
    w = cross(P[:, :-1, :] - base[:, None, :])
    norm = np.linalg.norm(w, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        num = x @ w.T - np.einsum("bd,bd->b", base, w)[None, :]
        return num / np.where(norm > 0, norm, np.nan)


def lift(X: FloatArray) -> FloatArray:
    """Homogeneous coordinates ``[x, 1]`` of the rows of ``X``."""
    X = np.asarray(X, dtype=float)
    return np.concatenate([X, np.ones((X.shape[0], 1))], axis=1)


# --------------------------------------------------------------------------- decisions
def equilibrate(X: FloatArray, center: bool) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Equilibrated coordinates ``Z = (X - c) / s`` in which every decision is made.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    center : bool
        Subtract the mean (biased neurons: a translation is a linear map of the lifted
        coordinates that keeps the directions ``[e_k, 0]``). Without bias ``c = 0``.

    Returns
    -------
    Z : ndarray of shape (n, d)
        Every column has RMS 1, except constant columns (biased) or all-zero columns, which
        are exactly zero.
    c : ndarray of shape (d,)
        The centre (zeros when ``center`` is False).
    s : ndarray of shape (d,)
        The per-feature scales (1 for constant / all-zero columns), all > 0.

    Notes
    -----
    ``Z`` does not change (up to rounding) when a feature or the whole data set is scaled by a
    positive factor or, with ``center``, translated; the original lifted point ``[x, 1]`` is
    ``M^-1 [z, 1]`` with ``M = [[diag(1/s), -c/s], [0, 1]]``, ``det M > 0``, so hyperplane
    normals map back by ``h = M^T h_z`` (``w = w_z / s``, ``b = b_z - w . c``) with their
    orientation preserved.
    """
    X = np.asarray(X, dtype=float)
    n, d = X.shape
    c = X.mean(axis=0) if (center and n) else np.zeros(d)
    Z = X - c
    if center and n:
        Z[:, np.ptp(X, axis=0) == 0] = 0.0  # exactly constant features: exactly zero
    top = np.max(np.abs(Z), axis=0) if n else np.zeros(d)
    safe = np.where(top > 0, top, 1.0)
    s = top * np.sqrt(np.mean((Z / safe) ** 2, axis=0)) if n else np.zeros(d)
    s = np.where(s > 0, s, 1.0)
    return Z / s, c, s


def classify(rcond: FloatArray) -> IntArray:
    """:data:`DEPENDENT`, :data:`UNDECIDED` or :data:`INDEPENDENT` per inverse condition."""
    rc = np.nan_to_num(np.asarray(rcond, dtype=float), nan=0.0)
    out = np.full(rc.shape, UNDECIDED, dtype=np.int64)
    out[rc <= DEPENDENT_TOL] = DEPENDENT
    out[rc >= INDEPENDENT_TOL] = INDEPENDENT
    return out


@functools.cache
def _blas_controller() -> ThreadpoolController:
    return ThreadpoolController()


def one_blas_thread() -> contextlib.AbstractContextManager[object]:
    """Limit BLAS/LAPACK to one thread inside a ``with`` block.

    For batches of small LAPACK calls, where threads only add overhead. The libraries are
    looked up once per process (``threadpool_limits`` re-reads the process's memory map on
    every call, about 3 ms each, which dominated dictionary building at d = 64).
    """
    return _blas_controller().limit(limits=1, user_api="blas")


def n_workers(n_items: int, min_per_worker: int = 16) -> int:
    """Threads for ``n_items`` independent items: the CPUs this process may use (at most 16),
    with at least ``min_per_worker`` items each."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    return int(max(1, min(cpus, 16, n_items // max(min_per_worker, 1))))


def parallel_blocks(
    fn: Callable[[int, int], Any], n: int, block: int, workers: int | None = None
) -> list[Any]:
    """``[fn(start, stop) for blocks of size block]`` on a thread pool (numpy drops the GIL).

    Callers limit BLAS to one thread (:func:`one_blas_thread`) around batched small LAPACK
    calls: the pool parallelizes, OpenBLAS's own threads would only compete.
    """
    ranges = [(s, min(n, s + block)) for s in range(0, n, max(block, 1))]
    if not ranges:
        return []
    w = n_workers(len(ranges), 1) if workers is None else workers
    if w <= 1 or len(ranges) == 1:
        return [fn(a, b) for a, b in ranges]
    with ThreadPoolExecutor(max_workers=w) as ex:
        return list(ex.map(lambda ab: fn(*ab), ranges))


def null_vectors(Gs: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Batched cross products with independence ratios, for generator sets ``(B, k, D)``.

    Householder QR of each ``G^T`` (``k = D - 1``): the last column of ``Q`` spans the null
    space (the cross product up to scale and sign); the ratio ``|R_ii| / ||g_i||`` is the
    part of ``g_i`` independent of ``g_1..g_{i-1}``, so a small ratio names the generator
    that made the set dependent. Runs on all cores with one BLAS thread each.
    """
    B, k, D = Gs.shape
    if k == 0:
        return np.ones((B, D)), np.ones((B, 0))

    def run(a: int, b: int) -> tuple[FloatArray, FloatArray]:
        M = Gs[a:b].transpose(0, 2, 1)  # (b, D, k)
        Q, R = np.linalg.qr(M, mode="complete")
        diag = np.abs(np.diagonal(R[:, :k, :k], axis1=1, axis2=2))
        norms = np.linalg.norm(Gs[a:b], axis=2)
        ratio = np.where(norms > 0, diag / np.where(norms > 0, norms, 1.0), 0.0)
        return np.ascontiguousarray(Q[:, :, -1]), ratio

    with one_blas_thread():
        w = n_workers(B, 8)
        parts = parallel_blocks(run, B, -(-B // w), workers=w)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _few_threads(entries: int) -> contextlib.AbstractContextManager[object]:
    """One BLAS thread for batches of small LAPACK calls: threads only add overhead there
    (measured 14x slower with 2 OpenBLAS threads for 300 SVDs of 61 x 62 on a loaded
    2-core machine). Nothing for a handful of entries, where switching the pool costs more.
    """
    return one_blas_thread() if entries >= 2048 else contextlib.nullcontext()


def _row_normalize(G: FloatArray) -> tuple[FloatArray, NDArray[np.bool_]]:
    norms = np.linalg.norm(G, axis=-1)
    zero = np.any(norms == 0, axis=-1) if G.shape[-2] else np.zeros(G.shape[:-2], dtype=bool)
    return G / np.where(norms > 0, norms, 1.0)[..., None], zero


def inverse_condition(G: FloatArray) -> FloatArray:
    """``sigma_min / sigma_max`` of each row-normalized matrix of a batch (B, m, D), m <= D.

    Zero rows give 0; an empty matrix (``m = 0``) gives 1.
    """
    G = np.asarray(G, dtype=float)
    B, m, _ = G.shape
    if m == 0 or B == 0:
        return np.ones(B)
    Gh, zero = _row_normalize(G)
    with _few_threads(Gh.size):
        s = np.linalg.svd(Gh, compute_uv=False)
    rc = s[:, -1] / np.where(s[:, 0] > 0, s[:, 0], 1.0)
    rc[zero] = 0.0
    return rc


def _svd_unit_normals(Gh: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Unit null vectors oriented like :func:`cross`, and ``rcond``, of row-unit subsets."""
    B, k, D = Gh.shape
    if B == 0:
        return np.zeros((0, D)), np.zeros(0)
    with _few_threads(Gh.size):
        _, s, vt = np.linalg.svd(Gh, full_matrices=True)
        q = vt[:, -1, :]
        # Orientation: sign of det[q; g_1; ...; g_{D-1}] (slogdet: no underflow for large D).
        sign = np.linalg.slogdet(np.concatenate([q[:, None, :], Gh], axis=1))[0]
    sign[sign == 0] = 1.0
    rc = s[:, -1] / np.where(s[:, 0] > 0, s[:, 0], 1.0)
    return q * sign[:, None], rc


def subset_normals(G: FloatArray, *, unit_rows: bool = False) -> tuple[FloatArray, FloatArray]:
    """Unit normals and inverse condition numbers of batched generator subsets.

    Parameters
    ----------
    G : ndarray of shape (B, D - 1, D)
        Generators as rows (in equilibrated coordinates for scale-free decisions); their
        lengths do not matter.
    unit_rows : bool, default False
        The caller guarantees rows of length 1 or 0 (skips the normalization; a zero row
        still gives ``rcond = 0``).

    Returns
    -------
    normals : ndarray of shape (B, D)
        Unit vectors with the orientation of ``cross(G)``; meaningless where ``rcond`` is
        (near) zero.
    rcond : ndarray of shape (B,)
        ``sigma_min / sigma_max`` of the row-normalized generators. For ``D <= 4`` it is
        computed (by an SVD) only where the normalized volume ``nu`` is below
        :data:`REFINE_TOL`; elsewhere the closed-form cross product is used and ``rcond``
        is reported as the lower bound ``nu / k^(k/2)`` (>= 1.9e-6, far above every
        threshold), so that :func:`classify` decides exactly as with the true value.

    Notes
    -----
    With unit rows ``nu = prod sigma_i <= sigma_min sigma_max^(k-1)`` and ``sigma_max <=
    sqrt(k)``, hence ``sigma_min / sigma_max >= nu / k^(k/2)``.
    """
    G = np.asarray(G, dtype=float)
    if G.ndim != 3 or G.shape[1] != G.shape[2] - 1:
        raise ValueError(f"expected generators of shape (B, D-1, D), got {G.shape}")
    B, k, D = G.shape
    if D == 1:
        return np.ones((B, 1)), np.ones(B)
    if unit_rows:
        Gh, zero = G, np.zeros(B, dtype=bool)  # zero rows: nu = 0, then sigma_min = 0
    else:
        Gh, zero = _row_normalize(G)
    if D <= 4:
        N = _cofactor_cross(Gh)
        nu = np.sqrt(np.einsum("ij,ij->i", N, N))
        rc = nu / float(k) ** (k / 2)
        N /= np.where(nu > 0, nu, 1.0)[:, None]
        refine = np.flatnonzero(nu < REFINE_TOL)
        if refine.size:
            N[refine], rc[refine] = _svd_unit_normals(Gh[refine])
    else:
        N, rc = _svd_unit_normals(Gh)
    rc[zero] = 0.0
    return N, rc
