"""Outputs of sample, toy sample/likelihood and evaluate --json are replaced atomically: a
write that fails half way (here: a file-size limit, as a full disk) leaves the previous
output whole, no temporary file, and one line with exit 2."""
from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from molscore.checkpoint import CHECKPOINT_FORMAT, save_atomic

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 512  # bytes a file may grow to in the command run below
OLD = b"the previous output"


def _save_task(path: Path, task) -> Path:
    save_atomic({"format": CHECKPOINT_FORMAT, "model": task.model.state_dict(),
                 "meta": task.meta}, path)
    return path


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    from molscore.data.ca_task import build_task as build_ca
    from molscore.data.image_task import build_task as build_images

    root = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    images = build_images({"task": "images", "data": {"source": "digits"},
                           "model": {"channels": 8, "ch_mult": [1], "num_res_blocks": 1}})
    ca = build_ca({"task": "ca_traces", "data": {"crop_length": 16},
                   "model": {"k": 4, "max_offset": 2, "num_freqs": 2,
                             "hparams": {"hidden_scalar": 8, "hidden_vector": 2,
                                         "num_layers": 1, "num_rbf": 4}},
                   "sde": {"name": "ve", "sigma_min": 0.01, "sigma_max": 2.0}})
    return {"images": _save_task(root / "images.pt", images),
            "ca": _save_task(root / "ca.pt", ca)}



def test_write_atomic_errors_name_the_output_not_its_temporary_file(tmp_path):
    from molscore.checkpoint import write_atomic

    (tmp_path / "dir.npy").mkdir()
    with pytest.raises(IsADirectoryError) as err:
        write_atomic(tmp_path / "dir.npy", lambda fh: fh.write(b"x"))
    assert err.value.filename == str(tmp_path / "dir.npy")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir.npy"]

def _limit_file_size() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, resource.getrlimit(
        resource.RLIMIT_FSIZE)[1]))


@pytest.mark.parametrize("name,argv", [
    ("s.npy", ["toy", "sample", "-n", "400", "--steps", "1"]),
    ("g.npy", ["sample", "--checkpoint", "{images}", "-n", "40", "--steps", "1",
               "--sampler", "em"]),
    ("g.png", ["sample", "--checkpoint", "{images}", "-n", "40", "--steps", "1",
               "--sampler", "em"]),
    ("t.pdb", ["sample", "--checkpoint", "{ca}", "-n", "1", "--length", "20", "--steps", "1",
               "--sampler", "em", "--device", "cpu"]),
    ("e.json", ["evaluate", "crystal", "--generated", "{sdf}", "--reference", "{sdf}",
                "--no-progress", "--json"]),
])
def test_a_failed_write_keeps_the_previous_output(tmp_path, checkpoints, name, argv):
    """The outputs were written in place (np.save, PIL, write_text): the failed write
    left a torn file where the previous output had been (toy: and a traceback)."""
    out = tmp_path / name
    out.write_bytes(OLD)
    fill = {**{k: str(v) for k, v in checkpoints.items()},
            "sdf": str(ROOT / "tests" / "data" / "relax_stereo.sdf")}
    args = [a.format(**fill) for a in argv] + ([] if argv[0] == "evaluate"
                                              else ["--no-progress", "-o"])
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
           "PYTHONDONTWRITEBYTECODE": "1"}
    run = subprocess.run([sys.executable, "-m", "molscore", *args, str(out)], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=120,
                         preexec_fn=_limit_file_size)
    assert run.returncode == 2, run.stderr
    err = run.stderr.strip().splitlines()
    assert len(err) == 1 and f"cannot write {out}" in err[0], err
    assert out.read_bytes() == OLD
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_generate_names_its_settings_file_and_leaves_no_temporary_file(tmp_path, capsys):
    """The settings file (``OUTPUT.json``) and ``--resume``'s cut-back files are replaced
    through a temporary file: a failed replace named ``out.sdf.json.tmp`` and left it behind."""
    from molscore.cli import main

    (tmp_path / "out.sdf.json").mkdir()
    assert main(["generate", "CCO", "-n", "1", "-o", str(tmp_path / "out.sdf"), "--no-progress"]) == 2
    assert capsys.readouterr().err == (f"molscore generate: error: cannot write "
                                       f"{tmp_path / 'out.sdf.json'}: Is a directory\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.sdf.json"]


def test_replace_atomically_writes_text_and_gzip(tmp_path):
    import gzip

    from molscore.chem.io import replace_atomically

    for name, read in (("a.csv", lambda p: p.read_bytes().decode()),
                       ("a.csv.gz", lambda p: gzip.decompress(p.read_bytes()).decode())):
        (tmp_path / name).write_text("old")
        replace_atomically(tmp_path / name, ["é,1\r\n", "x,2\n"])
        assert read(tmp_path / name) == "é,1\r\nx,2\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "a.csv.gz"]
