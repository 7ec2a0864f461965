"""Three-layer networks as convex programs (Theorems 12 and 13; docs/threelayer.md).

Evidence, each independent of the library's enumeration and pricing:

* the dictionary built by brute force here (itertools over generator subsets, SVD null
  spaces, explicit columns) and solved by CLARABEL gives the certified optimum of
  :func:`wedgenet.solve_three_layer` to 1e-7;
* the smaller generator set of the proofs (differences with the threshold / bias samples only)
  gives the same optimum as the theorems' pairwise differences, exhaustively on small cases;
* no direction found by a dense random search beats the dictionary's dual maximum (the
  theorems' claim that the dictionary contains the maximizer);
* a non-convex L-BFGS trainer of the three-layer model never goes below the certified dual
  bound;
* Figure 7's four points: the candidate and the optimal first-layer breaklines.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import wedgenet
from wedgenet.dictionary import Atoms
from wedgenet.exceptions import WedgeNetError
from wedgenet.losses import get_loss
from wedgenet.pricing import price
from wedgenet.solvers.conic import solve_cvxpy
from wedgenet.threelayer import (
    ThreeLayerColumns,
    ThreeLayerDictionary,
    direction_scores,
    n_direction_subsets,
    network_objective,
    solve_three_layer,
    threelayer_dictionary_size,
    train_three_layer_nonconvex,
)
from wedgenet.threelayer.recheck import independent_max_score

FIG7 = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])


# ----------------------------------------------------------------------------- brute force
def _null_direction(G: list[np.ndarray], d: int) -> np.ndarray | None:
    """Unit-l1 normal of d - 1 generators (SVD null space), None if dependent."""
    if d == 1:
        return np.ones(1)
    M = np.array(G, dtype=float)
    norms = np.linalg.norm(M, axis=1)
    if np.any(norms == 0):
        return None
    _, s, vt = np.linalg.svd(M / norms[:, None], full_matrices=True)
    if s[-1] / s[0] < 1e-10:
        return None
    return vt[-1] / np.abs(vt[-1]).sum()


def _directions(gens: list[np.ndarray], d: int) -> list[np.ndarray]:
    out = []
    for S in itertools.combinations(range(len(gens)), d - 1):
        w = _null_direction([gens[i] for i in S], d)
        if w is not None:
            out.append(w)
    return out


def _columns(X: np.ndarray, w: np.ndarray, b: float, j0: int) -> list[np.ndarray]:
    u = np.maximum(X @ w + b, 0.0)
    return [np.maximum(u - u[j0], 0.0), np.maximum(u[j0] - u, 0.0)]


def brute_dictionary(X: np.ndarray, bias: bool, generators: str = "pairwise") -> np.ndarray:
    """The theorems' dictionary by brute force.

    ``pairwise``: directions orthogonal to d - 1 of the samples (Thm 12 only), all pairwise
    differences and the basis vectors, priced at every bias sample l (Thm 13) and threshold
    j0. ``threshold``: for each (l, j0) only the directions from the samples (Thm 12), the
    differences with l and j0, and the basis vectors (the proofs' generator set).
    """
    n, d = X.shape
    basis = list(np.eye(d))
    biases: list[int | None] = list(range(n)) if bias else [None]
    cols: list[np.ndarray] = []
    if generators == "pairwise":
        gens = [] if bias else [X[i] for i in range(n)]
        gens += [X[i] - X[j] for i, j in itertools.combinations(range(n), 2)]
        W = _directions(gens + basis, d)
        for w0, lb, j0 in itertools.product(W, biases, range(n)):
            for w in (w0, -w0):
                cols += _columns(X, w, 0.0 if lb is None else -X[lb] @ w, j0)
    else:
        for lb, j0 in itertools.product(biases, range(n)):
            gens = [X[i] - X[j0] for i in range(n) if i != j0]
            gens += [X[i] for i in range(n)] if lb is None else [X[i] - X[lb] for i in range(n)
                                                                if i != lb]
            for w0 in _directions(gens + basis, d):
                for w in (w0, -w0):
                    cols += _columns(X, w, 0.0 if lb is None else -X[lb] @ w, j0)
    K = np.array(cols).T
    K = K[:, np.any(K > 1e-14, axis=0)]
    _, first = np.unique(np.round(K, 11), axis=1, return_index=True)
    return K[:, np.sort(first)]


def cvxpy_value(K: np.ndarray, y: np.ndarray, lam: float, loss: str = "squared") -> float:
    loss_obj = get_loss(loss)
    Y, _ = loss_obj.encode(y)
    return float(solve_cvxpy(K, Y, loss_obj, lam).primal)


def _data(n: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = np.sin(2.0 * X[:, 0]) + 0.3 * rng.normal(size=n)
    return X, y


# ----------------------------------------------------------------------------- the spec
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("generators", ["threshold", "pairwise"])
@pytest.mark.parametrize("n, d", [(5, 1), (6, 2), (6, 3), (5, 4)])
def test_enumeration_matches_counts_and_admissibility(
    bias: bool, generators: str, n: int, d: int
) -> None:
    X, _ = _data(n, d, 0)
    D = ThreeLayerDictionary(X, bias=bias, generators=generators)  # type: ignore[arg-type]
    rows = np.concatenate(list(D.iter_subsets(chunk_size=7)))
    assert rows.shape == (D.n_subsets, d - 1)
    assert D.n_subsets == n_direction_subsets(n, d, bias=bias, generators=generators)  # type: ignore[arg-type]
    assert D.size == threelayer_dictionary_size(n, d, bias=bias, generators=generators)  # type: ignore[arg-type]
    assert len({tuple(r) for r in rows}) == rows.shape[0]  # no repeats
    assert np.all(np.diff(rows, axis=1) > 0)
    # the same subsets as all (d-1)-subsets of the pool filtered by a brute-force cover test
    pool = D.pool_size
    want = set()
    for S in itertools.combinations(range(pool), d - 1):
        edges = [D.pair_of(g) for g in S if D.diff_offset_ <= g < D.basis_offset_]
        verts = set(itertools.chain.from_iterable(edges))
        tau = 2 if bias else 1
        ok = generators == "pairwise" or len(edges) <= tau or any(
            all(set(e) & set(c) for e in edges) for c in itertools.combinations(verts, tau)
        )
        if ok:
            want.add(S)
    assert {tuple(int(v) for v in r) for r in rows} == want


def test_threshold_set_is_smaller_only_where_expected() -> None:
    for n in (6, 9):  # (Theorem 13, d = 4: three disjoint differences need 6 samples)
        for d in (1, 2, 3):  # Theorem 13: identical up to d = 3
            assert n_direction_subsets(n, d, bias=True) == n_direction_subsets(
                n, d, bias=True, generators="pairwise")
        for d in (1, 2):  # Theorem 12: identical up to d = 2
            assert n_direction_subsets(n, d, bias=False) == n_direction_subsets(
                n, d, bias=False, generators="pairwise")
        assert n_direction_subsets(n, 3, bias=False) < n_direction_subsets(
            n, 3, bias=False, generators="pairwise")
        assert n_direction_subsets(n, 4, bias=True) < n_direction_subsets(
            n, 4, bias=True, generators="pairwise")


@pytest.mark.parametrize("bias", [False, True])
def test_kernel_prices_every_threshold_exactly(bias: bool) -> None:
    """One sort per direction gives the maximum over every threshold (and bias sample) and
    shape, compared with explicit columns, also for an unbalanced dual point."""
    rng = np.random.default_rng(1)
    n, d = 9, 2
    X = rng.normal(size=(n, d))
    X[3] = X[5]  # duplicate sample (ties)
    W = rng.normal(size=(6, d))
    W /= np.abs(W).sum(axis=1, keepdims=True)
    for v in (rng.normal(size=n), rng.normal(size=n) - 0.2):
        score, ls, js = direction_scores(X, W, v, bias=bias)
        for b, w0 in enumerate(W):
            for si, w in enumerate((w0, -w0)):
                best = np.zeros(2)
                for lb in range(n) if bias else [None]:
                    off = 0.0 if lb is None else -X[lb] @ w
                    for j0 in range(n):
                        up, down = _columns(X, w, off, j0)
                        best = np.maximum(best, [abs(up @ v), abs(down @ v)])
                np.testing.assert_allclose(score[b, 2 * si : 2 * si + 2], best, rtol=1e-12,
                                           atol=1e-12)
                for shape in (0, 1):  # the reported (l, j0) attain the score
                    lb, j0 = ls[b, 2 * si + shape], js[b, 2 * si + shape]
                    off = 0.0 if not bias else -X[lb] @ w
                    col = _columns(X, w, off, j0)[shape]
                    assert abs(col @ v) == pytest.approx(score[b, 2 * si + shape], abs=1e-12)


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("X", [FIG7, np.array([[0.0, 0], [1, 0], [2, 0], [0, 1], [1, 1], [2, 1],
                                               [1, 1]])])
def test_canonical_columns_are_equivalent(bias: bool, X: np.ndarray) -> None:
    """Canonical forms (degenerate data: ties, collinear samples, a duplicate) keep the column
    up to a constant and a sign; zero columns are dropped; the result is idempotent."""
    rng = np.random.default_rng(2)
    D = ThreeLayerDictionary(X, bias=bias, generators="pairwise")
    src = ThreeLayerColumns(D)
    atoms, _ = next(iter(src.scored_chunks(rng.normal(size=(X.shape[0], 1)))))
    n = X.shape[0]
    for i in range(0, len(atoms), 5 if bias else 1):
        for lb in range(n) if bias else [-1]:
            for j0 in range(n):
                a = atoms.take([i])
                a = D.make_atoms(a.subsets[:, :-3], a.normals[:, :-1] * a.signs[:, None],
                                 a.signs, [lb], [j0], a.subsets[:, -1])
                k = D.columns(a)[:, 0]
                c = D.canonical(a)
                if np.ptp(k) <= 1e-12:  # zero (up to rounding) or constant
                    assert len(c) == 0 or np.ptp(D.columns(c)) <= 1e-12
                    continue
                assert len(c) == 1
                kc = D.columns(c)[:, 0]
                same = np.allclose(k - k.mean(), kc - kc.mean(), atol=1e-12)
                neg = np.allclose(k - k.mean(), -(kc - kc.mean()), atol=1e-12)
                assert same or neg
                again = D.canonical(c)
                assert np.array_equal(again.subsets, c.subsets)
                assert np.array_equal(again.signs, c.signs)


def test_recheck_agrees_with_the_scan() -> None:
    rng = np.random.default_rng(3)
    for bias in (False, True):
        X = rng.normal(size=(12, 3))
        D = ThreeLayerDictionary(X, bias=bias)
        v = rng.normal(size=12)
        check = independent_max_score(D, v)
        scan = price(ThreeLayerColumns(D), v[:, None], 5, 0.0)
        assert check.max_score == pytest.approx(scan.max_score, rel=1e-12)
        assert check.n_undecided == 0 and check.n_subsets == D.n_subsets


def test_dictionary_contains_the_dual_maximizer() -> None:
    """The theorems' claim: max over (w, b1, b2, w2 = +-1) of |v^T relu(w2 relu(X w + b1) +
    b2)| is attained on the dictionary. A dense random search (b2 at every breakpoint) never
    beats it."""
    rng = np.random.default_rng(4)
    for bias in (False, True):
        for d in (1, 2, 3):
            X = rng.normal(size=(7, d))
            v = rng.normal(size=7)
            v -= v.mean()
            D = ThreeLayerDictionary(X, bias=bias)
            best = price(ThreeLayerColumns(D), v[:, None], 1, 0.0).max_score
            W = rng.normal(size=(3000, d))
            W /= np.abs(W).sum(axis=1, keepdims=True)
            B = rng.normal(size=3000) * 2.0 if bias else np.zeros(3000)
            U = np.maximum(W @ X.T + B[:, None], 0.0)  # (m, n)
            diff = U[:, None, :] - U[:, :, None]  # [m, j0, i]: u_i - u_j0
            found = max(float(np.abs(np.maximum(diff, 0) @ v).max()),
                        float(np.abs(np.maximum(-diff, 0) @ v).max()))
            assert found <= best * (1 + 1e-9)
            assert found >= 0.5 * best  # the search is not vacuous


# ----------------------------------------------------------------------------- (a) CLARABEL
CASES = [(5, 1, 0.05), (7, 1, 0.3), (6, 2, 0.02), (8, 2, 0.2), (5, 2, 1.0)]


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("n, d, lam", CASES)
def test_certified_optimum_matches_cvxpy_on_brute_force_dictionary(
    bias: bool, n: int, d: int, lam: float
) -> None:
    X, y = _data(n, d, seed=10 * n + d)
    res = solve_three_layer(X, y, lam=lam, bias=bias)
    assert res.certified, res.certificate_note
    ref = cvxpy_value(brute_dictionary(X, bias), y, lam)
    assert res.primal_objective == pytest.approx(ref, rel=1e-7)
    assert res.dual_objective <= ref * (1 + 1e-9)
    # the library's own materialized (canonical, deduplicated) dictionary: the same optimum
    _, K = ThreeLayerDictionary(X, bias=bias).materialize()
    assert cvxpy_value(K, y, lam) == pytest.approx(ref, rel=1e-7)


@pytest.mark.parametrize("loss", ["logistic", "hinge"])
@pytest.mark.parametrize("bias", [False, True])
def test_classification_losses_match_cvxpy(loss: str, bias: bool) -> None:
    X, y = _data(8, 2, seed=5)
    labels = np.where(y > np.median(y), 1, 0)
    res = solve_three_layer(X, labels, lam=0.1, bias=bias, loss=loss)
    assert res.certified, res.certificate_note
    ref = cvxpy_value(brute_dictionary(X, bias), labels, 0.1, loss=loss)
    assert res.primal_objective == pytest.approx(ref, rel=1e-7)
    assert set(res.predict(X)) <= {0, 1}


# ----------------------------------------------------------------------------- smaller set
@pytest.mark.parametrize(
    "bias, n, d", [(False, 6, 2), (False, 6, 3), (False, 7, 3), (True, 6, 2), (True, 6, 3),
                   (True, 6, 4)]
)
def test_threshold_generators_give_the_same_optimum(bias: bool, n: int, d: int) -> None:
    """The proofs' generator set (per (l, j0): differences with l and j0 only) has the optimum
    of the theorems' pairwise differences (measured exhaustively on small cases)."""
    X, y = _data(n, d, seed=100 + n + d)
    full = brute_dictionary(X, bias, "pairwise")
    small = brute_dictionary(X, bias, "threshold")
    assert small.shape[1] <= full.shape[1]
    for lam in (0.03, 0.3):
        ref = cvxpy_value(full, y, lam)
        assert cvxpy_value(small, y, lam) == pytest.approx(ref, rel=1e-7)
        for generators in ("threshold", "pairwise"):
            res = solve_three_layer(X, y, lam=lam, bias=bias, generators=generators)  # type: ignore[arg-type]
            assert res.certified
            assert res.primal_objective == pytest.approx(ref, rel=1e-7)


