#!/usr/bin/env bash
# The data of the long run and the recipe arms, each part built only when missing (about 8 minutes on a
# fresh machine; the weak pairs need root for apt): the weak-pair pool, the shared sets with their negatives
# dropped (a 4,000-pair sample of each, and all of MedQuAD for the third leg), and the MiniLM teacher cache of their texts (64 tokens), on the core(s) in CORE.
# ARMS=1 (scripts/run-arms.sh) adds what the first arm series (training/configs/arms/{a..f}.yaml) reads:
# 4,000 pairs of each of the first three weak sources without negatives (seed 0), arm a's sample with 3
# MiniLM-mined negatives (1,500 per source; the mining is the slow part), and their texts in the cache.
# Used by scripts/long-run.sh and scripts/run-arms.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
PIN=(taskset -c "${CORE:-0}")
D=runs/data
[ -f $D/weak/debian.jsonl ] || $PY -m training.weak_pairs --out $D/weak --apt-update --install-docs --fetch-wheels
# the fifth leg's sources, on a machine whose pool was built before they existed
[ -f $D/weak/engineering_docstrings.jsonl ] || $PY -m training.weak_pairs --out $D/weak --install-docs --fetch-wheels \
    --sources more_science_docs engineering_docstrings
# the sixth leg's source
[ -f $D/weak/aerospace_docstrings.jsonl ] || $PY -m training.weak_pairs --out $D/weak --fetch-wheels \
    --sources aerospace_docstrings
[ -f $D/unmined/medquad.jsonl ] || \
    $PY -m training.data build --source ../shared/data/train --out $D/unmined --max-per-set 4000 --negatives 0
# the third leg (training/configs/default-long-3.yaml) reads every MedQuAD pair, not a 4,000 sample
[ -f $D/full/medquad.jsonl ] || \
    $PY -m training.data build --source ../shared/data/train --out $D/full --negatives 0
if [ "${ARMS:-0}" = 1 ]; then
    [ -f $D/unmined/manpages.jsonl ] || $PY -m training.data sample $D/weak/{debian,python_docs,manpages}.jsonl \
        --out $D/unmined --max-per-file 4000 --drop-negatives
    [ -f $D/shared/medquad.jsonl ] || $PY -m training.data build --source ../shared/data/train --out $D/shared
    [ -f $D/mined/REPORT.json ] || "${PIN[@]}" $PY -m training.default_data --weak $D/weak --shared $D/shared \
        --out $D/mined --per-source 1500 --negatives 3
fi
# --extend: a cache built for the long run gains the arms' texts instead of being rebuilt
"${PIN[@]}" $PY -m training.teacher_cache --data $D/unmined/*.jsonl $D/full/medquad.jsonl --out $D/teacher-unmined-64.npz \
    --max-length 64 --extend
