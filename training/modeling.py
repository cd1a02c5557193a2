"""The model side of training: loading the base, LoRA, precision, and writing stage checkpoints.

- `check_base` refuses, before any weight is read, a base whose decoder is not one the encoder supports
  (Llama, Mistral, Qwen2), with the encoder's own message.
- `load_base` loads through `encoder.load_model` (any NV-Embed name: `default`, `tiny`, a directory) and can keep only the first N decoder layers
  (`model.num_layers`), which makes CPU runs of the real SmolLM2 weights affordable.
- `add_lora` wraps the backbone with peft LoRA (r 16, alpha 32, dropout 0.1 on every linear projection by
  default); the latent-attention layer stays fully trainable; everything else is frozen.
- `save_stage` writes the encoder's checkpoint layout with the LoRA deltas merged into the weights (computed
  out of place, so the live model is untouched), loadable by `NVEmbedModel.from_pretrained`, and can
  also keep the adapter apart (`adapter/`, peft's format).
- Precision: on CUDA the frozen base is bf16 and the trainable weights float32 under bf16 autocast; on the
  CPU everything is float32 (bf16 matmuls are ~10x slower there).
"""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from torch import nn

from encoder import NVEmbedModel
from encoder.bidirectional import check_supported
from encoder.checkpoint import save_checkpoint
from encoder.registry import load_model, resolve
from encoder.tokenization import EncodedBatch

from .config import ConfigError, ModelConfig


@dataclass
class Precision:
    device: torch.device
    weights: torch.dtype  # dtype of the frozen base weights
    autocast: torch.dtype | None  # autocast dtype, None for none

    def context(self) -> contextlib.AbstractContextManager:
        if self.autocast is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast)


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r} requested but CUDA is not available")
        if device.index is None:
            device = torch.device(f"cuda:{local_rank}")
    return device


def resolve_precision(config: ModelConfig, device: torch.device) -> Precision:
    if config.dtype == "float32" or (config.dtype == "auto" and device.type != "cuda"):
        return Precision(device, torch.float32, None)
    return Precision(device, torch.bfloat16, torch.bfloat16)


def check_base(base: str) -> None:
    """Raise ConfigError when `base` names no NV-Embed model, or a local checkpoint of an unsupported
    architecture (reads config.json only)."""
    try:
        ref = resolve(base)
    except ValueError as exc:
        raise ConfigError(f"model.base: {exc}") from None
    if not ref.is_nvembed:
        raise ConfigError(f"model.base {base!r} is not an NV-Embed model (it can be a teacher, not a base)")
    if ref.kind != "directory":
        return  # a named model or a hub id: the loader builds, fetches or says it cannot
    path = ref.path
    assert path is not None
    config_file = path / "config.json"
    if not config_file.is_file():
        raise ConfigError(f"base {base}: no config.json (not an NV-Embed checkpoint or a Hugging Face decoder)")
    try:
        data = json.loads(config_file.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"base {base}: config.json is not valid JSON ({exc})") from exc
    text = data.get("text_config") if data.get("model_type") == "nvembed" else data
    try:
        check_supported(text or {}, source=f"base {base}")
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


def truncate_layers(model: NVEmbedModel, num_layers: int) -> None:
    """Keep the first `num_layers` decoder layers (config updated, so the checkpoint reloads)."""
    have = len(model.embedding_model.layers)
    if num_layers > have:
        raise ConfigError(f"model.num_layers is {num_layers} but the base has only {have} layers")
    model.truncate_layers(num_layers)


def load_base(config: ModelConfig, precision: Precision, path: str | None = None) -> NVEmbedModel:
    """The model training starts from: `path` (a stage-1 result) or the configured base, truncated if asked."""
    source = path or config.base
    check_base(source)
    attn = None if config.attn_implementation == "auto" else config.attn_implementation
    model = load_model(source, device=precision.device, dtype=precision.weights, attn_implementation=attn,
                       latent_config=None if path else config.latent, seed=config.latent_seed,
                       int8=False)  # training and its evaluations: float
    if config.num_layers is not None and path is None:
        truncate_layers(model, config.num_layers)
    if config.latent_init == "mean" and path is None:
        if model.trained:
            raise ConfigError(f"model.latent_init=mean starts a fresh latent layer, but base {source!r} is trained; "
                              "use a plain decoder or default-untrained")
        start_as_mean_pooling(model)
    model.latent_attention_model.float()  # trainable: float32 master weights (autocast computes in bf16)
    model._fingerprint = None
    return model


def start_as_mean_pooling(model: NVEmbedModel) -> None:
    """Zero the last projection of both residual branches: the latent layer then computes exactly masked
    mean pooling, and training grows the attention and feed-forward contributions from zero."""
    cross_attn, feed_forward = model.latent_attention_model.cross_attend_blocks
    with torch.no_grad():
        cross_attn.fn.to_out.weight.zero_()
        last = feed_forward.fn.net[-1]
        last.weight.zero_()
        if last.bias is not None:
            last.bias.zero_()
    model._fingerprint = None


