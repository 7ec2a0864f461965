"""Certified lower bounds for weight-decay (``p = 2``) training via the exact convex program.

For ``p = 2`` the wedge dictionary of :func:`wedgenet.solve` is an approximation: its value is
an *upper* bound on the optimum of the non-convex training problem (docs/conventions.md
sections 2 and 7)

    P(theta) = L(f(X), y) + (lam / 2) * sum_j ( ||w_j||_2^2 + a_j^2 ),
    f(x)     = sum_j a_j * relu(w_j . x + b_j) + c,

summed loss, biases ``b_j`` and ``c`` unregularized. This module computes a *lower* bound
from the exact convex reformulation of Pilanci & Ergen (2020, "Neural networks are convex
regularizers"), with the hidden bias handled by lifting ``x`` to ``[x, 1]``:

    min_{u_i, u'_i, t}  L( sum_i D_i Xl (u_i - u'_i) + t 1, y )
                        + lam * sum_i ( ||u_i^w||_2 + ||u'_i^w||_2 )
    s.t.  (2 D_i - I) Xl u_i >= 0,   (2 D_i - I) Xl u'_i >= 0,

over every activation pattern ``D_i = diag(1[Xl u >= 0])`` of the data. Here ``Xl = [X, 1]``
(``X`` without bias), ``u = (u^w, u^b)`` and only the weight part ``u^w`` is penalized: the
balanced rescaling of ``(w, b, a)`` gives ``lam ||w||_2 |a|`` with ``b`` free, and
``v = |a| (w, b)`` turns a neuron into a point of a cone with ``relu(Xl v) = D Xl v`` and
penalty ``lam ||v^w||_2``. (Penalizing ``||(w, b)||`` instead would be a different problem;
the tests check this choice against non-convex training.)

Why it is a bound
-----------------
Every neuron ``v`` of every network lies in the closed cone of some pattern that is a *region*
(an open cell) of the central hyperplane arrangement ``{u : x_i . u = 0}`` in the lifted
space: ``v`` lies in the closure of a region, and on the closure ``D Xl v = relu(Xl v)`` still
holds. Grouping the neurons by pattern and sign and using the triangle inequality gives a
feasible point of the program with a value at most ``P(theta)``; conversely every feasible
point is a network. So, when *all* regions are enumerated, the program's optimum equals the
infimum of ``P`` over networks of any width (and is attained with at most ``2 * #patterns``
neurons). Patterns that are not regions are harmless (their cones still satisfy
``D Xl v = relu(Xl v)``); *missing* regions are not.

* ``mode="exact"``: every region is enumerated (:func:`activation_patterns`), polynomially in
  ``n`` for fixed ``d`` (at most ``2 sum_{k<r} C(n-1, k)`` regions, ``r`` the rank of
  ``Xl``). The lower bound is the value of an explicit dual-feasible point (below), so it is
  certified up to floating-point rounding and the ``1e-9`` relative tolerance of the on-plane
  tests of the enumeration.
* ``mode="sampled"``: patterns of random ``u``. The program then only restricts the exact one:
  its value is an upper bound on the exact program (an *estimate* of the optimum, like the
  wedge value), and no lower bound is reported.

The certificate
---------------
Lagrangian duality of the program gives, for any ``v`` in R^n with ``1^T v = 0`` (free output
bias),

    optimum >= -L*(-v)     whenever   max_{u in C_i, ||u^w|| <= 1} |v^T D_i Xl u| <= lam  for all i,

with ``C_i`` the cone of pattern ``i``. For a cone ``{u : A u >= 0}`` and any multipliers
``mu >= 0``, weak duality bounds the left side by ``||g^w||_2 + R |g^b|`` with
``g = +-Xl^T D_i v + A^T mu`` (``R = max_j ||x_j||`` bounds ``|u^b|`` on the cone when the
pattern has both zeros and ones; patterns without zeros need ``g^b <= 0``). Candidates for
``v`` are ``-grad L`` at the program's solution and the solver's dual variable of the
prediction, each centred and moved into the conjugate's domain; ``mu`` is chosen per pattern
by non-negative least squares, ``v`` is scaled into the feasible set, and the best
``-L*(-s v)`` is the certified lower bound (:attr:`ArrangementBound.lower_bound`). The solver
tolerance (CLARABEL, gaps ``1e-12`` requested, other settings retried while the certificate
gap exceeds :data:`TARGET_GAP`) only affects how tight that bound is, not its validity.

For biased neurons the all-ones pattern's two cones and the free output bias together give
exactly the affine functions ``w0 . x + const`` at cost ``lam ||w0||``; the program states
them as one free linear term.
"""