# ----------------------------------------------------------------------------- (b) non-convex
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("d", [1, 2])
def test_nonconvex_trainer_never_beats_the_certificate(bias: bool, d: int) -> None:
    X, y = _data(8, d, seed=30 + d)
    lam = 0.05
    res = solve_three_layer(X, y, lam=lam, bias=bias)
    assert res.certified
    m = len(res.blocks)
    runs = []
    for width in (2 * m, 4 * m):
        runs.append(train_three_layer_nonconvex(X, y, lam=lam, bias=bias, width=width,
                                                restarts=4, seed=width, max_iter=400))
    warm = train_three_layer_nonconvex(X, y, lam=lam, bias=bias, width=2 * m, restarts=0,
                                       init=[res.network] * 3, init_noise=0.05, seed=1,
                                       max_iter=400)
    values = [v for r in runs for v in r.objectives] + warm.objectives
    best = min(values)
    print(f"\nthree-layer bias={bias} d={d}: certified {res.primal_objective:.10g} "
          f"(dual {res.dual_objective:.10g}, {m} blocks); best non-convex of {len(values)} "
          f"runs {best:.10g} ({(best - res.primal_objective) / res.primal_objective:+.2e})")
    assert best >= res.dual_objective * (1 - 1e-6)
    # the trainer's objective is that of the network it returns
    net = min((r for r in [*runs, warm]), key=lambda r: r.objective).network
    assert network_objective(net, X, y, lam=lam) == pytest.approx(best, rel=1e-12)


