"""C-alpha trace IO, chain splitting, crops and geometry metrics."""
from __future__ import annotations

import gzip
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from scipy.stats import wasserstein_distance

from _npz import save_damaged_npz

from molscore.cli import main

from molscore.data.ca_metrics import (circular_wasserstein, clash_counts, compare_traces,
                                      fit_rg_power_law, fraction_ideal_bonds,
                                      radius_of_gyration, random_walk_traces, trace_summary,
                                      virtual_bond_angles, virtual_dihedrals)
from molscore.data.ca_traces import (CATraceCrops, StructureReadError, Trace, load_npz_traces,
                                     read_ca_pdb_models, read_structure_files,
                                     read_structure_traces, split_at_gaps, split_by_structure,
                                     write_ca_pdb)

ROOT = Path(__file__).resolve().parents[1]
NPZ = ROOT / "datasets" / "pdb_ca_traces_308.npz"


def helix(n: int, rise: float = 1.5, radius: float = 2.3, turn_deg: float = 100.0) -> np.ndarray:
    """Ideal right-handed alpha-helix C-alpha trace, ``(n, 3)`` Å (consecutive ~3.8 Å)."""
    k = np.arange(n)
    ang = np.radians(turn_deg) * k
    return np.stack([radius * np.cos(ang), radius * np.sin(ang), rise * k], axis=1)


def straight(n: int, step: float = 3.8) -> np.ndarray:
    return np.stack([np.arange(n) * step, np.zeros(n), np.zeros(n)], axis=1)


def pdb_atom(serial: int, name: str, res: str, chain: str, resid: int, xyz, element: str,
             record: str = "ATOM") -> str:
    return (f"{record:<6}{serial:5d} {name:<4} {res:>3} {chain}{resid:4d}    "
            f"{xyz[0]:8.3f}{xyz[1]:8.3f}{xyz[2]:8.3f}  1.00  0.00          {element:>2}")


def write_two_chain_pdb(path: Path, a: np.ndarray, b: np.ndarray) -> None:
    """Chain A = ``a`` (with N atoms too), chain B = ``b`` (CA only), plus a calcium ion."""
    lines, s = [], 1
    for i, xyz in enumerate(a, start=1):
        lines.append(pdb_atom(s, "N", "ALA", "A", i, xyz + np.array([1.0, 0.5, 0.0]), "N"))
        lines.append(pdb_atom(s + 1, "CA", "ALA", "A", i, xyz, "C"))
        s += 2
    for i, xyz in enumerate(b, start=1):
        lines.append(pdb_atom(s, "CA", "GLY", "B", i, xyz, "C"))
        s += 1
    lines.append(pdb_atom(s, "CA", "CA", "C", 1, (50.0, 50.0, 50.0), "CA", record="HETATM"))
    path.write_text("\n".join(lines) + "\nEND\n")


# -- IO ---------------------------------------------------------------------------------


def test_pdb_round_trip_multi_model(tmp_path):
    rng = np.random.default_rng(3)
    traces = [rng.normal(scale=30.0, size=(40, 3)), rng.normal(scale=30.0, size=(17, 3))]
    out = tmp_path / "t.pdb"
    write_ca_pdb(out, [traces[0], torch.from_numpy(traces[1]).float()])
    text = out.read_text()
    assert text.count("MODEL ") == 2 and text.count("ENDMDL") == 2
    back = read_ca_pdb_models(out)
    assert [len(b) for b in back] == [40, 17]
    for a, b in zip(traces, back):
        np.testing.assert_allclose(b, a, atol=1e-3)
    # also through the generic reader (first model, one chain, no gap splitting)
    first = read_structure_traces(out, max_gap=np.inf)
    assert len(first) == 1
    np.testing.assert_allclose(first[0].coords, traces[0], atol=1e-3)


