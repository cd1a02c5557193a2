#!/usr/bin/env bash
# Branch a cool-down from one checkpoint of the long run (warm-up-stable-decay): the long run holds its
# peak learning rate across sessions; a copy of its checkpoint at STEP, resumed with steps = STEP + DECAY
# and decay_steps = DECAY, decays linearly to zero and ends as a finished stage-1 model in
# SRC-cool-STEP/stage1 (evaluated on the dev subsets at its end unless --no-eval). The long run itself is
# untouched and continues from its own checkpoints. Same core, thread and allocator settings as
# scripts/long-run.sh.
# CONFIG names the leg (default: training/configs/default-long.yaml); SRC, its run, defaults to the config's
# output_dir:
#   scripts/cool-down.sh 380 80
#   CONFIG=training/configs/default-long-2.yaml scripts/cool-down.sh 120 60
set -euo pipefail
cd "$(dirname "$0")/.."
STEP=${1:?usage: scripts/cool-down.sh STEP [DECAY_STEPS, default 80] [--set ...]}
DECAY=80
shift
if [[ "${1:-}" =~ ^[0-9]+$ ]]; then DECAY=$1; shift; fi  # optional; anything else goes to two_stage
PY=${PY:-.venv/bin/python}
CONFIG=${CONFIG:-training/configs/default-long.yaml}
SRC=${SRC:-$(scripts/output-dir.sh "$CONFIG")}
DST=${DST:-$SRC-cool-$STEP}  # DST: another name for a second branch off the same step
CHECKPOINT=$(printf "%s/checkpoints/stage1-step%06d" "$SRC" "$STEP")
if [ ! -f "$DST/run.json" ]; then
    [ -d "$CHECKPOINT" ] || { echo "no checkpoint $CHECKPOINT (the long run keeps its last two)" >&2; exit 2; }
    mkdir -p "$DST/checkpoints"
    cp -r "$CHECKPOINT" "$DST/checkpoints/"
    cp "$SRC/run.json" "$SRC/metrics.jsonl" "$DST/"
fi
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} MKL_NUM_THREADS=${MKL_NUM_THREADS:-1}
exec taskset -c "${CORE:-0}" scripts/with-jemalloc.sh $PY -m training.two_stage \
    --config "$CONFIG" --set output_dir="$DST" --set resume=true \
    --set stage1.steps=$((STEP + DECAY)) --set stage1.decay_steps="$DECAY" --set "stages=[1]" "$@"
