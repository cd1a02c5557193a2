#!/usr/bin/env bash
# Start or continue the default's long run in the background-friendly way the model card's learning curve
# is measured: one pinned core, one thread, jemalloc, resumed from the last checkpoint under its output
# directory. runs/ should point at the cache directory, outside the work tree:
#   mkdir -p ~/.cache/nvembed-search/runs && ln -s ~/.cache/nvembed-search/runs runs
# CONFIG picks the leg: training/configs/default-long.yaml (the first, from the untrained base; default) or
# default-long-2.yaml (the second, from the shipped default). CORE and THREADS pick the cores
# (CORE=0,1 THREADS=2 uses both). Data that is missing is built first (scripts/build-run-data.sh: about 8
# minutes on a fresh machine).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
CONFIG=${CONFIG:-training/configs/default-long.yaml}
THREADS=${THREADS:-1}
export OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS
PIN=(taskset -c "${CORE:-0}")
CORE=${CORE:-0} scripts/build-run-data.sh
OUT=$(scripts/output-dir.sh "$CONFIG")
RESUME=(); [ -f "$OUT/run.json" ] && RESUME=(--set resume=true)
exec "${PIN[@]}" scripts/with-jemalloc.sh $PY -m training.two_stage --config "$CONFIG" "${RESUME[@]}" "$@"