def test_write_rejects_unwritable_coordinates(tmp_path):
    with pytest.raises(ValueError, match="do not fit"):
        write_ca_pdb(tmp_path / "x.pdb", [np.full((3, 3), 1e4)])
    with pytest.raises(ValueError, match="shape"):
        write_ca_pdb(tmp_path / "x.pdb", [np.zeros((3, 2))])


def test_write_rejects_a_coordinate_that_rounds_to_1000(tmp_path):
    """-999.9996 is below 1000 in size but is written as -1000.000, 9 characters that
    shifted the y and z columns of its ATOM record."""
    trace = straight(4)
    trace[0, 0] = -999.9996
    with pytest.raises(ValueError, match="do not fit"):
        write_ca_pdb(tmp_path / "x.pdb", [trace])
    trace[0, 0] = -999.9994                   # written as -999.999: fits its 8 columns
    write_ca_pdb(tmp_path / "x.pdb", [trace])
    atom = next(ln for ln in (tmp_path / "x.pdb").read_text().splitlines()
                if ln.startswith("ATOM"))
    assert atom[30:38] == "-999.999"
    np.testing.assert_allclose(read_ca_pdb_models(tmp_path / "x.pdb")[0], trace, atol=1e-3)



def test_write_rejects_more_residues_or_models_than_pdb_numbers(tmp_path):
    """Residue 10000 of a trace was written as residue 1 of the same chain (biotite wraps
    the 4-digit number with a warning), model 10000 as a 5-digit MODEL serial."""
    with pytest.raises(ValueError, match="trace 1 has 10000 residues, more than a PDB chain"):
        write_ca_pdb(tmp_path / "x.pdb", [straight(10_000, 0.01)])
    with pytest.raises(ValueError, match="10000 traces do not fit a PDB file"):
        write_ca_pdb(tmp_path / "x.pdb", [straight(4)] * 10_000)
    assert not (tmp_path / "x.pdb").exists()
    write_ca_pdb(tmp_path / "x.pdb", [straight(9999, 0.01)])
    assert read_ca_pdb_models(tmp_path / "x.pdb")[0].shape == (9999, 3)

def test_split_at_gaps():
    x = straight(10)
    x[6:] += np.array([0.0, 5.0, 0.0])           # gap of sqrt(3.8^2 + 25) > 4.2 after index 5
    segs = split_at_gaps(x)
    assert [len(s) for s in segs] == [6, 4]
    assert [len(s) for s in split_at_gaps(straight(5))] == [5]
    assert split_at_gaps(np.zeros((0, 3))) == []


def test_missing_residues_written_as_nan_are_gaps(tmp_path):
    """NaN rows (missing residues in an npz) passed the distance test (NaN > 4.2 is False):
    they stayed inside the segment, and every crop over them was all NaN (a NaN loss)."""
    x = straight(20).astype(np.float32)
    x[8] = np.nan
    x[15, 1] = np.inf
    x[19] = np.nan
    segs = split_at_gaps(x, max_gap=np.inf)
    assert [len(s) for s in segs] == [8, 6, 3]
    np.testing.assert_array_equal(np.concatenate(segs), x[[*range(8), *range(9, 15), 16, 17, 18]])
    np.savez(tmp_path / "t.npz", s1=x)
    traces = load_npz_traces(tmp_path / "t.npz", min_length=4)
    assert [(t.chain, len(t)) for t in traces] == [("1", 8), ("2", 6)]
    crops = CATraceCrops(traces, 6)
    assert all(torch.isfinite(crops[i]).all() for i in range(len(crops)))
    assert split_at_gaps(np.full((3, 3), np.nan)) == []


def test_read_pdb_chains_split_at_gaps(tmp_path):
    a = helix(30)
    a[20:] += np.array([10.0, 0.0, 0.0])          # chain break inside chain A
    b = straight(12) + 20.0
    path = tmp_path / "two.pdb"
    write_two_chain_pdb(path, a, b)
    traces = read_structure_traces(path)
    assert [(t.chain, len(t)) for t in traces] == [("A", 20), ("A.2", 10), ("B", 12)]
    assert all(t.structure == "two" for t in traces)
    np.testing.assert_allclose(traces[1].coords, a[20:], atol=1e-3)  # N atoms and Ca ion skipped
    assert [len(t) for t in read_structure_traces(path, min_length=11)] == [20, 12]


