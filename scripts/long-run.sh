#!/usr/bin/env bash
# Start or continue the default's long run (training/configs/default-long.yaml) in the background-friendly
# way the model card's learning curve is measured: one pinned core, one thread, jemalloc, resumed from the
# last checkpoint under runs/long (runs/ should point at the cache directory, outside the work tree:
# ln -s ~/.cache/nvembed-search/runs runs). Needs the data of scripts/train-default.sh steps 1-2 plus
# runs/data/unmined and the teacher cache of scripts/run-arms.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
RESUME=(); [ -f runs/long/run.json ] && RESUME=(--set resume=true)
exec taskset -c "${CORE:-0}" scripts/with-jemalloc.sh $PY -m training.two_stage \
    --config training/configs/default-long.yaml "${RESUME[@]}" "$@"
