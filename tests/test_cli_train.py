"""``molscore train`` given bad files, a stale ``torchrun`` environment or an unusable output
folder: one line on stderr, exit status 2, and no folder of its own left behind."""
from __future__ import annotations

import pytest
import yaml

from molscore.cli import main


def _toy_config(tmp_path, **overrides) -> str:
    """A toy config of a few steps on a tiny MLP, written to ``tmp_path/toy.yaml``."""
    cfg = {"task": "toy", "steps": 2, "batch_size": 8, "data": {"n": 50},
           "model": {"hidden": 8, "depth": 1}, "val_every": 2, "ckpt_every": 2, "log_every": 1,
           **overrides}
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def _one_line_error(capsys, argv: list[str], *needles: str) -> str:
    with pytest.raises(SystemExit) as exc:
        raise SystemExit(main(argv))
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


@pytest.mark.parametrize("env, needles", [
    # ValueError tracebacks (int('abc')), a ZeroDivisionError for WORLD_SIZE=0
    ({"RANK": "abc"}, ("RANK must be a non-negative integer", "'abc'")),
    ({"LOCAL_RANK": "x"}, ("LOCAL_RANK must be a non-negative integer",)),
    ({"WORLD_SIZE": "-1"}, ("WORLD_SIZE must be a non-negative integer",)),
    ({"WORLD_SIZE": "0"}, ("RANK=0 and WORLD_SIZE=0 do not fit",)),
    # a stale RANK alone: rank 1 of 1 trained, wrote nothing, and exited 0 without a word
    ({"RANK": "1"}, ("RANK=1 and WORLD_SIZE=1 (unset) do not fit",)),
    ({"RANK": "3", "WORLD_SIZE": "2"}, ("RANK=3 and WORLD_SIZE=2 do not fit",)),
    # torch's ValueError traceback from its env:// rendezvous
    ({"WORLD_SIZE": "2"}, ("MASTER_ADDR and MASTER_PORT not set",)),
    ({"WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "notaport"},
     ("cannot join the process group", "notaport")),
])
def test_wrong_torchrun_environment_is_a_usage_error(tmp_path, capsys, monkeypatch, env, needles):
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    out = tmp_path / "run"
    _one_line_error(capsys, ["train", "-c", _toy_config(tmp_path), "-o", str(out), "-q",
                             "--device", "cpu"], *needles)
    assert not out.exists()


def test_binary_file_as_config_is_a_usage_error(tmp_path, capsys):
    """A checkpoint given for the config ended in a UnicodeDecodeError traceback."""
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(b"PK\x03\x04\x92\xff\x00binary")
    _one_line_error(capsys, ["train", "-c", str(path), "-o", str(tmp_path / "run")],
                    "not a YAML config: not UTF-8 text")


def test_refused_config_leaves_no_output_folder(tmp_path, capsys):
    """The command made its output folder before training, so the trainer's own clean-up
    found it existing: every refused config left a folder holding only ``.lock``. A folder
    that existed before is kept."""
    out = tmp_path / "runs" / "toy"
    _one_line_error(capsys, ["train", "-c", _toy_config(tmp_path, data=5), "-o", str(out)],
                    "'data' must be a mapping, got 5")
    assert not (tmp_path / "runs").exists()
    out.mkdir(parents=True)
    _one_line_error(capsys, ["train", "-c", _toy_config(tmp_path, data=5), "-o", str(out)],
                    "'data' must be a mapping")
    assert out.is_dir()


def test_train_writes_its_run_into_the_output_folder(tmp_path, capsys):
    out = tmp_path / "runs" / "toy"
    assert main(["train", "-c", _toy_config(tmp_path), "-o", str(out), "-q",
                 "--device", "cpu"]) == 0
    assert {"checkpoint.pt", "config.yaml", "metrics.jsonl", "summary.json"} <= {
        p.name for p in out.iterdir()}


@pytest.mark.parametrize("text, needle", [
    # the second section replaced the first: trained at the default lr 2e-4, exit 0
    ("optim: {lr: 0.01}\noptim: {warmup: 1}\n", "key 'optim' is given twice (lines 3 and 4)"),
    ("data: {n: 50, n: 40}\n", "key 'n' is given twice (line 3)"),
])
def test_key_given_twice_in_config_is_a_usage_error(tmp_path, capsys, text, needle):
    """YAML keeps the last of two equal keys of a mapping, so a config whose second ``optim:``
    (or ``data: {n: ...}``) overrode the first trained with values the file also said
    otherwise, without a word. A merge key (``<<``) may still be overridden."""
    path, out = tmp_path / "dup.yaml", tmp_path / "run"
    path.write_text("task: toy\nsteps: 1\n" + text)
    _one_line_error(capsys, ["train", "-c", str(path), "-o", str(out)], f"{path}: {needle}")
    assert not out.exists()
    path.write_text("task: toy\nsteps: 1\nbatch_size: 8\ndata: {n: 20}\nmodel: {hidden: 8}\n"
                    "optim: {<<: {lr: 0.01, warmup: 1}, lr: 0.02}\n")
    assert main(["train", "-c", str(path), "-o", str(out), "-q", "--device", "cpu"]) == 0
    saved = yaml.safe_load((out / "config.yaml").read_text())["optim"]
    assert (saved["lr"], saved["warmup"]) == (0.02, 1)
