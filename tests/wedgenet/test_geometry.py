"""Generalized cross products, volumes and distances against independent computations."""

import itertools
import math

import numpy as np
import pytest

from wedgenet.geometry import (
    DEPENDENT,
    DEPENDENT_TOL,
    INDEPENDENT,
    INDEPENDENT_TOL,
    UNDECIDED,
    _svd_cross,
    classify,
    cross,
    distance_to_affine_hull,
    distance_to_span,
    equilibrate,
    inverse_condition,
    parallelotope_volume,
    simplex_volume,
    subset_normals,
)


def brute_cross(G: np.ndarray) -> np.ndarray:
    """w_i = det[e_i, g_1, ..., g_{D-1}] (generators as columns), Definition 4."""
    D = G.shape[1]
    return np.array([np.linalg.det(np.column_stack([np.eye(D)[i], *G])) for i in range(D)])


def test_paper_section_3_4_examples():
    # *(e1 + e2) = e1 - e2 and *(2 e2) = 2 e1 (Sec. 3.4), i.e. (a, b) -> (b, -a) (Sec. 6.1).
    np.testing.assert_allclose(cross(np.array([[1.0, 1.0]])), [1.0, -1.0])
    np.testing.assert_allclose(cross(np.array([[0.0, 2.0]])), [2.0, 0.0])
    np.testing.assert_allclose(cross(np.array([[3.0, -5.0]])), [-5.0, -3.0])


def test_three_dimensions_is_the_usual_cross_product():
    rng = np.random.default_rng(0)
    G = rng.standard_normal((50, 2, 3))
    np.testing.assert_allclose(cross(G), np.cross(G[:, 0], G[:, 1]), atol=1e-12)


@pytest.mark.parametrize("D", [2, 3, 4, 5, 6, 7])
def test_matches_brute_force_determinants(D):
    rng = np.random.default_rng(D)
    G = rng.standard_normal((20, D - 1, D))
    W = cross(G)
    for b in range(G.shape[0]):
        np.testing.assert_allclose(W[b], brute_cross(G[b]), rtol=1e-9, atol=1e-9)
    # w . x = det[x, g_1, ...]: the signed volume of the parallelotope.
    x = rng.standard_normal((4, D))
    vols = parallelotope_volume(x, G)
    for i, b in itertools.product(range(4), range(3)):
        assert vols[i, b] == pytest.approx(np.linalg.det(np.column_stack([x[i], *G[b]])), abs=1e-9)


@pytest.mark.parametrize("D", [3, 4, 6])
def test_nearly_degenerate_subsets_stay_orthogonal(D):
    rng = np.random.default_rng(1)
    base = rng.standard_normal((30, D - 1, D))
    G = base.copy()
    G[:, -1] = G[:, 0] + 1e-7 * rng.standard_normal((30, D))  # nearly dependent
    W = cross(G)
    res = np.abs(np.einsum("bkd,bd->bk", G, W)) / (
        np.linalg.norm(G, axis=2) * np.linalg.norm(W, axis=1)[:, None]
    )
    assert res.max() < 1e-8
    np.testing.assert_allclose(np.abs(W), np.abs(_svd_cross(G)), rtol=1e-6, atol=1e-12)


def test_dependent_generators_give_zero():
    G = np.array([[[1.0, 2.0, 3.0], [2.0, 4.0, 6.0]]])
    assert np.linalg.norm(cross(G)) < 1e-12


def test_norm_is_volume_of_parallelotope():
    rng = np.random.default_rng(2)
    G = rng.standard_normal((10, 3, 4))
    gram = np.einsum("bid,bjd->bij", G, G)
    np.testing.assert_allclose(np.linalg.norm(cross(G), axis=1), np.sqrt(np.linalg.det(gram)))


def test_distances_match_least_squares_projection():
    rng = np.random.default_rng(3)
    d = 4
    P = rng.standard_normal((5, d, d))  # 5 affine hulls of d points
    x = rng.standard_normal((6, d))
    dist = distance_to_affine_hull(x, P)
    for b in range(5):
        base = P[b, -1]
        E = (P[b, :-1] - base).T
        for i in range(6):
            coef = np.linalg.lstsq(E, x[i] - base, rcond=None)[0]
            assert abs(dist[i, b]) == pytest.approx(
                np.linalg.norm(x[i] - base - E @ coef), rel=1e-9
            )
    G = rng.standard_normal((5, d - 1, d))
    ds = distance_to_span(x, G)
    for b in range(5):
        coef = np.linalg.lstsq(G[b].T, x.T, rcond=None)[0]
        np.testing.assert_allclose(np.abs(ds[:, b]), np.linalg.norm(x.T - G[b].T @ coef, axis=0))