from __future__ import annotations

import itertools
import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import nnls

from wedgenet.exceptions import WedgeNetError
from wedgenet.geometry import cross
from wedgenet.losses import Loss, get_loss
from wedgenet.network import Neuron, TwoLayerNetwork
from wedgenet.solvers.conic import CLARABEL_OPTS
from wedgenet.validation import check_inputs, check_lam, check_X

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]
Mode = Literal["exact", "sampled"]

__all__ = [
    "ArrangementBound",
    "L2GapReport",
    "TooManyPatterns",
    "activation_patterns",
    "arrangement_lower_bound",
    "l2_gap_report",
    "max_regions",
    "sampled_patterns",
]

#: A row lies on a line/hyperplane when ``|g . h| <= ON_PLANE_TOL * ||g|| ||h||``.
ON_PLANE_TOL = 1e-9
#: Relative tolerance of the numerical rank.
RANK_RTOL = 1e-10
#: Subsets with normalized volume below this are treated as linearly dependent.
DEPENDENT_TOL = 1e-12
#: Default limit on the number of activation patterns of the convex program.
DEFAULT_MAX_PATTERNS = 5000
#: Neurons of the returned network with ``||u^w|| <= PRUNE_RTOL * max ||u^w||`` are dropped.
PRUNE_RTOL = 1e-7

LABEL_CERTIFIED = "certified lower bound"
LABEL_ESTIMATE = "estimate (sampled patterns)"

_CLARABEL_LOOSE_OPTS: dict[str, Any] = {
    "tol_gap_abs": 1e-10,
    "tol_gap_rel": 1e-10,
    "tol_feas": 1e-10,
    "max_iter": 500,
}
#: CLARABEL settings tried in turn until the certificate's relative gap is <= TARGET_GAP.
_SOLVER_ATTEMPTS: list[dict[str, Any]] = [
    CLARABEL_OPTS,
    {**CLARABEL_OPTS, "equilibrate_enable": False},
    _CLARABEL_LOOSE_OPTS,
    {**_CLARABEL_LOOSE_OPTS, "equilibrate_enable": False},
    {"max_step_fraction": 0.9},
    {},
]
#: Denominator floor of relative gaps (a zero optimum, e.g. y = 0, gives an absolute gap).
GAP_FLOOR = 1e-12
#: Relative gap between value and certified bound at which no further solver attempt is made.
TARGET_GAP = 1e-8


class TooManyPatterns(WedgeNetError):
    """The exact enumeration would exceed ``max_patterns`` activation patterns.

    Attributes
    ----------
    size : int
        The number of patterns (or an upper bound on it).
    limit : int
        The configured ``max_patterns``.
    """

    def __init__(self, size: int, limit: int, what: str = "at most") -> None:
        self.size = int(size)
        self.limit = int(limit)
        super().__init__(
            f"the data have {what} {self.size:,} activation patterns, above the limit of "
            f"{self.limit:,}; use mode='sampled' (an estimate, not a bound), fewer samples or "
            f"features, or raise max_patterns"
        )


# --------------------------------------------------------------------------- enumeration
def lifted(X: FloatArray, bias: bool) -> FloatArray:
    """``[X, 1]`` for biased neurons, ``X`` otherwise."""
    X = np.asarray(X, dtype=float)
    return np.concatenate([X, np.ones((X.shape[0], 1))], axis=1) if bias else X


def max_regions(n_hyperplanes: int, rank: int) -> int:
    """Upper bound ``2 sum_{k<rank} C(n-1, k)`` on the regions of a central arrangement.

    Attained in general position (Cover 1965, Zaslavsky 1975).
    """
    if n_hyperplanes <= 0 or rank <= 0:
        return 1
    return 2 * sum(math.comb(n_hyperplanes - 1, k) for k in range(rank))


def _reduce(G: FloatArray) -> FloatArray:
    """Coordinates of the rows of ``G`` in its row space (rank ``k`` columns)."""
    if G.shape[0] == 0:
        return G[:, :0]
    U, s, _ = np.linalg.svd(G, full_matrices=False)
    k = int(np.sum(s > RANK_RTOL * s[0])) if s.size and s[0] > 0 else 0
    return U[:, :k] * s[:k]


def _orthants(k: int) -> NDArray[np.int8]:
    """All ``2^k`` sign vectors of length ``k``, shape (2^k, k)."""
    return np.array(list(itertools.product((1, -1), repeat=k)), dtype=np.int8).reshape(-1, k)


