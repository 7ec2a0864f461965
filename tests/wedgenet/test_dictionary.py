"""Wedge dictionaries: sizes, sources, chunking, merging, rank reduction, interpretation."""

import numpy as np
import pytest

from wedgenet import DictionaryTooLarge, IndexSet, WedgeDictionary, WedgeNetError, dictionary_size
from wedgenet.dictionary import features
from wedgenet.geometry import cross


@pytest.mark.parametrize("p,bias", [(1, True), (1, False), (2, True), (2, False)])
def test_general_position_size_matches_enumeration(p, bias):
    X = np.random.default_rng(0).standard_normal((9, 3))
    D = WedgeDictionary(X, p=p, bias=bias)
    atoms = D.atoms()
    assert len(atoms) == D.size == dictionary_size(9, 3, p, bias)
    # every hyperplane passes exactly through its generators
    for j in range(0, len(atoms), 7):
        assert D.residual(atoms.subsets[j], atoms.normals[j]) < 1e-12
    # unit p-norm weights, both orientations
    w = atoms.normals[:, :3]
    np.testing.assert_allclose(np.linalg.norm(w, ord=p, axis=1), 1.0)
    assert set(atoms.signs.tolist()) == {-1, 1}


def test_chunking_does_not_change_the_dictionary():
    X = np.random.default_rng(1).standard_normal((12, 2))
    D = WedgeDictionary(X, p=1, bias=True)
    a = D.atoms(chunk_size=100000)
    b = WedgeDictionary(X, p=1, bias=True).atoms(chunk_size=7)
    np.testing.assert_array_equal(np.sort(a.subsets, axis=0), np.sort(b.subsets, axis=0))
    # disjoint ranges cover everything
    parts = [len(x) for x in D.iter_atoms(5, 0, 40)] + [len(x) for x in D.iter_atoms(5, 40, None)]
    assert sum(parts) == len(a)


def test_collinear_points_are_merged_under_canonical_index_set():
    X = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [0.0, 1.0]])
    D = WedgeDictionary(X, p=2, bias=True)
    atoms = D.atoms()
    # lines through pairs: (0,1), (0,2), (1,2) are one line -> kept once as (0, 1)
    pairs = {tuple(s) for s in atoms.subsets.tolist()}
    assert (0, 1) in pairs and (0, 2) not in pairs and (1, 2) not in pairs
    assert len(pairs) == 4  # (0,1), (0,3), (1,3), (2,3)


def test_antipodal_samples_merge_bias_free():
    X = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])  # the diamond
    atoms = WedgeDictionary(X, p=2, bias=False).atoms()
    assert sorted({tuple(s) for s in atoms.subsets.tolist()}) == [(0,), (1,)]


def test_sampled_source_is_seeded_and_sized():
    X = np.random.default_rng(2).standard_normal((30, 3))
    a = WedgeDictionary(X, p=1, bias=True, source="sample", n_hyperplanes=50, seed=3).atoms()
    b = WedgeDictionary(X, p=1, bias=True, source="sample", n_hyperplanes=50, seed=3).atoms()
    np.testing.assert_array_equal(a.subsets, b.subsets)
    assert len(a) == 100


def test_given_index_sets_keep_their_orientation():
    X = np.random.default_rng(3).standard_normal((6, 2))
    sets = [IndexSet(samples=(0, 3), sign=1), IndexSet(samples=(2,), directions=(1,), sign=-1)]
    D = WedgeDictionary(X, p=1, bias=True, source="given", index_sets=sets)
    atoms = D.atoms()
    assert atoms.signs.tolist() == [1, -1]
    assert D.index_set(atoms.subsets[1], -1) == sets[1]
    with pytest.raises(WedgeNetError, match="needs 2"):
        WedgeDictionary(X, p=1, bias=True, source="given", index_sets=[IndexSet((0,))]).atoms()


def test_rank_deficient_l2_is_reduced_and_mapped_back():
    rng = np.random.default_rng(4)
    B = rng.standard_normal((2, 3))
    X = rng.standard_normal((10, 2)) @ B  # rank 2 in R^3
    D = WedgeDictionary(X, p=2, bias=False)
    assert D.rank_ == 2
    atoms = D.atoms()
    assert len(atoms) > 0
    # neurons live in the original space, are orthogonal to their samples
    for j in range(len(atoms)):
        assert D.residual(atoms.subsets[j], atoms.normals[j]) < 1e-10
    # identical features to the dictionary of the reduced data
    Xr = X @ np.linalg.svd(X, full_matrices=False)[2][:2].T
    Kr = WedgeDictionary(Xr, p=2, bias=False).atoms()
    assert len(Kr) == len(atoms)


