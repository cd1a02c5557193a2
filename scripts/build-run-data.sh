#!/usr/bin/env bash
# The data of the long run and the recipe arms, each part built only when missing (about 8 minutes on a
# fresh machine; the weak pairs need root for apt): the weak-pair pool, the shared sets with their negatives
# dropped, and the MiniLM teacher cache of their texts (64 tokens), on the core(s) in CORE.
# Used by scripts/long-run.sh and scripts/run-arms.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
PIN=(taskset -c "${CORE:-0}")
[ -f runs/data/weak/debian.jsonl ] || $PY -m training.weak_pairs --out runs/data/weak --apt-update --install-docs
[ -f runs/data/unmined/medquad.jsonl ] || \
    $PY -m training.data build --source ../shared/data/train --out runs/data/unmined --max-per-set 4000 --negatives 0
[ -f runs/data/teacher-unmined-64.npz ] || \
    "${PIN[@]}" $PY -m training.teacher_cache --data runs/data/unmined/*.jsonl --out runs/data/teacher-unmined-64.npz \
        --max-length 64
