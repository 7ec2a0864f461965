"""Polishing trained ReLU networks into interpretable ones (paper Sec. 4.1, docs/conventions.md
section 5).

Objective (docs/conventions.md section 2), summed loss, unregularized biases, for a two-layer
network ``f(x) = sum_j a_j relu(w_j . x + b_j) + c``:

    P(theta) = L(f(X), y) + (lam / 2) * sum_j ( ||w_j||_p^2 + ||a_j||_2^2 )

and, for a deeper MLP ``a_l = relu(a_{l-1} W_l + b_l)``, ``f = a_{L-1} W_L + b_L``, its
natural extension (each hidden neuron's incoming weights in the p-norm, each output row of
``W_L`` in the 2-norm; for ``p = 2`` plain weight decay ``(lam/2) sum_l ||W_l||_F^2``):

    P(theta) = L(f(X), y) + (lam / 2) * [ sum_{l < L} sum_j ||W_l[:, j]||_p^2
                                          + sum_j ||W_L[j, :]||_2^2 ]

Two-layer networks (:func:`polish`)
-----------------------------------
1. **Polish** (:func:`polish_layer`). Lift the samples to ``g_i = [x_i, 1]`` (bias) and let
   ``r`` be the rank of the lifted data (SVD; rank-deficient data are worked on in their
   ``r``-dimensional span, Lemma 23, with the coordinates of :class:`WedgeDictionary` for
   ``p = 2``). For every neuron ``h_j = (w_j, b_j)`` rank the samples by
   ``|g_i . h_j| / ||g_i||`` (``criterion="residual"``, the default) or by the distance
   ``|g_i . h_j|`` (``criterion="distance"``), take the ``r - 1`` closest, and replace the
   neuron by their generalized cross product, computed for all neurons at once by one
   batched Householder QR (the null vector of the ``(r - 1) x r`` generator matrix; the
   ``R`` diagonal detects dependent choices, which are replaced by the next closest samples,
   greedily in distance order). The sign is aligned with the original neuron
   (``h_new . h_old > 0``) and ``||w||_p = 1``.
2. **Refit** the output layer by the convex program over fixed unit-norm features
   ``k_j = relu(X w_j + b_j)``:

       min_{Z, t}  L(K Z + 1 t, y) + lam * sum_j ||Z_j||_2      (the Lasso for scalar output)

   with ``K`` the **union** of the original (unit-normalized) and the polished neurons
   (``refit="union"``, default), only the polished ones (``refit="polished"``: every
   neuron is then a closed form; the price in objective is reported) or only the original
   ones (``refit="original"``: no polishing, a baseline). Scalar output: the exact fast
   solvers of :func:`wedgenet.activeset.solve_single_output` (squared: active set; logistic:
   proximal Newton; hinge: a linear program). Squared loss with vector output, or where the
   active-set method misses the tolerance: coordinate descent (:func:`wedgenet.cd.lasso_cd`)
   and Newton on the support; other losses: cvxpy (CLARABEL), with column generation over
   the union when it is large. The relative duality gap of the refit is reported.
3. **Rebalance** (Sec. 9.12): column ``j`` with coefficient row ``Z_j`` becomes the neuron
   ``sqrt(||Z_j||) (w_j, b_j)`` with output weights ``Z_j / sqrt(||Z_j||)``, so the network's
   ``P`` equals the program's objective.

*Never worse* (union, two layers): the input network is a feasible point of the union
program. With ``z_j = ||w_j||_p a_j``, ``t = c`` it has the same outputs and objective
``L + lam sum_j ||w_j||_p ||a_j|| <= P(theta)`` (AM-GM; equality when ``theta`` is already
balanced; neurons with ``w_j = 0`` are constants and move into ``t``). The solver's point is
compared with that feasible point and the better one is kept, so
``objective_after <= objective_rebalanced <= objective_before`` holds exactly, not only up
to the solver's tolerance.

Deep MLPs (3+ layers), Thm 10/11 structure
------------------------------------------
Layer by layer, as in the proofs of Thm 10/11: the polished path starts at ``F_0 = X``;
for each hidden layer ``l``: polish that layer's neurons against ``F_{l-1}`` (for ``l = 1``
the given ``W_1``; later the refit weights below), ``F_l = relu(F_{l-1} P_l + e_l)`` with
unit-norm polished neurons; if layer ``l + 1`` is hidden, refit its weights on ``F_l`` by
the group Lasso (squared loss, strength ``lam``, one group per polished neuron) that
reproduces the *original* pre-activations ``a_l W_{l+1} + b_{l+1}`` of the given network
(the matching problem (81)/(83) of the proofs with its equality relaxed to a penalty). The
last layer is refit by the convex program above over the union of the original network's
last hidden layer (on the original path) and the polished path's last layer. The result is
one MLP whose hidden layers hold both paths side by side (block-diagonal weights); neurons
that no longer reach the output are pruned, and each path is rescaled layer-wise by the
optimal positive factors (Lemma 27 / AM-GM: ``(k + 2) (S^2 prod_l R_l)^(1/(k+2))`` for a
path with ``k`` inner layers of squared norms ``R_l`` and last-layer weight ``S``).
The refit does not see the regularization of the polished path's inner layers, so its
solution is not guaranteed to beat the input network on ``P``. The guarantee is restored by
selection: the input network itself (original path, last block rebalanced, layer-wise
rescaled, ``P <= P(theta)``) is a second candidate and the one with the lower ``P`` is
returned (``PolishResult.selected`` says which). So for ``refit="union"`` and
``"original"`` the result is never worse for deep nets either, but it may be the input
network rebalanced, with nothing polished surviving.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from wedgenet.dictionary import RANK_RTOL, WedgeDictionary
from wedgenet.exceptions import WedgeNetError
from wedgenet.geometry import one_blas_thread
from wedgenet.layers import Layer, as_layers, check_layers, forward
from wedgenet.losses import Loss, SquaredLoss, get_loss
from wedgenet.network import IndexSet, Neuron, TwoLayerNetwork
from wedgenet.programs import Program, group_norms, primal_value
from wedgenet.solvers import solve_program
from wedgenet.validation import check_inputs, check_lam, check_X, check_y

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]
Refit = Literal["union", "polished", "original"]
Criterion = Literal["residual", "distance"]

#: A chosen sample whose component orthogonal to the previously chosen ones is below this
#: fraction of its norm (Householder ``|R_ii| / ||g_i||``) is treated as dependent and
#: replaced by the next closest sample.
POLISH_DEGENERACY_TOL = 1e-9
#: Coefficient rows of the refit below this fraction of the largest are set to zero.
ZERO_REL_TOL = 1e-9


# --------------------------------------------------------------------------- threading
@contextlib.contextmanager
def _single_threaded_blas() -> Iterator[None]:
    """Run batched small LAPACK calls with one BLAS thread each (we parallelize ourselves).

    OpenBLAS's own threads on thousands of 100 x 100 problems are slower than one thread,
    catastrophically so on a loaded machine.
    """
    with one_blas_thread():
        yield


def _n_workers(n_items: int, min_per_worker: int = 16) -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    return int(max(1, min(cpus, 16, n_items // max(min_per_worker, 1))))


def _parallel_blocks(
    fn: Callable[[int, int], Any], n: int, block: int, workers: int | None = None
) -> list[Any]:
    """``[fn(start, stop) for blocks of size block]`` on a thread pool (numpy drops the GIL)."""
    ranges = [(s, min(n, s + block)) for s in range(0, n, max(block, 1))]
    if not ranges:
        return []
    w = _n_workers(len(ranges), 1) if workers is None else workers
    if w <= 1 or len(ranges) == 1:
        return [fn(a, b) for a, b in ranges]
    with ThreadPoolExecutor(max_workers=w) as ex:
        return list(ex.map(lambda ab: fn(*ab), ranges))


# --------------------------------------------------------------------------- coordinates
@dataclass
class _Coords:
    """Working coordinates of a layer input: the span of the (centered) data, Lemma 23."""

    points: FloatArray  # (n, D) working generators ([z, 1] or z)
    basis: FloatArray | None  # (d, r) or None when no reduction
    center: FloatArray  # (d,)
    bias: bool
    lifted_norms: FloatArray  # (n,) norms of the generators in original coordinates

    @property
    def dim(self) -> int:
        return int(self.points.shape[1])

    def to_working(self, W: FloatArray, b: FloatArray) -> FloatArray:
        """Neurons (d, m), (m,) -> working normals (m, D)."""
        U = W.T if self.basis is None else W.T @ self.basis
        if not self.bias:
            return np.ascontiguousarray(U)
        bw = b + W.T @ self.center
        return np.ascontiguousarray(np.concatenate([U, bw[:, None]], axis=1))

    def to_original(self, H: FloatArray) -> FloatArray:
        """Working normals (m, D) -> original ``(w, b)`` (m, d + 1) (``b = 0`` unbiased)."""
        d = self.center.shape[0]
        if self.bias:
            u, b = H[:, :-1], H[:, -1]
        else:
            u, b = H, np.zeros(H.shape[0])
        w = u if self.basis is None else u @ self.basis.T
        out = np.empty((H.shape[0], d + 1))
        out[:, :d] = w
        out[:, d] = b - w @ self.center
        return out


def _coordinates(A: FloatArray, bias: bool) -> _Coords:
    """Same convention as :class:`WedgeDictionary` for ``p = 2`` (rank reduction by SVD)."""
    n, d = A.shape
    centered = A - A.mean(axis=0) if bias else A
    with _single_threaded_blas():
        _, s, vt = np.linalg.svd(centered, full_matrices=False)
    tol = RANK_RTOL * (s[0] if s.size else 0.0) * max(n, d)
    r = int(np.sum(s > tol)) if s.size and s[0] > 0 else 0
    if r == 0:
        what = "all samples identical" if bias else "all samples zero"
        raise WedgeNetError(f"the layer input has rank 0 ({what}): no hyperplane to polish onto")
    basis = None
    center = np.zeros(d)
    Z = A
    if r < d:
        basis = np.ascontiguousarray(vt[:r].T)
        if bias:
            center = A.mean(axis=0)
        Z = (A - center) @ basis
    points = np.concatenate([Z, np.ones((n, 1))], axis=1) if bias else np.ascontiguousarray(Z)
    lifted = np.sqrt(np.einsum("ij,ij->i", A, A) + (1.0 if bias else 0.0))
    return _Coords(points=np.ascontiguousarray(points), basis=basis, center=center, bias=bias,
                   lifted_norms=lifted)


# --------------------------------------------------------------------------- polishing
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

    with _single_threaded_blas():
        parts = _parallel_blocks(run, m, max(1, min(block, -(-m // _n_workers(m, 1)))))
    return np.concatenate(parts, axis=0) if parts else np.zeros((0, K), dtype=np.int64)


def _qr_null(Gs: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Batched null vectors and independence ratios of generator sets ``(B, k, D)``.

    Householder QR of ``Gs^T``: the last column of ``Q`` spans the null space; the ratio
    ``|R_ii| / ||g_i||`` is the part of ``g_i`` independent of ``g_1..g_{i-1}``.
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

    with _single_threaded_blas():
        w = _n_workers(B, 8)
        parts = _parallel_blocks(run, B, -(-B // w), workers=w)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


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
        q, ratio = _qr_null(G[idx])
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
    na = np.linalg.norm(a, axis=1)
    nb = np.linalg.norm(b, axis=1)
    cos = np.einsum("ij,ij->i", a, b) / np.where(na * nb > 0, na * nb, 1.0)
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


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
    D = coords.dim
    k = D - 1
    Hw = coords.to_working(W, bvec)  # (m, D)
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

            with _single_threaded_blas():
                w = _n_workers(okr.size, 8)
                det_sign = np.concatenate(_parallel_blocks(run, okr.size, -(-okr.size // w), w))
            det_sign[det_sign == 0] = 1.0
            signs[okr] = det_sign.astype(np.int64)
        else:
            signs[okr] = 1
    normals = np.full((m, d + 1), np.nan)
    if okr.size:
        orig = coords.to_original(Hpol[okr])
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

            residual[okr] = np.concatenate(_parallel_blocks(res, okr.size, 256))
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


# --------------------------------------------------------------------------- objective
def mlp_objective(
    layers: Sequence[Layer], X: Any, y: Any, *, loss: str | Loss = "squared", lam: float, p: int
) -> float:
    """``P(theta)`` of an MLP given as (in, out) layers (module docstring; docs/conventions.md
    section 2)."""
    loss_obj = get_loss(loss)
    X, Y, _ = check_inputs(X, y, loss_obj)
    return _objective(list(layers), X, Y, loss_obj, lam, p)


def _regularization(layers: Sequence[Layer], p: int) -> float:
    total = 0.0
    for W, _ in layers[:-1]:
        total += float(np.sum(np.linalg.norm(W, ord=p, axis=0) ** 2))
    total += float(np.sum(layers[-1][0] ** 2))
    return 0.5 * total


def _objective(
    layers: Sequence[Layer], X: FloatArray, Y: FloatArray, loss: Loss, lam: float, p: int
) -> float:
    _, U = forward(layers, X)
    return loss.value(U, Y) + lam * _regularization(layers, p)


# --------------------------------------------------------------------------- refit
def _clean(Z: FloatArray) -> FloatArray:
    g = group_norms(Z) if Z.shape[0] else np.zeros(0)
    if g.size and g.max() > 0:
        Z = Z.copy()
        Z[g <= ZERO_REL_TOL * g.max()] = 0.0
    return Z


# --------------------------------------------------------------------------- assembly
@dataclass
class _Path:
    """One path of the result network: inner hidden layers, then the last hidden layer.

    ``inner[l]`` is an (in, out) layer acting on the path's previous layer (the first on
    ``X``); ``last`` holds the unit normals ``(w, b)`` of the last hidden layer, one row per
    neuron, acting on the path's last inner layer (or ``X``); ``Z`` their coefficients.
    ``ids[l]`` names the neurons of each hidden layer (indices of the input network's
    neurons they come from).
    """

    name: str
    inner: list[Layer]
    last: FloatArray
    Z: FloatArray
    ids: list[IntArray]


def _prune_and_scale(path: _Path, p: int) -> _Path | None:
    """Drop neurons that do not reach the output, then rescale the path (Sec. 9.12, Lemma 27).

    A path with ``k`` inner layers of squared p-norm sums ``R_l`` and last-layer weight
    ``S = sum_j ||Z_j||`` (unit last-layer neurons) has, after scaling inner layer ``l`` by
    ``alpha_l`` (biases by the running product) and balancing the last block, the
    regularization ``sum_l alpha_l^2 R_l + 2 S / prod_l alpha_l``, minimized at
    ``alpha_l^2 R_l = v = (S^2 prod_l R_l)^(1/(k+2))`` with value ``(k + 2) v``. For ``k = 0``
    this is the two-layer balanced rescaling ``2 S``.
    """
    g = group_norms(path.Z) if path.Z.shape[0] else np.zeros(0)
    keep = np.flatnonzero(g > 0)
    if keep.size == 0:
        return None
    last = path.last[keep]
    Z = path.Z[keep]
    ids_last = path.ids[-1][keep]
    k = len(path.inner)
    inner: list[Layer] = []
    inner_ids: list[IntArray] = []
    if k:
        needed = np.flatnonzero(np.any(last[:, :-1] != 0, axis=0))
        last = np.concatenate([last[:, needed], last[:, -1:]], axis=1)
        for li in range(k - 1, -1, -1):
            W, b = path.inner[li]
            W, b = W[:, needed], b[needed]
            inner_ids.append(path.ids[li][needed])
            if li > 0:
                needed = np.flatnonzero(np.any(W != 0, axis=1))
                W = W[needed]
            inner.append((W, b))
        inner.reverse()
        inner_ids.reverse()
    S = float(np.sum(g[keep]))
    R = [float(np.sum(np.linalg.norm(W, ord=p, axis=0) ** 2)) for W, _ in inner]
    alphas = [1.0] * k
    if k and S > 0 and all(r > 0 for r in R):
        logv = (2.0 * math.log(S) + sum(math.log(r) for r in R)) / (k + 2)
        alphas = [math.exp(0.5 * (logv - math.log(r))) for r in R]
    scaled: list[Layer] = []
    cum = 1.0
    for (W, b), a in zip(inner, alphas, strict=True):
        cum *= a
        scaled.append((W * a, b * cum))
    beta = cum
    gk = g[keep]
    last = last.copy()
    last[:, -1] *= beta
    last *= np.sqrt(gk / beta)[:, None]
    A_out = Z / np.sqrt(gk * beta)[:, None]
    return _Path(name=path.name, inner=scaled, last=last, Z=A_out, ids=inner_ids + [ids_last])


def _assemble(
    paths: Sequence[_Path], t: FloatArray, n_hidden: int, n_features: int
) -> list[Layer]:
    """Paths side by side as one MLP (first layer concatenated, deeper ones block-diagonal).

    Without any path the network is the constant ``t``: zero-width hidden layers.
    """
    c = t.shape[0]
    if not paths:
        empty = [(np.zeros((n_features if i == 0 else 0, 0)), np.zeros(0))
                 for i in range(n_hidden)]
        return [*empty, (np.zeros((0, c)), t.reshape(c).copy())]
    layers: list[Layer] = []
    for li in range(n_hidden):
        blocks: list[Layer] = []
        for q in paths:
            if li < n_hidden - 1:
                blocks.append(q.inner[li])
            else:
                blocks.append((q.last[:, :-1].T, q.last[:, -1]))
        if li == 0:
            W = np.concatenate([B[0] for B in blocks], axis=1)
        else:
            W = np.zeros((sum(B[0].shape[0] for B in blocks), sum(B[0].shape[1] for B in blocks)))
            r0 = c0 = 0
            for B in blocks:
                W[r0 : r0 + B[0].shape[0], c0 : c0 + B[0].shape[1]] = B[0]
                r0 += B[0].shape[0]
                c0 += B[0].shape[1]
        layers.append((np.ascontiguousarray(W), np.concatenate([B[1] for B in blocks])))
    layers.append((np.concatenate([q.Z for q in paths], axis=0), t.reshape(c).copy()))
    return layers


# --------------------------------------------------------------------------- results
@dataclass
class NeuronReport:
    """What became of one candidate neuron (see :class:`PolishResult`)."""

    layer: int
    kind: str  # "polished" or "original"
    source: int  # index of the neuron of the input network it comes from
    index_set: IndexSet | None
    formula: str
    angle_deg: float | None
    weight_angle_deg: float | None
    residual: float | None
    survived: bool
    output_norm: float | None
    normal: FloatArray | None = None  # unit (w, b) on the layer input

    def to_dict(self) -> dict[str, Any]:
        def f(v: float | None) -> float | None:
            return None if v is None or not np.isfinite(v) else float(v)

        return {
            "layer": int(self.layer),
            "kind": self.kind,
            "source": int(self.source),
            "index_set": None if self.index_set is None else self.index_set.to_dict(),
            "formula": self.formula,
            "angle_deg": f(self.angle_deg),
            "weight_angle_deg": f(self.weight_angle_deg),
            "residual": f(self.residual),
            "survived": bool(self.survived),
            "output_norm": f(self.output_norm),
        }


@dataclass
class PolishResult:
    """The polished network and the report (all objectives use docs/conventions.md section 2).

    Attributes
    ----------
    network : TwoLayerNetwork or None
        The result as a two-layer network (``None`` for deep inputs; see ``layers``).
        Surviving polished neurons carry their :class:`IndexSet` and formula; surviving
        original neurons have ``index_set=None`` and ``extra["kind"] == "original"``.
    layers : list of (W, b)
        The result as (in, out) layers (any depth).
    objective_before : float
        ``P`` of the given weights, as given.
    objective_rebalanced : float
        ``P`` of the given network after the optimal rescaling alone (Sec. 9.12): the
        feasible point of the refit. ``<= objective_before``.
    objective_after : float
        ``P`` of the result. ``<= objective_rebalanced`` for ``refit`` in ``{"union",
        "original"}``; for ``"polished"`` it may be higher (``price``).
    metrics : dict
        ``{"train": {"before": {...}, "after": {...}}, "validation": {...}}``: mean loss and
        MSE (squared loss) or accuracy (classification).
    neurons : list of NeuronReport
        Every candidate neuron: polished ones (with index set, formula, angle to the
        original, residual) and the original ones of the refit layer.
    selected : str
        Which candidate was returned: ``"refit"`` (the requested refit);
        ``"feasible_point"`` (the solver's point was no better than the input network's own
        point in the program); for deep nets with ``refit="union"`` also
        ``"refit_polished_only"`` / ``"refit_original_only"`` (one path alone had the lower
        ``P``) or ``"input_rebalanced"`` (the input network, rescaled, was best). The ``P``
        of every candidate is in ``extra["candidates"]``.
    refit_gap : float
        Relative duality gap of the refit program over its columns.
    """

    network: TwoLayerNetwork | None
    layers: list[Layer]
    objective_before: float
    objective_rebalanced: float
    objective_after: float
    metrics: dict[str, Any]
    neurons: list[NeuronReport]
    refit: str
    selected: str
    refit_gap: float
    refit_solver: str
    params: dict[str, Any]
    timings: dict[str, float]
    train_indices: IntArray | None = None
    validation_indices: IntArray | None = None
    classes: np.ndarray | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def price(self) -> float:
        """``objective_after - objective_before`` (negative: an improvement)."""
        return self.objective_after - self.objective_before

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    def summary(self) -> dict[str, Any]:
        pol = [r for r in self.neurons if r.kind == "polished"]
        orig = [r for r in self.neurons if r.kind == "original"]
        last = max((r.layer for r in self.neurons), default=1)
        return {
            "n_polished": len(pol),
            "n_polished_ok": sum(r.index_set is not None for r in pol),
            "n_surviving_polished": sum(r.survived for r in pol if r.layer == last),
            "n_surviving_original": sum(r.survived for r in orig if r.layer == last),
            "max_residual": max((r.residual for r in pol if r.residual is not None
                                 and np.isfinite(r.residual)), default=0.0),
        }

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able description (plain floats, lists and strings)."""

        def plain(v: Any) -> Any:
            return v.item() if hasattr(v, "item") else v

        return {
            "objective_before": float(self.objective_before),
            "objective_rebalanced": float(self.objective_rebalanced),
            "objective_after": float(self.objective_after),
            "price": float(self.price),
            "refit": self.refit,
            "selected": self.selected,
            "refit_gap": float(self.refit_gap),
            "refit_solver": self.refit_solver,
            "metrics": _plain_tree(self.metrics),
            "summary": _plain_tree(self.summary()),
            "neurons": [r.to_dict() for r in self.neurons],
            "params": _plain_tree(self.params),
            "timings": {k: float(v) for k, v in self.timings.items()},
            "classes": None if self.classes is None else [plain(c) for c in self.classes],
            "network": None if self.network is None else self.network.to_dict(),
            "layers": [
                {"W": np.asarray(W).tolist(), "b": np.asarray(b).tolist()} for W, b in self.layers
            ],
            "extra": _plain_tree(self.extra),
        }


