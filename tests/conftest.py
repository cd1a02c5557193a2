"""Suite-wide settings: never reach a model hub, keep CPU threads predictable."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Models load in float32 unless a test asks for int8: parity tests compare against reference code at 1e-5.
# tests/encoder/test_int8.py checks the CPU's int8 default itself (it clears this variable).
os.environ.setdefault("NVEMBED_INT8", "0")