def _regions(G: FloatArray, chunk: int = 20000) -> NDArray[np.int8]:
    """Sign vectors of all regions of the central arrangement ``{z : g_i . z = 0}``.

    Parameters
    ----------
    G : ndarray of shape (n, D)
        Normals of the hyperplanes (rows). Zero rows give sign 0.

    Returns
    -------
    ndarray of shape (R, n), int8
        One row per region: ``sign(G z)`` for any ``z`` in the region; unique rows.

    Every region of an essential central arrangement of rank ``k >= 2`` is a pointed cone with
    an extreme ray on a line ``L`` cut out by ``k - 1`` independent hyperplanes. Near ``+-h``
    (``L = span(h)``) the signs of the rows not on ``L`` are fixed, and the rows on ``L`` take
    the sign vectors of the regions of their own arrangement in ``L^perp`` (rank ``k - 1``):
    all ``2^(k-1)`` orthants in general position, a recursive call otherwise.
    """
    n = G.shape[0]
    norms = np.linalg.norm(G, axis=1)
    top = float(norms.max()) if n else 0.0
    nonzero = norms > RANK_RTOL * top if top > 0 else np.zeros(n, dtype=bool)
    idx = np.flatnonzero(nonzero)
    if idx.size == 0:
        return np.zeros((1, n), dtype=np.int8)
    Gn = G[idx] / norms[idx, None]
    Z = _reduce(Gn)
    Z = Z / np.linalg.norm(Z, axis=1, keepdims=True)
    m, k = Z.shape
    if k == 1:
        s = np.sign(Z[:, 0]).astype(np.int8)
        local = np.stack([s, -s])
    else:
        pieces: list[NDArray[np.int8]] = []
        orth = _orthants(k - 1)
        degenerate: dict[bytes, FloatArray] = {}
        combos_iter = itertools.combinations(range(m), k - 1)
        while True:
            combos = np.array(list(itertools.islice(combos_iter, chunk)), dtype=np.int64)
            if combos.size == 0:
                break
            combos = combos.reshape(-1, k - 1)
            H = cross(Z[combos])
            hn = np.linalg.norm(H, axis=1)
            keep = hn > DEPENDENT_TOL  # rows of Z are unit vectors: hn is the normalized volume
            combos, H = combos[keep], H[keep] / hn[keep, None]
            if combos.shape[0] == 0:
                continue
            S = Z @ H.T  # (m, B)
            on = np.abs(S) <= ON_PLANE_TOL
            count = on.sum(axis=0)
            gen = count == k - 1
            if np.any(gen):
                Sg = np.sign(S[:, gen]).astype(np.int8).T  # (B, m)
                Sg[on[:, gen].T] = 0
                cg = combos[gen]
                B = Sg.shape[0]
                P = np.repeat(Sg, orth.shape[0], axis=0)  # (B * 2^(k-1), m)
                rows = np.arange(P.shape[0])[:, None]
                P[rows, np.repeat(cg, orth.shape[0], axis=0)] = np.tile(orth, (B, 1))
                pieces.append(P)
                pieces.append(-P)
            for j in np.flatnonzero(~gen):
                key = np.packbits(on[:, j]).tobytes()
                if key not in degenerate:
                    degenerate[key] = H[j]
        for key, h in degenerate.items():
            on_mask = np.unpackbits(np.frombuffer(key, dtype=np.uint8), count=m).astype(bool)
            base = np.sign(Z @ h).astype(np.int8)
            # Orthonormal basis of h^perp, and the on-line rows in it.
            Q = np.linalg.svd(h[None, :], full_matrices=True)[2][1:].T  # (k, k-1)
            sub = _regions(Z[on_mask] @ Q, chunk)
            P = np.repeat(base[None, :], sub.shape[0], axis=0)
            P[:, on_mask] = sub
            pieces.append(P)
            pieces.append(-P)
        local = np.unique(np.concatenate(pieces), axis=0)
    out_sign = np.zeros((local.shape[0], n), dtype=np.int8)
    out_sign[:, idx] = local
    return out_sign


