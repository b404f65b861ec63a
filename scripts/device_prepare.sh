#!/bin/bash
# Prepare .device/ (git-ignored) for scripts/device_check.sh on a lent GPU machine, here, where
# the package registry is reachable: the RDKit wheel for the device image's Python 3.12 (its
# image lacks RDKit; everything else molscore needs is there) and the crystal benchmark
# molecules, since ../shared does not travel. About 34 MB. Then, with the device tool:
#   run(command="bash scripts/device_check.sh", carry=[".device"], timeout_s=570)
set -euo pipefail
cd "$(dirname "$0")/.."
RDKIT_VERSION=$(python3 -c "import rdkit; print(rdkit.__version__)" 2>/dev/null \
                || .venv/bin/python -c "import rdkit; print(rdkit.__version__)")
rm -rf .device
mkdir -p .device/whl .device/data/benchmarks
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .device/whl "rdkit==$RDKIT_VERSION"
cp "${MOLSCORE_DATA_ROOT:-../shared/data}/benchmarks/bioactive_dev.sdf.gz" .device/data/benchmarks/
du -sh .device
