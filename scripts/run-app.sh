#!/usr/bin/env bash
# One command: install everything, then start the app on the embedded default model.
# Extra arguments go to streamlit, e.g. scripts/run-app.sh --server.port 8600
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh
# Under jemalloc when libjemalloc2 is installed: the app's ingests embed with less CPU time (docs/benchmarks.md).
exec scripts/with-jemalloc.sh .venv/bin/streamlit run app/main.py "$@"