# ----------------------------------------------------------------------------- reconstruction
@pytest.mark.parametrize("bias", [False, True])
def test_reconstruction_is_balanced_and_interpretable(bias: bool) -> None:
    X, y = _data(10, 2, seed=7)
    lam = 0.05
    res = wedgenet.solve_three_layer(X, y, lam=lam, bias=bias)
    assert res.certified
    obj = network_objective(res.network, X, y, lam=lam)
    assert abs(obj - res.primal_objective) <= 1e-9 * abs(res.primal_objective)
    for blk in res.blocks:
        norms = [float(np.abs(blk.w1).sum()), abs(blk.w2), abs(blk.w3)]
        assert np.allclose(norms, norms[0], rtol=1e-12)  # balanced scaling
        assert blk.shape in ("up", "down") and (blk.w2 > 0) == (blk.shape == "up")
        j0 = blk.threshold_sample
        assert j0 is not None and 0 <= j0 < 10
        u = np.maximum(X @ blk.w1 + blk.b1, 0.0)
        assert abs(blk.w2 * u[j0] + blk.b2) <= 1e-12 * max(1.0, abs(blk.b2))  # kink at x_j0
        if bias:
            assert blk.bias_sample is not None
            assert abs(X[blk.bias_sample] @ blk.w1 + blk.b1) <= 1e-12 * np.abs(blk.w1).sum()
        else:
            assert blk.bias_sample is None and blk.b1 == 0.0
        iset = blk.index_set
        assert iset is not None
        gens = [X[i] for i in iset.samples] + [X[i] - X[j] for i, j in iset.differences]
        gens += [np.eye(2)[k] for k in iset.directions]
        assert len(gens) == 1 and not (bias and iset.samples)
        assert blk.residual <= 1e-12
        assert abs(gens[0] @ blk.w1) <= 1e-12 * np.linalg.norm(gens[0]) * np.linalg.norm(blk.w1)
        assert f"x[{j0}]" in blk.formula and "r(x)" in blk.formula
    d = res.to_dict()
    assert d["certified"] and len(d["network"]["blocks"]) == len(res.blocks)


