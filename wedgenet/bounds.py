r"""Cheap, valid upper bounds on the pricing maximum over *every* ReLU neuron.

The dual bound :func:`wedgenet.programs.dual_bound` needs ``M >= max_j ||K[:, j]^T V||_2``
over every dictionary column. When the dictionary is too large to enumerate, this module
bounds the score of every neuron at once, in ``O(c d n log n)`` time:

    S(X, V) = sup_{w, b : ||w||_p = 1} || relu(X w + b 1)^T V ||_2       (b = 0 without bias)

Every dictionary column is such a neuron, so ``pricing_upper_bound(X, V) >= max_j score_j``
and the lower bound computed from it is a true certificate (possibly a loose one).

Derivation
----------
1. *Output columns.* With ``s_q = relu(Xw + b)^T v_q`` (``v_q = V[:, q]``),
   ``||s||_2 <= sqrt(sum_q (sup_{w,b} |s_q|)^2)``: every term is bounded separately.

2. *Signs.* ``|v^T r| = max(v^T r, (-v)^T r)``; bound ``sup v^T relu(.)`` for both ``v`` and
   ``-v`` and take the larger.

3. *Biases* (needs ``sum(v) = 0``). For fixed ``w``, ``f(b) = v^T relu(Xw + b)`` is continuous
   and piecewise linear in ``b`` with breakpoints ``b = -x_k . w``. Left of all breakpoints it
   is ``0 = f(-max_k x_k . w)``; right of all of them it is ``v^T Xw + b sum(v)``, constant
   ``= f(-min_k x_k . w)`` when ``sum(v) = 0`` (and unbounded above for ``v`` or ``-v``
   otherwise, so the bound is ``inf``). Hence ``sup_b f = max_k f(-x_k . w)`` and

       sup_{w, b} v^T relu(Xw + b) = max_k sup_w v^T relu(Z_k w),   Z_k = X - 1 x_k^T.

   Without biases there is the single problem ``Z = X``.

4. *Convex majorant.* For ``lam in [0, 1]``, ``relu(u) >= lam u`` (a convex combination of
   ``relu(u) >= 0`` and ``relu(u) >= u``), so for ``v_i < 0``: ``v_i relu(u) <= lam v_i u``.
   Therefore ``v^T relu(Zw) <= g_lam(w)`` with

       g_lam(w) = sum_{v_i > 0} v_i relu(z_i . w) + lam c . w,   c = sum_{v_i < 0} v_i z_i,
                = max_{S subset of {i : v_i > 0}} a_S . w,      a_S = sum_{i in S} v_i z_i + lam c.

   The supremum of ``g_lam`` over the unit ball ``||w||_p <= 1`` (which contains the unit
   sphere) is ``max_S ||a_S||_{p*}`` (``p* = inf`` for ``p = 1``, ``2`` for ``p = 2``:
   the dual norm).
   Coordinate ``j`` of ``a_S`` lies in ``[-(P^-_j - lam C_j), P^+_j + lam C_j]`` with

       P^+_j = sum_{v_i > 0} v_i relu(z_ij),   P^-_j = sum_{v_i > 0} v_i relu(-z_ij),
       C_j   = sum_{v_i < 0} v_i z_ij,

   so ``|a_{S,j}| <= m_j(lam) := max(P^+_j + lam C_j, P^-_j - lam C_j)``. (``m_j >= 0``: the
   two arguments sum to ``P^+_j + P^-_j >= 0``.) Hence, for every ``lam in [0, 1]``,

       sup_{||w||_p = 1} v^T relu(Zw) <= h(lam) := ||m(lam)||_{p*}
                = max_j m_j(lam)                 (p = 1: the max of g over the l1 ball,
                                                  at a vertex +-e_j)
                = sqrt(sum_j m_j(lam)^2)         (p = 2: never above sqrt(d) times the
                                                  p = 1 value, which is what the inclusion of
                                                  the l2 ball in the l1 ball of radius
                                                  sqrt(d) would give)

5. *Choice of lam, p = 2.* Every ``lam`` gives a valid bound, so ``lam`` may be chosen
   separately for each ``k`` (and sign, and output column): the bound of problem ``k`` is
   ``min_{lam in [0, 1]} h_k(lam)``, then the maximum over ``k``. This is never looser than
   ``min_lam max_k h_k(lam)`` (one ``lam`` for all ``k``) nor than a grid of ``lam`` values.
   ``h_k`` is convex (``m_j`` are nonnegative maxima of affine functions, composed with a
   monotone norm), so it is minimized by bisection on the sign of a subgradient
   (``sum_j m_j m_j'``, a subgradient of ``h^2 / 2`` because ``m_j >= 0``); the value kept is
   the smallest ``h_k`` evaluated, a valid bound however the bisection ends.

   *p = 1, orthant split (tighter).* The l1 ball is the union over sign vectors ``sigma`` of
   the simplices ``T_sigma = conv(0, sigma_1 e_1, ..., sigma_d e_d)``, and ``lam`` may differ
   between simplices. On ``T_sigma`` the convex ``g_lam`` peaks at a vertex, so

       sup_{T_sigma} v^T relu(Zw) <= min_lam max(0, max_j l_{j, sigma_j}(lam)),
       l_{j,+}(lam) = g_lam(e_j) = P^+_j + lam C_j,   l_{j,-}(lam) = g_lam(-e_j) = P^-_j - lam C_j.

   By Helly's theorem on the line (sublevel sets of the lines are intervals of [0, 1]; they
   have a common point iff every two do), the min over ``lam`` of a max of lines is the max,
   over pairs of lines, of the min of the pair's max. A pair of lines is present in some
   ``T_sigma`` unless it is ``(l_{j,+}, l_{j,-})`` of one feature, so the maximum over all
   ``2^d`` orthants is, in ``O(d^2)``,

       max(0, max_l min_lam l(lam), max_{a inc, b dec, feature(a) != feature(b)} crossing of a, b)

   (a crossing counts when it lies in [0, 1]; two lines of equal slope sign are dominated by
   their minima). This is never above ``min_lam max_j m_j(lam)`` (that value also admits the
   pairs of one feature).

   *p = 2, the smaller of two.* ``||w||_2 = 1`` implies ``||w||_1 <= sqrt(d)`` and
   ``v^T relu(Zw)`` is positively homogeneous, so ``sqrt(d)`` times the p = 1 value of problem
   ``k`` also bounds its p = 2 supremum; each ``k`` keeps the smaller of that and
   ``min_lam h_k`` (so the p = 2 bound is never above ``sqrt(d)`` times the p = 1 bound).

   *Pruning.* Problems ``k`` whose cheap upper bound ``min(h_k(0), h_k(1/2), h_k(1))`` is below
   the running maximum are skipped (their value cannot raise the maximum).

6. *Sums in O(n log n) per feature.* ``P^+_j``, ``P^-_j`` for ``z = x - x_k`` are, in the order
   of column ``j`` sorted, suffix and prefix sums: ``P^+_j(k) = sum_{x_ij > x_kj} v_i^+ (x_ij -
   x_kj)`` and ``P^-_j(k) = sum_{x_ij < x_kj} v_i^+ (x_kj - x_ij)`` (ties contribute 0), and
   ``C_j(k) = sum_{v_i<0} v_i x_ij - x_kj sum_{v_i<0} v_i``. One sort per feature serves every
   output column and both signs.

Exactness of the inputs and of the arithmetic
---------------------------------------------
* A nonzero column sum makes the supremum infinite for biased neurons: the result is
  ``math.inf`` when ``|sum(v)| > center_tol * n * ||v||_1``. Below that threshold the column is
  taken as centred at rounding level and the bound is computed for ``v - mean(v)`` (exactly
  centred in exact arithmetic). Callers should centre their dual points (``V - V.mean(0)`` for
  the squared loss, :func:`wedgenet.losses.balance_dual` for hinge/logistic); the loss's own
  dual value assumes ``1^T V = 0`` at the same level of rounding.
* The returned float includes a rounding allowance, ``4 (n + d + 4) eps ||v_q||_1 R`` per output
  column (times ``sqrt(d)`` for ``p = 2``), ``R`` the largest range of a feature (biased) or the
  largest ``|x_ij|`` (bias-free), which dominates the a-priori error bound of the sums above,
  so the float is not below the exact-arithmetic bound.

The bound is homogeneous: ``B(a X, V) = |a| B(X, V)`` and ``B(X, a V) = |a| B(X, V)``; with
biases it is invariant under translations ``X + 1 t^T``; it is invariant under permutations
and sign flips of the features (not under rotations for ``p = 2``, unlike the supremum).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
from numba import njit
from numpy.typing import NDArray

from wedgenet.exceptions import WedgeNetError

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

__all__ = ["pricing_upper_bound", "pricing_upper_bound_bruteforce"]

#: Bisection steps of the minimization over ``lam`` (interval ``2^-60``).
BISECTION_STEPS = 60
#: Default tolerance on column sums for biased neurons (relative to ``n ||v||_1``).
CENTER_TOL = 1e-12

_EPS = float(np.finfo(np.float64).eps)


# ---------------------------------------------------------------------------- kernels
@njit(cache=True)
def _h(
    Pp: FloatArray, Pm: FloatArray, C: FloatArray, k: int, lam: float, p: int
) -> tuple[float, float]:
    """``h_k(lam)`` and a subgradient (of ``h`` for p = 1, of ``h^2 / 2`` for p = 2)."""
    d = Pp.shape[1]
    if p == 1:
        best = -1.0
        slope = 0.0
        for j in range(d):
            a = Pp[k, j] + lam * C[k, j]
            b = Pm[k, j] - lam * C[k, j]
            if a >= b:
                if a > best:
                    best = a
                    slope = C[k, j]
            elif b > best:
                best = b
                slope = -C[k, j]
        return max(best, 0.0), slope
    tot = 0.0
    grad = 0.0
    for j in range(d):
        a = Pp[k, j] + lam * C[k, j]
        b = Pm[k, j] - lam * C[k, j]
        if a >= b:
            m = max(a, 0.0)
            grad += m * C[k, j]
        else:
            m = max(b, 0.0)
            grad -= m * C[k, j]
        tot += m * m
    return math.sqrt(tot), grad


@njit(cache=True)
def _min_over_lam_l2(Pp: FloatArray, Pm: FloatArray, C: FloatArray, k: int, steps: int) -> float:
    """Smallest ``h_k(lam)`` (p = 2) found by bisection on the subgradient sign over [0, 1]."""
    h0, g0 = _h(Pp, Pm, C, k, 0.0, 2)
    if g0 >= 0.0:
        return h0
    h1, g1 = _h(Pp, Pm, C, k, 1.0, 2)
    best = min(h0, h1)
    if g1 <= 0.0:
        return best
    lo = 0.0
    hi = 1.0
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        hm, gm = _h(Pp, Pm, C, k, mid, 2)
        if hm < best:
            best = hm
        if gm > 0.0:
            hi = mid
        elif gm < 0.0:
            lo = mid
        else:
            break
    return best


@njit(cache=True)
def _orthant_pairs_l1(Pp: FloatArray, Pm: FloatArray, C: FloatArray, k: int) -> float:
    """``max_sigma min_lam max(0, max_j l_{j, sigma_j}(lam))`` (p = 1) by the pair formula.

    The lines are ``l_{j,+} = P^+_j + lam C_j`` and ``l_{j,-} = P^-_j - lam C_j``. The value is
    the largest of 0, the minimum over [0, 1] of each line, and the crossing value of an
    increasing and a decreasing line of *different* features that cross inside [0, 1].
    """
    d = Pp.shape[1]
    best = 0.0
    for j in range(d):
        c = C[k, j]
        best = max(best, Pp[k, j] + min(c, 0.0), Pm[k, j] + min(-c, 0.0))
    for a in range(d):
        ca = C[k, a]
        if ca > 0.0:  # increasing line ia + sa lam of feature a
            ia, sa = Pp[k, a], ca
        elif ca < 0.0:
            ia, sa = Pm[k, a], -ca
        else:
            continue
        for b in range(d):
            cb = C[k, b]
            if b == a or cb == 0.0:
                continue
            if cb > 0.0:  # decreasing line ib - sb lam of feature b
                ib, sb = Pm[k, b], cb
            else:
                ib, sb = Pp[k, b], -cb
            if ia < ib and ia + sa > ib - sb:
                val = (ia * sb + ib * sa) / (sa + sb)
                if val > best:
                    best = val
    return best


@njit(cache=True)
def _max_over_k(Pp: FloatArray, Pm: FloatArray, C: FloatArray, p: int, steps: int) -> float:
    """``max_k`` of the bound of anchor ``k``, skipping anchors that cannot raise the maximum.

    ``u_k = min(h_k(0), h_k(1/2), h_k(1))`` bounds the anchor's value from above (for p = 1 the
    orthant value is at most ``min_lam h_k``); anchors are visited by decreasing ``u_k`` and the
    scan stops once ``u_k`` is below the running maximum.
    """
    nk = Pp.shape[0]
    upper = np.empty(nk)
    for k in range(nk):
        u = _h(Pp, Pm, C, k, 0.0, p)[0]
        u = min(u, _h(Pp, Pm, C, k, 0.5, p)[0])
        upper[k] = min(u, _h(Pp, Pm, C, k, 1.0, p)[0])
    order = np.argsort(-upper)
    best = 0.0
    for idx in range(nk):
        k = order[idx]
        if upper[k] <= best:
            break
        val = _orthant_pairs_l1(Pp, Pm, C, k)
        if p == 2:
            val = min(_min_over_lam_l2(Pp, Pm, C, k, steps), math.sqrt(Pp.shape[1]) * val)
        val = min(val, upper[k])
        if val > best:
            best = val
    return best


@njit(cache=True)
def _biased_sums(
    Xs: FloatArray,
    order: IntArray,
    wp: FloatArray,
    wn: FloatArray,
    Pp: FloatArray,
    Pm: FloatArray,
    C: FloatArray,
) -> None:
    """Fill ``P^+, P^-, C`` (rows: anchor sample ``k``) from the per-feature sorted data.

    ``Xs[:, j]`` is column ``j`` sorted (``order[:, j]`` the sample indices), ``wp >= 0`` the
    positive part of the output column and ``wn <= 0`` the negative part.
    """
    n, d = Xs.shape
    for j in range(d):
        cn0 = 0.0
        cn1 = 0.0
        pre0 = 0.0
        pre1 = 0.0
        for r in range(n):
            i = order[r, j]
            t = Xs[r, j]
            cn0 += wn[i]
            cn1 += wn[i] * t
            Pm[i, j] = max(t * pre0 - pre1, 0.0)  # positions < r
            pre0 += wp[i]
            pre1 += wp[i] * t
        suf0 = 0.0
        suf1 = 0.0
        for r in range(n - 1, -1, -1):
            i = order[r, j]
            t = Xs[r, j]
            suf0 += wp[i]
            suf1 += wp[i] * t
            Pp[i, j] = max(suf1 - t * suf0, 0.0)  # positions >= r (r itself adds 0)
            C[i, j] = cn1 - t * cn0


# ---------------------------------------------------------------------------- helpers
def _validate(X: FloatArray, V: FloatArray, p: int) -> tuple[FloatArray, FloatArray]:
    X = np.asarray(X, dtype=np.float64)
    V = np.asarray(V, dtype=np.float64)
    if X.ndim != 2:
        raise WedgeNetError(f"X must be 2-dimensional (n, d), got shape {X.shape}")
    if V.ndim == 1:
        V = V[:, None]
    if V.ndim != 2 or V.shape[0] != X.shape[0]:
        n = X.shape[0]
        raise WedgeNetError(f"V must have shape ({n},) or ({n}, c), got {V.shape}")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise WedgeNetError(f"X must have at least one sample and one feature, got {X.shape}")
    if not (np.all(np.isfinite(X)) and np.all(np.isfinite(V))):
        raise WedgeNetError("X and V must be finite")
    if p not in (1, 2):
        raise WedgeNetError(f"p must be 1 or 2, got {p!r}")
    return X, V


def _centred(V: FloatArray, center_tol: float) -> FloatArray | None:
    """``V - mean`` when every column sum is at rounding level, else ``None``."""
    n = V.shape[0]
    sums = V.sum(axis=0)
    l1 = np.abs(V).sum(axis=0)
    if np.any(np.abs(sums) > center_tol * n * l1):
        return None
    out: FloatArray = V - V.mean(axis=0)
    return out


def _scale(X: FloatArray, bias: bool) -> float:
    """``R``: largest feature range (biased) or largest ``|x_ij|`` (bias-free)."""
    if bias:
        return float(np.max(X.max(axis=0) - X.min(axis=0)))
    return float(np.max(np.abs(X)))


def _combine(per_column: list[float], V: FloatArray, X: FloatArray, p: int, bias: bool) -> float:
    """``sqrt(sum_q (B_q + slack_q)^2)`` with the rounding allowance of the module docstring."""
    n, d = X.shape
    c = V.shape[1]
    R = _scale(X, bias)
    l1 = np.abs(V).sum(axis=0)
    factor = 4.0 * (n + d + 4) * _EPS * R * (math.sqrt(d) if p == 2 else 1.0)
    total = 0.0
    for q in range(c):
        term = per_column[q] + factor * float(l1[q])
        total += term * term
    return math.sqrt(total) * (1.0 + 4.0 * (c + d + 4) * _EPS)


# ---------------------------------------------------------------------------- public API
def pricing_upper_bound(
    X: FloatArray,
    V: FloatArray,
    *,
    p: int,
    bias: bool,
    center_tol: float = CENTER_TOL,
) -> float:
    """Upper bound on the pricing score of every neuron, in ``O(c d n log n)``.

    Bounds ``sup_{w, b : ||w||_p = 1} || relu(X w + b)^T V ||_2`` (``b = 0`` when ``bias`` is
    False), hence ``max_j ||K[:, j]^T V||_2`` over every column of any wedge dictionary of
    ``X``; pass it as ``max_score`` to :func:`wedgenet.programs.dual_bound` for a certified
    lower bound when the dictionary is too large to price. Derivation: module docstring.

    Parameters
    ----------
    X : ndarray of shape (n, d)
        Inputs of the layer (rows are samples).
    V : ndarray of shape (n, c) or (n,)
        Dual point. With ``bias=True`` its columns must sum to zero (up to rounding).
    p : {1, 2}
        Norm of the first-layer weights.
    bias : bool
        Whether neurons have a free bias.
    center_tol : float, default 1e-12
        With ``bias=True``, a column with ``|sum(v)| > center_tol * n * ||v||_1`` makes the
        supremum infinite and ``math.inf`` is returned; smaller sums are treated as rounding
        and the bound is computed for the exactly centred column.

    Returns
    -------
    float
        A valid upper bound (``>= 0``; ``math.inf`` for an uncentred ``V`` with biases).

    Raises
    ------
    WedgeNetError
        On malformed input.
    """
    X, V = _validate(X, V, p)
    n, d = X.shape
    c = V.shape[1]
    per_column: list[float] = []
    if bias:
        Vc = _centred(V, center_tol)
        if Vc is None:
            return math.inf
        order = np.ascontiguousarray(np.argsort(X, axis=0, kind="stable"))
        mid = 0.5 * (X.max(axis=0) + X.min(axis=0))
        Xs = np.ascontiguousarray(np.take_along_axis(X, order, axis=0) - mid)
        Pp = np.empty((n, d))
        Pm = np.empty((n, d))
        C = np.empty((n, d))
        for q in range(c):
            best = 0.0
            for sign in (1.0, -1.0):
                w = sign * Vc[:, q]
                wp = np.ascontiguousarray(np.maximum(w, 0.0))
                wn = np.ascontiguousarray(np.minimum(w, 0.0))
                _biased_sums(Xs, order, wp, wn, Pp, Pm, C)
                best = max(best, float(_max_over_k(Pp, Pm, C, p, BISECTION_STEPS)))
            per_column.append(best)
    else:
        Xp = np.maximum(X, 0.0)
        Xm = np.maximum(-X, 0.0)
        for q in range(c):
            best = 0.0
            for sign in (1.0, -1.0):
                w = sign * V[:, q]
                wp = np.maximum(w, 0.0)
                wn = np.minimum(w, 0.0)
                Pp1 = np.ascontiguousarray((Xp.T @ wp)[None, :])
                Pm1 = np.ascontiguousarray((Xm.T @ wp)[None, :])
                C1 = np.ascontiguousarray((X.T @ wn)[None, :])
                best = max(best, float(_max_over_k(Pp1, Pm1, C1, p, BISECTION_STEPS)))
            per_column.append(best)
    return _combine(per_column, V, X, p, bias)


def _lines_min_max(icpt: FloatArray, slope: FloatArray) -> float:
    """``min_{lam in [0, 1]} max(0, max_l icpt_l + lam slope_l)`` by enumeration: the minimum
    of an upper envelope of lines is at 0, 1 or a crossing of two lines (or of a line and 0)."""
    icpt = np.append(icpt, 0.0)
    slope = np.append(slope, 0.0)
    cands = [0.0, 1.0]
    for a in range(icpt.size):
        for b in range(a + 1, icpt.size):
            if slope[a] != slope[b]:
                lam = (icpt[b] - icpt[a]) / (slope[a] - slope[b])
                if 0.0 < lam < 1.0:
                    cands.append(float(lam))
    return min(float(np.max(icpt + lam * slope)) for lam in cands)


def _anchor_bound_bruteforce(Pp: FloatArray, Pm: FloatArray, C: FloatArray, p: int) -> float:
    """Bound of one anchor by exhaustive enumeration.

    ``p = 1``: every orthant ``sigma`` (``2^d`` of them) with the exact minimum over ``lam`` of
    its envelope ``max(0, max_j l_{j, sigma_j})``. ``p = 2``: the smaller of ``sqrt(d)`` times
    that and ``min_lam h``; ``h^2`` is a convex quadratic between consecutive kinks of the
    ``m_j``, so its minimum is at 0, 1, a kink, or the clipped stationary point of one of those
    quadratics, and ``h`` is evaluated at each candidate.
    """
    l1 = 0.0
    for sigma in itertools.product((True, False), repeat=Pp.size):
        s = np.array(sigma, dtype=bool)
        l1 = max(l1, _lines_min_max(np.where(s, Pp, Pm), np.where(s, C, -C)))
    if p == 1:
        return l1

    def h(lam: float) -> float:
        m = np.maximum(np.maximum(Pp + lam * C, Pm - lam * C), 0.0)
        return float(np.sqrt(np.sum(m * m)))

    kinks = [0.0, 1.0]
    for j in range(Pp.size):
        if C[j] != 0.0:
            lam = (Pm[j] - Pp[j]) / (2.0 * C[j])
            if 0.0 < lam < 1.0:
                kinks.append(float(lam))
    kinks.sort()
    cands = list(kinks)
    for lo, hi in zip(kinks[:-1], kinks[1:], strict=True):
        if hi <= lo:
            continue
        mid = 0.5 * (lo + hi)
        first = Pp + mid * C >= Pm - mid * C
        alpha = np.where(first, Pp, Pm)
        beta = np.where(first, C, -C)
        bb = float(beta @ beta)
        if bb > 0.0:
            cands.append(min(max(-float(alpha @ beta) / bb, lo), hi))
    return min(min(h(lam) for lam in cands), math.sqrt(Pp.size) * l1)


def pricing_upper_bound_bruteforce(
    X: FloatArray,
    V: FloatArray,
    *,
    p: int,
    bias: bool,
    center_tol: float = CENTER_TOL,
) -> float:
    """The bound of :func:`pricing_upper_bound`, computed independently (test oracle).

    Forms ``Z_k = X - x_k`` explicitly for every anchor sample, the sums ``P^+, P^-, C`` by
    plain matrix products (``O(c n^2 d)``), and bounds each anchor by exhaustive enumeration
    without pruning (see :func:`_anchor_bound_bruteforce`): for ``p = 1`` over all ``2^d``
    orthants, so use it for small ``d`` only.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    V : ndarray of shape (n, c) or (n,)
    p : {1, 2}
    bias : bool
    center_tol : float, default 1e-12

    Returns
    -------
    float
        Same value as :func:`pricing_upper_bound` (up to the bisection tolerance).
    """
    X, V = _validate(X, V, p)
    if bias:
        Vc = _centred(V, center_tol)
        if Vc is None:
            return math.inf
        anchors = [X - X[k] for k in range(X.shape[0])]
    else:
        Vc = V
        anchors = [X]
    per_column: list[float] = []
    for q in range(V.shape[1]):
        best = 0.0
        for sign in (1.0, -1.0):
            w = sign * Vc[:, q]
            pos = w > 0
            neg = w < 0
            for Z in anchors:
                Pp = np.maximum(Z[pos], 0.0).T @ w[pos]
                Pm = np.maximum(-Z[pos], 0.0).T @ w[pos]
                C = Z[neg].T @ w[neg]
                best = max(best, _anchor_bound_bruteforce(Pp, Pm, C, p))
        per_column.append(best)
    return _combine(per_column, V, X, p, bias)
