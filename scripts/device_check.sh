#!/bin/bash
# The GPU checks of a session lent a device machine, in one call of at most 9 minutes (after
# scripts/device_prepare.sh here; carry .device), most important first: `molscore generate`
# throughput on the GPU at the default settings (`-n 10`, so a pool of 50) and on the
# `--init prior` route (no ETKDG), each against ETKDGv3 on all CPU cores; the CUDA tests;
# `--workers` on the machine's CPU cores; training steps on the GPU at two batch sizes. Results
# go to $OUT (8 files); each benchmark rewrites its report after every configuration, so one
# cut short by its time limit keeps what it measured. Sized after the H200 machine of
# 2026-12-04, whose 16 cores ran ETKDG at only about 20 conformers/s (16 processes) and where
# 40 molecules overran the limits of an earlier version. It runs under the image's python3 (torch,
# torch-geometric, e3nn, torchdiffeq there) with RDKit from .device/whl and molscore from this
# checkout. `PYTHON=.venv/bin/python MOLSCORE_TEST_DEVICE=cpu DEVICES=cpu MOLECULES=4
# PRIOR_BATCH=4096 PRIOR_N=2 bash scripts/device_check.sh` runs the same steps, smaller, on a CPU.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/molscore_device_check}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
if ! "$PY" -c "import rdkit" 2> /dev/null && compgen -G ".device/whl/*.whl" > /dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/molscore_site .device/whl/*.whl || exit 1
    export PYTHONPATH=/tmp/molscore_site:$PWD
else
    export PYTHONPATH=$PWD
fi
[ -d .device/data ] && export MOLSCORE_DATA_ROOT=$PWD/.device/data
export PYTHONUNBUFFERED=1
DEVICES=${DEVICES:-cuda}
MOLECULES=${MOLECULES:-16}
PRIOR_BATCH=${PRIOR_BATCH:-131072}
PRIOR_N=${PRIOR_N:-10}
TRAIN_DEVICE=${DEVICES%%,*}
{
    nvidia-smi -L 2>/dev/null || echo "no nvidia-smi"
    env -u OMP_NUM_THREADS nproc
    "$PY" -c "import torch, rdkit, torch_geometric, e3nn; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'rdkit', rdkit.__version__, 'pyg', torch_geometric.__version__, 'e3nn', e3nn.__version__)"
} 2>&1 | tee "$OUT/env.txt"
timeout 140 "$PY" scripts/bench_generate_speed.py --devices "$DEVICES" --molecules "$MOLECULES" -n 10 --eager-only \
    --out "$OUT/generate_speed_device" 2>&1 | tail -12
timeout 150 "$PY" scripts/bench_generate_speed.py --devices "$DEVICES" --molecules "$MOLECULES" -n "$PRIOR_N" --init prior \
    --batch-size "$PRIOR_BATCH" --eager-only --out "$OUT/generate_speed_prior" 2>&1 | tail -12
timeout 60 "$PY" -m pytest -q -p no:cacheprovider tests/test_device.py 2>&1 | tail -30 | tee "$OUT/test_device.txt"
CORES=$(env -u OMP_NUM_THREADS nproc)      # nproc alone honours OMP_NUM_THREADS
timeout 120 "$PY" scripts/bench_generate_speed.py --devices cpu --molecules "$MOLECULES" -n 10 \
    --workers "1,$CORES" --eager-only --out "$OUT/generate_speed_workers" 2>&1 | tail -12
for batch in 16 256; do
    timeout 30 "$PY" scripts/bench_train.py --one painn small "$TRAIN_DEVICE" --steps 20 --batch-size "$batch" \
        2>&1 | tail -1 | tee -a "$OUT/env.txt"
done
ls -la "$OUT"