def write_cif(path: Path, x: np.ndarray) -> None:
    """A CA-only mmCIF file of one chain ``X`` with C-alphas ``x`` ``(n, 3)``."""
    import biotite.structure as struc
    import biotite.structure.io.pdbx as pdbx

    atoms = struc.AtomArray(len(x))
    atoms.coord = x
    atoms.atom_name[:] = "CA"
    atoms.element[:] = "C"
    atoms.res_name[:] = "ALA"
    atoms.res_id[:] = np.arange(1, len(x) + 1)
    atoms.chain_id[:] = "X"
    atoms.hetero[:] = False
    f = pdbx.CIFFile()
    pdbx.set_structure(f, atoms)
    f.write(str(path))


def test_read_mmcif(tmp_path):
    x = helix(15)
    path = tmp_path / "h.cif"
    write_cif(path, x)
    (t,) = read_structure_traces(path)
    assert t.chain == "X"
    np.testing.assert_allclose(t.coords, x, atol=1e-3)


def test_bad_files_reported_rest_processed(tmp_path):
    good = tmp_path / "good.pdb"
    write_ca_pdb(good, [helix(8)])
    no_ca = tmp_path / "ligand.pdb"
    no_ca.write_text(pdb_atom(1, "O", "HOH", "A", 1, (0.0, 0.0, 0.0), "O", "HETATM") + "\nEND\n")
    broken = tmp_path / "broken.pdb"
    broken.write_text("ATOM      1  CA  GLY A   1       abc.def   0.000   0.000  1.00  0.00"
                      "           C\nEND\n")
    missing = tmp_path / "missing.pdb"
    with pytest.raises(StructureReadError, match="no C-alpha"):
        read_structure_traces(no_ca)
    traces, errors = read_structure_files([no_ca, good, broken, missing])
    assert len(traces) == 1 and len(traces[0]) == 8
    assert len(errors) == 3
    assert "ligand.pdb" in errors[0] and "no C-alpha" in errors[0]
    assert "broken.pdb" in errors[1] and "cannot read" in errors[1]
    assert "missing.pdb" in errors[2] and "no such file" in errors[2]
    assert all("\n" not in e for e in errors)



def _train_ca(tmp_path: Path, data: dict) -> int:
    """``molscore train`` of a 1-step C-alpha config with ``data`` (crops of 8 residues)."""
    cfg = tmp_path / "ca.yaml"
    cfg.write_text(yaml.safe_dump({"task": "ca_traces", "steps": 1, "batch_size": 2,
                                   "data": {"crop_length": 8, **data}}))
    return main(["train", "--config", str(cfg), "-q", "-o", str(tmp_path / "run")])


def _damaged_npz(path: Path) -> None:
    """An ``.npz`` whose array ``s1`` has a changed byte (its CRC-32 no longer matches)."""
    save_damaged_npz(path, "s1", helix(12).astype(np.float32))


@pytest.mark.parametrize("write, message", [
    # numpy's "This file contains pickled (object) data. If you trust the file ...", no path
    (lambda p: p.write_text("structure,x,y,z\n1abc,0,0,0\n"),
     " is not an .npz archive: it is not a zip archive, which numpy.savez writes"),
    (lambda p: p.mkdir(), " is not an .npz archive: it is a folder"),  # IsADirectoryError
    (_damaged_npz, ": cannot read array 's1': Bad CRC-32"),            # zipfile.BadZipFile
    (lambda p: np.savez(p, s1=np.zeros((4, 2))), ": array 's1' has shape (4, 2), expected (n, 3)"),
])
def test_an_npz_that_numpy_cannot_read_as_traces_is_one_line_exit_2(tmp_path, capsys, write,
                                                                     message):
    """``data.npz`` that is no archive of C-alpha arrays: ``data.npz: PATH ...``, one line,
    exit 2 (before: numpy's advice to unpickle the file, naming no file, or a traceback)."""
    bad = tmp_path / "traces.npz"
    write(bad)
    assert _train_ca(tmp_path, {"npz": str(bad)}) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"data.npz: {bad}{message}" in err, err
    assert "pickle" not in err