def test_simplex_volume():
    rng = np.random.default_rng(4)
    V = rng.standard_normal((3, 3, 3))
    x = rng.standard_normal((2, 3))
    vol = simplex_volume(x, V)
    for b in range(3):
        for i in range(2):
            M = np.column_stack([x[i] - V[b, -1], *(V[b, :-1] - V[b, -1])])
            assert abs(vol[i, b]) == pytest.approx(abs(np.linalg.det(M)) / math.factorial(3))


@pytest.mark.parametrize("D", [3, 4, 5, 7])
def test_subset_normals_are_oriented_unit_cross_products(D):
    rng = np.random.default_rng(10 + D)
    G = rng.standard_normal((40, D - 1, D)) * 10.0 ** rng.uniform(-6, 6, size=(40, D - 1, 1))
    G[:5, -1] = G[:5, 0] * 3.0  # exactly dependent (rows scaled by 3)
    G[5:10, -1] = G[5:10, 0] + 1e-11 * np.linalg.norm(G[5:10, 0], axis=1)[:, None]
    N, rc = subset_normals(G)
    Gh = G / np.linalg.norm(G, axis=2, keepdims=True)
    # orientation of cross() does not change when rows are scaled by positive factors
    W = np.array([brute_cross(g) for g in Gh[10:]])
    np.testing.assert_allclose(N[10:], W / np.linalg.norm(W, axis=1)[:, None], atol=1e-9)
    s = np.linalg.svd(Gh, compute_uv=False)
    exact = s[:, -1] / s[:, 0]
    # exact where computed by SVD, otherwise a lower bound far above the thresholds
    assert np.all(rc <= exact * (1 + 1e-9))
    assert np.all(np.isclose(rc, exact, rtol=1e-6, atol=1e-15) | (rc > 1e-6))
    status = classify(rc)
    assert np.all(status[:5] == DEPENDENT) and np.all(status[10:] == INDEPENDENT)
    assert np.all(rc[:5] < 1e-3 * DEPENDENT_TOL)
    # row lengths do not matter: the same decisions with unit rows
    N1, rc1 = subset_normals(Gh, unit_rows=True)
    np.testing.assert_allclose(N1[10:], N[10:], atol=1e-12)
    np.testing.assert_allclose(rc1, rc, rtol=1e-6, atol=1e-15)


def test_classify_thresholds_and_inverse_condition():
    rc = np.array([0.0, DEPENDENT_TOL, 2 * DEPENDENT_TOL, 0.5 * INDEPENDENT_TOL, INDEPENDENT_TOL])
    assert classify(rc).tolist() == [DEPENDENT, DEPENDENT, UNDECIDED, UNDECIDED, INDEPENDENT]
    assert classify(np.array([np.nan])).tolist() == [DEPENDENT]
    G = np.array([[[1.0, 0.0, 0.0], [1.0, 1e-11, 0.0]], [[1e8, 0.0, 0.0], [0.0, 1e-8, 0.0]]])
    rc = inverse_condition(G)
    assert DEPENDENT_TOL < rc[0] < INDEPENDENT_TOL  # nearly parallel: undecided
    assert rc[1] == pytest.approx(1.0)  # orthogonal, however long
    assert inverse_condition(np.zeros((2, 0, 3))).tolist() == [1.0, 1.0]
    assert inverse_condition(np.array([[[0.0, 0.0], [1.0, 0.0]]]))[0] == 0.0


def test_equilibrate_is_invariant_to_units_and_keeps_constant_features():
    rng = np.random.default_rng(11)
    X = rng.standard_normal((30, 4))
    X[:, 2] = 5.0  # constant
    Z, c, s = equilibrate(X, center=True)
    assert np.all(Z[:, 2] == 0.0) and s[2] == 1.0 and np.all(s > 0)
    np.testing.assert_allclose(np.sqrt(np.mean(Z[:, [0, 1, 3]] ** 2, axis=0)), 1.0)
    np.testing.assert_allclose((X - c) / s, Z)
    factor = np.array([1e-8, 1e8, 1e3, 1e-4])
    Z2, c2, s2 = equilibrate(X * factor + factor * 3.0, center=True)
    np.testing.assert_allclose(Z2, Z, atol=1e-12)
    # without centring: only scaling; all-zero columns stay zero with scale 1
    X[:, 2] = 0.0
    Z3, c3, s3 = equilibrate(X, center=False)
    assert np.all(c3 == 0) and s3[2] == 1.0 and np.all(Z3[:, 2] == 0.0)
    np.testing.assert_allclose(equilibrate(X * factor, center=False)[0], Z3, atol=1e-12)