def enable_checkpointing(model: NVEmbedModel) -> None:
    """Activation checkpointing on the decoder layers (non-reentrant, works with frozen inputs and LoRA)."""
    backbone = model.embedding_model
    enable = getattr(backbone, "activation_checkpointing_enable", None) or backbone.gradient_checkpointing_enable
    enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def add_lora(model: NVEmbedModel, config: ModelConfig) -> None:
    """Freeze the backbone, wrap it with LoRA adapters; the latent layer stays trainable."""
    for param in model.embedding_model.parameters():
        param.requires_grad_(False)
    names = {name.rsplit(".", 1)[-1] for name, m in model.embedding_model.named_modules() if isinstance(m, nn.Linear)}
    missing = [t for t in config.lora_targets if t not in names]
    if missing:
        raise ConfigError(f"model.lora_targets: no linear layer named {missing[0]!r} in the backbone "
                          f"(linear layers: {', '.join(sorted(names))})")
    lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=list(config.lora_targets), bias="none")
    with warnings.catch_warnings():  # peft calls transformers' deprecated `is_gradient_checkpointing`
        warnings.filterwarnings("ignore", category=FutureWarning)
        model.embedding_model = get_peft_model(model.embedding_model, lora)
    for param in model.latent_attention_model.parameters():
        param.requires_grad_(True)
    model._fingerprint = None


def prepare_trainable(model: NVEmbedModel, config: ModelConfig) -> None:
    """Mark what a stage trains: LoRA adapters (`finetune: lora`) or every linear weight of the decoder
    layers (`full`; embeddings and norms stay frozen, so the shipped default remains a set of matrix
    deltas), and the latent layer unless `train_latent` is false."""
    if config.finetune == "lora":
        add_lora(model, config)
    else:
        for param in model.embedding_model.parameters():
            param.requires_grad_(False)
        for module in model.embedding_model.layers.modules():
            if isinstance(module, nn.Linear):
                module.weight.requires_grad_(True)
    for param in model.latent_attention_model.parameters():
        param.requires_grad_(config.train_latent)
    model._fingerprint = None


def has_lora(model: NVEmbedModel) -> bool:
    return isinstance(model.embedding_model, PeftModel)


def merge_lora(model: NVEmbedModel) -> None:
    """Fold the adapters into the backbone weights and drop them (the plain base model comes back)."""
    if has_lora(model):
        model.embedding_model = model.embedding_model.merge_and_unload()
        model._fingerprint = None


def trainable_parameters(model: NVEmbedModel) -> list[tuple[str, nn.Parameter]]:
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def merged_state_dict(model: NVEmbedModel) -> dict[str, torch.Tensor]:
    """The encoder-layout state dict with LoRA deltas added to their base weights; the model is unchanged."""
    if not has_lora(model):
        return {k: v.detach() for k, v in model.state_dict().items()}
    prefix = "embedding_model.base_model.model."
    deltas: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for name, module in model.embedding_model.base_model.model.named_modules():
            if hasattr(module, "base_layer") and hasattr(module, "get_delta_weight") and module.active_adapters:
                delta = sum(module.get_delta_weight(a) for a in module.active_adapters if a in module.lora_A)
                deltas[f"embedding_model.{name}.weight"] = delta
    state = {}
    for key, value in model.state_dict().items():
        if "lora_" in key:
            continue
        clean = key.replace(prefix, "embedding_model.").replace(".base_layer.", ".")
        if clean in deltas:
            value = (value.float() + deltas[clean].float()).to(value.dtype)
        state[clean] = value.detach()
    return state


def save_stage(model: NVEmbedModel, path: str | Path, metadata: dict[str, Any], keep_adapter: bool) -> None:
    """Write a loadable checkpoint (LoRA merged) plus, optionally, the adapter alone under `adapter/`."""
    path = Path(path)
    model.config.extra.update({"trained": True, **metadata})
    model.config.extra.setdefault("max_length", model.max_length)
    save_checkpoint(merged_state_dict(model), model.config, path)
    model.tokenizer.save_pretrained(str(path))
    if keep_adapter and has_lora(model):
        model.embedding_model.save_pretrained(str(path / "adapter"))


def encoder_fn(model: NVEmbedModel, precision: Precision) -> Callable[[EncodedBatch], torch.Tensor]:
    """texts batch -> (B, d) float32 embeddings, under the run's autocast."""
    def encode(batch: EncodedBatch) -> torch.Tensor:
        with precision.context():
            return model(batch.input_ids, batch.attention_mask, batch.pool_mask).float()
    return encode
