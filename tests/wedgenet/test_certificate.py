"""The independent re-check of the dual bound, undecided subsets, and certificate notes."""

from __future__ import annotations

import numpy as np
import pytest

import wedgenet as wn
from wedgenet.certificate import (
    RECHECK_MAX_COLUMNS,
    Certificate,
    certify,
    independent_max_score,
)
from wedgenet.dictionary import WedgeDictionary
from wedgenet.losses import get_loss
from wedgenet.pricing import DictionaryColumns, PricingResult, merge_pricing, price
from wedgenet.programs import ProgramSolution


def near_duplicate(offset: float = 1e-10) -> np.ndarray:
    """Eight Gaussian points and a ninth at distance ``offset`` from the first."""
    X = np.random.default_rng(3).standard_normal((8, 2))
    return np.r_[X, X[:1] + offset * np.array([0.6, 0.8])]


@pytest.mark.parametrize(
    "p,bias,scale",
    [(1, True, 1.0), (1, False, 1.0), (2, True, 1.0), (2, False, 1.0), (1, True, 1e6),
     (2, True, 1e-6)],
)
def test_independent_max_score_agrees_with_the_scan(p, bias, scale):
    rng = np.random.default_rng(p + 2 * bias)
    X = rng.standard_normal((15, 3)) * np.array([1.0, scale, 1.0])
    V = rng.standard_normal((15, 2))
    D = WedgeDictionary(X, p=p, bias=bias)
    scan = price(DictionaryColumns(D, chunk_size=100), V, 5, 0.0)
    check = independent_max_score(D, V, chunk_size=77, block_entries=300)
    assert check.max_score == pytest.approx(scan.max_score, rel=1e-10)
    assert check.n_columns == scan.n_columns
    assert check.n_undecided == scan.n_undecided == 0
    assert check.n_subsets == D.n_raw_subsets or (p == 1 and bias)


def test_independent_max_score_on_rank_deficient_l2_data():
    A = np.random.default_rng(1).integers(-3, 4, size=(12, 2)).astype(float)
    X = A @ np.array([[1.0, 2.0, 0.0], [0.0, 1.0, -1.0]]) * np.array([1e4, 1.0, 1e-4])
    V = np.random.default_rng(2).standard_normal((12, 1))
    for bias in (True, False):
        D = WedgeDictionary(X + 3.0 * bias, p=2, bias=bias)
        assert D.rank_ == 2
        scan = price(DictionaryColumns(D), V, 3, 0.0)
        check = independent_max_score(D, V)
        assert check.max_score == pytest.approx(scan.max_score, rel=1e-9)
        assert check.n_columns == scan.n_columns


def test_undecided_subsets_are_counted_kept_and_serialized():
    X = near_duplicate()
    for p in (1, 2):
        D = WedgeDictionary(X, p=p, bias=True)
        keep, normals, n_und = D.hyperplanes(np.array([[0, 8], [0, 1]]), return_undecided=True)
        assert n_und == 1 and keep.tolist() == [0, 1]  # kept: its normal is usable
        assert D.n_undecided() == 1
        res = price(DictionaryColumns(D), np.ones((9, 1)), 3, 0.0)
        assert res.n_undecided == 1
        assert independent_max_score(D, np.ones((9, 1))).n_undecided == 1
        data = res.to_dict()
        assert data["n_undecided"] == 1
        back = PricingResult.from_dict(data, D.subset_size_, 2)
        assert back.n_undecided == 1
        del data["n_undecided"]
        assert PricingResult.from_dict(data, D.subset_size_, 2).n_undecided == 0
        assert merge_pricing([res, back], 3).n_undecided == 2
    # exact duplicates are dependent (decided), not undecided
    D = WedgeDictionary(near_duplicate(0.0), p=2, bias=True)
    assert D.n_undecided() == 0 and len(D.hyperplanes(np.array([[0, 8]]))[0]) == 0
    # random data: nothing undecided
    assert WedgeDictionary(np.random.default_rng(0).standard_normal((40, 3))).n_undecided() == 0


