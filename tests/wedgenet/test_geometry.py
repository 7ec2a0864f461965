"""Generalized cross products, volumes and distances against independent computations."""

import itertools
import math

import numpy as np
import pytest

from wedgenet.geometry import (
    _svd_cross,
    cross,
    distance_to_affine_hull,
    distance_to_span,
    parallelotope_volume,
    simplex_volume,
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
