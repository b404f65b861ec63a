"""ETKDGv3 conformers for tests."""
from rdkit import Chem
from rdkit.Chem import AllChem


def embed(smiles: str, n: int = 1, seed: int = 42) -> Chem.Mol:
    """``smiles`` with explicit hydrogens and ``n`` ETKDGv3 conformers (``randomSeed = seed``)."""
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    params = AllChem.ETKDGv3()
    params.randomSeed = seed
    assert len(AllChem.EmbedMultipleConfs(mol, n, params)) == n
    return mol


def pose_syn_pentane(conf: Chem.Conformer, dihedral: float) -> tuple[int, int]:
    """Turn ``conf``, a conformer of pentane (``CCCCC`` with explicit hydrogens, heavy atoms
    first), rigidly into a syn conformation: C-C-C-C dihedrals ``dihedral`` and
    ``-dihedral`` deg, one hydrogen of each methyl turned towards the other's. Returns those
    two hydrogens' indices (their distance: 1.53 A at 80 deg, about 0.6-1.3 A at 70)."""
    from rdkit.Chem import rdMolTransforms

    mol = conf.GetOwningMol()
    rdMolTransforms.SetDihedralDeg(conf, 0, 1, 2, 3, dihedral)
    rdMolTransforms.SetDihedralDeg(conf, 1, 2, 3, 4, -dihedral)
    h0, h4 = (min(n.GetIdx() for n in mol.GetAtomWithIdx(c).GetNeighbors() if n.GetAtomicNum() == 1)
              for c in (0, 4))
    rdMolTransforms.SetDihedralDeg(conf, 2, 1, 0, h0, -60.0)
    rdMolTransforms.SetDihedralDeg(conf, 2, 3, 4, h4, 60.0)
    return h0, h4
