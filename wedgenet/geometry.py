"""Batched geometric-algebra primitives (paper Sec. 2.2 and 6.1).

All routines act on a batch of ``B`` subsets at once. A subset of ``D - 1`` generators in
``R^D`` is an array of shape ``(B, D - 1, D)`` (generators as rows).

Conventions follow Definition 4 of the paper: the generalized cross product of
``g_1, ..., g_{D-1}`` is the vector ``w`` with

    w . x = det[x, g_1, ..., g_{D-1}]      (generators as columns)

so that for ``D = 2`` it is the clockwise rotation ``(a, b) -> (b, -a)`` and for ``D = 3`` the
usual cross product ``g_1 x g_2``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from threadpoolctl import threadpool_limits

FloatArray = NDArray[np.float64]

#: Subsets whose normalized volume ``||cross|| / prod ||g_i||`` is below this are treated as
#: linearly dependent (zero normal).
DEGENERACY_TOL = 1e-10
#: Below this normalized volume the closed-form cofactor result is recomputed by an SVD.
REFINE_TOL = 1e-5


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
        a, b, c = G[:, 0, :], G[:, 1, :], G[:, 2, :]
        out = np.empty((B, 4))
        # w_i = (-1)^i * det(minor without column i) of the rows [a; b; c], with the sign
        # fixed so that w . x = det[x; a; b; c].
        for i in range(4):
            cols = [j for j in range(4) if j != i]
            m = np.stack([a[:, cols], b[:, cols], c[:, cols]], axis=1)
            det3 = (
                m[:, 0, 0] * (m[:, 1, 1] * m[:, 2, 2] - m[:, 1, 2] * m[:, 2, 1])
                - m[:, 0, 1] * (m[:, 1, 0] * m[:, 2, 2] - m[:, 1, 2] * m[:, 2, 0])
                + m[:, 0, 2] * (m[:, 1, 0] * m[:, 2, 1] - m[:, 1, 1] * m[:, 2, 0])
            )
            out[:, i] = (-1) ** i * det3
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
    with threadpool_limits(1):
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