def test_structure_files_of_other_formats_are_skipped_naming_the_formats_read(tmp_path, capsys):
    """``data.structures``: each file that gives no trace is one warning naming it and why, then
    a count; an ``.sdf`` was biotite's ``get_structure() got an unexpected keyword argument
    'model'``, a gzipped PDB ``Unknown file format '.gz'``, an empty PDB ``The file has 0
    models, the given model 1 does not exist``."""
    good = tmp_path / "good.PDB"  # the extension in any case
    write_ca_pdb(good, [helix(12)])
    (tmp_path / "ligand.sdf").write_text("\n  RDKit          3D\n\n  0  0  0  0  0  0  0  0  0  0"
                                        "999 V2000\nM  END\n$$$$\n")
    (tmp_path / "good.pdb.gz").write_bytes(gzip.compress(good.read_bytes()))
    (tmp_path / "empty.pdb").write_bytes(b"")
    (tmp_path / "header.pdb").write_text("HEADER    NO ATOMS\nEND\n")
    (tmp_path / "water.pdb").write_text(
        pdb_atom(1, "O", "HOH", "A", 1, (0.0, 0.0, 0.0), "O", "HETATM") + "\nEND\n")
    cif = tmp_path / "cut.cif"  # an mmCIF file that ends inside its atom_site loop
    write_cif(tmp_path / "whole.cif", helix(12))
    text = (tmp_path / "whole.cif").read_text()
    cif.write_text(text[:text.index("ATOM") + 40])
    bad = ["ligand.sdf", "good.pdb.gz", "empty.pdb", "header.pdb", "water.pdb", "cut.cif"]
    given = [str(tmp_path / name) for name in bad] + [str(good)]
    assert _train_ca(tmp_path, {"npz": None, "structures": given, "val_fraction": 0}) == 0
    lines = capsys.readouterr().err.splitlines()
    formats = "structures are read from PDB (.pdb), mmCIF (.cif, .pdbx) and BinaryCIF (.bcif)"
    assert lines == [
        f"warning: {tmp_path / 'ligand.sdf'}: unsupported format ('.sdf'); {formats} files",
        f"warning: {tmp_path / 'good.pdb.gz'}: unsupported format ('.gz'); {formats} files; "
        "decompress it first",
        f"warning: {tmp_path / 'empty.pdb'}: an empty file (0 bytes)",
        f"warning: {tmp_path / 'header.pdb'}: cannot read PDB structure (no ATOM or HETATM "
        "records)",
        f"warning: {tmp_path / 'water.pdb'}: no C-alpha atoms (atom name CA, element C) found",
        f"warning: {tmp_path / 'cut.cif'}: cannot read mmCIF structure (Failed to deserialize "
        "category 'atom_site')",
        "warning: skipped 6 of 7 structure files",
    ]
    (tmp_path / "run").rename(tmp_path / "run1")  # without a readable file: exit 2
    assert _train_ca(tmp_path, {"npz": None, "structures": given[:2]}) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == ("molscore train: error: no chain segment of at least 8 residues in the "
                       "configured data (skipped 2 of 2 structure files: see the warnings)")


# -- dataset ------------------------------------------------------------------------------