def activation_patterns(
    X: Any, *, bias: bool = True, max_patterns: int | None = DEFAULT_MAX_PATTERNS
) -> BoolArray:
    """All activation patterns of ReLU neurons on the data, exactly.

    Enumerates the regions of the arrangement of the hyperplanes ``{u : x_i . u = 0}`` in
    ``R^(d+1)`` (lifted samples ``[x_i, 1]``, biased neurons) or ``R^d`` (bias-free), i.e.
    every pattern ``1[Xl u > 0]`` of a ``u`` off all hyperplanes. Polynomial in ``n`` for
    fixed ``d``: ``C(n, r - 1)`` lines, ``r`` the rank of ``Xl``.

    Parameters
    ----------
    X : array-like of shape (n, d)
    bias : bool, default True
    max_patterns : int, optional
        Raise :class:`TooManyPatterns` when the general-position bound
        :func:`max_regions` exceeds it.

    Returns
    -------
    ndarray of shape (R, n), bool
        Unique patterns, the all-zero pattern included when it is a region (always with bias:
        ``u = (0, -1)``). Samples with ``x_i = 0`` (bias-free) are 0 in every pattern.
    """
    X = check_X(X)
    Xl = lifted(X, bias)
    r = int(_reduce(Xl).shape[1])
    nz = int(np.sum(np.linalg.norm(Xl, axis=1) > 0))
    bound = max_regions(nz, r)
    if max_patterns is not None and bound > max_patterns:
        raise TooManyPatterns(bound, max_patterns)
    signs = _regions(Xl)
    patterns = np.unique(signs > 0, axis=0)
    if max_patterns is not None and patterns.shape[0] > max_patterns:  # pragma: no cover
        raise TooManyPatterns(patterns.shape[0], max_patterns, "exactly")
    return patterns


def sampled_patterns(
    X: Any, *, bias: bool = True, n_samples: int = 2000, seed: int = 0
) -> BoolArray:
    """Activation patterns ``1[Xl u >= 0]`` of ``n_samples`` Gaussian ``u`` (unique rows)."""
    X = check_X(X)
    Xl = lifted(X, bias)
    rng = np.random.default_rng(seed)
    U = rng.standard_normal((int(n_samples), Xl.shape[1]))
    return np.unique((Xl @ U.T).T >= 0, axis=0)


