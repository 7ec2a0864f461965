"""Polishing one layer: every neuron replaced by the hyperplane through its closest samples
(their generalized cross product), in the working coordinates of the wedge dictionary."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from wedgenet.dictionary import WedgeDictionary
from wedgenet.exceptions import WedgeNetError
from wedgenet.geometry import n_workers, null_vectors, one_blas_thread, parallel_blocks
from wedgenet.network import IndexSet

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]
Criterion = Literal["residual", "distance"]

#: A chosen sample whose component orthogonal to the previously chosen ones is below this
#: fraction of its norm (Householder ``|R_ii| / ||g_i||``) is treated as dependent and
#: replaced by the next closest sample.
POLISH_DEGENERACY_TOL = 1e-9


@dataclass
class LayerPolish:
    """The polished neurons of one layer (output of :func:`polish_layer`).

    Attributes
    ----------
    normals : ndarray of shape (m, d + 1)
        Polished ``(w, b)`` with ``||w||_p = 1`` in the layer input's coordinates (``b = 0``
        without bias); rows of neurons that could not be polished are NaN.
    samples : ndarray of shape (m, r - 1)
        Rows of the layer input the polished hyperplane passes through, ascending by
        ``row_ids`` (``-1`` for neurons that could not be polished).
    row_ids : ndarray of shape (m, r - 1)
        ``samples`` mapped through ``row_ids`` (the dataset's row numbers).
    signs : ndarray of shape (m,)
        Orientation relative to ``cross`` of the generators in ascending ``row_ids`` order
        (the :class:`IndexSet` convention), in the working coordinates.
    residual : ndarray of shape (m,)
        ``max_i |g_i . h| / (||g_i|| ||h||)`` over the chosen samples (original coordinates).
    angle_deg, weight_angle_deg : ndarray of shape (m,)
        Angle between the original and the polished neuron as homogeneous normals
        ``(w, b)``, and between the weight vectors ``w`` alone.
    ok : ndarray of bool, shape (m,)
        False for neurons that were not polished (zero weights on the data's span).
    dim : int
        ``r``: dimension of the (lifted) working space; each neuron passes through ``r - 1``
        samples.
    n_fallback : int
        Neurons whose ``r - 1`` closest samples were dependent and needed the greedy
        replacement.
    """

    normals: FloatArray
    samples: IntArray
    row_ids: IntArray
    signs: IntArray
    residual: FloatArray
    angle_deg: FloatArray
    weight_angle_deg: FloatArray
    ok: BoolArray
    dim: int
    n_fallback: int
    time: float = 0.0

    def index_set(self, j: int) -> IndexSet | None:
        if not self.ok[j]:
            return None
        return IndexSet(samples=tuple(int(i) for i in self.row_ids[j]), sign=int(self.signs[j]))


@dataclass
class _Coords:
    """Working coordinates of a layer input (those of :class:`WedgeDictionary` with
    ``p = 2``: equilibrated, reduced to the data's span) and the samples' lifted norms in
    the original units (the residual criterion)."""

    space: WedgeDictionary
    lifted_norms: FloatArray

    @property
    def points(self) -> FloatArray:
        return self.space.generators_


def _coordinates(A: FloatArray, bias: bool) -> _Coords:
    with one_blas_thread():
        space = WedgeDictionary(A, p=2, bias=bias, source="given", index_sets=[])
    lifted = np.sqrt(np.einsum("ij,ij->i", A, A) + (1.0 if bias else 0.0))
    return _Coords(space, lifted)


def _candidate_order(
    coords: _Coords, H: FloatArray, K: int, criterion: Criterion
) -> IntArray:
    """For each neuron the ``K`` samples of smallest score, sorted (ties by row)."""
    G = coords.points
    n = G.shape[0]
    m = H.shape[0]
    inv = None if criterion == "distance" else 1.0 / np.where(
        coords.lifted_norms > 0, coords.lifted_norms, 1.0
    )
    block = max(1, min(m, 4_000_000 // max(n, 1)))

    def run(a: int, b: int) -> IntArray:
        S = H[a:b] @ G.T  # (B, n)
        np.abs(S, out=S)
        if inv is not None:
            S *= inv
        if K < n:
            part = np.argpartition(S, K - 1, axis=1)[:, :K]
            vals = np.take_along_axis(S, part, axis=1)
            o = np.lexsort((part, vals), axis=1)
            return np.take_along_axis(part, o, axis=1)
        return np.argsort(S, axis=1, kind="stable")

    with one_blas_thread():
        parts = parallel_blocks(run, m, max(1, min(block, -(-m // n_workers(m, 1)))))
    return np.concatenate(parts, axis=0) if parts else np.zeros((0, K), dtype=np.int64)


def _greedy_select(
    coords: _Coords, H: FloatArray, k: int, criterion: Criterion
) -> tuple[IntArray, FloatArray, BoolArray, int]:
    """Choose ``k`` independent samples per neuron, closest first.

    Returns the chosen rows (m, k) in distance order, the working null vectors (m, D), a
    mask of neurons that got ``k`` independent samples, and the number of neurons whose
    ``k`` closest samples were dependent (greedy replacement needed).
    """
    G = coords.points
    n, D = G.shape
    m = H.shape[0]
    sel = np.full((m, k), -1, dtype=np.int64)
    Q = np.full((m, D), np.nan)
    ok = np.zeros(m, dtype=bool)
    if m == 0:
        return sel, Q, ok, 0
    if k == 0:
        return sel, np.ones((m, D)), np.ones(m, dtype=bool), 0
    K = min(n, k + max(4, k // 8))
    order = _candidate_order(coords, H, K, criterion)
    width = np.full(m, K)
    pos = np.broadcast_to(np.arange(k), (m, k)).copy()
    todo = np.arange(m)
    n_fallback = 0
    for it in range(2 * n + 4):
        if todo.size == 0:
            break
        idx = np.take_along_axis(order[todo], pos[todo], axis=1)  # (t, k)
        q, ratio = null_vectors(G[idx])
        bad = ratio <= POLISH_DEGENERACY_TOL
        good = ~bad.any(axis=1)
        done = todo[good]
        sel[done], Q[done], ok[done] = idx[good], q[good], True
        rows_bad = todo[~good]
        if it == 0:
            n_fallback = int(rows_bad.size)
        if rows_bad.size == 0:
            break
        bad_b = bad[~good]
        nxt: list[int] = []
        restart: list[int] = []
        for i, r in enumerate(rows_bad):  # bookkeeping only; the linear algebra is batched
            keep = pos[r][~bad_b[i]]
            start = int(pos[r][-1]) + 1
            need = k - keep.size
            if start + need > width[r]:
                if width[r] < n:
                    restart.append(int(r))
                continue  # every sample tried: the neuron stays unpolished
            pos[r] = np.concatenate([keep, np.arange(start, start + need)])
            nxt.append(int(r))
        if restart:
            rr = np.array(restart, dtype=np.int64)
            if order.shape[1] < n:
                pad = np.full((m, n - order.shape[1]), -1, dtype=np.int64)
                order = np.concatenate([order, pad], axis=1)
            # Start these neurons over on the full, stably sorted order of all samples.
            order[rr] = _candidate_order(coords, H[rr], n, criterion)
            width[rr] = n
            pos[rr] = np.arange(k)
            nxt.extend(restart)
        todo = np.array(nxt, dtype=np.int64)
    return sel, Q, ok, n_fallback


def _angle_deg(a: FloatArray, b: FloatArray) -> FloatArray:
    """Row-wise angles in degrees, ``2 atan2(||a^ - b^||, ||a^ + b^||)`` of the unit rows:
    accurate near 0 and 180 degrees, where ``arccos`` of the cosine loses half the digits."""
    na = np.linalg.norm(a, axis=1, keepdims=True)
    nb = np.linalg.norm(b, axis=1, keepdims=True)
    ua = a / np.where(na > 0, na, 1.0)
    ub = b / np.where(nb > 0, nb, 1.0)
    diff = np.linalg.norm(ua - ub, axis=1)
    summ = np.linalg.norm(ua + ub, axis=1)
    return np.degrees(2.0 * np.arctan2(diff, summ))


def polish_layer(
    A: Any,
    W: Any,
    b: Any | None = None,
    *,
    p: int = 1,
    bias: bool = True,
    criterion: Criterion = "residual",
    row_ids: Any | None = None,
) -> LayerPolish:
    """Replace every neuron of a layer by the cross product of its closest samples.

    Parameters
    ----------
    A : array-like of shape (n, d)
        The layer's input (``X`` for the first layer, activations for deeper ones).
    W : array-like of shape (d, m)
        Incoming weights, (in, out) layout.
    b : array-like of shape (m,), optional
        Biases (required when ``bias``; ignored otherwise).
    p : {1, 2}
        Norm of the normalization ``||w||_p = 1``.
    bias : bool
        Lift the samples to ``[x, 1]`` (biased neurons).
    criterion : {"residual", "distance"}
        Rank samples by ``|g_i . h| / ||g_i||`` (default) or ``|g_i . h|`` (Euclidean
        distance to the hyperplane, up to the neuron's scale).
    row_ids : array-like of int, shape (n,), optional
        Dataset row numbers of the rows of ``A`` (default ``0..n-1``), for index sets.

    Returns
    -------
    LayerPolish

    Notes
    -----
    Cost ``O(m n d)`` for the scores (BLAS) plus ``O(m r^3)`` for one batched QR over all
    neurons; both run on all cores.
    """
    t0 = time.perf_counter()
    A = np.ascontiguousarray(np.asarray(A, dtype=float))
    W = np.asarray(W, dtype=float)
    if A.ndim != 2 or W.ndim != 2 or W.shape[0] != A.shape[1]:
        raise WedgeNetError(f"layer input {A.shape} and weights {W.shape} do not match")
    if p not in (1, 2):
        raise WedgeNetError(f"p must be 1 or 2, got {p!r}")
    if criterion not in ("residual", "distance"):
        raise WedgeNetError(f"criterion must be 'residual' or 'distance', got {criterion!r}")
    n, d = A.shape
    m = W.shape[1]
    bvec = np.zeros(m) if (b is None or not bias) else np.asarray(b, dtype=float).reshape(m)
    ids = np.arange(n) if row_ids is None else np.asarray(row_ids, dtype=np.int64).reshape(n)
    coords = _coordinates(A, bias)
    D = coords.space.dim_
    k = D - 1
    Hw = coords.space.to_working(np.concatenate([W.T, bvec[:, None]], axis=1))  # (m, D)
    u = Hw[:, :-1] if bias else Hw
    wnorm = np.linalg.norm(W, axis=0)
    live = np.linalg.norm(u, axis=1) > 1e-12 * np.where(wnorm > 0, wnorm, 1.0)
    live &= wnorm > 0
    sel_l, Q_l, ok_l, n_fb = _greedy_select(coords, Hw[live], k, criterion)
    sel = np.full((m, k), -1, dtype=np.int64)
    Qw = np.full((m, D), np.nan)
    ok = np.zeros(m, dtype=bool)
    sel[live], Qw[live], ok[live] = sel_l, Q_l, ok_l
    # Sign: aligned with the original neuron.
    align = np.sign(np.einsum("ij,ij->i", np.nan_to_num(Qw), Hw))
    align[align == 0] = 1.0
    Hpol = Qw * align[:, None]
    # Canonical order of the index set (ascending dataset rows) and orientation of cross.
    okr = np.flatnonzero(ok)
    signs = np.zeros(m, dtype=np.int64)
    if okr.size:
        o = np.argsort(ids[sel[okr]], axis=1, kind="stable")
        sel[okr] = np.take_along_axis(sel[okr], o, axis=1)
        if k:
            Gs = coords.points[sel[okr]]  # (t, k, D)

            def run(a: int, c: int) -> FloatArray:
                M = np.concatenate([Hpol[okr[a:c], None, :], Gs[a:c]], axis=1)
                return np.linalg.slogdet(M)[0]

            with one_blas_thread():
                w = n_workers(okr.size, 8)
                det_sign = np.concatenate(parallel_blocks(run, okr.size, -(-okr.size // w), w))
            det_sign[det_sign == 0] = 1.0
            signs[okr] = det_sign.astype(np.int64)
        else:
            signs[okr] = 1
    normals = np.full((m, d + 1), np.nan)
    if okr.size:
        orig = coords.space.to_original(Hpol[okr])
        pn = np.linalg.norm(orig[:, :d], ord=p, axis=1)
        normals[okr] = orig / pn[:, None]
    # Residuals in original coordinates (chunked gather).
    residual = np.full(m, np.nan)
    if okr.size:
        if k == 0:
            residual[okr] = 0.0
        else:
            hn = normals[okr]
            hnorm = np.linalg.norm(hn, axis=1)

            def res(a: int, c: int) -> FloatArray:
                rows = sel[okr[a:c]]  # (B, k)
                P = A[rows]  # (B, k, d)
                num = np.einsum("bkd,bd->bk", P, hn[a:c, :d])
                if bias:
                    num += hn[a:c, d][:, None]
                gn = np.sqrt(np.einsum("bkd,bkd->bk", P, P) + (1.0 if bias else 0.0))
                den = gn * hnorm[a:c, None]
                return np.max(np.abs(num) / np.where(den > 0, den, 1.0), axis=1)

            residual[okr] = np.concatenate(parallel_blocks(res, okr.size, 256))
    h_orig = np.concatenate([W.T, bvec[:, None]], axis=1)
    angle = np.full(m, np.nan)
    wangle = np.full(m, np.nan)
    if okr.size:
        angle[okr] = _angle_deg(h_orig[okr], normals[okr])
        wangle[okr] = _angle_deg(h_orig[okr, :d], normals[okr, :d])
    row_sel = np.where(sel >= 0, ids[np.clip(sel, 0, None)], -1)
    return LayerPolish(
        normals=normals, samples=sel, row_ids=row_sel, signs=signs, residual=residual,
        angle_deg=angle, weight_angle_deg=wangle, ok=ok, dim=D, n_fallback=n_fb,
        time=time.perf_counter() - t0,
    )


