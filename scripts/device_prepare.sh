#!/bin/bash
# Prepare .device/ (git-ignored) for the device scripts on a lent GPU machine, here, where the
# package registry is reachable; the device image lacks RDKit (everything else molscore needs
# is there) and ../shared does not travel.
#   bash scripts/device_prepare.sh           .device/whl (RDKit wheel for the image's Python
#                                            3.12) and .device/data (crystal benchmark
#                                            molecules), about 34 MB, for scripts/device_check.sh:
#       run(command="bash scripts/device_check.sh", carry=[".device"], timeout_s=570)
#   bash scripts/device_prepare.sh --train   .device/train: RDKit unpacked, without Contrib and
#                                            the stubs, as .tar.xz (17 MB; the wheel is 33) and the
#                                            processed datasets runs/data/ccd and runs/data/etkdg,
#                                            each packed by scripts/pack_dataset.py (coordinates
#                                            rounded to 2**-10 A: 34 + 4 MB), for
#                                            scripts/device_train.sh (build the datasets first:
#                                            configs/conformers_gpu.yaml). A device call carries
#                                            at most 64 MiB, the repository included:
#       run(command="bash scripts/device_train.sh", carry=[".device/train"], timeout_s=600)
set -euo pipefail
cd "$(dirname "$0")/.."
RDKIT_VERSION=$(python3 -c "import rdkit; print(rdkit.__version__)" 2>/dev/null \
                || .venv/bin/python -c "import rdkit; print(rdkit.__version__)")
PYTHON=$(command -v .venv/bin/python || command -v python3)
download_rdkit() {
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d "$1" "rdkit==$RDKIT_VERSION"
}
if [ "${1:-}" = "--train" ]; then
    for data in ccd etkdg; do
        [ -f runs/data/$data/index.json ] || { echo "runs/data/$data missing: build it first (configs/conformers_gpu.yaml)" >&2; exit 1; }
    done
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    download_rdkit "$tmp/whl"
    mkdir "$tmp/site"
    (cd "$tmp/site" && python3 -m zipfile -e "$tmp"/whl/rdkit-*.whl . && rm -rf rdkit-stubs rdkit/Contrib)
    rm -rf .device/train
    mkdir -p .device/train
    tar -C "$tmp/site" -cf - . | xz -T0 -6 > .device/train/rdkit_site.tar.xz
    for data in ccd etkdg; do
        "$PYTHON" scripts/pack_dataset.py runs/data/$data .device/train/$data.tar.xz
    done
    du -sh .device/train/*
    exit 0
fi
rm -rf .device/whl .device/data
mkdir -p .device/whl .device/data/benchmarks
download_rdkit .device/whl
cp "${MOLSCORE_DATA_ROOT:-../shared/data}/benchmarks/bioactive_dev.sdf.gz" .device/data/benchmarks/
du -sh .device/whl .device/data