# --------------------------------------------------------------------------- results
@dataclass
class ArrangementBound:
    """Value and lower bound of the exact (hyperplane-arrangement) convex program.

    Attributes
    ----------
    value : float
        Training objective ``P`` (docs/conventions.md section 2) of the network read off the program
        (:attr:`network`): an upper bound on the optimum of ``P``. In exact mode it equals
        the optimum up to the solver tolerance; in sampled mode it is an *estimate* (an
        upper bound on the exact program).
    lower_bound : float or None
        Certified lower bound on the optimum of ``P`` over networks of any width (exact
        mode), from an explicit dual-feasible point; ``None`` in sampled mode.
    n_patterns : int
        Activation patterns in the program (nonzero patterns; each has two cones).
    exact : bool
        Whether every activation pattern was enumerated.
    label : str
        ``"certified lower bound"`` or ``"estimate (sampled patterns)"``.
    solve_time : float
        Seconds (enumeration, convex solve and certificate).
    relative_gap : float or None
        ``(value - lower_bound) / |value|`` (exact mode): how tight the certificate is.
    network : TwoLayerNetwork or None
        The network read off the program (balanced scaling, ``index_set=None``).
    solver : str
    params : dict
    """

    value: float
    lower_bound: float | None
    n_patterns: int
    exact: bool
    label: str
    solve_time: float
    relative_gap: float | None = None
    network: TwoLayerNetwork | None = None
    solver: str = ""
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary (without the network)."""
        return {
            "value": float(self.value),
            "lower_bound": None if self.lower_bound is None else float(self.lower_bound),
            "n_patterns": int(self.n_patterns),
            "exact": bool(self.exact),
            "label": self.label,
            "solve_time": float(self.solve_time),
            "relative_gap": None if self.relative_gap is None else float(self.relative_gap),
            "n_neurons": 0 if self.network is None else len(self.network.neurons),
            "solver": self.solver,
            "params": dict(self.params),
        }


@dataclass
class L2GapReport:
    """How far a ``p = 2`` (wedge) network is from the optimum of the training problem.

    Attributes
    ----------
    wedge_value : float
        The wedge network's training objective (``SolveResult.primal_objective``).
    bound : ArrangementBound
    relative_gap : float or None
        ``(wedge_value - lower_bound) / |lower_bound|``: a certified upper bound on the wedge
        network's relative suboptimality (exact mode); ``None`` in sampled mode.
    estimated_gap : float
        ``(wedge_value - bound.value) / |bound.value|``: in exact mode the gap to the
        optimum (up to solver tolerance); in sampled mode an estimate (a lower estimate of
        the true gap, since ``bound.value`` is an upper bound on the optimum).
    certified : bool
        ``bound.exact``.
    label : str
        ``bound.label``.
    """

    wedge_value: float
    bound: ArrangementBound
    relative_gap: float | None
    estimated_gap: float
    certified: bool
    label: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "wedge_value": float(self.wedge_value),
            "relative_gap": None if self.relative_gap is None else float(self.relative_gap),
            "estimated_gap": float(self.estimated_gap),
            "certified": bool(self.certified),
            "label": self.label,
            "bound": self.bound.to_dict(),
        }


# --------------------------------------------------------------------------- the program
def _check_inputs(X: Any, y: Any, loss: Loss) -> tuple[FloatArray, FloatArray]:
    X, Y, _ = check_inputs(X, y, loss)
    if Y.shape[1] != 1:
        raise WedgeNetError(
            f"arrangement bounds support scalar output only, got y with {Y.shape[1]} columns"
        )
    return X, Y


def _scores(
    Xl: FloatArray, patterns: BoolArray, v: FloatArray, bias: bool, radius: float
) -> FloatArray:
    """Certified upper bounds on ``max_{u in C_i, ||u^w|| <= 1} |v^T D_i Xl u|``, per pattern.

    For each pattern and sign, ``g = +-Xl^T D_i v + A_i^T mu`` with ``A_i = (2 D_i - I) Xl``
    and ``mu >= 0`` from non-negative least squares; the bound is ``||g^w|| + R |g^b|``
    (``+inf`` where ``u^b`` is unbounded on the cone in the direction of ``g^b``).
    """
    n, D = Xl.shape
    dw = D - 1 if bias else D
    weight = 1e6 * max(radius, 1.0)  # enforces g^b ~ 0 (residual ~ 1e-12 relative)
    out = np.zeros(patterns.shape[0])
    rounding = 1e-12 * float(np.sum(np.abs(v)))
    for i, Dm in enumerate(patterns):
        A = np.where(Dm, 1.0, -1.0)[:, None] * Xl  # (n, D): the cone is A u >= 0
        c = Xl[Dm].T @ v[Dm]  # (D,)
        all_ones = bool(np.all(Dm))
        best = 0.0
        for cs in (c, -c):
            if bias and all_ones:
                # u^b is unbounded above on this cone, so g^b <= 0 is needed: take mu = 0;
                # c^b = +-1^T v vanishes (v is centred) up to rounding.
                gb = float(cs[dw]) if abs(cs[dw]) > rounding else 0.0
                val = float(np.linalg.norm(cs[:dw])) + (np.inf if gb > 0 else -gb * radius)
            else:
                # mu = 0 is always admissible; NNLS usually does much better.
                val = float(np.linalg.norm(cs[:dw]))
                if bias:
                    val += abs(float(cs[dw])) * radius
                M = A.T.copy()
                rhs = -cs
                if bias:
                    M[dw] *= weight
                    rhs = rhs.copy()
                    rhs[dw] *= weight
                try:
                    mu, _ = nnls(M, rhs, maxiter=50 * n)
                except RuntimeError:  # pragma: no cover - NNLS iteration limit
                    mu = None
                if mu is not None:
                    g = cs + A.T @ mu
                    cand = float(np.linalg.norm(g[:dw]))
                    if bias:
                        cand += abs(float(g[dw])) * radius
                    val = min(val, cand)
            best = max(best, val)
        out[i] = best
    return out


def _certificate(
    Xl: FloatArray,
    patterns: BoolArray,
    v: FloatArray,
    Y: FloatArray,
    loss: Loss,
    lam: float,
    bias: bool,
    radius: float,
) -> float:
    """Lower bound ``-L*(-s v)`` with ``s`` scaling ``v`` into the dual feasible set."""
    if not np.all(np.isfinite(v)):
        return -np.inf
    scores = _scores(Xl, patterns, v, bias, radius)
    top = float(scores.max()) if scores.size else 0.0
    s_max = 1.0 if top <= lam else lam / top
    scale = loss.best_scale(v[:, None], Y, s_max)
    return float(loss.dual_value(scale * v[:, None], Y))


def arrangement_lower_bound(
    X: Any,
    y: Any,
    *,
    lam: float,
    bias: bool = True,
    loss: str | Loss = "squared",
    mode: Mode = "exact",
    n_patterns: int | None = None,
    seed: int = 0,
    max_patterns: int | None = DEFAULT_MAX_PATTERNS,
    fit_offset: bool = True,
    solver: str = "CLARABEL",
    solver_opts: dict[str, Any] | None = None,
) -> ArrangementBound:
    """Solve the exact convex program of ``p = 2`` training and certify a lower bound.

    The objective is docs/conventions.md section 2's
    ``P = L(f(X), y) + (lam / 2) sum_j (||w_j||_2^2 + a_j^2)`` with summed loss and
    unregularized biases; see the module docstring for the
    program (Pilanci & Ergen 2020, hidden bias by lifting, only ``w`` penalized) and the
    certificate.

    Parameters
    ----------
    X : array-like of shape (n, d)
    y : array-like of shape (n,)
        Real targets (``squared``) or two class labels (``logistic``).
    lam : float
        Regularization strength, > 0.
    bias : bool, default True
        Biased hidden neurons (unregularized bias).
    loss : {"squared", "logistic"}
    mode : {"exact", "sampled"}
        ``exact`` enumerates every activation pattern (a certified lower bound, small ``d``
        only); ``sampled`` uses the patterns of random neurons (an estimate, no bound).
    n_patterns : int, optional
        ``sampled`` mode: number of random neurons drawn (default ``max(2000, 20 n)``).
        Ignored in exact mode.
    seed : int
        Seed of the sampled mode.
    max_patterns : int, optional
        Refuse (:class:`TooManyPatterns`) an exact enumeration whose region bound
        :func:`max_regions` exceeds this; also caps the sampled mode's distinct patterns.
    fit_offset : bool, default True
        Free output bias ``c``. Always on for biased neurons, where a constant output is free
        anyway (``w = 0``, ``b -> inf``, ``a -> 0``), so the optimum is the same.
    solver : str, default "CLARABEL"
    solver_opts : dict, optional
        Extra cvxpy solver options (defaults: tolerances ``1e-12``).

    Returns
    -------
    ArrangementBound

    Raises
    ------
    WedgeNetError
        Invalid input (shapes, NaN, ``lam <= 0``, unsupported loss or mode, vector output).
    TooManyPatterns
        Exact mode with more than ``max_patterns`` patterns.

    Examples
    --------
    >>> X = np.array([[-1.0], [0.0], [1.0]]); y = np.array([1.0, 0.0, 1.0])
    >>> b = arrangement_lower_bound(X, y, lam=0.1)
    >>> b.lower_bound <= b.value and b.label
    'certified lower bound'
    """
    import cvxpy as cp

    start = time.perf_counter()
    lam = check_lam(lam)
    if mode not in ("exact", "sampled"):
        raise WedgeNetError(f"unknown mode {mode!r}; choose exact or sampled")
    loss_obj = get_loss(loss)
    if loss_obj.name not in ("squared", "logistic"):
        raise WedgeNetError(
            f"arrangement bounds support the squared and logistic losses, not {loss_obj.name!r}"
        )
    X, Y = _check_inputs(X, y, loss_obj)
    n, d = X.shape
    Xl = lifted(X, bias)
    # With biased neurons a constant output is free (w = 0, b -> inf, a -> 0 costs -> 0), so
    # the infimum of P is the same with or without a free output bias.
    fit_offset = bool(fit_offset or bias)
    if mode == "exact":
        patterns = activation_patterns(X, bias=bias, max_patterns=max_patterns)
    else:
        draws = int(n_patterns) if n_patterns is not None else max(2000, 20 * n)
        if draws < 1:
            raise WedgeNetError(f"n_patterns must be positive, got {n_patterns}")
        patterns = sampled_patterns(X, bias=bias, n_samples=draws, seed=seed)
        if max_patterns is not None and patterns.shape[0] > max_patterns:
            patterns = patterns[
                np.sort(np.random.default_rng(seed).choice(patterns.shape[0], max_patterns,
                                                            replace=False))
            ]
    patterns = patterns[np.any(patterns, axis=1)]  # the all-zero pattern adds nothing
    P = patterns.shape[0]
    dw = d if bias else Xl.shape[1]
    # Biased neurons: the all-ones pattern's two cones, together with the free output bias,
    # give exactly the affine functions w0 . x + const at cost lam ||w0||. State them as one
    # free linear term: the cones would leave a ray of optimal (u^b, t) that stalls the
    # interior-point solver (logistic loss).
    conic = ~np.all(patterns, axis=1) if bias else np.ones(P, dtype=bool)
    cone_patterns = patterns[conic]
    Pc = cone_patterns.shape[0]
    Dm = cone_patterns.T.astype(float)  # (n, Pc)
    S = 2.0 * Dm - 1.0

    # cvxpy has no empty variables: with no cone (n = 1, or all samples equal) use one dummy
    # pattern whose variables are fixed at zero.
    Pv = max(Pc, 1)
    U1 = cp.Variable((Pv, Xl.shape[1]))
    U2 = cp.Variable((Pv, Xl.shape[1]))
    M1 = Xl @ U1.T  # (n, Pv)
    M2 = Xl @ U2.T
    if Pc:
        z = cp.sum(cp.multiply(Dm, M1 - M2), axis=1)
        constraints = [cp.multiply(S, M1) >= 0, cp.multiply(S, M2) >= 0]
    else:
        z = cp.Constant(np.zeros(n))
        constraints = [U1 == 0, U2 == 0]
    reg = cp.sum(cp.norm(U1[:, :dw], 2, axis=1)) + cp.sum(cp.norm(U2[:, :dw], 2, axis=1))
    w0 = cp.Variable(d) if Pc < P else None
    if w0 is not None:
        z = z + X @ w0
        reg = reg + cp.norm(w0, 2)
    tv = cp.Variable() if fit_offset else None
    # An explicit prediction variable: the dual of its defining equality is a second,
    # usually more accurate, candidate dual point (the solver keeps it dual feasible).
    zz = cp.Variable(n)
    defining = zz == z + (tv if tv is not None else 0.0)
    pred = cp.reshape(zz, (n, 1), order="F")
    constraints.append(defining)
    prob = cp.Problem(cp.Minimize(loss_obj.cvxpy(pred, Y) + lam * reg), constraints)
    radius = float(np.max(np.linalg.norm(X, axis=1))) if bias else 0.0

    def read_solution() -> tuple[FloatArray, FloatArray, FloatArray]:
        D1 = Xl.shape[1]
        parts = [
            np.asarray(U1.value).reshape(Pv, D1)[:Pc],
            np.asarray(U2.value).reshape(Pv, D1)[:Pc],
        ]
        sgn = np.r_[np.ones(Pc), -np.ones(Pc)]
        if w0 is not None:
            # The linear term as a neuron active on every sample: relu(w0.x + b0) = w0.x + b0.
            w0v = np.asarray(w0.value, dtype=float).reshape(d)
            b0 = max(0.0, -float(np.min(X @ w0v)))
            parts.append(np.r_[w0v, b0][None, :])
            sgn = np.r_[sgn, 1.0]
        t0 = np.zeros(1) if tv is None else np.asarray(tv.value, dtype=float).reshape(1)
        return np.concatenate(parts), sgn, t0

    # CLARABEL sometimes stalls ("insufficient progress", logistic loss) or stops short of
    # the requested accuracy; then other settings are tried. Every attempt yields a network
    # (an upper bound) and, in exact mode, an independent certificate (a lower bound), so the
    # best of each is kept.
    attempts: list[dict[str, Any]] = _SOLVER_ATTEMPTS if solver == "CLARABEL" else [{}]
    best_net: tuple[float, TwoLayerNetwork] | None = None
    lower: float | None = None
    errors: list[str] = []
    for opts_base in attempts:
        opts = dict(opts_base)
        opts.update(solver_opts or {})
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Solution may be inaccurate")
                prob.solve(solver=solver, **opts)
        except cp.error.SolverError as exc:
            errors.append(str(exc))
            continue
        if U1.value is None or U2.value is None or (w0 is not None and w0.value is None):
            errors.append(f"status {prob.status}")
            continue
        Uall, sgn, t0 = read_solution()
        # The dual point from the (unpruned) network: f = sum +-relu(Xl u) + t.
        f0 = np.maximum(Xl @ Uall.T, 0.0) @ sgn
        t = loss_obj.optimal_offset(f0[:, None], Y, t0) if fit_offset else np.zeros(1)
        network = _network(Uall, sgn, d, bias, t, X, Y, loss_obj, fit_offset)
        value = float(loss_obj.value(network.decision_function(X).reshape(n, 1), Y)
                      + lam * network.regularization(2))
        if best_net is None or value < best_net[0]:
            best_net = (value, network)
        if mode != "exact":
            break
        v_grad = -loss_obj.grad(f0[:, None] + t, Y)[:, 0]
        candidates = [v_grad]
        if defining.dual_value is not None:
            v_dual = np.asarray(defining.dual_value, dtype=float).reshape(n)
            candidates.append(v_dual if float(v_dual @ v_grad) >= 0 else -v_dual)
        for v in candidates:
            v = loss_obj.feasible_dual(v[:, None], Y, fit_offset)[:, 0]
            cand = _certificate(Xl, patterns, v, Y, loss_obj, lam, bias, radius)
            lower = cand if lower is None else max(lower, cand)
        scale_ref = max(abs(best_net[0]), GAP_FLOOR)
        if lower is not None and best_net[0] - lower <= TARGET_GAP * scale_ref:
            break
    if best_net is None:
        raise WedgeNetError(f"cvxpy solver {solver} failed: {'; '.join(errors)}")
    value, network = best_net
    gap = None if lower is None else max(value - lower, 0.0) / max(abs(value), GAP_FLOOR)
    params = {
        "lam": lam, "bias": bool(bias), "loss": loss_obj.name, "mode": mode,
        "n_patterns": n_patterns, "seed": int(seed), "max_patterns": max_patterns,
        "fit_offset": bool(fit_offset),
    }
    return ArrangementBound(
        value=value,
        lower_bound=lower,
        n_patterns=int(P),
        exact=mode == "exact",
        label=LABEL_CERTIFIED if mode == "exact" else LABEL_ESTIMATE,
        solve_time=time.perf_counter() - start,
        relative_gap=gap,
        network=network,
        solver=f"cvxpy/{solver}",
        params=params,
    )


def _network(
    Uall: FloatArray,
    sgn: FloatArray,
    d: int,
    bias: bool,
    t: FloatArray,
    X: FloatArray,
    Y: FloatArray,
    loss: Loss,
    fit_offset: bool,
) -> TwoLayerNetwork:
    """Balanced network from the program's ``u``: ``(w, b) = u / sqrt(||u^w||)``, ``a = +-sqrt``.

    Neurons with tiny ``||u^w||`` are dropped, constant neurons (``u^w = 0``) are folded into
    the output bias, and the output bias is refit.
    """
    norms = np.linalg.norm(Uall[:, :d], axis=1)
    keep = norms > PRUNE_RTOL * (norms.max() if norms.size else 0.0)
    keep &= norms > 0
    neurons: list[Neuron] = []
    for j in np.flatnonzero(keep):
        scale = float(np.sqrt(norms[j]))
        neurons.append(
            Neuron(
                weight=Uall[j, :d] / scale,
                bias=float(Uall[j, d] / scale) if bias else 0.0,
                output_weight=np.array([sgn[j] * scale]),
                index_set=None,
                formula="arrangement program neuron",
            )
        )
    net = TwoLayerNetwork(neurons=neurons, output_bias=np.zeros(1), n_features=d)
    if fit_offset:
        U0 = net.decision_function(X).reshape(-1, 1)
        net.output_bias = np.asarray(loss.optimal_offset(U0, Y, t), dtype=float).reshape(1)
    return net


# --------------------------------------------------------------------------- report
def l2_gap_report(
    X: Any,
    y: Any,
    lam: float,
    bias: bool = True,
    wedge_value: float | Any | None = None,
    *,
    loss: str | Loss = "squared",
    mode: Mode = "exact",
    **kwargs: Any,
) -> L2GapReport:
    """Gap of the ``p = 2`` wedge network to the arrangement bound.

    Parameters
    ----------
    X, y, lam, bias, loss
        As in :func:`wedgenet.solve` (``p = 2``).
    wedge_value : float or SolveResult, optional
        The wedge network's objective (``SolveResult.primal_objective``; a ``SolveResult``
        is accepted). ``None``: computed by ``wedgenet.solve(X, y, p=2, ...)``.
    mode : {"exact", "sampled"}
    **kwargs
        Passed to :func:`arrangement_lower_bound` (``max_patterns``, ``n_patterns``, ...).

    Returns
    -------
    L2GapReport
        ``relative_gap = (wedge - lower_bound) / |lower_bound|`` is certified (exact mode).
    """
    if wedge_value is None:
        from wedgenet.solve import solve

        wedge_value = solve(X, y, p=2, bias=bias, lam=lam, loss=loss).primal_objective
    elif hasattr(wedge_value, "primal_objective"):
        wedge_value = wedge_value.primal_objective
    wedge = float(wedge_value)
    bound = arrangement_lower_bound(X, y, lam=lam, bias=bias, loss=loss, mode=mode, **kwargs)
    rel = None
    if bound.lower_bound is not None:
        rel = (wedge - bound.lower_bound) / max(abs(bound.lower_bound), GAP_FLOOR)
    est = (wedge - bound.value) / max(abs(bound.value), GAP_FLOOR)
    return L2GapReport(
        wedge_value=wedge, bound=bound, relative_gap=rel, estimated_gap=est,
        certified=bound.exact, label=bound.label,
    )
