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