def test_three_layer_never_worse_than_two_layer_blocks() -> None:
    """Every two-layer p = 1 neuron relu(w . x + b) is a three-layer column (shape up at the
    lowest level); same data and lam: the three-layer program value is at most the
    two-layer one with the regularizer lam ||w||_1 |a| (the two-layer objective's value at its
    optimum is the same Lasso with unit-l1 neurons)."""
    X, y = _data(9, 2, seed=8)
    for lam in (0.02, 0.2):
        two = wedgenet.solve(X, y, lam=lam, p=1, bias=True)
        three = solve_three_layer(X, y, lam=lam, bias=True)
        assert three.primal_objective <= two.primal_objective * (1 + 1e-9)


def test_errors() -> None:
    X, y = _data(6, 2, seed=9)
    with pytest.raises(WedgeNetError, match="one output"):
        solve_three_layer(X, np.digitize(y, [-0.5, 0.5]), lam=0.1, loss="softmax")
    with pytest.raises(WedgeNetError, match="one output"):
        solve_three_layer(X, np.column_stack([y, y]), lam=0.1)
    with pytest.raises(WedgeNetError, match="limit"):
        solve_three_layer(X, y, lam=0.1, max_directions=3)
    with pytest.raises(WedgeNetError, match="rank 0"):
        solve_three_layer(np.ones((4, 2)), y[:4], lam=0.1)
    with pytest.raises(WedgeNetError, match="lam"):
        solve_three_layer(X, y, lam=0.0)