def _plain_tree(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _plain_tree(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain_tree(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (np.floating, float)):
        return float(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


# --------------------------------------------------------------------------- entry point
_X_SAMPLE = re.compile(r"x\[(\d+)\]")
_X_ALONE = re.compile(r"(?<![\w\[])x(?![\w\[])")


def _layer_formula(base: str, layer: int) -> str:
    """Rewrite a first-layer formula for the activations ``a{layer-1}`` of a deeper layer."""
    if layer <= 1:
        return base
    a = f"a{layer - 1}"
    s = _X_SAMPLE.sub(lambda mt: f"{a}(x[{mt.group(1)}])", base)
    return _X_ALONE.sub(f"{a}(x)", s)


def _split(
    X: FloatArray,
    y: Any,
    validation: tuple[Any, Any] | None,
    validation_fraction: float | None,
    seed: int,
) -> tuple[IntArray, IntArray | None, tuple[Any, Any] | None]:
    n = X.shape[0]
    if validation is not None and validation_fraction is not None:
        raise WedgeNetError(
            "pass either validation=(X_val, y_val) or validation_fraction, not both"
        )
    if validation_fraction is None:
        return np.arange(n), None, validation
    try:
        frac = float(validation_fraction)
    except (TypeError, ValueError):
        raise WedgeNetError(
            f"validation_fraction must be a number, got {validation_fraction!r}"
        ) from None
    if not (0.0 < frac < 1.0):
        raise WedgeNetError(
            f"validation_fraction must be in (0, 1), got {frac}: the validation split cannot "
            f"be larger than the data"
        )
    n_val = int(round(frac * n))
    if n_val < 1 or n - n_val < 2:
        raise WedgeNetError(
            f"validation_fraction={frac} of {n} samples leaves {n - n_val} for training and "
            f"{n_val} for validation; need at least 2 and 1"
        )
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val]), None


def polish(
    X: Any,
    y: Any,
    layers: Any,
    *,
    loss: str | Loss = "squared",
    lam: float,
    p: int = 1,
    bias: bool = True,
    refit: Refit = "union",
    validation: tuple[Any, Any] | None = None,
    validation_fraction: float | None = None,
    seed: int = 0,
    criterion: Criterion = "residual",
    fit_offset: bool = True,
    tol: float = 1e-7,
    max_sweeps: int = 5000,
    layer_names: Sequence[str] | None = None,
) -> PolishResult:
    """Polish a trained ReLU network into an interpretable one (Sec. 4.1), never worse.

    Parameters
    ----------
    X : array-like of shape (n, d)
    y : array-like of shape (n,) or (n, c)
        Targets, encoded as for :func:`wedgenet.solve` (for ``logistic``, the network's
        output ``> 0`` means the larger of the two labels).
    layers : list of (W, b) in (in, out) layout, a PyTorch ``state_dict``, or ``W1/b1``
        arrays (see :mod:`wedgenet.layers`). Two layers for a two-layer network, more for
        an MLP (ReLU between layers, none after the last).
    loss : {"squared", "logistic", "hinge", "softmax"}
    lam : float
        Regularization strength of ``P`` (docs/conventions.md section 2), > 0.
    p : {1, 2}
        Norm of the hidden weights in ``P`` and of the polished neurons' normalization.
    bias : bool
        Hidden neurons have biases (samples lifted to ``[x, 1]``). With ``False`` the given
        hidden biases must be zero.
    refit : {"union", "polished", "original"}
        Columns of the output-layer refit: original and polished neurons (never worse),
        only the polished ones (fully interpretable; may cost objective), or only the
        original ones (no polishing; a baseline).
    validation : (X_val, y_val), optional
        Held-out data for the metrics.
    validation_fraction : float in (0, 1), optional
        Hold out this fraction of ``X`` (random, ``seed``) instead; polishing and the
        refit use the rest. Index sets always refer to rows of ``X`` as given.
    seed : int
    criterion : {"residual", "distance"}
        How samples are ranked for each neuron (see :func:`polish_layer`).
    fit_offset : bool
        Free output bias (the given output bias must be 0 when ``False``).
    tol : float
        Target relative duality gap of the refit (reported as ``refit_gap``).
    max_sweeps : int
        Cap on coordinate-descent sweeps of a squared-loss refit. The result is never worse
        than the input however early the solver stops (see the module docstring).
    layer_names : sequence of str, optional
        Layer order for a state dict whose names do not tell it.

    Returns
    -------
    PolishResult

    Raises
    ------
    WedgeNetError
        For inconsistent shapes, non-finite weights or data, a bad split or bad options.
    """
    t_start = time.perf_counter()
    lam = check_lam(lam)
    if p not in (1, 2):
        raise WedgeNetError(f"p must be 1 or 2, got {p!r}")
    if refit not in ("union", "polished", "original"):
        raise WedgeNetError(f"refit must be 'union', 'polished' or 'original', got {refit!r}")
    if criterion not in ("residual", "distance"):
        raise WedgeNetError(f"criterion must be 'residual' or 'distance', got {criterion!r}")
    if not (0 < tol < 1):
        raise WedgeNetError(f"tol must be in (0, 1), got {tol}")
    loss_obj = get_loss(loss)
    X_all = check_X(X)
    y_all = check_y(y, X_all.shape[0], loss_obj)
    train_idx, val_idx, validation = _split(X_all, y_all, validation, validation_fraction, seed)
    Xtr, Ytr, classes = check_inputs(X_all[train_idx], y_all[train_idx], loss_obj)
    n, d = Xtr.shape
    c = Ytr.shape[1]
    net_layers = as_layers(layers, layer_names=layer_names, require_bias=bias)
    net_layers = check_layers(net_layers, n_features=d, n_outputs=c)
    if len(net_layers) < 2:
        raise WedgeNetError(
            "polishing needs at least two layers (a hidden layer and an output layer)"
        )
    if not bias:
        for i, (_, b) in enumerate(net_layers[:-1], start=1):
            if np.any(b != 0):
                raise WedgeNetError(
                    f"bias=False but hidden layer {i} has nonzero biases; polish with bias=True"
                )
    if not fit_offset and np.any(net_layers[-1][1] != 0):
        raise WedgeNetError("fit_offset=False but the output layer has a nonzero bias")
    # Validation data.
    Xv: FloatArray | None = None
    Yv: FloatArray | None = None
    if val_idx is not None:
        Xv = X_all[val_idx]
        Yv = loss_obj.encode_like(y_all[val_idx], classes)
        if not np.all(np.isfinite(Xv)):
            raise WedgeNetError("X contains NaN or infinite values")
    elif validation is not None:
        try:
            Xv_raw, yv_raw = validation
        except (TypeError, ValueError):
            raise WedgeNetError("validation must be a pair (X_val, y_val)") from None
        Xv = check_X(Xv_raw, "X_val", n_features=d)
        yv_arr = check_y(yv_raw, Xv.shape[0], loss_obj, names=("X_val", "y_val"))
        Yv = loss_obj.encode_like(yv_arr, classes)
        if Yv.shape[1] != c:
            raise WedgeNetError(f"y_val has {Yv.shape[1]} outputs, y has {c}")

    params = {
        "loss": loss_obj.name, "lam": lam, "p": int(p), "bias": bool(bias), "refit": refit,
        "criterion": criterion, "fit_offset": bool(fit_offset), "tol": float(tol),
        "max_sweeps": int(max_sweeps),
        "seed": int(seed), "validation_fraction": validation_fraction,
        "n_train": int(n), "n_validation": None if Xv is None else int(Xv.shape[0]),
        "architecture": [int(net_layers[0][0].shape[0])] + [int(W.shape[1]) for W, _ in net_layers],
    }
    with _single_threaded_blas():  # only its coordinates (an SVD for p = 2) are computed
        formula_dict = WedgeDictionary(X_all, p=p, bias=bias, source="given", index_sets=[])
    core = _polish_core(
        Xtr, Ytr, net_layers, loss_obj, lam, p, bias, refit, criterion, fit_offset, tol,
        max_sweeps, train_idx, formula_dict,
    )
    result_layers: list[Layer] = core["layers"]

    def outputs(lys: list[Layer], Xm: FloatArray) -> FloatArray:
        return forward(lys, Xm)[1]

    metrics: dict[str, Any] = {
        "train": {
            "before": loss_obj.metrics(forward(net_layers, Xtr)[1], Ytr),
            "after": loss_obj.metrics(outputs(result_layers, Xtr), Ytr),
        }
    }
    if Xv is not None and Yv is not None:
        metrics["validation"] = {
            "before": loss_obj.metrics(forward(net_layers, Xv)[1], Yv),
            "after": loss_obj.metrics(outputs(result_layers, Xv), Yv),
        }
    network = core["network"]
    timings = dict(core["timings"])
    timings["total"] = time.perf_counter() - t_start
    return PolishResult(
        network=network,
        layers=result_layers,
        objective_before=core["before"],
        objective_rebalanced=core["rebalanced"],
        objective_after=core["after"],
        metrics=metrics,
        neurons=core["neurons"],
        refit=refit,
        selected=core["selected"],
        refit_gap=core["gap"],
        refit_solver=core["solver"],
        params=params,
        timings=timings,
        train_indices=train_idx if val_idx is not None else None,
        validation_indices=val_idx,
        classes=classes,
        extra=core["extra"],
    )


def _polish_core(
    X: FloatArray,
    Y: FloatArray,
    layers: list[Layer],
    loss: Loss,
    lam: float,
    p: int,
    bias: bool,
    refit: Refit,
    criterion: Criterion,
    fit_offset: bool,
    tol: float,
    max_sweeps: int,
    train_idx: IntArray,
    formula_dict: WedgeDictionary,
) -> dict[str, Any]:
    L = len(layers)
    n_hidden = L - 1
    n, d = X.shape
    c = Y.shape[1]
    before = _objective(layers, X, Y, loss, lam, p)
    hidden, _ = forward(layers, X)
    acts = [X] + hidden  # acts[l] = a_l on the original path
    timings: dict[str, float] = {"polish": 0.0, "inner_refit": 0.0, "refit": 0.0}
    reports: list[NeuronReport] = []
    layer_info: list[dict[str, Any]] = []

    # ---- the polished path, layer by layer (Thm 10/11)
    pol_inner: list[Layer] = []
    pol_ids: list[IntArray] = []
    last_pol: FloatArray | None = None
    F = X
    V, cvec = layers[0]
    if refit != "original":
        for layer in range(1, n_hidden + 1):
            lp = polish_layer(F, V, cvec if bias else None, p=p, bias=bias,
                              criterion=criterion, row_ids=train_idx)
            timings["polish"] += lp.time
            okc = np.flatnonzero(lp.ok)
            layer_info.append({
                "layer": layer, "n_neurons": int(V.shape[1]), "n_polished": int(okc.size),
                "n_through": int(lp.dim - 1), "n_fallback": int(lp.n_fallback),
                "max_residual": float(np.max(lp.residual[okc])) if okc.size else None,
                "time": float(lp.time),
            })
            for j in range(V.shape[1]):
                iset = lp.index_set(j)
                formula = ""
                if iset is not None:
                    sub = np.array(iset.samples, dtype=np.int64)
                    formula = _layer_formula(formula_dict.formula(sub, iset.sign), layer)
                okj = bool(lp.ok[j])
                reports.append(NeuronReport(
                    layer=layer, kind="polished", source=j, index_set=iset, formula=formula,
                    angle_deg=float(lp.angle_deg[j]) if okj else None,
                    weight_angle_deg=float(lp.weight_angle_deg[j]) if okj else None,
                    residual=float(lp.residual[j]) if okj else None,
                    survived=False, output_norm=None,
                    normal=lp.normals[j].copy() if okj else None,
                ))
            Pn = lp.normals[okc]  # (m_ok, in + 1), unit p-norm
            Fn = np.maximum(F @ Pn[:, :-1].T + Pn[:, -1], 0.0)
            pol_ids.append(okc)
            if layer < n_hidden:
                # Weights of the next layer on the polished features: the group Lasso that
                # reproduces the original pre-activations of the next layer.
                t0 = time.perf_counter()
                W_next, b_next = layers[layer]
                T = acts[layer] @ W_next + b_next
                sub_sol = solve_program(
                    Program(Fn, T, SquaredLoss(), lam, bias), tol=1e-7, max_sweeps=max_sweeps
                )
                timings["inner_refit"] += time.perf_counter() - t0
                pol_inner.append((np.ascontiguousarray(Pn[:, :-1].T), Pn[:, -1].copy()))
                V = np.asarray(sub_sol.Z, dtype=float)
                cvec = np.asarray(sub_sol.t, dtype=float) if bias else np.zeros(W_next.shape[1])
            else:
                last_pol = Pn
            F = Fn

    # ---- the original path's last hidden layer, unit-normalized, and the feasible point
    W_last, b_last = layers[n_hidden - 1]
    W_out, b_out = layers[-1]
    A_in = acts[n_hidden - 1]
    wn = np.linalg.norm(W_last, ord=p, axis=0)
    live = np.flatnonzero(wn > 0)
    dead = np.flatnonzero(wn == 0)
    orig_last = np.concatenate([W_last[:, live].T, b_last[live, None]], axis=1) / wn[live, None]
    K_orig = np.maximum(A_in @ orig_last[:, :-1].T + orig_last[:, -1], 0.0)
    Z_feas = wn[live, None] * W_out[live]
    t_feas = np.asarray(
        b_out + (np.maximum(b_last[dead], 0.0) @ W_out[dead] if dead.size else 0.0), dtype=float
    ).reshape(c)
    orig_inner = [(np.asarray(W), np.asarray(b)) for W, b in layers[: n_hidden - 1]]
    orig_ids = [np.arange(W.shape[1]) for W, _ in orig_inner] + [live]

    program_feas = primal_value(loss, K_orig @ Z_feas + t_feas, Y, Z_feas, lam)
    columns = {"original": K_orig, "polished": F}

    def solve_blocks(names: list[str]) -> tuple[dict[str, FloatArray], FloatArray, float, Any]:
        """Refit over the named column blocks; never above the input's point if it is there."""
        K = np.concatenate([columns[nm] for nm in names], axis=1)
        sol = solve_program(Program(K, Y, loss, lam, fit_offset), tol=tol, max_sweeps=max_sweeps)
        Z = _clean(np.asarray(sol.Z, dtype=float).reshape(K.shape[1], c))
        t = np.asarray(sol.t, dtype=float).reshape(c)
        if fit_offset and loss.smooth:
            t = loss.optimal_offset(K @ Z, Y, t)
        value = primal_value(loss, K @ Z + t, Y, Z, lam)
        if "original" in names and value > program_feas:
            # The solver stopped short of the input network's own point: take that point.
            Z = np.zeros_like(Z)
            Z[: K_orig.shape[1]] = Z_feas
            t, value = t_feas.copy(), program_feas
            sol.solver = sol.solver + "+feasible_point"
        offs = np.cumsum([0] + [columns[nm].shape[1] for nm in names])
        return {nm: Z[offs[i] : offs[i + 1]] for i, nm in enumerate(names)}, t, value, sol

    # ---- assemble (prune, rescale) and evaluate P
    def build(zb: dict[str, FloatArray], t: FloatArray) -> tuple[list[Layer], dict[str, _Path]]:
        kept: dict[str, _Path] = {}
        for name, Zp in zb.items():
            if name == "original":
                q = _Path("original", orig_inner, orig_last, Zp, orig_ids)
            else:
                assert last_pol is not None
                q = _Path("polished", pol_inner, last_pol, Zp, pol_ids)
            pq = _prune_and_scale(q, p)
            if pq is not None:
                kept[name] = pq
        return _assemble(list(kept.values()), t, n_hidden, d), kept

    def objective(lys: list[Layer], t: FloatArray) -> float:
        return _objective(lys, X, Y, loss, lam, p)

    main_names = {"union": ["original", "polished"], "original": ["original"],
                  "polished": ["polished"]}[refit]
    t0 = time.perf_counter()
    Z_blocks, t_out, program_after, sol = solve_blocks(main_names)
    timings["refit"] = time.perf_counter() - t0
    out_layers, out_paths = build(Z_blocks, t_out)
    after = objective(out_layers, t_out)
    selected = "refit" if "feasible_point" not in sol.solver else "feasible_point"
    reb_layers, reb_paths = build({"original": Z_feas}, t_feas)
    rebalanced = objective(reb_layers, t_feas)
    candidates = {selected: after, "input_rebalanced": rebalanced}
    if refit == "union" and n_hidden > 1:
        # Deep nets: the refit does not see the regularization of the polished path's inner
        # layers, so the union optimum need not be the best network. Try both paths alone.
        for nm in ("polished", "original"):
            t0 = time.perf_counter()
            zb, tt, _, sol_nm = solve_blocks([nm])
            timings["refit"] += time.perf_counter() - t0
            lys, paths = build(zb, tt)
            val = objective(lys, tt)
            candidates[f"refit_{nm}_only"] = val
            if val < after:
                full = {name: np.zeros_like(Zp) for name, Zp in Z_blocks.items()}
                full[nm] = zb[nm]
                out_layers, out_paths, after, t_out, Z_blocks = lys, paths, val, tt, full
                selected, sol = f"refit_{nm}_only", sol_nm
    if refit != "polished" and after > rebalanced:
        # Deep nets only (or rounding): keep the input network, rebalanced: never worse.
        out_layers, out_paths, after, t_out = reb_layers, reb_paths, rebalanced, t_feas
        selected = "input_rebalanced"
        Z_blocks = {name: (Z_feas if name == "original" else np.zeros_like(Zp))
                    for name, Zp in Z_blocks.items()}

    # ---- per-neuron report: original neurons of the refit layer, survival flags
    if "original" in Z_blocks:
        g = group_norms(Z_blocks["original"])
        for jj, s in enumerate(live):
            reports.append(NeuronReport(
                layer=n_hidden, kind="original", source=int(s), index_set=None,
                formula=f"original neuron {int(s)} of layer {n_hidden}",
                angle_deg=None, weight_angle_deg=None, residual=None,
                survived=bool(g[jj] > 0), output_norm=float(g[jj]), normal=orig_last[jj].copy(),
            ))
    if "polished" in Z_blocks:
        g = group_norms(Z_blocks["polished"])
        by_source = {int(s): float(v) for s, v in zip(pol_ids[-1], g, strict=True)}
        for r in reports:
            if r.kind == "polished" and r.layer == n_hidden:
                v = by_source.get(r.source, 0.0)
                r.survived, r.output_norm = v > 0, v
        path = out_paths.get("polished")
        alive = [set() for _ in range(n_hidden)] if path is None else [
            {int(i) for i in ids} for ids in path.ids
        ]
        for r in reports:
            if r.kind == "polished" and r.layer < n_hidden:
                r.survived = r.source in alive[r.layer - 1]

    network = None
    if L == 2:
        network = _two_layer_network(out_layers, out_paths, reports, t_out, d)
    extra = {
        "program_objective": float(program_after),
        "candidates": candidates,
        "rebalanced_program_objective": float(program_feas),
        "polished_layers": layer_info,
        "n_layers": L,
    }
    return {
        "layers": out_layers, "network": network, "before": before, "rebalanced": rebalanced,
        "after": after, "neurons": reports, "selected": selected, "gap": float(sol.gap),
        "solver": sol.solver, "timings": timings, "extra": extra,
    }


def _two_layer_network(
    layers: list[Layer],
    paths: dict[str, _Path],
    reports: list[NeuronReport],
    t: FloatArray,
    d: int,
) -> TwoLayerNetwork:
    """The assembled two-layer result with every neuron's report attached."""
    (W1, b1), (W2, b2) = layers
    lookup = {(r.kind, r.source): r for r in reports if r.layer == 1}
    labels = [(name, int(s)) for name, q in paths.items() for s in q.ids[-1]]
    neurons: list[Neuron] = []
    for j, (kind, src) in enumerate(labels):
        rep = lookup.get((kind, src))
        extra: dict[str, Any] = {"kind": kind, "source": src}
        if rep is not None and kind == "polished":
            extra["angle_deg"] = rep.angle_deg
        neurons.append(Neuron(
            weight=W1[:, j].copy(), bias=float(b1[j]), output_weight=W2[j].copy(),
            index_set=None if rep is None else rep.index_set,
            formula="" if rep is None else rep.formula,
            residual=0.0 if rep is None or rep.residual is None else float(rep.residual),
            extra=extra,
        ))
    return TwoLayerNetwork(neurons=neurons, output_bias=np.asarray(b2, dtype=float), n_features=d)
