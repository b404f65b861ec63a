"""``scripts/pack_dataset.py``: a processed dataset with quantised coordinates, as ``.tar.xz``."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch
from rdkit.Chem import AllChem

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from pack_dataset import pack, quantise_positions  # noqa: E402
from molscore.chem.featurize import prepare_mol  # noqa: E402
from molscore.data.conformers import ConformerSet  # noqa: E402
from molscore.data.processed import ConformerDataset, load_index, write_dataset  # noqa: E402


def test_quantised_positions_are_multiples_within_half_a_quantum():
    pos = torch.randn(1000, 3, generator=torch.Generator().manual_seed(3)) * 20
    q = quantise_positions(pos, 10)
    assert (q - pos).abs().max() <= 2.0 ** -11
    assert torch.equal(q * 1024, torch.round(q * 1024))          # exact multiples of 2**-10
    assert torch.equal(quantise_positions(q, 10), q)              # idempotent


def test_packed_dataset_reads_back_with_quantised_coordinates(tmp_path):
    records = []
    for k, smi in enumerate(("CCOC(=O)c1ccccc1", "C[C@H](N)Cc1ccncc1", "OCC(O)CO")):
        mol = prepare_mol(smi)
        AllChem.EmbedMultipleConfs(mol, 3, randomSeed=7 + k)
        records.append(ConformerSet(smiles=smi, mol=mol, weights=None, name=smi))
    src = tmp_path / "ds"
    write_dataset(records, src, shard_size=2, failures=[("bad", "a reason")])
    size = pack(src, tmp_path / "out" / "ds.tar.xz", bits=10)
    assert size == (tmp_path / "out" / "ds.tar.xz").stat().st_size > 0
    unpacked = tmp_path / "unpacked"
    unpacked.mkdir()
    subprocess.run(["tar", "-C", str(unpacked), "-xJf", str(tmp_path / "out" / "ds.tar.xz")], check=True)
    index, packed = load_index(src), load_index(unpacked / "ds")
    assert packed["meta"]["pos_quantum"] == 2.0 ** -10
    assert {k: v for k, v in packed.items() if k != "meta"} == {k: v for k, v in index.items() if k != "meta"}
    assert (unpacked / "ds" / "failures.csv").read_text() == (src / "failures.csv").read_text()
    before = ConformerDataset(src, split="all", conformers="all")
    after = ConformerDataset(unpacked / "ds", split="all", conformers="all")
    assert len(before) == len(after) == 9
    for i in range(len(before)):
        a, b = before[i], after[i]
        for key in ("atom_feat", "edge_index", "edge_attr", "z"):
            assert torch.equal(a[key], b[key])
        assert (a.pos - b.pos).abs().max() <= 2.0 ** -11
        assert torch.equal(b.pos, quantise_positions(a.pos, 10))