def test_ill_conditioned_subsets_forbid_a_certificate():
    X = near_duplicate()
    y = np.sin(3 * X[:, 0]) + X[:, 1]
    r = wn.solve(X, y, p=1, bias=True, lam=0.05)
    assert r.relative_gap <= 1e-6  # solved, but not certifiable
    assert not r.certified
    assert r.certificate_note == "1 subsets too ill-conditioned to decide"
    assert r.to_dict()["certificate_note"] == r.certificate_note
    ok = wn.solve(X[:8], y[:8], p=1, bias=True, lam=0.05)
    assert ok.certified and ok.certificate_note == "" and ok.to_dict()["certificate_note"] == ""


def test_a_scan_that_misses_columns_is_caught_by_the_recheck():
    rng = np.random.default_rng(5)
    X = rng.standard_normal((25, 2))
    y = np.abs(X[:, 0]) - np.maximum(X[:, 1] - 0.5, 0)
    honest = wn.solve(X, y, p=1, bias=True, lam=0.02)
    assert honest.certified
    D = WedgeDictionary(X, p=1, bias=True)
    part = DictionaryColumns(D, stop=D.n_raw_subsets // 8)  # a buggy pricer: 1/8 of it

    def pricer(V, n_top, threshold):
        return price(part, V, n_top, threshold)

    r = wn.solve(X, y, p=1, bias=True, lam=0.02, pricer=pricer)
    assert not r.certified
    assert r.certificate_note.startswith("independent re-check found a column scoring")
    # the reported bound uses the re-checked score: still a valid lower bound
    assert r.dual_objective <= honest.primal_objective * (1 + 1e-12)
    assert r.primal_objective > honest.primal_objective * (1 + 1e-6)


def test_certificate_notes():
    X = np.random.default_rng(7).standard_normal((12, 2))
    y = X[:, 0] ** 2
    sampled = wn.solve(X, y, lam=0.1, source="sample", n_columns=20)
    assert not sampled.certified and sampled.certificate_note == "dictionary sampled, not scanned"
    loss = get_loss("squared")
    Y = y[:, None]
    D = WedgeDictionary(X)
    V = Y - Y.mean()
    sol = ProgramSolution(
        Z=np.zeros((0, 1)), t=np.array([y.mean()]), V=V, primal=1.0, dual=0.5,
        max_score=0.0, solve_time=0.0,
    )
    cert = certify(D, sol, Y, loss, 0.1, 1e-6, scanned="all")
    assert isinstance(cert, Certificate) and not cert.certified
    assert cert.note == "gap 0.5 > tol 1e-06" and cert.check is None
    good = wn.solve(X, y, lam=0.1)
    assert good.certified
    V = good.network.decision_function(X).reshape(-1, 1)  # any dual point will do here
    sol = ProgramSolution(
        Z=np.zeros((0, 1)), t=np.zeros(1), V=V, primal=1.0, dual=1.0, max_score=0.0,
        solve_time=0.0,
    )
    big = certify(D, sol, Y, loss, 0.1, 1e-6, scanned="all", max_columns=10)
    assert not big.certified and big.note.startswith("not re-checked")
    assert RECHECK_MAX_COLUMNS == 4_000_000


def test_unbalanced_dual_point_is_not_certified_with_a_free_offset():
    """With a free output bias the dual constraint 1^T V = 0 must hold; a dual point that
    violates it (a stalled offset fit) is refused even when every other test passes."""
    X = np.random.default_rng(8).standard_normal((12, 2))
    y = X[:, 0] ** 2
    loss = get_loss("squared")
    Y = y[:, None]
    D = WedgeDictionary(X)
    good = wn.solve(X, y, lam=0.1)
    assert good.certified
    V = Y - Y.mean() + 0.5  # shifted: 1^T V = 6
    sol = ProgramSolution(
        Z=np.zeros((0, 1)), t=np.zeros(1), V=V, primal=1.0, dual=1.0, max_score=0.0,
        solve_time=0.0,
    )
    cert = certify(D, sol, Y, loss, 0.1, 1e-6, scanned="all", free_offset=True)
    assert not cert.certified and cert.note.startswith("dual point not balanced")
    balanced = ProgramSolution(
        Z=np.zeros((0, 1)), t=np.zeros(1), V=V - V.mean(), primal=1.0, dual=1.0,
        max_score=0.0, solve_time=0.0,
    )
    ok = certify(D, balanced, Y, loss, 0.1, 1e-6, scanned="all", free_offset=True)
    assert not ok.note.startswith("dual point not balanced")
