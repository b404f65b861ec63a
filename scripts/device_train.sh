#!/bin/bash
# Train the conformer model from scratch on a lent GPU machine, in one call (after
# `scripts/device_prepare.sh --train` here; carry .device/train): unpack RDKit and the processed
# CCD and ETKDG-ensemble datasets, run `molscore train --config configs/conformers_gpu.yaml`
# for MINUTES (default 7) and stop it with SIGINT, which saves checkpoint.pt at the step
# reached; then copy checkpoint.pt (model, EMA, optimiser, RNG and data-order state),
# metrics.jsonl and the exported EMA model (model.pt, for `molscore generate --model`) to
# $OUT. Put an earlier call's checkpoint.pt (and metrics.jsonl) into .device/train/ and the run
# resumes it exactly. A model file at .device/train/init.pt starts a fresh run from its
# weights instead (a checkpoint to resume wins); not weights shipped before 2026-12-07 or a
# model trained from them, whose data held reserved molecules (molscore/models/README.md).
# `PYTHON=.venv/bin/python DEVICE=cpu MINUTES=1 bash scripts/device_train.sh` runs the same
# steps on a CPU.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/molscore_device_train}
PY=${PYTHON:-python3}
MINUTES=${MINUTES:-7}
DEVICE=${DEVICE:-cuda}
RUN=runs/gpu
mkdir -p "$OUT" runs/data
if ! "$PY" -c "import rdkit" 2> /dev/null; then
    mkdir -p /tmp/molscore_site
    tar -C /tmp/molscore_site -xJf .device/train/rdkit_site.tar.xz || exit 1
    export PYTHONPATH=/tmp/molscore_site:$PWD
else
    export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1
for data in ccd etkdg; do
    [ -f runs/data/$data/index.json ] || tar -C runs/data -xJf .device/train/$data.tar.xz || exit 1
done
if [ -f .device/train/checkpoint.pt ]; then
    mkdir -p "$RUN" && cp .device/train/checkpoint.pt "$RUN/"
    [ -f .device/train/metrics.jsonl ] && cp .device/train/metrics.jsonl "$RUN/"
fi
INIT=()
[ -f .device/train/init.pt ] && INIT=(--init .device/train/init.pt)
{ nvidia-smi -L 2>/dev/null; env -u OMP_NUM_THREADS nproc; } | tee "$OUT/env.txt"
# --foreground: SIGINT reaches the trainer alone, not its data-loader workers
timeout --foreground -s INT -k 60 $((MINUTES * 60)) \
    "$PY" -m molscore train --config configs/conformers_gpu.yaml -o "$RUN" --device "$DEVICE" \
    "${INIT[@]}" --quiet
echo "train exit status $?"
cp "$RUN/checkpoint.pt" "$RUN/metrics.jsonl" "$OUT/"
"$PY" -c "from molscore.checkpoint import export_model; print(export_model('$RUN/checkpoint.pt', '$OUT/model.pt'))"
tail -3 "$RUN/metrics.jsonl"
ls -la "$OUT"