def test_bundled_npz_split_and_crops():
    traces = load_npz_traces(NPZ, min_length=64)
    assert all(len(t) >= 64 for t in traces)
    steps = np.concatenate([np.linalg.norm(np.diff(t.coords, axis=0), axis=1) for t in traces])
    assert steps.max() <= 4.2
    train, val = split_by_structure(traces, 0.1, seed=0)
    s_train, s_val = {t.structure for t in train}, {t.structure for t in val}
    assert s_train and s_val and not (s_train & s_val)
    assert len(s_val) == round(0.1 * len(s_train | s_val))
    assert split_by_structure(traces, 0.1, seed=0) == (train, val)

    torch.manual_seed(0)
    ds = CATraceCrops(train[:20], 64, coord_scale=10.0, crops_per_segment=3)
    assert len(ds) == 60
    for i in range(0, 60, 7):
        x = ds[i]
        assert x.shape == (64, 3) and x.dtype == torch.float32
        assert x.mean(0).abs().max() < 1e-5
        d = (x[1:] - x[:-1]).norm(dim=1) * 10.0      # back in Å: consecutive C-alphas
        assert d.max() <= 4.2 + 1e-4
    val_ds = CATraceCrops(val, 100, deterministic=True, seed=1)
    assert torch.equal(val_ds[3], val_ds[3])
    assert all(len(s) >= 100 for s in val_ds.segments)
    with pytest.raises(ValueError, match="at least 10000"):
        CATraceCrops(train, 10000)


def test_crop_starts_cover_segment():
    seg = random_walk_traces([12], seed=4)[0].astype(np.float32)
    ds = CATraceCrops([Trace("s", "A", seg)], 10, coord_scale=2.0, crops_per_segment=40)
    torch.manual_seed(1)
    starts = []
    for i in range(len(ds)):
        x = ds[i].numpy() * 2.0
        match = [s for s in range(3) if np.allclose(x, seg[s:s + 10] - seg[s:s + 10].mean(0),
                                                    atol=1e-4)]
        assert len(match) == 1
        starts.append(match[0])
    assert set(starts) == {0, 1, 2}


# -- metrics ----------------------------------------------------------------------------------


def test_ideal_chain_bonds_and_no_clash():
    x = straight(50)
    assert fraction_ideal_bonds([x]) == 1.0
    assert clash_counts(x) == (0, 0)
    bent = x.copy()
    bent[10:] *= 1.1                               # one stretched bond at 3.8 * 1.1 + ...
    assert fraction_ideal_bonds([bent]) < 1.0
    h = helix(40)
    assert fraction_ideal_bonds([h]) == 1.0
    assert clash_counts(h) == (0, 0)


def test_a_pair_exactly_at_the_cutoff_is_no_clash():
    """``clash_counts`` counts pairs closer than the cutoff, as documented (scipy's
    ``query_pairs`` also returns those at exactly the cutoff)."""
    x = np.array([[0.0, 0, 0], [3.8, 0, 0], [3.8, 3.0, 0], [0.0, 3.0, 0]])     # 0-3 at 3.0 Å
    assert clash_counts(x, cutoff=3.0) == (0, 0)
    assert clash_counts(x, cutoff=3.0 + 1e-9) == (1, 2)


def test_chain_folded_onto_itself_clashes():
    # hairpin: 10 residues out along x, then 10 back 2 Å away (parallel to the first strand)
    out = straight(10)
    back = straight(10)[::-1] + np.array([0.0, 2.0, 0.0])
    x = np.concatenate([out, back])
    pairs, residues = clash_counts(x)
    # every residue i of strand 1 faces residue 19 - i of strand 2 at exactly 2 Å;
    # diagonal neighbours are sqrt(3.8^2 + 4) = 4.29 Å > 3 Å; the turn pair (9, 10) is
    # consecutive and not counted
    assert pairs == 9 and residues == 18
    # a trace that doubles back onto itself: residue 10+k sits 0.17 Å from 9-k (k=0 consecutive)
    fold = np.concatenate([out, out[::-1] + 0.1])
    assert clash_counts(fold) == (9, 18)
    summary = compare_traces([x], [helix(20)])
    assert summary["clash_pairs_per_residue"] == pytest.approx(9 / 20)
    assert summary["clash_residue_fraction"] == pytest.approx(18 / 20)


