"""RMSD against RDKit GetBestRMS, coverage and crystal metrics with known answers."""
import numpy as np
import pytest
from rdkit import Chem
from rdkit.Chem import AllChem, rdMolAlign

from molscore.chem.metrics import (atom_matches, coverage_metrics, crystal_summary,
                                   evaluate_coverage, evaluate_crystal, rmsd_matrix)


def _embed(smiles: str, n: int, seed: int, random_order: bool = False) -> Chem.Mol:
    mol = Chem.MolFromSmiles(smiles)
    if random_order:
        mol = Chem.MolFromSmiles(Chem.MolToSmiles(mol, doRandom=True))
    mol = Chem.AddHs(mol)
    params = AllChem.ETKDGv3()
    params.randomSeed = seed
    assert len(AllChem.EmbedMultipleConfs(mol, n, params)) == n
    return mol


@pytest.mark.parametrize("smiles", ["CC(C)(C)c1ccc(C(=O)[O-])cc1", "OC(=O)CCc1ccccc1[N+](=O)[O-]",
                                    "CN1CCC[C@H]1c1cccnc1"])
def test_rmsd_matches_getbestrms(smiles):
    probe = _embed(smiles, 4, 7)
    ref = _embed(smiles, 3, 11, random_order=True)
    got = rmsd_matrix(probe, ref)
    p, r = Chem.RemoveHs(probe), Chem.RemoveHs(ref)
    want = np.array([[rdMolAlign.GetBestRMS(p, r, i, j) for j in range(3)] for i in range(4)])
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert got.min() > 0


def test_different_molecules_raise():
    with pytest.raises(ValueError):
        atom_matches(_embed("CCO", 1, 1), _embed("CCN", 1, 1))


def test_coverage_metrics_known_matrix():
    rmsd = np.array([[0.5, 2.0, 3.0],
                     [1.0, 0.7, 3.0]])       # 2 generated x 3 references
    m = coverage_metrics(rmsd, 0.75)
    assert m["cov_r"] == pytest.approx(2 / 3) and m["amr_r"] == pytest.approx((0.5 + 0.7 + 3.0) / 3)
    assert m["cov_p"] == pytest.approx(1.0) and m["amr_p"] == pytest.approx(0.6)


def _write(path, mols_with_props):
    w = Chem.SDWriter(str(path))
    for mol, conf_id, props in mols_with_props:
        for k, v in props.items():
            mol.SetProp(k, str(v))
        w.write(mol, confId=conf_id)
    w.close()


def test_coverage_reference_equals_generated(tmp_path):
    recs = []
    for smi in ["CCOC(=O)c1ccccc1", "CC(C)Cc1ccc(C(C)C(=O)O)cc1"]:
        mol = _embed(smi, 3, 5)
        recs += [(Chem.Mol(mol), c.GetId(), {"smiles": smi, "conformer": c.GetId()})
                 for c in mol.GetConformers()]
    _write(tmp_path / "ref.sdf", recs)
    res = evaluate_coverage(tmp_path / "ref.sdf", tmp_path / "ref.sdf", 0.75)
    assert res["n_molecules"] == 2 and res["missing"] == []
    for key in ("cov_r", "cov_p"):
        assert res[key]["mean"] == 1.0 and res[key]["median"] == 1.0
    for key in ("amr_r", "amr_p"):
        assert res[key]["mean"] < 1e-6


def test_crystal_first_n(tmp_path):
    smi = "CCCCOc1ccccc1C(=O)N"
    ref = _embed(smi, 1, 3)
    gen = _embed(smi, 3, 9, random_order=True)
    # generated record 2 is the crystal conformer itself (rotated and in another atom order)
    crystal = Chem.Mol(ref)
    AllChem.TransformMol(crystal, np.array([[0, -1, 0, 1.0], [1, 0, 0, 2.0], [0, 0, 1, -3.0],
                                            [0, 0, 0, 1.0]]))
    _write(tmp_path / "ref.sdf", [(crystal, 0, {"smiles": smi})])
    recs = [(Chem.Mol(gen), 0, {"smiles": smi}), (Chem.Mol(gen), 1, {"smiles": smi}),
            (Chem.Mol(ref), 0, {"smiles": smi})]
    _write(tmp_path / "gen.sdf", recs)
    res = evaluate_crystal(tmp_path / "gen.sdf", tmp_path / "ref.sdf", ns=(1, 2, 3, 50))
    row = res["per_molecule"][0]["min_rmsd"]
    first = rmsd_matrix(gen, ref, [0], [0])[0, 0]
    assert row[1] == pytest.approx(first, abs=1e-3) and first > 0.1   # SDF keeps 4 decimals
    assert row[3] < 1e-3 and row[50] < 1e-3 and row[2] >= row[3]
    assert res["N=50"]["frac_below_0.5"] == 1.0


def test_crystal_summary():
    rows = [{1: 0.3, 10: 0.2}, {1: 1.5, 10: 0.8}, {1: 2.5, 10: 1.2}]
    s = crystal_summary(rows, (1, 10))
    assert s["N=1"]["median"] == 1.5 and s["N=1"]["frac_below_0.5"] == pytest.approx(1 / 3)
    assert s["N=1"]["frac_below_2.0"] == pytest.approx(2 / 3)
    assert s["N=10"]["frac_below_1.0"] == pytest.approx(2 / 3) and s["N=10"]["median"] == 0.8
