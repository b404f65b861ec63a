import numpy as np
import pytest
from rdkit import Chem
from rdkit.Chem import AllChem

from molscore.chem.metrics import rmsd_matrix
from molscore.chem.selection import (PICKS, max_min_order, representative_conformers,
                                     representative_order)


def _dist(points: np.ndarray) -> np.ndarray:
    return np.linalg.norm(points[:, None] - points[None], axis=-1)


def _objective(dist: np.ndarray, picks: list[int]) -> float:
    return float(dist[picks].min(axis=0).sum())


def test_first_pick_is_the_medoid_and_every_pick_is_the_greedy_best():
    dist = _dist(np.random.default_rng(0).normal(size=(30, 2)))
    order = representative_order(dist, 6)
    assert order[0] == int(np.argmin(dist.sum(axis=1)))
    assert len(set(order)) == 6
    for k in range(1, 6):          # brute force: no other item lowers the objective more
        best = min(_objective(dist, order[:k] + [j]) for j in range(30) if j not in order[:k])
        assert _objective(dist, order[:k + 1]) == pytest.approx(best)
    assert representative_order(dist, 3) == order[:3]            # prefixes are the greedy picks


def test_dense_clusters_are_picked_before_an_outlier():
    rng = np.random.default_rng(1)
    points = np.concatenate([rng.normal(0, 0.1, (10, 2)), rng.normal((5, 0), 0.1, (10, 2)),
                             [[0, 40]]])
    order = representative_order(_dist(points), 2)
    assert sorted(i // 10 for i in order) == [0, 1]              # one centre per cluster
    # max-min (farthest point) picking from the same medoid takes the outlier second
    assert max_min_order(_dist(points), 2) == [order[0], 20]


def test_max_min_picks_the_farthest_point_from_all_earlier_picks():
    """Points on a line at 0, 1, ..., 8: the medoid is 4, then the ends, then the midpoints
    of the largest gaps (ties to the lowest index)."""
    dist = _dist(np.arange(9.0)[:, None])
    assert max_min_order(dist, 5) == [4, 0, 8, 2, 6]
    order = max_min_order(_dist(np.random.default_rng(2).normal(size=(25, 3))), 25)
    assert sorted(order) == list(range(25))                      # a permutation: no repeats
    assert max_min_order(dist, 3) == max_min_order(dist, 5)[:3]


def test_max_min_from_a_given_start():
    dist = _dist(np.arange(9.0)[:, None])
    assert max_min_order(dist, 4, start=0) == [0, 8, 4, 2]
    assert max_min_order(dist, 3, start=4) == max_min_order(dist, 3)
    with pytest.raises(ValueError, match="start 9 is not an index of a pool of 9"):
        max_min_order(dist, 2, start=9)


def test_max_min_never_repeats_a_pick_among_exact_copies():
    dist = np.zeros((4, 4))                                      # four identical conformers
    assert max_min_order(dist, 4) == [0, 1, 2, 3]


@pytest.mark.parametrize("order", PICKS.values(), ids=PICKS.keys())
def test_bounds_and_bad_input(order):
    dist = _dist(np.arange(4.0)[:, None])
    assert sorted(order(dist, 10)) == [0, 1, 2, 3]
    assert order(dist, 0) == []
    with pytest.raises(ValueError, match="square"):
        order(np.zeros((3, 2)), 1)


def test_representative_conformers_skip_copies_and_return_conformer_ids():
    """Three rotated copies of one conformer and two of another: two picks take one of each,
    found through the symmetry-aware RMSD (rigid motions do not separate conformers)."""
    mol = Chem.AddHs(Chem.MolFromSmiles("CCCCCCO"))
    params = AllChem.ETKDGv3()
    params.randomSeed = 7
    ids = list(AllChem.EmbedMultipleConfs(mol, 8, params))
    dist = rmsd_matrix(mol, mol, ids, ids)
    a, b = np.unravel_index(np.argmax(dist), dist.shape)     # the two most different
    shapes = [mol.GetConformer(ids[a]).GetPositions(), mol.GetConformer(ids[b]).GetPositions()]
    out = Chem.Mol(mol)
    out.RemoveAllConformers()
    rot = np.linalg.qr(np.random.default_rng(2).normal(size=(3, 3)))[0]
    rot *= np.sign(np.linalg.det(rot))
    shape_of = {}
    for k, which in enumerate([0, 0, 1, 0, 1]):
        conf = Chem.Conformer(mol.GetNumAtoms())
        for i, p in enumerate(shapes[which] @ rot.T + k):
            conf.SetAtomPosition(i, p.tolist())
        conf.SetId(100 + 10 * k)
        shape_of[100 + 10 * k] = which
        out.AddConformer(conf, assignId=False)
    for pick in PICKS:
        picks = representative_conformers(out, 2, pick)
        assert sorted(shape_of[p] for p in picks) == [0, 1]
        assert shape_of[picks[0]] == 0                         # the larger group holds the medoid
    with pytest.raises(ValueError, match="unknown pick 'random'; choose from max-min, k-medoids"):
        representative_conformers(out, 2, "random")