def test_rg_and_power_law():
    x = straight(11, step=1.0)                     # points 0..10 on a line: Rg^2 = var = 10
    assert radius_of_gyration(x) == pytest.approx(np.sqrt(10.0))
    rng = np.random.default_rng(0)
    fake = []
    for n in (50, 100, 200, 400, 800):
        pts = rng.normal(size=(n, 3))
        pts *= 2.2 * n ** 0.38 / np.sqrt((pts - pts.mean(0)).__pow__(2).sum(1).mean())
        fake.append(pts)
    a, nu = fit_rg_power_law(fake)
    assert a == pytest.approx(2.2, rel=1e-6) and nu == pytest.approx(0.38, rel=1e-6)


def test_angles_and_dihedrals():
    h = helix(20)
    ang = virtual_bond_angles(h)
    dih = virtual_dihedrals(h)
    assert ang.shape == (18,) and dih.shape == (17,)
    assert np.ptp(ang) < 1e-6 and np.ptp(dih) < 1e-6
    assert 80 < ang[0] < 100                        # ideal alpha helix: ~91 degrees
    assert 40 < dih[0] < 60                         # right-handed: ~ +50 degrees
    mirrored = h * np.array([1.0, 1.0, -1.0])
    np.testing.assert_allclose(virtual_dihedrals(mirrored), -dih, atol=1e-9)
    np.testing.assert_allclose(virtual_bond_angles(straight(5)), 180.0)


def test_circular_wasserstein():
    assert circular_wasserstein(np.array([179.0]), np.array([-179.0])) == pytest.approx(2.0)
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 20, 500), rng.normal(30, 10, 400)
    # both far from the cut at +-180: equals the linear distance
    assert circular_wasserstein(a, b) == pytest.approx(wasserstein_distance(a, b), rel=1e-9)
    # invariant to where the circle is cut (rotating both sets)
    rot = lambda v: np.mod(v + 170.0 + 180.0, 360.0) - 180.0  # noqa: E731
    assert circular_wasserstein(rot(a), rot(b)) == pytest.approx(circular_wasserstein(a, b))
    assert wasserstein_distance(rot(a), rot(b)) > 5 * circular_wasserstein(a, b)
    # half of the mass at 0 and half at 180 vs. all at 90: every unit moves 90 degrees
    assert circular_wasserstein(np.array([0.0, 180.0]), np.array([90.0, 90.0])) == pytest.approx(90)


def _raises(message: str):
    return pytest.raises(ValueError, match=re.escape(message))


