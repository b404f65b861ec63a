"""``molscore toy`` CLI: exact spellings, output shapes, one-line errors with exit 2."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from molscore.cli import main
from molscore.data.toy import get_density


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A checkpoint from a very short ``toy train`` run (shared by the tests below)."""
    out = tmp_path_factory.mktemp("run")
    rc = main(["toy", "train", "--density", "checkerboard", "--objective", "dsm", "--sde", "ve",
               "--steps", "30", "--batch-size", "64", "--hidden", "16", "--depth", "1",
               "--plot-samples", "200", "--plot-steps", "20", "--quiet", "-o", str(out)])
    assert rc == 0
    return out


def _one_line_error(capsys, argv: list[str], *needles: str) -> str:
    with pytest.raises(SystemExit) as exc:
        rc = main(argv)
        raise SystemExit(rc)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, err
    return err


def test_sample_exact_spelling_writes_n_by_2(tmp_path, capsys):
    out = tmp_path / "samples.npy"
    rc = main(["toy", "sample", "--density", "gmm8", "--score", "exact", "--sde", "ve",
               "--sampler", "pc", "--steps", "60", "-n", "400", "--seed", "1", "-o", str(out)])
    assert rc == 0
    x = np.load(out)
    assert x.shape == (400, 2) and x.dtype.kind == "f" and np.isfinite(x).all()
    # the samples sit on the gmm8 modes: radius ~4, every mode visited
    r = np.linalg.norm(x, axis=1)
    assert abs(np.median(r) - 4.0) < 0.3
    modes = get_density("gmm8").responsibilities(torch.from_numpy(x)).argmax(1)
    assert len(set(modes.tolist())) == 8
    # same seed, same samples
    out2 = tmp_path / "again.npy"
    main(["toy", "sample", "--density", "gmm8", "--score", "exact", "--sde", "ve",
          "--sampler", "pc", "--steps", "60", "-n", "400", "--seed", "1", "-o", str(out2)])
    np.testing.assert_array_equal(np.load(out2), x)


@pytest.mark.parametrize("sampler", ["em", "reverse", "ancestral", "ald", "ode"])
@pytest.mark.parametrize("sde", ["vp", "subvp"])
def test_every_sampler_and_sde_spelling_runs(tmp_path, sampler, sde):
    out = tmp_path / "s.npy"
    rc = main(["toy", "sample", "--density", "gmm2", "--score", "exact", "--sde", sde,
               "--sampler", sampler, "--steps", "20", "-n", "50", "-o", str(out)])
    assert rc == 0
    assert np.load(out).shape == (50, 2)


def test_sample_gmmnd_dimension(tmp_path, capsys):
    out = tmp_path / "nd.npy"
    rc = main(["toy", "sample", "--density", "gmmnd", "--dim", "5", "--score", "exact",
               "--sampler", "ode", "--steps", "5", "-n", "10", "-o", str(out)])
    assert rc == 0 and np.load(out).shape == (10, 5)
    assert "5/5" in capsys.readouterr().err  # the progress bar, shown by default
    _one_line_error(capsys, ["toy", "sample", "--density", "gmm8", "--dim", "5",
                             "-o", str(out)], "--dim")


def test_likelihood_exact_spelling_matches_analytic(tmp_path, capsys):
    pytest.importorskip("molscore.likelihood")
    out = tmp_path / "logp.npz"
    rc = main(["toy", "likelihood", "--density", "gmm8", "--score", "exact", "--sde", "vp",
               "-n", "40", "--seed", "1", "-o", str(out)])
    assert rc == 0
    captured = capsys.readouterr()
    line = captured.out.strip()
    assert len(line.splitlines()) == 1 and "mean logp" in line and "analytic" in line
    assert "likelihood: " in captured.err and "nfe" in captured.err  # the progress bar
    data = np.load(out)
    assert data["x"].shape == (40, 2) and data["logp"].shape == (40,)
    analytic = get_density("gmm8").log_prob(torch.from_numpy(data["x"])).numpy()
    np.testing.assert_allclose(data["logp"], analytic, atol=2e-2)


