"""``datasets/make_train_smiles.py``, the script that writes ``datasets/train_smiles.csv``."""
from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

from rdkit import Chem

from molscore.data.reserved import inchikey_block

SCRIPT = Path(__file__).resolve().parents[1] / "datasets" / "make_train_smiles.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("make_train_smiles", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_script_drops_reserved_molecules_and_their_tautomers_invalid_and_duplicate_rows(
        tmp_path, monkeypatch, capsys):
    script = _load_script()  # it imported a function the reserved module no longer has
    enol = inchikey_block(Chem.MolFromSmiles("CC(O)=C"))  # a tautomer of acetone
    phenol = inchikey_block(Chem.MolFromSmiles("Oc1ccccc1"))
    assert enol != inchikey_block(Chem.MolFromSmiles("CC(C)=O"))  # InChI does not merge them
    monkeypatch.setattr(script, "load_reserved", lambda: frozenset({enol, phenol}))
    items = [("CCO", "a"), ("OCC", "a"), ("not a smiles", "a"), ("Oc1ccccc1", "b"),
             ("CC(C)=O", "b"), ("c1ccncc1", "b")]
    monkeypatch.setattr(script, "_sources", lambda shared: iter(items))
    out = tmp_path / "train_smiles.csv"
    script.main(tmp_path, out)
    with open(out, newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows == [["smiles", "source"], ["CCO", "a"], ["c1ccncc1", "b"]]
    printed = capsys.readouterr().out
    assert "a: kept 1, reserved dropped 0, invalid 1" in printed
    assert "b: kept 1, reserved dropped 2, invalid 0" in printed