def test_metrics_of_short_traces_have_defined_values():
    """Defined values where they make sense, with no numpy warning (error filter)."""
    one, empty = np.zeros((1, 3)), np.zeros((0, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert radius_of_gyration(one) == 0.0
        assert radius_of_gyration(torch.zeros(1, 3)) == 0.0
        for x, n in ((empty, 0), (one, 1), (straight(2), 2), (straight(3), 3)):
            assert virtual_bond_angles(x).shape == (max(n - 2, 0),)
            assert virtual_dihedrals(x).shape == (max(n - 3, 0),)
            assert clash_counts(x) == (0, 0)
        # one-residue traces beside longer ones: their bonds are simply absent
        assert fraction_ideal_bonds([one, straight(3)]) == 1.0
        s = trace_summary([one, straight(3)])
        assert s["bond_mean"] == pytest.approx(3.8) and s["num_residues"] == 4
        assert s["rg_mean"] == pytest.approx(np.sqrt(2 / 3 * 3.8 ** 2) / 2)


def test_metrics_with_nothing_to_measure_raise_naming_what_is_missing():
    """These raised numpy/scipy errors ('need at least one array to concatenate',
    'Distribution can't be empty.') or returned NaN with RuntimeWarnings."""
    one, empty = np.zeros((1, 3)), np.zeros((0, 3))
    with _raises("no consecutive C-alpha distances in the traces: there are no traces"):
        fraction_ideal_bonds([])
    with _raises("no consecutive C-alpha distances in the traces: every trace has fewer "
                 "than 2 residues"):
        fraction_ideal_bonds([one, one])
    with _raises("no consecutive C-alpha distances in the traces: there are no traces"):
        trace_summary([])
    with _raises("every trace has fewer than 2 residues"):
        trace_summary([one])
    with _raises("radius of gyration of an empty C-alpha trace (0 residues)"):
        radius_of_gyration(empty)
    with _raises("radius of gyration of an empty C-alpha trace (0 residues)"):
        trace_summary([empty, straight(3)])
    with _raises("no virtual bond angles in the generated traces: every trace has fewer "
                 "than 3 residues"):
        compare_traces([straight(2)], [helix(5)])
    with _raises("no virtual bond angles in the reference traces: there are no traces"):
        compare_traces([helix(5)], [])
    with _raises("no virtual dihedrals in the reference traces: every trace has fewer than "
                 "4 residues"):
        compare_traces([helix(5)], [helix(3)])
    with _raises("circular Wasserstein distance of an empty sample (0 and 2 values)"):
        circular_wasserstein(np.array([]), np.array([1.0, 2.0]))
    with _raises("a C-alpha trace must be an array (n, 3), got shape (3,)"):
        radius_of_gyration(np.zeros(3))


def test_rg_power_law_that_is_not_determined_raises():
    """A one-residue trace made the fit NaN (log 0); one length gave a fit anyway."""
    with _raises("cannot fit Rg = a N^nu: a trace of 1 residue has Rg 0, and log Rg is "
                 "undefined"):
        fit_rg_power_law([np.zeros((1, 3)), helix(10)])
    with _raises("cannot fit Rg = a N^nu: a trace of 4 residues at one point has Rg 0"):
        fit_rg_power_law([np.ones((4, 3)), helix(10)])
    with _raises("cannot fit Rg = a N^nu: it needs traces of at least two different lengths, "
                 "got only N = 10"):
        fit_rg_power_law([helix(10), straight(10)])
    with _raises("at least two different lengths, got none"):
        fit_rg_power_law([])
    with _raises("random walk lengths must be >= 1 residue, got 0"):
        random_walk_traces([5, 0])


def test_random_walk_baseline():
    rw = random_walk_traces([30, 64], seed=1)
    assert [len(t) for t in rw] == [30, 64]
    np.testing.assert_allclose(np.linalg.norm(np.diff(rw[1], axis=0), axis=1), 3.8)
    assert random_walk_traces([30], seed=1)[0].tolist() == rw[0].tolist()


def test_angles_at_coincident_c_alphas_are_undefined_and_left_out_of_the_comparison():
    """A collapsed step in a generated trace: its angles are NaN (no RuntimeWarning) and the
    distribution distances stay finite, over the defined angles only."""
    import warnings

    good = random_walk_traces([30], seed=1)[0]
    bad = good.copy()
    bad[10] = bad[9]                                  # residues 9 and 10 coincide
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ang, dih = virtual_bond_angles(bad), virtual_dihedrals(bad)
    assert np.isnan(ang[[8, 9]]).all() and not np.isnan(np.delete(ang, [8, 9])).any()
    assert np.isnan(dih[8]) and np.isfinite(dih[[0, 5, 12, 20]]).all()
    cmp = compare_traces([bad], [good])
    assert np.isfinite(cmp["w1_bond_angle_deg"]) and np.isfinite(cmp["w1_dihedral_deg"])
    assert cmp["bond_fraction_3.8pm0.2"] < 1.0           # the bond metric counts the collapse
    with pytest.raises(ValueError, match="no virtual bond angles in the generated traces: none is defined"):
        compare_traces([np.zeros((5, 3))], [good])