# ----------------------------------------------------------------------------- (c) Figure 7
def _line(w: np.ndarray, b: float) -> tuple[float, ...]:
    v = np.r_[w, b] / np.abs(np.r_[w, b]).max()
    v = v * np.sign(v[np.flatnonzero(np.abs(v) > 1e-9)[0]])
    return tuple(float(a) + 0.0 for a in np.round(v, 9))


def test_figure7_breaklines() -> None:
    """Figure 7 (x1 = (1, 0), x2 = (0, 1), x3 = (-1, 0), x4 = (0, -1)), lam -> 0.

    Candidate first-layer breaklines of the dictionary: 4 for Theorem 12 (the two axes and
    the diagonals, i.e. Aff(x1, x2) and Aff(x2, x3) translated to the origin), as the paper
    says; 10 for Theorem 13 (the 6 lines through two samples and 4 translations: Aff(x1, x3)
    to x2 and x4, Aff(x2, x4) to x1 and x3), where the paper says 12: the other translations
    of the hulls (e.g. Aff(x1, x2) to x3) coincide with lines through two samples. Over 40
    random labelings at lam = 1e-3 and 1e-2, every one of these lines carries a column that
    is tight at the dual optimum (|k^T v*| = lam, so it is in some optimal network), and the
    networks found use only them.
    """
    want12 = {(0.0, 1.0, 0.0), (1.0, 0.0, 0.0), (1.0, 1.0, 0.0), (1.0, -1.0, 0.0)}
    want13 = {(1.0, 1.0, -1.0), (1.0, 1.0, 1.0), (1.0, -1.0, 1.0), (1.0, -1.0, -1.0),
              (1.0, 0.0, 0.0), (0.0, 1.0, 0.0),  # through two samples
              (0.0, 1.0, 1.0), (0.0, 1.0, -1.0), (1.0, 0.0, 1.0), (1.0, 0.0, -1.0)}
    rng = np.random.default_rng(0)
    for bias, want in ((False, want12), (True, want13)):
        D = ThreeLayerDictionary(FIG7, bias=bias, generators="pairwise")
        columns: list[tuple[tuple[float, ...], np.ndarray]] = []
        for chunk in D.iter_directions():
            for w0 in chunk.normals:
                for w in (w0, -w0):
                    for lb in range(4) if bias else [None]:
                        b = 0.0 if lb is None else float(-FIG7[lb] @ w)
                        for j0 in range(4):
                            for k in _columns(FIG7, w, b, j0):
                                columns.append((_line(w, b), k))
        assert {key for key, _ in columns} == want
        tight: set[tuple[float, ...]] = set()
        used: set[tuple[float, ...]] = set()
        for lam in (1e-3, 1e-2):
            for _ in range(20):
                y = rng.normal(size=4)
                res = solve_three_layer(FIG7, y, lam=lam, bias=bias, tol=1e-10)
                assert res.certified
                v = y - res.decision_function(FIG7)
                tight |= {key for key, k in columns if abs(k @ v) >= lam * (1 - 1e-6)}
                used |= {_line(b.w1, b.b1) for b in res.blocks}
        assert tight == want
        assert used <= want
        print(f"\nFigure 7, bias={bias}: {len(want)} candidate breaklines, {len(tight)} tight "
              f"at some optimum, {len(used)} used by the networks found")


def test_atoms_encoding_roundtrip() -> None:
    X, _ = _data(6, 2, seed=11)
    D = ThreeLayerDictionary(X, bias=True)
    atoms, K = D.materialize()
    assert isinstance(atoms, Atoms) and atoms.subsets.shape[1] == 1 + 3
    np.testing.assert_allclose(D.columns(atoms), K)
    back = D.canonical(atoms)
    assert len(back) == len(atoms)
