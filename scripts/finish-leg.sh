#!/usr/bin/env bash
# Turn the long run's checkpoint at STEP into a candidate default and measure it, on both cores (about 55
# minutes on the 2-core machine; stop the leg first, after its checkpoint at STEP is written):
#   1. a cool-down branch at 128 tokens (scripts/cool-down.sh STEP DECAY, two threads);
#   2. its learning-curve row on the dev subsets (core 0) beside the int8 export with its check (core 1);
#   3. the export installed into encoder/default (git shows what changed; `git checkout encoder/default`
#      takes it back), then the int8 cost on the full dev sets (core 1) beside the fusion calibration and
#      the modes through the index (core 0).
# What it measured is under OUT (default runs/finish-STEP): logs, int8-{cranfield,cisi}.json and
# retrieval-modes-default.json. Shipping stays a decision: the full dev sets must improve on the shipped
# default, and the fingerprint goes into encoder.model.INT8_MEASURED only if its int8 cost is <= 0.01.
# CONFIG / BASE name the leg (default: the second leg and its base; the third:
# CONFIG=training/configs/default-long-3.yaml BASE=$HOME/.cache/nvembed-search/smollm2-135m-l8-e860c09cdb04);
# SRC, its run, defaults to the config's output_dir; DST, the candidate, to SRC-cool128-STEP: a DST whose
# stage1/ exists already is measured as it is (no cool-down; no curve row without its run.json), e.g. an
# interpolation of the shipped default and a candidate (python -m training.interpolate A B --out DST/stage1);
# RECORD, a JSON file, becomes default.json's "training" record (the export leaves it empty otherwise:
# write it before shipping).
#   scripts/finish-leg.sh STEP [DECAY, default 30]
set -euo pipefail
cd "$(dirname "$0")/.."
STEP=${1:?usage: scripts/finish-leg.sh STEP [DECAY]}
DECAY=${2:-30}
PY=${PY:-.venv/bin/python}
S=${S:-../shared/data}
CONFIG=${CONFIG:-training/configs/default-long-2.yaml}
SRC=${SRC:-$(scripts/output-dir.sh "$CONFIG")}
BASE=${BASE:-$HOME/.cache/nvembed-search/smollm2-135m-l8-94192db34016}
RATIO=${RATIO:-2.5}  # the outlier ratio whose int8 cost is measured (encoder.int8)
DST=${DST:-$SRC-cool128-$STEP}
OUT=${OUT:-runs/finish-$STEP}
mkdir -p "$OUT"
say() { echo "[finish-leg] $* $(date -u +%T)"; }
if [ ! -d "$DST/stage1" ]; then
    say "cool-down of $DECAY steps off $SRC step $STEP"
    SRC=$SRC CONFIG=$CONFIG CORE=0,1 OMP_NUM_THREADS=2 MKL_NUM_THREADS=2 DST=$DST scripts/cool-down.sh "$STEP" \
        "$DECAY" --no-eval --set stage1.max_length=128 --set stage1.teacher_cache=null --set model.base="$BASE" \
        > "$OUT/cool-down.log" 2>&1
fi
# learning_curve.py evaluates every checkpoint it finds: only the finished stage is wanted
[ -d "$DST/checkpoints" ] && mv "$DST/checkpoints" "$DST.checkpoints"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
say "curve row and export"
curve=
if [ -f "$DST/run.json" ]; then
    $PY benchmarks/learning_curve.py "$DST" --no-start --core 0 > "$OUT/curve.log" 2>&1 &
    curve=$!
fi
taskset -c 1 $PY -m training.export_default "$DST/stage1" --deltas int8 --out "$OUT/default" \
    --check-beir "$S/eval/cisi" --max-queries 30 --max-docs 100 ${RECORD:+--record "$RECORD"} > "$OUT/export.log" 2>&1
[ -n "$curve" ] && wait $curve
cp "$OUT"/default/{deltas.safetensors,latent.safetensors,default.json} encoder/default/
# the first load converts the new default into the cache directory: once, before two processes want it
NVEMBED_INT8=0 $PY -c "from encoder import NVEmbedModel; NVEmbedModel.from_pretrained('default')"
say "full dev sets"
( for set in cranfield cisi; do
      taskset -c 1 $PY benchmarks/int8_quality.py --model default --beir "$S/eval/$set" --outlier-ratio "$RATIO" \
          --json "$OUT/int8-$set.json" > "$OUT/int8-$set.log" 2>&1
  done ) &
int8=$!
NVEMBED_INT8=0 taskset -c 0 $PY -m index.calibrate --model default --beir "$S/eval/cranfield" "$S/eval/cisi" \
    > "$OUT/calibrate.log" 2>&1
NVEMBED_INT8=0 taskset -c 0 $PY benchmarks/retrieval_modes.py --model default --beir "$S/eval/cranfield" \
    "$S/eval/cisi" --reuse-index --json "$OUT/retrieval-modes-default.json" > "$OUT/modes.log" 2>&1
wait $int8
say "done; compare $OUT/retrieval-modes-default.json with docs/results/retrieval-modes-default.json"