def test_train_writes_checkpoint_and_figure(tiny_checkpoint):
    ckpt = torch.load(tiny_checkpoint / "checkpoint.pt", weights_only=True)
    meta = ckpt["meta"]
    assert meta["task"] == "toy" and meta["density"] == "checkerboard"
    assert meta["sde"]["name"] == "ve" and meta["net"] == {"hidden": 16, "depth": 1}
    # VE sigma_max from the data (largest pairwise distance; the board spans [-4, 4]^2)
    assert 10.0 < meta["sde"]["sigma_max"] <= 8 * 2 ** 0.5
    assert meta["parameterisation"] == "denoiser"
    assert set(ckpt["state_dict"]) == set(ckpt["model"])
    png = (tiny_checkpoint / "toy.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tiny_checkpoint.glob("*.tmp*"))


def test_sample_from_checkpoint_and_energy_model(tmp_path, tiny_checkpoint):
    out = tmp_path / "s.npy"
    rc = main(["toy", "sample", "--score", str(tiny_checkpoint / "checkpoint.pt"),
               "--sampler", "ode", "--steps", "10", "-n", "30", "-o", str(out)])
    assert rc == 0 and np.load(out).shape == (30, 2)
    lik = tmp_path / "l.npz"
    rc = main(["toy", "likelihood", "--score", str(tiny_checkpoint / "checkpoint.pt"),
               "--method", "rk4", "--steps", "4", "-n", "6", "-o", str(lik)])
    assert rc == 0
    data = np.load(lik)
    assert data["logp"].shape == (6,) and np.isfinite(data["logp"]).all()
    assert "analytic" not in data  # checkerboard has no closed-form density
    run = tmp_path / "energy"
    rc = main(["toy", "train", "--density", "moons", "--objective", "ssm-vr", "--sde", "vp",
               "--energy", "--steps", "5", "--batch-size", "32", "--hidden", "8", "--depth", "1",
               "--plot-samples", "50", "--plot-steps", "5", "--quiet", "-o", str(run)])
    assert rc == 0
    meta = torch.load(run / "checkpoint.pt", weights_only=True)["meta"]
    assert meta["energy"] and meta["parameterisation"] == "energy"
    rc = main(["toy", "sample", "--score", str(run / "checkpoint.pt"), "--sampler", "em",
               "--steps", "5", "-n", "20", "-o", str(out)])
    assert rc == 0 and np.load(out).shape == (20, 2)


@pytest.mark.parametrize("argv,needles", [
    (["toy", "sample", "--density", "gmm9", "-o", "x.npy"], ["gmm8", "checkerboard"]),
    (["toy", "sample", "--sampler", "heun", "-o", "x.npy"], ["em", "ancestral", "ode"]),
    (["toy", "sample", "--sde", "cosine", "-o", "x.npy"], ["ve", "vp", "subvp"]),
    (["toy", "sample", "--steps", "0", "-o", "x.npy"], ["positive"]),
    (["toy", "sample", "-n", "-3", "-o", "x.npy"], ["positive"]),
    (["toy", "train", "--objective", "nce", "-o", "r"], ["dsm", "ssm", "ssm-vr", "exact"]),
    (["toy", "train", "--steps", "-1", "-o", "r"], ["positive"]),
    (["toy", "likelihood", "--density", "nope", "-o", "l.npz"], ["gmm8"]),
    (["toy", "likelihood", "--method", "rk4", "-o", "l.npz"], ["needs --steps"]),
])
def test_bad_names_exit_2_with_one_line(capsys, argv, needles):
    _one_line_error(capsys, argv, *needles)



@pytest.mark.parametrize("argv", [
    ["toy", "sample", "-n", "5", "--steps", "2"],
    ["toy", "likelihood", "-n", "5", "--method", "euler", "--steps", "2"],
    ["sample", "--checkpoint", "ckpt.pt"],
    ["train", "--config", "cfg.yaml"],
])
@pytest.mark.parametrize("seed", ["18446744073709551616", "-1", "4294967296"])
def test_out_of_range_seed_is_a_usage_error(tmp_path, capsys, argv, seed):
    """A seed torch cannot take (or, in train, one whose derived seeds overflow) ended in
    a ValueError traceback: 'Overflow when unpacking long long'."""
    _one_line_error(capsys, [*argv, f"--seed={seed}", "-o", str(tmp_path / "o.npy")],
                    "--seed: expected a seed (an integer 0..4294967295)")


@pytest.mark.parametrize("command,out", [(["sample", "--steps", "2"], "o.npy"),
                                         (["likelihood", "--method", "euler", "--steps", "2"],
                                          "o.npz")])
def test_dim_other_than_the_checkpoints_is_a_usage_error(tmp_path, capsys, tiny_checkpoint,
                                                         command, out):
    """--dim was ignored with a checkpoint: 2-D samples of it, exit 0."""
    _one_line_error(capsys, ["toy", *command, "--score", str(tiny_checkpoint / "checkpoint.pt"),
                             "--dim", "7", "-n", "3", "-o", str(tmp_path / out)],
                    "was trained on 2-D data, not --dim 7")
    assert not (tmp_path / out).exists()


def test_unusable_output_dir_of_training_exits_2_before_training(tmp_path, capsys):
    """toy train and train -o under a file (train -o a file too) trained the whole run, then
    ended in a NotADirectoryError / FileExistsError traceback."""
    import yaml

    (tmp_path / "file").write_text("not a folder")
    under = str(tmp_path / "file" / "run")
    _one_line_error(capsys, ["toy", "train", "--steps", "2", "--hidden", "8", "--depth", "1",
                             "--plot-samples", "10", "--plot-steps", "2", "--quiet", "-o", under],
                    "cannot write", "Not a directory")
    cfg = {"task": "toy", "data": {"density": "checkerboard", "n": 100},
           "model": {"hidden": 8, "depth": 1}, "batch_size": 8, "steps": 2}
    (tmp_path / "toy.yaml").write_text(yaml.safe_dump(cfg))
    for out in (under, str(tmp_path / "file")):
        _one_line_error(capsys, ["train", "--config", str(tmp_path / "toy.yaml"), "-q",
                                 "--device", "cpu", "-o", out], "cannot write")


@pytest.mark.parametrize("sigma_max", ["0.01", "0.001"])
def test_ve_sigma_max_not_above_sigma_min_is_a_usage_error(tmp_path, capsys, sigma_max):
    """--sigma-max at or below the VE SDE's sigma_min (0.01) ended in make_sde's ValueError
    traceback, exit 1."""
    out = tmp_path / "run"
    _one_line_error(capsys, ["toy", "train", "--sigma-max", sigma_max, "--steps", "2",
                             "--quiet", "-o", str(out)],
                    f"--sigma-max {float(sigma_max):g}: need 0 < sigma_min < sigma_max, got 0.01")
    assert not out.exists()


@pytest.mark.parametrize("argv,message", [
    (["sample", "--sampler", "em", "--n-corrector", "5"], "--n-corrector is for --sampler pc or "
                                                          "ald, not em"),
    (["sample", "--sampler", "ode", "--snr", "0.3"], "--snr is for --sampler pc or ald, not ode"),
    (["sample", "--sampler", "ald", "--predictor", "em"], "--predictor is for --sampler pc, "
                                                          "not ald"),
    (["sample", "--sampler", "pc", "--method", "dopri5"], "--method is for --sampler ode, not pc"),
    (["sample", "--sampler", "ode", "--rtol", "1e-3"], "--rtol is for the adaptive --method "
                                                       "dopri5, not rk4 (the default)"),
    (["likelihood", "--method", "euler", "--steps", "2", "--atol", "1e-3"],
     "--atol is for the adaptive --method dopri5, not euler"),
    (["likelihood", "--method", "dopri5", "--rtol", "1e-3"],
     "--steps is for a fixed-step --method (rk4, midpoint, euler), not dopri5, whose steps "
     "follow --rtol/--atol"),
    (["train", "--objective", "dsm", "--n-proj", "4"], "--n-proj is for --objective ssm or "
                                                       "ssm-vr, not dsm"),
])
def test_option_the_sampler_does_not_use_is_a_usage_error(tmp_path, capsys, argv, message):
    """Options of another sampler or ODE method were accepted and ignored (exit 0)."""
    out = tmp_path / {"likelihood": "o.npz", "sample": "o.npy", "train": "run"}[argv[0]]
    size = ["--plot-samples", "5"] if argv[0] == "train" else ["-n", "5"]
    _one_line_error(capsys, ["toy", *argv, *size, "--steps", "2", "-o", str(out)], message)
    assert not out.exists()


def test_sampler_options_reach_their_sampler(tmp_path, monkeypatch):
    import molscore.cli.toy as toy

    seen = {}

    def fake_sample(name, score_fn, sde, space, x, steps, **opts):
        seen.update({k: v for k, v in opts.items() if k != "generator"}, name=name)
        return type("Result", (), {"x": x, "nfe": 0})()

    monkeypatch.setattr(toy, "sample", fake_sample)
    out = str(tmp_path / "o.npy")
    assert main(["toy", "sample", "--sampler", "pc", "--snr", "0.3", "--n-corrector", "2",
                 "--predictor", "em", "-n", "5", "--steps", "2", "--no-progress",
                 "-o", out]) == 0
    assert seen == {"name": "pc", "disable": True, "snr": 0.3, "n_corrector": 2,
                    "predictor": "em"}
    seen.clear()
    assert main(["toy", "sample", "--sampler", "ode", "--method", "dopri5", "--rtol", "1e-3",
                 "--atol", "1e-4", "-n", "5", "--steps", "2", "--no-progress", "-o", out]) == 0
    assert seen == {"name": "ode", "disable": True, "method": "dopri5", "rtol": 1e-3,
                    "atol": 1e-4}


@pytest.mark.parametrize("argv,message", [
    (["sample", "--sampler", "ode", "--method", "dopri5", "--steps", "3", "o.npy"],
     "the adaptive ODE solver's step size underflowed"),
    (["likelihood", "o.npz"], "the adaptive ODE solver's step size underflowed"),
    (["likelihood", "--method", "euler", "--steps", "3", "o.npz"],
     "the log-likelihood of 5 of the 5 samples is not finite"),
])
def test_diverging_score_is_a_usage_error(tmp_path, capsys, tiny_checkpoint, argv, message):
    """A score that overflows: dopri5 ended in torchdiffeq's 'AssertionError: underflow in
    dt' traceback, a fixed-step likelihood wrote NaN log-likelihoods with exit 0."""
    from molscore.checkpoint import load_checkpoint, save_atomic

    ck = load_checkpoint(tiny_checkpoint / "checkpoint.pt")
    state = {k: v * 1e30 if k.endswith("weight") else v for k, v in ck["model"].items()}
    save_atomic({**ck, "model": state}, tmp_path / "huge.pt")
    *args, out = argv
    _one_line_error(capsys, ["toy", *args, "--score", str(tmp_path / "huge.pt"), "-n", "5",
                             "--no-progress", "-o", str(tmp_path / out)],
                    message)
    assert not (tmp_path / out).exists()


@pytest.mark.parametrize("section,message", [
    ({"model": {"hidden": -1}}, "toy model option hidden must be a positive integer, got -1"),
    ({"model": {"hidden": 0}}, "toy model option hidden must be a positive integer, got 0"),
    ({"model": {"embed_dim": "64"}}, "toy model option embed_dim must be a positive integer"),
    ({"data": {"density": "gmmnd", "options": {"dims": 3}}},
     "density 'gmmnd' takes no option 'dims'; valid: dim, n_components, seed"),
    ({"data": {"density": "gmm8", "options": {"dim": 3}}}, "density 'gmm8' takes no option"),
    ({"data": {"density": "gmmnd", "options": {"dim": "3"}}},
     "density option 'dim' must be an integer, got '3'"),
    # a misspelt density trained on the default checkerboard, exit 0
    ({"data": {"densty": "gmm8", "n": 50}},
     "data has no key 'densty'; choose from density, options, n, seed"),
    ({"sde": {"name": "ve", "beta_max": 5}},   # TypeError traceback
     "sde 've' takes no option 'beta_max'; choose from sigma_min, sigma_max, eps"),
    ({"sde": {"name": "ve", "sigma_max": None}}, "sde.sigma_max must be a number, got None"),
    # a RuntimeError traceback; 2.5 trained on a pool of 2 samples, 0 named molecules
    ({"data": {"n": -5}}, "data.n must be a positive integer (training samples), got -5"),
    ({"data": {"n": 2.5}}, "data.n must be a positive integer (training samples), got 2.5"),
    ({"data": {"n": 0}}, "data.n must be a positive integer (training samples), got 0"),
    # trained an energy model (bool("false") is True)
    ({"model": {"energy": "false", "parameterisation": "energy"}},
     "model.energy must be true or false, got 'false'"),
])
def test_bad_toy_config_values_are_usage_errors(tmp_path, capsys, section, message):
    """They ended in RuntimeError / TypeError tracebacks (hidden: 0 trained a zero-width
    network with exit 0)."""
    import yaml

    cfg = {"task": "toy", "steps": 1, "batch_size": 8, "data": {"n": 50}, **section}
    (tmp_path / "toy.yaml").write_text(yaml.safe_dump(cfg))
    _one_line_error(capsys, ["train", "--config", str(tmp_path / "toy.yaml"), "-q",
                             "--device", "cpu", "-o", str(tmp_path / "run")], message)

def test_exact_score_needs_a_mixture(tmp_path, capsys):
    _one_line_error(capsys, ["toy", "sample", "--density", "checkerboard", "--score", "exact",
                             "-o", str(tmp_path / "x.npy")], "gmm8", "gmm2")


def test_unwritable_output_exits_2(tmp_path, capsys):
    (tmp_path / "file").write_text("not a folder")
    (tmp_path / "dir.npy").mkdir()
    _one_line_error(capsys, ["toy", "sample", "--steps", "2", "-n", "2",
                             "-o", str(tmp_path / "file" / "x.npy")], "cannot write")
    _one_line_error(capsys, ["toy", "sample", "--steps", "2", "-n", "2",
                             "-o", str(tmp_path / "dir.npy")], "directory")


def test_missing_and_nan_checkpoints_exit_2(tmp_path, capsys, tiny_checkpoint):
    _one_line_error(capsys, ["toy", "sample", "--score", str(tmp_path / "none.pt"),
                             "-o", str(tmp_path / "x.npy")], "not found")
    ckpt = torch.load(tiny_checkpoint / "checkpoint.pt", weights_only=True)
    bad = {k: v.clone() for k, v in ckpt["state_dict"].items()}
    first = next(k for k, v in bad.items() if v.is_floating_point() and k != "net.body.embed.freqs")
    bad[first].view(-1)[0] = float("nan")
    ckpt["state_dict"] = ckpt["model"] = bad
    path = tmp_path / "nan.pt"
    torch.save(ckpt, path)
    _one_line_error(capsys, ["toy", "sample", "--score", str(path), "-o", str(tmp_path / "x.npy")],
                    "NaN")
    _one_line_error(capsys, ["toy", "likelihood", "--score", str(path),
                             "-o", str(tmp_path / "l.npz")], "NaN")
    assert not (tmp_path / "x.npy").exists()


def test_generic_trainer_config_gives_a_sampleable_toy_checkpoint(tmp_path):
    """configs/toy_checkerboard.yaml through molscore.train, then ``toy sample`` on its output."""
    from pathlib import Path

    from molscore.train import load_config, train

    cfg = load_config(Path(__file__).parents[1] / "configs" / "toy_checkerboard.yaml")
    cfg.update(steps=3, batch_size=16, val_every=3, ckpt_every=3, log_every=1)
    cfg["data"] = {**cfg["data"], "n": 64}
    cfg["model"] = {**cfg["model"], "hidden": 8, "depth": 1}
    train(cfg, tmp_path / "run", device="cpu")
    out = tmp_path / "s.npy"
    rc = main(["toy", "sample", "--score", str(tmp_path / "run" / "checkpoint.pt"),
               "--sampler", "em", "--steps", "5", "-n", "10", "-o", str(out)])
    assert rc == 0 and np.load(out).shape == (10, 2)


@pytest.mark.parametrize("command", ["sample", "likelihood", "train"])
def test_toy_help_states_every_concrete_default(command, capsys):
    """``toy train --help`` showed no defaults (4,000 steps, checkerboard, ...): every option
    with a concrete default names it."""
    import argparse

    from molscore.cli import toy

    parser = argparse.ArgumentParser()
    toy.register(parser.add_subparsers())
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["toy"]
    cmd = next(a for a in sub._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    with pytest.raises(SystemExit):
        cmd.parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for action in cmd._actions:
        if action.option_strings and action.default not in (None, False, True, argparse.SUPPRESS):
            assert f"default {action.default}" in text, action.option_strings


HUGE = str(2**58)  # samples: an allocation of 2**61 bytes or more, refused on any machine


@pytest.mark.parametrize("argv", [
    ["toy", "sample", "--steps", "2", "-n", HUGE],
    ["toy", "likelihood", "-n", HUGE],
    ["toy", "train", "--steps", "1", "--batch-size", HUGE, "--quiet"]])
def test_more_samples_than_memory_holds_is_a_usage_error(tmp_path, capsys, argv):
    """-n or --batch-size beyond the machine's memory ended in torch's allocator traceback."""
    out = tmp_path / ("run" if "train" in argv else "x.npz" if "likelihood" in argv else "x.npy")
    err = _one_line_error(capsys, [*argv, "-o", str(out)], "out of memory", "GiB)",
                          "--batch-size" if "train" in argv else "lower -n")
    assert "allocate" not in err
    assert not out.is_file() and not (out / "checkpoint.pt").exists()


def test_out_of_memory_turns_allocation_errors_into_one_line():
    """CPU allocator, GPU and Python out-of-memory errors become usage errors; other
    RuntimeErrors pass."""
    from molscore.errors import UsageError, out_of_memory

    errors = {RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: "
                           "can't allocate memory: you tried to allocate 3221225472 bytes. "
                           "Error code 12 (Cannot allocate memory)"): " (an allocation of 3.0 GiB)",
              torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a "
                                     "total capacity of 79.1 GiB"): " (an allocation of 2.00 GiB)",
              MemoryError(): ""}
    for err, size in errors.items():
        with pytest.raises(UsageError) as caught, out_of_memory("lower -n"):
            raise err
        assert str(caught.value) == f"out of memory{size}; lower -n"
    with pytest.raises(RuntimeError, match="shape mismatch"), out_of_memory("lower -n"):
        raise RuntimeError("shape mismatch")


