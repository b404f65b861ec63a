"""``molscore build-dataset`` given an output folder that cannot be made."""
from __future__ import annotations

from pathlib import Path

import pytest

from molscore.cli import main



@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_output_folder_in_a_folder_that_takes_no_folders_is_a_usage_error(tmp_path, capsys):
    """``mkdir /proc/x`` fails with ENOENT though ``/proc`` exists: ``locks.make_folder``
    made the parent and retried without end, a RecursionError traceback of 1,000 frames."""
    sdf = tmp_path / "one.sdf"
    sdf.write_text("\n  RDKit          3D\n\n  1  0  0  0  0  0  0  0  0  0999 V2000\n"
                   "    0.0000    0.0000    0.0000 C   0  0  0  0  0  0  0  0  0  0  0  0\n"
                   "M  END\n> <smiles>\nC\n\n$$$$\n")
    rc = main(["build-dataset", "sdf", "--input", str(sdf), "-o", "/proc/molscore-x",
               "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err == ("molscore build-dataset: error: cannot create the output folder "
                               "/proc/molscore-x: No such file or directory")
