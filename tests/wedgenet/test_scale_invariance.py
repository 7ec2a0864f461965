"""The hyperplane dictionary does not depend on the units of the data.

In exact arithmetic the set of hyperplanes (which generator subsets are independent, which
generators lie on which hyperplane, the canonical index sets, the rank) is invariant to
scaling any feature by a positive factor, to scaling the whole data, and (biased neurons) to
translating the data. These tests compare the dictionary of transformed data with a
brute-force dictionary of the original data, built here independently: ``itertools`` over all
subsets and ``numpy.linalg.matrix_rank`` with a scale-free tolerance on equilibrated data.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pytest

import wedgenet as wn
from wedgenet.dictionary import WedgeDictionary
from wedgenet.losses import get_loss
from wedgenet.solvers.conic import solve_cvxpy

# ----------------------------------------------------------------------------- brute force


def equilibrated(X: np.ndarray, bias: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    c = X.mean(axis=0) if bias else np.zeros(X.shape[1])
    Xc = X - c
    if bias:
        Xc[:, np.ptp(X, axis=0) == 0] = 0.0
    s = np.sqrt(np.mean(Xc**2, axis=0))
    s[s == 0] = 1.0
    return Xc / s, c, s


def brute_pool(X: np.ndarray, p: int, bias: bool) -> tuple[np.ndarray, int, np.ndarray | None]:
    """Generator pool in equilibrated (for p = 2 reduced) coordinates, rank, basis."""
    Z, _, _ = equilibrated(X, bias)
    n, d = Z.shape
    basis = None
    r = d
    if p == 2:
        _, sv, vt = np.linalg.svd(Z, full_matrices=False)
        r = int(np.sum(sv > 1e-9 * sv[0]))
        if r < d:
            basis = vt[:r].T
            Z = Z @ basis
    pts = np.c_[Z, np.ones(n)] if bias else Z
    pool = np.r_[pts, np.eye(r, pts.shape[1])] if p == 1 else pts
    return pool, r, basis


def independent(pool: np.ndarray, combo: tuple[int, ...]) -> bool:
    G = pool[list(combo)]
    norms = np.linalg.norm(G, axis=1)
    if np.any(norms == 0):
        return False
    G = G / norms[:, None]
    top = np.linalg.svd(G, compute_uv=False)[0]
    return bool(np.linalg.matrix_rank(G, tol=1e-11 * top) == len(combo))


def brute_subsets(
    X: np.ndarray, p: int, bias: bool, subsets: np.ndarray | None = None
) -> set[tuple[int, ...]]:
    """Independent generator subsets (pool indices as in WedgeDictionary)."""
    n = X.shape[0]
    pool, _, _ = brute_pool(X, p, bias)
    k = pool.shape[1] - 1
    combos = (
        itertools.combinations(range(pool.shape[0]), k)
        if subsets is None
        else (tuple(int(i) for i in s) for s in subsets)
    )
    out = set()
    for combo in combos:
        if p == 1 and bias and all(i >= n for i in combo):
            continue  # directions only: w = 0
        if independent(pool, combo):
            out.add(combo)
    return out


def brute_canonical(X: np.ndarray, p: int, bias: bool) -> set[tuple[int, ...]]:
    """Lexicographically first independent subset of the generators on each hyperplane."""
    pool, _, _ = brute_pool(X, p, bias)
    unit = pool / np.where(np.linalg.norm(pool, axis=1) > 0, np.linalg.norm(pool, axis=1), 1)[
        :, None
    ]
    k = pool.shape[1] - 1
    out = set()
    for combo in sorted(brute_subsets(X, p, bias)):
        h = np.linalg.svd(unit[list(combo)])[2][-1]
        on = [int(i) for i in np.flatnonzero(np.abs(unit @ h) <= 1e-9)]
        first = next(c for c in itertools.combinations(on, k) if independent(pool, c))
        out.add(first)
    return out


def brute_normals(X: np.ndarray, p: int, bias: bool) -> np.ndarray:
    """Original (w, b), ||w||_p = 1, of every independent subset (full-rank data).

    A basis direction e_k among the generators means w_k = 0 exactly; it is set so. (The SVD
    leaves ~1e-16 there, which the map back to the original units inflates: with feature 0
    x 1e7 and p = 1, the l1 norm of the columns through directions 1 and 2 (0-based) was
    1 + 1e-9 instead of 1, so those columns came out 1e-9 too short and the brute-force
    optimum 1.2e-9 above wedgenet's, whose closed-form normals have the exact zeros.)
    """
    _, c, s = equilibrated(X, bias)
    pool, r, basis = brute_pool(X, p, bias)
    assert basis is None
    n = X.shape[0]
    rows = []
    for combo in sorted(brute_subsets(X, p, bias)):
        h = np.linalg.svd(pool[list(combo)])[2][-1]
        h[[i - n for i in combo if i >= n]] = 0.0
        w = h[:r] / s
        b = h[r] - w @ c if bias else 0.0
        rows.append(np.r_[w, b] / np.linalg.norm(w, ord=p))
    return np.array(rows)


def brute_dictionary(X: np.ndarray, p: int, bias: bool) -> np.ndarray:
    """Columns relu(+-(X w + b)), ||w||_p = 1, of every independent subset (none all zero)."""
    H = brute_normals(X, p, bias)
    U = X @ H[:, :-1].T + H[:, -1]
    K = np.c_[np.maximum(U, 0), np.maximum(-U, 0)]
    return K[:, np.any(K > 0, axis=0)]


def brute_optimum(X: np.ndarray, y: np.ndarray, p: int, bias: bool, loss: str, lam: float):
    K = brute_dictionary(X, p, bias)
    loss_obj = get_loss(loss)
    Y = loss_obj.encode(y)[0]
    return solve_cvxpy(K, Y, loss_obj, lam)


# ----------------------------------------------------- squared-loss Lasso reference, any scale

#: High-accuracy CLARABEL settings, then fallbacks should a machine's arithmetic make them
#: fail (from each of the three alone, :func:`lasso_reference` brackets the six cases of
#: test_scaled_feature_solve_matches_brute_force_lasso to a relative gap <= 2e-13).
REFERENCE_CLARABEL: dict = {
    "tol_gap_abs": 1e-12, "tol_gap_rel": 1e-12, "tol_feas": 1e-12, "tol_ktratio": 1e-10,
    "max_iter": 500,
}
REFERENCE_CLARABEL_ATTEMPTS = [
    REFERENCE_CLARABEL, {**REFERENCE_CLARABEL, "max_step_fraction": 0.9}, {}
]


@dataclass
class LassoBracket:
    """``dual <= min_{z, t} 0.5 ||y - K z - t||^2 + lam ||z||_1 <= primal``."""

    primal: float  #: the objective attained by (z, t), evaluated in the original columns
    dual: float  #: weak-duality bound of a dual point scaled into every column's constraint
    z: np.ndarray
    t: float

    @property
    def gap(self) -> float:
        return max(self.primal - self.dual, 0.0) / abs(self.primal)


def lasso_objective(K: np.ndarray, y: np.ndarray, lam: float, z: np.ndarray, t: float) -> float:
    r = y - K @ z - t
    return 0.5 * float(r @ r) + lam * float(np.abs(z).sum())


def lasso_dual_bound(K: np.ndarray, y: np.ndarray, lam: float, v: np.ndarray) -> float:
    """Weak duality: for 1^T v = 0 and |k_j^T v| <= lam for every column j,
    0.5 ||r||^2 >= v^T r - 0.5 ||v||^2 with r = y - K z - t gives, for every (z, t),
    objective >= y^T v - 0.5 ||v||^2. Any v is centred and scaled to satisfy that."""
    v = v - v.mean()
    score = float(np.abs(K.T @ v).max())
    s = 1.0 if score <= lam else lam / score
    return s * float(y @ v) - 0.5 * s * s * float(v @ v)


def lasso_reference(K: np.ndarray, y: np.ndarray, lam: float) -> LassoBracket:
    """The squared-loss program of docs/conventions.md section 2 (scalar output, free output
    bias): ``min 0.5 ||y - K z - t||^2 + lam ||z||_1``, bracketed by cvxpy/CLARABEL and numpy
    alone, accurate also when the column norms span many orders of magnitude.

    A scaled feature (x 1e7) gives columns of norm 1e-1 .. 1e8: CLARABEL alone certified only
    a relative gap of 6e-4 there (the optimum nearly interpolates, objective 3.6e-6, and the
    dual constraints of the big columns must hold to 1e-9 relative to lam). So:

    1. Screening: a column with ||k_j|| ||y - mean(y)|| < lam is zero at every optimum (the
       optimal residual v is at most as long as the residual ``y - mean(y)`` of ``z = 0``,
       so |k_j^T v| < lam); it is left out of the solve (columns of norm 1e-16 make CLARABEL
       fail) but not out of the dual bound, which scores every column of ``K``.
    2. Exact rescaling: unit columns ``k_j / ||k_j||`` with coefficients ``||k_j|| z_j`` and
       penalty weights ``lam / ||k_j||`` are the same program.
    3. CLARABEL on it.
    4. Polish on the support S: the optimal residual v solves the KKT equalities
       ``k_j^T v = lam sign(z_j)`` (j in S) and ``1^T v = 0`` together with ``v = y - K_S z_S
       - t``; v is solved for directly (recomputing it from a near-interpolating fit would
       lose its digits by cancellation), then (z, t) is the nearest to CLARABEL's fitting
       ``y - v``. Supports for several thresholds are tried; the smallest primal and the
       largest dual are each valid on their own, whatever the support was.
    """
    import cvxpy as cp

    n, m = K.shape
    norms = np.linalg.norm(K, axis=0)
    keep = np.flatnonzero(norms * np.linalg.norm(y - y.mean()) >= lam)
    Kn = K[:, keep] / norms[keep]
    w = lam / norms[keep]
    zn0, t0 = np.zeros(keep.size), float(y.mean())  # every column screened: z = 0
    if keep.size:
        zv, tv = cp.Variable(keep.size), cp.Variable()
        prob = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(Kn @ zv + tv - y) + w @ cp.abs(zv)))
        for opts in REFERENCE_CLARABEL_ATTEMPTS:
            try:
                prob.solve(solver="CLARABEL", **opts)
            except cp.error.SolverError:
                continue
            if zv.value is not None:
                break
        assert zv.value is not None, prob.status
        zn0, t0 = np.asarray(zv.value, dtype=float), float(tv.value)

    def original(zn: np.ndarray) -> np.ndarray:
        z = np.zeros(m)
        z[keep] = zn / norms[keep]
        return z

    best = LassoBracket(
        lasso_objective(K, y, lam, original(zn0), t0),
        lasso_dual_bound(K, y, lam, y - K @ original(zn0) - t0),
        original(zn0),
        t0,
    )
    part = w * np.abs(zn0)
    for threshold in (1e-3, 1e-4, 1e-5, 1e-6, 1e-8):
        S = np.flatnonzero(part > threshold * part.max(initial=0.0))
        N = np.c_[Kn[:, S], np.ones(n)]
        c = np.r_[w[S] * np.sign(zn0[S]), 0.0]
        Q, sv, Wt = np.linalg.svd(N)
        k = int(np.sum(sv > 1e-12 * sv[0]))
        # v = (the part of y outside range(N)) + (the one point of range(N) with N^T v = c)
        v = Q[:, k:] @ (Q[:, k:].T @ y) + Q[:, :k] @ ((Wt[:k] @ c) / sv[:k])
        x0 = np.r_[zn0[S], t0]
        x = x0 + Wt[:k].T @ ((Q[:, :k].T @ (y - v - N @ x0)) / sv[:k])
        zn = np.zeros_like(zn0)
        zn[S] = x[:-1]
        primal = lasso_objective(K, y, lam, original(zn), float(x[-1]))
        if primal < best.primal:
            best = LassoBracket(primal, best.dual, original(zn), float(x[-1]))
        best.dual = max(best.dual, lasso_dual_bound(K, y, lam, v))
    return best


def kept(D: WedgeDictionary, dedupe: bool = False) -> tuple[set[tuple[int, ...]], int]:
    subs: set[tuple[int, ...]] = set()
    undecided = 0
    for chunk in D.iter_hyperplane_chunks(97, dedupe=dedupe):
        subs |= {tuple(int(i) for i in row) for row in chunk.subsets}
        undecided += chunk.n_undecided
    return subs, undecided


# ----------------------------------------------------------------------------- data


def gaussian() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((20, 3))


def collinear() -> np.ndarray:
    # lines y = x (0, 1, 2, 3 = duplicate of 1, 8), x + y = 2 (4, 1, 5), x + y = 4 (6, 2, 7)
    return np.array(
        [[0, 0], [1, 1], [2, 2], [1, 1], [0, 2], [2, 0], [3, 1], [1, 3], [4, 4], [0, 1]],
        dtype=float,
    )


def rank_deficient() -> np.ndarray:
    A = np.random.default_rng(1).integers(-3, 4, size=(12, 2)).astype(float)
    return A @ np.array([[1.0, 2.0, 0.0], [0.0, 1.0, -1.0]]) + np.array([5.0, -2.0, 3.0])


def transforms(d: int, bias: bool) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(label, per-feature factor, shift) of x -> x * factor + shift.

    Shifts are in the scaled units (``factor * t``): translating by ``t`` first is exact for
    the integer data sets, and scaling afterwards rounds at the level of ``eps`` only. (A
    shift of 3 after a factor of 1e-8 would round the data themselves at 4e-8 relative.)
    """
    out = []
    zero = np.zeros(d)
    for f in (1e-8, 1e-4, 1e4, 1e8):
        one = np.ones(d)
        one[0] = f
        out.append((f"feature 0 x {f:g}", one, zero))
        out.append((f"all features x {f:g}", np.full(d, f), zero))
    mixed = np.array([1e-8, 1e8, 1e4, 1e-4] * d)[:d]
    out.append(("mixed per-feature", mixed, zero))
    if bias:
        out.append(("translated", np.ones(d), np.arange(1, d + 1) * 7.0 - 11.0))
        out.append(("translated far", np.ones(d), np.full(d, 1024.0)))
        out.append(("scaled and translated", mixed, mixed * np.arange(1, d + 1) * 3.0))
    return out


CASES = [
    ("gaussian", gaussian, 1, True),
    ("gaussian", gaussian, 1, False),
    ("gaussian", gaussian, 2, True),
    ("gaussian", gaussian, 2, False),
    ("collinear", collinear, 1, True),
    ("collinear", collinear, 1, False),
    ("collinear", collinear, 2, True),
    ("collinear", collinear, 2, False),
    ("rank-deficient", rank_deficient, 2, True),
    ("rank-deficient", rank_deficient, 2, False),
    ("rank-deficient", rank_deficient, 1, True),
]


@pytest.mark.parametrize("name,make,p,bias", CASES)
def test_index_sets_are_invariant_to_units(name, make, p, bias):
    X = make()
    reference = brute_subsets(X, p, bias)
    assert reference
    base = WedgeDictionary(X, p=p, bias=bias)
    assert kept(base) == (reference, 0)
    canonical = {tuple(int(i) for i in s) for s in base.atoms().subsets}
    for label, factor, shift in transforms(X.shape[1], bias):
        D = WedgeDictionary(X * factor + shift, p=p, bias=bias)
        assert D.rank_ == base.rank_, label
        subs, undecided = kept(D)
        assert undecided == 0, label
        assert subs == reference, label
        assert {tuple(int(i) for i in s) for s in D.atoms().subsets} == canonical, label


def test_collinear_and_duplicate_points_merge_canonically_at_any_scale():
    X = collinear()
    for p, bias in [(2, True), (1, True), (2, False)]:
        expected = brute_canonical(X, p, bias)
        for _, factor, shift in [("none", np.ones(2), np.zeros(2))] + transforms(2, bias):
            D = WedgeDictionary(X * factor + shift, p=p, bias=bias)
            assert {tuple(int(i) for i in s) for s in D.atoms().subsets} == expected
    # duplicates (1, 3) and collinear triples are skipped as decided, not undecided
    D = WedgeDictionary(X * np.array([1e8, 1e-8]), p=2, bias=True)
    subs, undecided = kept(D)
    assert (1, 3) not in subs and undecided == 0


def test_rank_reduction_is_decided_in_equilibrated_coordinates():
    X = rank_deficient()
    for _, factor, shift in transforms(3, True):
        D = WedgeDictionary(X * factor + shift, p=2, bias=True)
        assert D.rank_ == 2 and D.subset_size_ == 2
        atoms = D.atoms()
        # the neurons pass through their samples in the original coordinates
        for j in range(0, len(atoms), 5):
            assert D.residual(atoms.subsets[j], atoms.normals[j]) < 1e-9
    # bias-free: linear rank of the shifted set is 3, of the unshifted one 2
    assert WedgeDictionary(X * np.array([1e8, 1, 1e-8]), p=2, bias=False).rank_ == 3
    X0 = X - np.array([5.0, -2.0, 3.0])
    for _, factor, _ in transforms(3, False):
        assert WedgeDictionary(X0 * factor, p=2, bias=False).rank_ == 2


def test_breast_cancer_sampled_subsets_are_invariant():
    datasets = pytest.importorskip("sklearn.datasets")
    X = datasets.load_breast_cancer().data[::3]  # 190 samples, d = 30, raw units
    for p in (1, 2):
        D = WedgeDictionary(X, p=p, bias=True, source="sample", n_hyperplanes=150, seed=1)
        sampled = D._sample_subsets()
        assert len(sampled) == 150
        reference = brute_subsets(X, p, True, sampled)
        assert len(reference) >= 0.9 * len(sampled)
        assert kept(D) == (reference, 0)
        chosen = transforms(30, True)
        for label, factor, shift in chosen[::3] + chosen[-1:]:
            Ds = WedgeDictionary(
                X * factor + shift, p=p, bias=True, source="sample", n_hyperplanes=150, seed=1
            )
            assert kept(Ds) == (reference, 0), label


# ------------------------------------------------------------------ the solve case


@pytest.mark.parametrize("p", [2, 1])
@pytest.mark.parametrize("factor", [1.0, 1e6, 1e7])
def test_scaled_feature_solve_matches_brute_force_lasso(p, factor):
    """Gaussian n = 20, d = 3, feature 0 x factor (the reported case: p = 2, lam = 0.1).

    Objectives are not scale invariant (the weight norm changes with the units), so the
    reference is cvxpy over a brute-force dictionary of the *scaled* data, rescaled and
    polished by :func:`lasso_reference` (CLARABEL alone brackets the p = 1 x1e7 optimum only
    to 6e-4 there). Formerly the x1e6 problem was certified at 3.6x its optimum (most valid
    subsets dropped) and x1e7 raised "the dictionary is empty".
    """
    rng = np.random.default_rng(0)
    X = rng.standard_normal((20, 3))
    y = rng.standard_normal(20)
    X[:, 0] *= factor
    ref = lasso_reference(brute_dictionary(X, p, True), y, 0.1)  # brackets the optimum
    assert ref.gap < 1e-9  # measured <= 2e-13 in all six cases
    r = wn.solve(X, y, p=p, bias=True, lam=0.1)
    assert r.primal_objective == pytest.approx(ref.primal, rel=1e-6)
    slack = 1e-12 * abs(ref.primal)
    assert ref.dual - slack <= r.primal_objective
    assert r.dual_objective <= ref.primal + slack  # never a wrong lower bound
    # p = 1 scaled: columns span 7 orders of magnitude and the fit nearly interpolates; the
    # residual recomputed from K Z exceeded lam on the big columns by ~1e-5 (rounding), so
    # the gap stopped at 1.2e-5 (x1e7: not certified, after 200 stalled iterations) and
    # 9.5e-7 (x1e6). The dual point solved from the optimality conditions
    # (wedgenet.programs.kkt_dual_point) closes both to rounding.
    assert r.certified, r.certificate_note
    assert r.relative_gap <= 1e-9


def logistic_reference(K: np.ndarray, y: np.ndarray, lam: float) -> float:
    """``min sum_i log(1 + exp(-y_i (k_i^T z + t))) + lam ||z||_1`` by scipy's L-BFGS-B alone
    (CLARABEL fails on these exponential-cone programs), accurate when the column norms span
    many orders of magnitude: columns with ``||k_j|| sqrt(n) < lam`` are zero at every
    optimum (the dual point ``y sigma(-y u)`` has entries of size at most 1) and are left
    out; the others are solved as unit columns with penalty weights ``lam / ||k_j||`` (the
    same program), ``z = z+ - z-`` with bounds ``z+, z- >= 0``. Returns the objective it
    attains, evaluated in the original columns (an upper bound on the optimum)."""
    from scipy.optimize import minimize
    from scipy.special import expit

    n = K.shape[0]
    norms = np.linalg.norm(K, axis=0)
    keep = np.flatnonzero(norms * np.sqrt(n) >= lam)
    Kn = K[:, keep] / norms[keep]
    w = lam / norms[keep]
    q = keep.size

    def f(x: np.ndarray) -> tuple[float, np.ndarray]:
        zn = x[:q] - x[q:2 * q]
        margin = y * (Kn @ zn + x[-1])
        g_u = -y * expit(-margin)
        g_z = Kn.T @ g_u
        value = float(np.sum(np.logaddexp(0.0, -margin)) + w @ (x[:q] + x[q:2 * q]))
        return value, np.r_[g_z + w, -g_z + w, g_u.sum()]

    bounds = [(0.0, None)] * (2 * q) + [(None, None)]
    res = minimize(f, np.zeros(2 * q + 1), jac=True, method="L-BFGS-B", bounds=bounds,
                   options={"maxiter": 100_000, "maxfun": 200_000, "ftol": 1e-15,
                            "gtol": 1e-12, "maxcor": 50})
    z = np.zeros(K.shape[1])
    z[keep] = (res.x[:q] - res.x[q:2 * q]) / norms[keep]
    u = y * (K @ z + res.x[-1])
    return float(np.sum(np.logaddexp(0.0, -u)) + lam * np.abs(z).sum())


@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("factor", [1.0, 1e6, 1e7])
def test_scaled_feature_logistic_solve_is_certified_and_optimal(p, factor):
    """The same data with +-1 labels and the logistic loss. Formerly, with p = 1 and the
    feature x1e6 or x1e7, every restricted solve failed (the active-set method of the
    proximal Newton steps cycled on rounding-level violations of the big columns until its
    iteration cap), so the solve stayed at the trivial network: objective 13.46 against an
    optimum of 4e-4 / 5e-5, gap 1.0, not certified."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((20, 3))
    y = np.where(rng.standard_normal(20) > 0, 1.0, -1.0)
    X[:, 0] *= factor
    ref_primal = logistic_reference(brute_dictionary(X, p, True), y, 0.1)
    r = wn.solve(X, y, loss="logistic", p=p, bias=True, lam=0.1)
    assert r.certified, r.certificate_note  # gap <= tol = 1e-6 (p = 2, x1e7: 1.3e-7)
    assert r.dual_objective <= ref_primal * (1 + 1e-9)  # a valid lower bound
    assert r.primal_objective <= ref_primal * (1 + 1e-6)  # as good as the reference


@pytest.mark.parametrize("factor", [1.0, 1e5])
def test_binary_feature_solve_is_certified_and_matches_brute_force(factor):
    """A feature with two values (sex, a yes/no flag): half the samples lie on one line, so
    the scan's top scores were all copies of that hyperplane under non-canonical subsets.
    The working set dropped them all and stayed empty: the trivial network, gap 1.0 (at
    either scale; diabetes' age and sex columns the same). They now enter under their
    canonical subset."""
    rng = np.random.default_rng(1)  # seeds 1, 2 and 4 of 1-7 failed before
    X = np.c_[rng.standard_normal(60), np.where(rng.random(60) > 0.5, 1.0, -1.0)]
    y = np.sin(2 * X[:, 0]) + X[:, 1] + 0.1 * rng.standard_normal(60)
    X[:, 1] *= factor
    ref = lasso_reference(brute_dictionary(X, 1, True), y, 0.1)
    assert ref.gap < 1e-6
    r = wn.solve(X, y, lam=0.1)
    assert r.certified, r.certificate_note
    assert len(r.network.neurons) > 0
    assert r.primal_objective == pytest.approx(ref.primal, rel=1e-6)
    assert r.dual_objective <= ref.primal * (1 + 1e-9)


# ------------------------------------------------------------------ property: never overclaim


def test_certified_results_never_overclaim_on_random_scaled_problems():
    """Whenever a solve says certified, its dual bound is below the true optimum (cvxpy over
    a brute-force dictionary of the same scaled data) and its primal is within tol of it."""
    rng = np.random.default_rng(2024)
    n_certified = 0
    for case in range(20):
        n = int(rng.integers(6, 13))
        d = int(rng.integers(2, 4))
        p = int(rng.choice([1, 2]))
        bias = bool(rng.integers(2))
        loss = ["squared", "logistic"][case % 2]
        X = rng.standard_normal((n, d)) * 10.0 ** rng.uniform(-3, 3, size=d)
        if bias:
            X += 10.0 ** rng.uniform(-3, 3, size=d) * rng.standard_normal(d)
        z = rng.standard_normal(n)
        y = z if loss == "squared" else np.where(z > np.median(z), 1, -1)
        lam = float(10.0 ** rng.uniform(-2, -0.5))
        ref = brute_optimum(X, y, p, bias, loss, lam)
        r = wn.solve(X, y, loss=loss, p=p, bias=bias, lam=lam, tol=1e-6)
        slack = 1e-9 * max(1.0, abs(ref.primal))
        # a dual bound is a lower bound, certified or not; the reference brackets the optimum
        assert r.dual_objective <= ref.primal + slack, case
        if r.certified:
            n_certified += 1
            assert r.primal_objective <= ref.primal + 1e-6 * abs(r.primal_objective) + slack
            assert r.primal_objective >= ref.dual - slack
        else:
            assert r.certificate_note, case
    assert n_certified >= 15


# ------------------------------------------------------------------ high-dimensional data


def test_standardized_breast_cancer_sampled_dictionary_is_kept_and_solves():
    datasets = pytest.importorskip("sklearn.datasets")
    data = datasets.load_breast_cancer()
    X = (data.data - data.data.mean(axis=0)) / data.data.std(axis=0)
    for p in (1, 2):
        D = WedgeDictionary(X, p=p, bias=True, source="sample", n_hyperplanes=500, seed=0)
        subs, undecided = kept(D)
        assert len(subs) >= 0.95 * 500 and undecided == 0
        r = wn.solve(X, data.target, loss="logistic", p=p, lam=1.0, source="sample", n_columns=500)
        assert r.n_columns >= 950 and len(r.network.neurons) > 0
        assert not r.certified and r.certificate_note == "dictionary sampled, not scanned"


def greedy_independent_subsets(pool: np.ndarray, n_pts: int, k: int, m: int, seed: int) -> list:
    """``m`` random independent k-subsets of the pool (greedy over a random order)."""
    rng = np.random.default_rng(seed)
    norms = np.linalg.norm(pool, axis=1)
    unit = pool / np.where(norms > 0, norms, 1.0)[:, None]
    out = []
    while len(out) < m:
        chosen: list[int] = []
        Q = np.zeros((pool.shape[1], 0))
        for i in rng.permutation(pool.shape[0]):
            g = unit[i] - Q @ (Q.T @ unit[i])
            if np.linalg.norm(g) > 1e-6:
                chosen.append(int(i))
                Q = np.c_[Q, g / np.linalg.norm(g)]
                if len(chosen) == k:
                    break
        if len(chosen) == k and min(chosen) < n_pts and independent(pool, tuple(chosen)):
            out.append(tuple(sorted(chosen)))
    return out


@pytest.mark.parametrize("p", [1, 2])
def test_digits_with_constant_pixels(p):
    """d = 64 with constant-zero pixels: the rank (p = 2) is 61, every decision is crisp.

    Uniformly sampled subsets of the digits are almost all *exactly* dependent (sparse pixels:
    the exact integer rank of sampled 61-point subsets is 52..57), so the test checks that the
    dictionary keeps exactly the independent ones, and that random independent subsets (given
    index sets) all give hyperplanes through their generators.
    """
    datasets = pytest.importorskip("sklearn.datasets")
    raw = datasets.load_digits().data[::4]  # 450 samples
    std = raw.std(axis=0)
    X = (raw - raw.mean(axis=0)) / np.where(std > 0, std, 1.0)
    assert np.sum(np.ptp(X, axis=0) == 0) >= 3
    D = WedgeDictionary(X, p=p, bias=True, source="sample", n_hyperplanes=300, seed=0)
    assert D.rank_ == (int(np.linalg.matrix_rank(X - X.mean(axis=0))) if p == 2 else 64)
    subs, undecided = kept(D)
    assert undecided == 0
    assert subs == brute_subsets(X, p, True, D._sample_subsets())
    pool, _, _ = brute_pool(X, p, True)
    sets = greedy_independent_subsets(pool, X.shape[0], D.subset_size_, 40, seed=p)
    n = X.shape[0]
    index_sets = [
        wn.IndexSet(tuple(i for i in s if i < n), tuple(i - n for i in s if i >= n), 1)
        for s in sets
    ]
    G = WedgeDictionary(X, p=p, bias=True, source="given", index_sets=index_sets)
    atoms = G.atoms()
    assert len(atoms) == len(sets)
    for j in range(len(atoms)):
        assert G.residual(atoms.subsets[j], atoms.normals[j]) < 1e-9
    np.testing.assert_allclose(np.linalg.norm(atoms.normals[:, :-1], ord=p, axis=1), 1.0)
