"""Chain-graph score network for C-alpha traces, the ca_traces task and its sample CLI."""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from molscore.cli import main
from molscore.data.ca_task import build_task, collate
from molscore.data.ca_traces import read_ca_pdb_models
from molscore.models.chain_graph import (ChainGraphNet, chain_batch, chain_edges,
                                         residue_features)
from molscore.models.param import ScoreModel
from molscore.sde import VPSDE
from molscore.spaces import PointSetSpace
from molscore.train import train

SMALL = dict(hidden_scalar=16, hidden_vector=4, num_layers=2, num_rbf=8, rbf_max=2.0)


def random_rotation(seed: int) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(seed),
                                       dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))
    return q if torch.det(q) > 0 else -q


def chains(lengths, seed=0) -> torch.Tensor:
    """Random-walk chains with steps of about 0.38 units (3.8 Å at coord_scale 10),
    ``(sum n, 3)``. Step lengths vary by a few percent so that no two neighbours of a
    residue are exactly equidistant (a tie at the k-th neighbour makes the kNN set depend
    on rounding)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for n in lengths:
        d = torch.randn(n, 3, generator=g, dtype=torch.float64)
        step = 0.38 * (1 + 0.05 * torch.rand(n, 1, generator=g, dtype=torch.float64))
        out.append(torch.cumsum(step * d / d.norm(dim=1, keepdim=True), 0))
    return torch.cat(out)


@pytest.mark.parametrize("backbone", ["painn", "e3nn"])
def test_equivariance_through_chain_graph(backbone):
    torch.manual_seed(0)
    hp = SMALL if backbone == "painn" else dict(ns=8, nv=4, num_layers=2, num_rbf=8, rbf_max=2.0)
    net = ChainGraphNet(backbone, k=6, max_offset=2, **hp).double()
    model = ScoreModel(net, VPSDE(), "eps").double()
    cond = chain_batch([23, 17])
    space = PointSetSpace(cond.batch, 2)
    x = space.project(chains([23, 17]))
    t = torch.tensor([0.3, 0.7], dtype=torch.float64)
    rot = random_rotation(1)
    shift = torch.tensor([1.5, -2.0, 0.7], dtype=torch.float64)
    out = net(x, t, cond)
    assert out.shape == x.shape and out.abs().max() > 1e-3
    torch.testing.assert_close(net(x @ rot.T, t, cond), out @ rot.T, atol=1e-9, rtol=0)
    torch.testing.assert_close(net(x + shift, t, cond), out, atol=1e-9, rtol=0)
    score = model(x, t, space, cond)
    torch.testing.assert_close(model(x @ rot.T + shift, t, space, cond), score @ rot.T,
                               atol=1e-9, rtol=0)
    assert space.mean(score).abs().max() < 1e-9                      # CoM-free score
    # chains are independent: moving chain 2 does not change chain 1's output
    y = x.clone()
    y[23:] += torch.randn(17, 3, dtype=torch.float64)
    torch.testing.assert_close(net(y, t, cond)[:23], out[:23], atol=1e-12, rtol=0)


def test_chain_graph_builds_no_all_pairs_radius_graph(monkeypatch):
    """The kNN and sequence edges are the whole graph: the backbone's radius graph (an
    all-pairs distance pass, quadratic in the chain length) is never built."""
    import molscore.models.edges as edges

    def refuse(*args, **kwargs):
        raise AssertionError("radius_graph called")

    monkeypatch.setattr(edges, "radius_graph", refuse)
    net = ChainGraphNet("painn", k=4, max_offset=2, **SMALL)
    cond = chain_batch([15])
    out = net(chains([15]).float(), torch.tensor([0.5]), cond)
    assert out.shape == (15, 3) and torch.isfinite(out).all()


def test_chain_edges_match_definition():
    lengths = [12, 9]
    cond = chain_batch(lengths)
    x = chains(lengths, seed=2)
    k, m = 4, 2
    index, attr = chain_edges(x, cond.batch, cond.res_id, k, m)
    assert attr.shape == (index.shape[1], 2 * m + 1)
    got = {(int(s), int(d)): attr[e].tolist() for e, (s, d) in enumerate(index.T)}
    assert len(got) == index.shape[1]                                # no duplicates
    expected = set()
    start = 0
    for n in lengths:
        rows = range(start, start + n)
        for i in rows:
            d = torch.cdist(x[i:i + 1], x[start:start + n])[0]
            d[i - start] = float("inf")
            knn = {start + int(j) for j in torch.argsort(d)[:k]}
            for j in rows:
                off = j - i
                seq = 1 <= abs(off) <= m
                if seq or j in knn:
                    expected.add((j, i))
                    feat = got[(j, i)]
                    assert feat[-1] == float(j in knn)
                    if seq:
                        slot = off + m if off < 0 else off + m - 1
                        assert feat[:-1] == [1.0 if s == slot else 0.0 for s in range(2 * m)]
                    else:
                        assert feat[:-1] == [0.0] * (2 * m)
        start += n
    assert set(got) == expected


def test_residue_features():
    cond = chain_batch([5, 3])
    f = residue_features(cond.res_id, cond.chain_len, num_freqs=4)
    assert f.shape == (8, 10)
    torch.testing.assert_close(f[:5, 8], torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0]))
    torch.testing.assert_close(f[5:, 9], torch.full((3,), float(np.log(3.0))))
    torch.testing.assert_close(f[:3, :8], f[5:, :8])                 # same index, same code
    assert not torch.equal(f[0, :8], f[1, :8])


def test_500_residue_chain_sparse_forward():
    n, k, m = 500, 12, 3
    net = ChainGraphNet("painn", k=k, max_offset=m, **SMALL)
    model = ScoreModel(net, VPSDE(), "eps")
    cond = chain_batch([n])
    space = PointSetSpace(cond.batch, 1)
    x = space.project(chains([n], seed=3).float())
    graph = net.graph(x, cond)
    e = graph.edge_index.shape[1]
    assert n * k <= e <= (k + 2 * m) * n
    with torch.no_grad():
        out = model(x, torch.tensor([0.5]), space, cond)
    assert out.shape == (n, 3) and torch.isfinite(out).all()


def test_chain_graph_rejects_cutoff():
    with pytest.raises(ValueError, match="cutoff"):
        ChainGraphNet("painn", cutoff=1.0)


def tiny_config(tmp_path) -> dict:
    return {
        "task": "ca_traces",
        "data": {"crop_length": 16, "val_fraction": 0.05, "crops_per_segment": 1},
        "model": {"k": 4, "max_offset": 2, "num_freqs": 2,
                  "hparams": {"hidden_scalar": 8, "hidden_vector": 2, "num_layers": 1, "num_rbf": 4}},
        # VE: an untrained net cannot blow samples up (VP's reverse drift amplifies a wrong
        # score by ~exp(B(1)/2)), so samples of a 2-step checkpoint still fit a PDB file
        "sde": {"name": "ve", "sigma_min": 0.01, "sigma_max": 2.0},
        "batch_size": 4, "steps": 2, "val_every": 100, "val_batches": 1, "ckpt_every": 100,
        "log_every": 1, "seed": 0,
    }


def test_task_split_and_collate(tmp_path):
    task = build_task(tiny_config(tmp_path))
    train_s = {t.structure for t in task.extras["train_traces"]}
    val_s = {t.structure for t in task.extras["val_traces"]}
    assert train_s and val_s and not (train_s & val_s)
    assert task.meta["data"]["val_structures"] == sorted(val_s)
    assert task.meta["coord_scale"] == 10.0 and task.meta["task"] == "ca_traces"
    batch = collate([task.train_set[i] for i in range(3)])
    assert batch.x.shape == (48, 3) and batch.space.num_samples == 3
    assert batch.space.mean(batch.x).abs().max() < 1e-5
    assert batch.cond.num_graphs == 3
    with pytest.raises(ValueError, match="unknown model options"):
        build_task({**tiny_config(tmp_path), "model": {"layers": 3}})


@pytest.mark.parametrize("section, message", [
    # 2 held out 307 of the 308 structures and trained on one
    ({"data": {"val_fraction": 2}}, "data.val_fraction must be in [0, 1), got 2"),
    ({"data": {"val_fraction": -0.1}}, "data.val_fraction must be a finite number >= 0"),
    # 0 divided every crop by zero: a NaN loss at the first step
    ({"data": {"coord_scale": 0}}, "data.coord_scale must be positive (Å per model unit)"),
    ({"sde": {"name": "ve", "beta_max": 5}}, "sde 've' takes no option 'beta_max'"),
    # cut to 16 residues without a word
    ({"data": {"crop_length": 16.7}}, "data.crop_length must be an integer >= 2, got 16.7"),
    # ValueError('__len__() should return >= 0') traceback from the data loader
    ({"data": {"crops_per_segment": -2}}, "data.crops_per_segment must be an integer >= 1"),
    ({"data": {"crops_per_segment": 0}}, "data.crops_per_segment must be an integer >= 1"),
    # trained with E = the sum of the net's output vectors: no invariant energy
    ({"model": {"parameterisation": "energy"}}, "model.parameterisation 'energy' needs a network"),
])
def test_bad_task_values_are_refused(tmp_path, section, message):
    cfg = tiny_config(tmp_path)
    for key, value in section.items():
        cfg[key] = {**cfg[key], **value} if key == "data" else value
    with pytest.raises(ValueError, match=re.escape(message)):
        build_task(cfg)


def test_structures_given_as_one_path(tmp_path):
    """``structures: my.pdb`` (one path, not a list) was iterated character by character:
    one 'no such file' warning per character and the file itself never read."""
    from molscore.data.ca_task import DEFAULTS, load_traces
    from molscore.data.ca_traces import write_ca_pdb

    path = tmp_path / "one.pdb"
    write_ca_pdb(path, [chains([20]).numpy() * 10.0])
    warnings: list[str] = []
    for given in (str(path), path):
        traces = load_traces({**DEFAULTS["data"], "npz": None, "structures": given,
                              "crop_length": 16}, warn=warnings.append)
        assert [(t.structure, len(t)) for t in traces] == [("one", 20)]
    assert warnings == []


def test_task_with_e3nn_backbone(tmp_path):
    cfg = {**tiny_config(tmp_path),
           "model": {"backbone": "e3nn", "k": 4, "hparams": {"ns": 8, "nv": 2, "num_layers": 1}}}
    task = build_task(cfg)
    assert task.meta["net"]["backbone"] == "e3nn" and "hidden_scalar" not in task.meta["net"]
    batch = collate([task.train_set[i] for i in range(2)])
    out = task.model(batch.x, torch.tensor([0.2, 0.6]), batch.space, batch.cond)
    assert out.shape == batch.x.shape and torch.isfinite(out).all()


def test_sample_cli_writes_parseable_pdb(tmp_path, capsys):
    run = tmp_path / "run"
    train(tiny_config(tmp_path), run, device="cpu", progress=False)
    out = tmp_path / "traces.pdb"
    rc = main(["sample", "--checkpoint", str(run / "checkpoint.pt"), "-n", "3", "--length", "20",
               "--steps", "4", "--sampler", "em", "--device", "cpu", "-o", str(out)])
    assert rc == 0
    assert "wrote 3 C-alpha traces of 20 residues" in capsys.readouterr().out
    models = read_ca_pdb_models(out)
    assert [m.shape for m in models] == [(20, 3)] * 3
    assert all(np.isfinite(m).all() for m in models)
    assert np.abs(np.stack(models).mean(axis=1)).max() < 0.01        # centred samples
    import biotite.structure.io.pdb as pdb
    f = pdb.PDBFile.read(str(out))
    assert f.get_model_count() == 3
    assert set(f.get_structure(model=2).atom_name) == {"CA"}
    # wrong output type and image-only options: one-line usage errors, exit 2
    assert main(["sample", "--checkpoint", str(run / "checkpoint.pt"), "-n", "1", "--steps", "2",
                 "--device", "cpu", "-o", str(tmp_path / "x.png")]) == 2
    assert main(["sample", "--checkpoint", str(run / "checkpoint.pt"), "-n", "1", "--steps", "2",
                 "--label", "3", "--device", "cpu", "-o", str(tmp_path / "y.pdb")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and ".pdb" in err[0] and "--label" in err[1]
    (tmp_path / "file").write_text("not a folder")  # unwritable -o: one line, exit 2
    assert main(["sample", "--checkpoint", str(run / "checkpoint.pt"), "-n", "1", "--steps", "2",
                 "--device", "cpu", "-o", str(tmp_path / "file" / "t.pdb")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot write" in err[0]



def test_sample_cli_refuses_what_a_pdb_file_cannot_number(tmp_path, capsys):
    """--length over 9999 sampled the whole run, then wrote wrapped residue numbers."""
    from molscore.checkpoint import CHECKPOINT_FORMAT, save_atomic

    task = build_task(tiny_config(tmp_path))
    save_atomic({"format": CHECKPOINT_FORMAT, "model": task.model.state_dict(),
                 "meta": task.meta}, tmp_path / "ca.pt")
    for extra, message in ((["--length", "10000"], "--length must be 4 to 9999 residues"),
                           (["-n", "10000"], "-n must be at most 9999")):
        assert main(["sample", "--checkpoint", str(tmp_path / "ca.pt"), "--steps", "1",
                     "--device", "cpu", "-o", str(tmp_path / "t.pdb"), *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "t.pdb").exists()


def test_samples_a_pdb_file_cannot_hold_are_a_one_line_error_with_a_hint(tmp_path, capsys):
    """Samples still at the prior's scale (too few steps) are thousands of Å wide: the error
    named the file format only, as if the command could not help it."""
    from molscore.checkpoint import CHECKPOINT_FORMAT, save_atomic

    task = build_task({**tiny_config(tmp_path),
                       "sde": {"name": "ve", "sigma_min": 0.01, "sigma_max": 1000.0}})
    save_atomic({"format": CHECKPOINT_FORMAT, "model": task.model.state_dict(),
                 "meta": task.meta}, tmp_path / "ca.pt")
    assert main(["sample", "--checkpoint", str(tmp_path / "ca.pt"), "--steps", "1", "-n", "2",
                 "--length", "8", "--no-progress", "--device", "cpu",
                 "-o", str(tmp_path / "t.pdb")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("molscore sample: error: samples could not be "
                                               "written: trace 1 has coordinates")
    assert err[0].endswith("; try more --steps or another --sampler")
    assert not (tmp_path / "t.pdb").exists()
