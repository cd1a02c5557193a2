#!/usr/bin/env bash
# Print a training config's output_dir: where a leg of the long run keeps its checkpoints, so that the
# scripts around it (long-run.sh, cool-down.sh, finish-leg.sh) take it from CONFIG instead of a second name.
#   scripts/output-dir.sh training/configs/default-long-3.yaml   # runs/long3
set -euo pipefail
PY=${PY:-.venv/bin/python}
exec $PY -c "import sys; from training.config import read_file; print(read_file(sys.argv[1])['output_dir'])" "${1:?usage: scripts/output-dir.sh CONFIG}"