def test_rank_zero_and_bad_parameters_are_refused():
    with pytest.raises(WedgeNetError, match="rank 0"):
        WedgeDictionary(np.zeros((4, 2)), p=2, bias=False)
    with pytest.raises(WedgeNetError, match="rank 0"):
        WedgeDictionary(np.ones((4, 2)), p=1, bias=True)
    with pytest.raises(WedgeNetError, match="p must be"):
        WedgeDictionary(np.eye(3), p=3)
    with pytest.raises(WedgeNetError, match="NaN"):
        WedgeDictionary(np.array([[np.nan, 1.0]]))


def test_size_limit_names_size_and_sampling():
    X = np.random.default_rng(5).standard_normal((200, 3))
    with pytest.raises(DictionaryTooLarge) as err:
        WedgeDictionary(X, p=1, bias=True, max_columns=1000)
    assert err.value.size == dictionary_size(200, 3, 1, True) and err.value.limit == 1000
    assert "source='search'" in str(err.value)


def test_formulas_and_features():
    X = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    D2 = WedgeDictionary(X, p=2, bias=True)
    assert D2.formula(np.array([0, 2]), 1) == "dist+(x, Aff(x[0], x[2]))"
    D1 = WedgeDictionary(X, p=1, bias=False)
    assert D1.formula(np.array([1]), -1) == "Vol-(P(x, x[1])) / ||x(x[1])||_1"
    X1 = np.array([[0.0], [2.0], [5.0]])
    D = WedgeDictionary(X1, p=1, bias=True)
    atoms = D.atoms()
    K = features(X1, atoms.normals)
    # Thm 1: columns are relu(+-(x - x_j))
    expected = {tuple(np.maximum(s * (X1[:, 0] - X1[j, 0]), 0)) for j in range(3) for s in (1, -1)}
    assert {tuple(np.round(c, 12)) for c in K.T} == {tuple(np.round(e, 12)) for e in expected}
    assert D.formula(np.array([1]), 1) == "relu(x - x[1])"


def test_hyperplanes_signatures_and_undecided_counts():
    X = np.random.default_rng(8).standard_normal((10, 2))
    X = np.r_[X, X[:1] + 1e-10, X[1:2]]  # a near duplicate of 0 (10), a duplicate of 1 (11)
    D = WedgeDictionary(X, p=2, bias=True)
    subs = np.array([[0, 1], [0, 10], [1, 11], [2, 3]])
    keep, normals = D.hyperplanes(subs, dedupe=False)  # the two-value form still works
    assert keep.tolist() == [0, 1, 3] and normals.shape == (3, 3)
    keep3, normals3, n_und = D.hyperplanes(subs, dedupe=False, return_undecided=True)
    assert n_und == 1 and keep3.tolist() == keep.tolist()
    np.testing.assert_array_equal(normals3, normals)
    chunks = list(D.iter_hyperplane_chunks(7, dedupe=False))
    assert sum(c.n_subsets for c in chunks) == D.n_raw_subsets
    assert sum(c.n_undecided for c in chunks) == D.n_undecided() == 1
    tuples = list(D.iter_hyperplanes(7, dedupe=False))
    assert all(len(t) == 3 for t in tuples)
    assert sum(len(t[0]) for t in tuples) == sum(len(c.subsets) for c in chunks)


def test_equilibrated_coordinates_map_back_exactly():
    rng = np.random.default_rng(9)
    X = rng.standard_normal((12, 3)) * np.array([1e-6, 1.0, 1e6]) + np.array([1.0, -2e3, 5e6])
    for p, bias in [(1, True), (2, True), (1, False), (2, False)]:
        D = WedgeDictionary(X, p=p, bias=bias)
        atoms = D.atoms()
        assert len(atoms) == D.size  # general position: nothing skipped or merged
        np.testing.assert_allclose(np.linalg.norm(atoms.normals[:, :3], ord=p, axis=1), 1.0)
        for j in range(0, len(atoms), 11):
            assert D.residual(atoms.subsets[j], atoms.normals[j]) < 1e-9
        # the orientation is that of the cross product of the original lifted generators
        for j in range(0, len(atoms) // 2, 13):
            G = D.generators_original(atoms.subsets[j])
            G = G if bias else G[:, :3]
            h = cross(G)
            normal = atoms.normals[j] if bias else atoms.normals[j, :3]
            assert np.sign(h @ normal) == atoms.signs[j]
