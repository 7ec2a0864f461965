"""Streamed pricing: fused kernel, split scans, working sets, partial pricing."""

import importlib

import numpy as np
import pytest

import wedgenet as wn
from wedgenet.dictionary import WedgeDictionary, features
from wedgenet.pricing import (
    DictionaryColumns,
    PricingResult,
    hyperplane_scores,
    merge_pricing,
    price,
    split_ranges,
)
from wedgenet.programs import column_scores

solve_mod = importlib.import_module("wedgenet.solve")


@pytest.mark.parametrize("c", [1, 3])
def test_fused_kernel_matches_explicit_columns(c):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 3))
    V = rng.standard_normal((40, c))
    normals = rng.standard_normal((25, 4))
    pos, neg = hyperplane_scores(X, normals, V)
    np.testing.assert_allclose(pos, column_scores(features(X, normals), V), rtol=1e-10)
    np.testing.assert_allclose(neg, column_scores(features(X, -normals), V), rtol=1e-10)


def test_split_scans_merge_to_the_full_scan():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((30, 2))
    V = rng.standard_normal((30, 1))
    D = WedgeDictionary(X, p=1, bias=True)
    full = price(DictionaryColumns(D, chunk_size=50), V, 20, 0.0)
    parts = [
        price(DictionaryColumns(D, chunk_size=37, start=a, stop=b), V, 20, 0.0)
        for a, b in split_ranges(D.n_raw_subsets, 3)
    ]
    # serialization round trip, as workers send their parts through the database
    parts = [PricingResult.from_dict(p.to_dict(), D.subset_size_, 2) for p in parts]
    merged = merge_pricing(parts, 20)
    assert merged.n_columns == full.n_columns == D.size
    assert merged.max_score == pytest.approx(full.max_score)
    np.testing.assert_allclose(merged.top_scores, full.top_scores)


def test_cached_hyperplanes_give_the_same_scans_and_respect_the_budget():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((30, 2))
    D = WedgeDictionary(X, p=1, bias=True)
    cached = DictionaryColumns(D, chunk_size=64)
    streamed = DictionaryColumns(D, chunk_size=64, cache_bytes=0)
    for seed in range(3):  # the first scan fills the cache, the others read it
        V = np.random.default_rng(seed).standard_normal((30, 1))
        a, b = price(cached, V, 10, 0.0), price(streamed, V, 10, 0.0)
        assert a.n_columns == b.n_columns == D.size
        assert a.max_score == b.max_score
        np.testing.assert_array_equal(a.top_atoms.subsets, b.top_atoms.subsets)
    assert cached._cache is not None and streamed._cache is None


def test_partial_pricing_reaches_the_same_certified_optimum(monkeypatch):
    rng = np.random.default_rng(2)
    X = rng.standard_normal((60, 2))
    y = np.abs(X[:, 0]) - X[:, 1] + 0.1 * rng.standard_normal(60)
    ref = wn.solve(X, y, lam=0.5, solver="cvxpy")
    monkeypatch.setattr(solve_mod, "PARTIAL_PRICING_SAMPLE", 100)
    stages = []
    fast = wn.solve(X, y, lam=0.5, progress=lambda f, s: stages.append(s))
    assert any("partial scan" in s for s in stages) and any("full scan" in s for s in stages)
    assert fast.certified
    assert fast.primal_objective == pytest.approx(ref.primal_objective, rel=1e-6)


def test_working_set_is_seeded_by_a_previous_solution():
    from wedgenet.losses import get_loss
    from wedgenet.workingset import solve_working_set

    rng = np.random.default_rng(3)
    X = rng.standard_normal((40, 2))
    y = np.sin(3 * X[:, 0])
    D = WedgeDictionary(X, p=1, bias=True)
    loss = get_loss("squared")
    Y = y[:, None]
    first = solve_working_set(DictionaryColumns(D), Y, loss, 0.2)
    support = first.atoms.take(np.flatnonzero(np.any(first.solution.Z != 0, axis=1)))
    warm = solve_working_set(DictionaryColumns(D), Y, loss, 0.15, initial_atoms=support)
    cold = solve_working_set(DictionaryColumns(D), Y, loss, 0.15)
    assert warm.solution.primal == pytest.approx(cold.solution.primal, rel=1e-6)
    assert warm.solution.gap <= 1e-6


def test_solve_path_matches_independent_solves():
    rng = np.random.default_rng(4)
    X = rng.standard_normal((30, 2))
    y = np.maximum(X[:, 0], 0) - X[:, 1]
    lams = [0.05, 0.5, 0.2]
    path = wn.solve_path(X, y, lams)
    for lam, res in zip(lams, path, strict=True):
        ref = wn.solve(X, y, lam=lam, solver="cvxpy")
        assert res.params["lam"] == lam and res.certified
        assert res.primal_objective == pytest.approx(ref.primal_objective, rel=1e-6)


def test_seeding_from_polished_neurons():
    rng = np.random.default_rng(5)
    X = rng.standard_normal((40, 2))
    y = np.maximum(X @ np.array([1.0, -0.5]) + 0.2, 0) + 0.05 * rng.standard_normal(40)
    sets = wn.seed_index_sets(X, y, lam=0.1, seed=0)
    assert sets and all(len(s.samples) == 2 for s in sets)
    seeded = wn.solve(X, y, lam=0.1, initial=sets)
    plain = wn.solve(X, y, lam=0.1)
    assert seeded.certified
    assert seeded.primal_objective == pytest.approx(plain.primal_objective, rel=1e-6)


@pytest.mark.parametrize("p", [1, 2])
def test_seeding_from_random_hyperplanes(p):
    rng = np.random.default_rng(7)
    X = rng.standard_normal((40, 2))
    y = np.sin(2 * X[:, 0]) + 0.1 * rng.standard_normal(40)
    sets = wn.sample_index_sets(X, 30, p=p, seed=1)
    assert sets and len(sets) <= 60
    assert sets == wn.sample_index_sets(X, 30, p=p, seed=1)  # reproducible
    seeded = wn.solve(X, y, p=p, lam=0.05, initial=sets)
    plain = wn.solve(X, y, p=p, lam=0.05)
    assert seeded.certified
    assert seeded.primal_objective == pytest.approx(plain.primal_objective, rel=1e-6)
    with pytest.raises(wn.WedgeNetError, match="n_hyperplanes"):
        wn.sample_index_sets(X, 0)


def test_distributed_pricer_gives_the_same_certified_result():
    from wedgenet.pricing import merge_pricing, split_ranges

    rng = np.random.default_rng(6)
    X = rng.standard_normal((40, 2))
    y = np.sin(2 * X[:, 0])
    params = {"p": 1, "bias": True, "source": "exhaustive", "seed": 0}
    n_raw = wn.dictionary_for(X, params).n_raw_subsets
    calls = []

    def pricer(V, n_top, threshold):
        parts = [
            wn.price_range(X, V, params, a, b, n_top, threshold) for a, b in split_ranges(n_raw, 3)
        ]
        calls.append(len(parts))
        return merge_pricing(parts, n_top)

    split = wn.solve(X, y, lam=0.1, pricer=pricer)
    local = wn.solve(X, y, lam=0.1)
    assert calls and split.certified
    assert split.primal_objective == pytest.approx(local.primal_objective, rel=1e-9)
    assert split.n_columns == local.n_columns
