"""Write the InChIKey blocks that training data must exclude: the reserved molecules
(``datasets/reserved_inchikeys.txt``) plus every molecule of the development benchmarks
(crystal set, hexane ensembles, GEOM-DRUGS excerpt), so that the conformer benchmark never
scores a molecule the model was trained on. The benchmark files are the conformer
benchmark's own (``bench_conformers.CRYSTAL`` and ``ENSEMBLES``, under ``$MOLSCORE_DATA_ROOT``
or ``../shared/data``), so a set added there is excluded here too.

    python scripts/training_exclusions.py -o runs/data/exclude_keys.txt
    molscore build-dataset ccd -o runs/data/ccd --reserved runs/data/exclude_keys.txt
"""
from __future__ import annotations

import argparse
import gzip
import sys
from pathlib import Path

from rdkit import Chem, RDLogger

from bench_conformers import CRYSTAL, ENSEMBLES, REPO

from molscore.data.reserved import DEFAULT_RESERVED_PATH, inchikey_block, load_reserved


def benchmark_blocks(paths: list[Path]) -> set[str]:
    """InChIKey connectivity blocks of every readable molecule of the benchmark files."""
    blocks: set[str] = set()
    for path in paths:
        with gzip.open(path, "rb") as fh:
            for mol in Chem.ForwardSDMolSupplier(fh, removeHs=False):
                if mol is not None and (block := inchikey_block(mol)):
                    blocks.add(block)
    return blocks


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-o", "--out", type=Path, default=REPO / "runs" / "data" / "exclude_keys.txt")
    args = ap.parse_args()
    RDLogger.DisableLog("rdApp.*")
    reserved = set(load_reserved(DEFAULT_RESERVED_PATH))
    bench = benchmark_blocks([CRYSTAL, *ENSEMBLES.values()])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("".join(f"{k}\n" for k in sorted(reserved | bench)))
    print(f"{args.out}: {len(reserved)} reserved + {len(bench - reserved)} more from the benchmarks "
          f"= {len(reserved | bench)} InChIKey blocks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
