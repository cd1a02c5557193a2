#!/usr/bin/env bash
# The embedded default's recipe, from scratch, in one command:
#   data builders -> teacher-mined hard negatives -> stage 1 -> stage 2 -> evaluation -> export
# CPU: about 2 h on 2 idle cores with training/configs/default-cpu.yaml (see docs/model-card.md).
# Training runs under jemalloc when libjemalloc2 is installed (1.4x faster steps on the CPU, see
# scripts/with-jemalloc.sh).
# Usage: scripts/train-default.sh [CONFIG] [extra training.two_stage arguments...]
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG="${1:-training/configs/default-cpu.yaml}"; shift || true
PY=.venv/bin/python
DATA=runs/default/data
SHARED="${SHARED:-../shared/data}"

# 1. weak pairs (needs root for apt: English package descriptions and the Python docs)
if [ ! -f "$DATA/weak/debian.jsonl" ]; then
    $PY -m training.weak_pairs --out "$DATA/weak" --apt-update --install-docs
fi
# 2. the shared training sets, NV-Embed-v2 style, then a sample of each with MiniLM-mined negatives
[ -f "$DATA/shared/medquad.jsonl" ] || $PY -m training.data build --source "$SHARED/train" --out "$DATA/shared"
[ -f "$DATA/mined/REPORT.json" ] || $PY -m training.default_data --weak "$DATA/weak" --shared "$DATA/shared" \
    --out "$DATA/mined" --per-source 3000 --negatives 3
# 3. both stages (resumes if a run is in progress)
RESUME=(); [ -d runs/default/checkpoints ] && RESUME=(--set resume=true)
scripts/with-jemalloc.sh $PY -m training.two_stage --config "$CONFIG" "${RESUME[@]}" "$@"
# 4. full development sets
$PY -m training.evaluate --model runs/default/stage2 --beir "$SHARED/eval/cranfield" "$SHARED/eval/cisi" \
    --sts "$SHARED/train/stsbenchmark/sts-test.csv" --banking77 "$SHARED/train/banking77" --max-train 2000 --json \
    > runs/default/eval-full.json
# 5. the shipped parts (float16 low-rank deltas + latent layer) into encoder/default/
$PY -m training.export_default runs/default/stage2 --out encoder/default
