#!/usr/bin/env bash
# The equal-time comparison of recipe arms (docs/model-card.md, "Recipe arms"): each arm of
# training/configs/arms/ trains stage 1 for the same 20-minute wall-time budget on ONE pinned core with one
# thread (other work on the machine stays on the other core), then is evaluated on the same dev subsets.
# Resumable: a finished arm is skipped, an interrupted one continues from its last checkpoint.
# Builds what the arms read and is missing (scripts/build-run-data.sh with ARMS=1) first.
# Usage: scripts/run-arms.sh [ARM ...]   (default: every arm file, in name order)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
CORE="${CORE:-0}"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
PIN=(taskset -c "$CORE")
ARMS=1 CORE=$CORE scripts/build-run-data.sh
ARMS=("$@"); [ ${#ARMS[@]} -gt 0 ] || ARMS=($(ls training/configs/arms/ | sed 's/\.yaml$//'))
for arm in "${ARMS[@]}"; do
    out=runs/arms/$arm
    if [ -f "$out/results.json" ]; then echo "[arms] $arm done"; continue; fi
    mkdir -p runs/arms
    echo "[arms] $arm starts $(date -u +%H:%M:%S)"
    "${PIN[@]}" scripts/with-jemalloc.sh $PY -m training.two_stage --config "training/configs/arms/$arm.yaml" \
        --set resume=true >> "runs/arms/$arm.log" 2>&1
    echo "[arms] $arm ends $(date -u +%H:%M:%S)"
done
