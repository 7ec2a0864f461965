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
    first = solve_working_set(DictionaryColumns(D), X, Y, loss, 0.2)
    support = first.atoms.take(np.flatnonzero(np.any(first.solution.Z != 0, axis=1)))
    warm = solve_working_set(DictionaryColumns(D), X, Y, loss, 0.15, initial_atoms=support)
    cold = solve_working_set(DictionaryColumns(D), X, Y, loss, 0.15)
    assert warm.solution.primal == pytest.approx(cold.solution.primal, rel=1e-6)
    assert warm.solution.gap <= 1e-6