def test_sample_command_points_a_toy_checkpoint_to_toy_sample(tmp_path, capsys, tiny_checkpoint):
    """'molscore sample' with a toy checkpoint said only 'see molscore --help'."""
    ckpt = str(tiny_checkpoint / "checkpoint.pt")
    _one_line_error(capsys, ["sample", "--checkpoint", ckpt, "-o", str(tmp_path / "x.npy")],
                    "checkpoint task 'toy' cannot be sampled with 'molscore sample'",
                    f"molscore toy sample --score {ckpt} -o samples.npy")
    assert main(["toy", "sample", "--score", ckpt, "--steps", "2", "-n", "3", "--no-progress",
                 "-o", str(tmp_path / "samples.npy")]) == 0
    assert np.load(tmp_path / "samples.npy").shape == (3, 2)


def test_a_figure_that_cannot_be_written_is_one_line_and_keeps_the_old_one(tmp_path, capsys,
                                                                           monkeypatch):
    """A failed write of toy.png (a full disk) ended in a traceback and left a partial
    toy.png.tmp.png beside the previous figure."""
    import errno

    from matplotlib.figure import Figure

    def full_disk(self, fname, *args, **kwargs):
        if hasattr(fname, "write"):
            fname.write(b"\x89PNG part")
        else:
            open(fname, "wb").write(b"\x89PNG part")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Figure, "savefig", full_disk)
    run = tmp_path / "run"
    run.mkdir()
    (run / "toy.png").write_bytes(b"previous figure")
    _one_line_error(capsys, ["toy", "train", "--steps", "2", "--batch-size", "8", "--hidden", "8",
                             "--depth", "1", "--plot-samples", "20", "--plot-steps", "2",
                             "--quiet", "-o", str(run)],
                    f"cannot write {run / 'toy.png'}: No space left on device")
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint.pt", "toy.png"]
    assert (run / "toy.png").read_bytes() == b"previous figure"
