"""Read and write checkpoints in the released NV-Embed layout.

One on-disk format serves everything: the real `nvidia/NV-Embed-v2` directory, small NV-Embed-format
checkpoints, and the project's own trained models. A directory holds
- `config.json`: `model_type: "nvembed"`, `text_config` (the decoder's config, `model_type: "bidir_<arch>"`),
  `latent_attention_config`, the input-formatting flags (`padding_side`, `add_eos`, `is_mask_instruction`, ...)
  and, for our own models, a `nvembed_search` section (name, whether it is trained, max length);
- `model.safetensors`, or shards plus `model.safetensors.index.json`, with `embedding_model.*` and
  `latent_attention_model.*` keys;
- the tokenizer files.

Loading is strict: a missing or unexpected key, or a shape mismatch, is an error that names the key.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import AutoConfig, PretrainedConfig

from .bidirectional import canonical_model_type, check_supported
from .latent_attention import LatentAttentionConfig

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
INDEX_NAME = "model.safetensors.index.json"


class CheckpointError(ValueError):
    """A checkpoint that does not match the model it describes (missing, unexpected or mis-shaped key)."""


@dataclass
class NVEmbedConfig:
    """Everything in an NV-Embed `config.json`, with the reference's defaults for absent fields."""

    text_config: PretrainedConfig
    latent: LatentAttentionConfig
    padding_side: str = "right"
    add_pad_token: bool = True
    is_mask_instruction: bool = True
    add_eos: bool = True
    mask_type: str = "b"
    extra: dict[str, Any] = field(default_factory=dict)  # our own metadata: name, trained, max_length

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> NVEmbedConfig:
        if data.get("model_type") != "nvembed":
            raise ValueError(f"{source}: model_type is {data.get('model_type')!r}, expected 'nvembed'")
        text = dict(data.get("text_config") or {})
        if not text:
            raise ValueError(f"{source}: no text_config")
        arch = check_supported(text, source=f"{source} text_config")
        text.pop("model_type", None)
        text_config = AutoConfig.for_model(arch, **text)
        latent = LatentAttentionConfig.from_dict(data.get("latent_attention_config"))
        # Absent sizes take the reference's defaults (4096 wide); a smaller backbone must state them.
        if latent.latent_dim != text_config.hidden_size:
            raise ValueError(
                f"{source}: latent layer width {latent.latent_dim} differs from the decoder's hidden size "
                f"{text_config.hidden_size}"
            )
        return cls(
            text_config=text_config,
            latent=latent,
            padding_side=data.get("padding_side", "right"),
            add_pad_token=data.get("add_pad_token", True),
            is_mask_instruction=data.get("is_mask_instruction", True),
            add_eos=data.get("add_eos", True),
            mask_type=data.get("mask_type", "b"),
            extra=dict(data.get("nvembed_search") or {}),
        )

    def to_dict(self) -> dict[str, Any]:
        text = self.text_config.to_dict()
        arch = canonical_model_type(text["model_type"])
        text["model_type"] = f"bidir_{arch}"
        text["architectures"] = [type(self.text_config).__name__.replace("Config", "Model")]
        text.pop("dtype", None)
        text.pop("torch_dtype", None)
        return {
            "architectures": ["NVEmbedModel"],
            "model_type": "nvembed",
            "hidden_size": self.text_config.hidden_size,
            "text_config": text,
            "latent_attention_config": self.latent.to_dict(),
            "padding_side": self.padding_side,
            "add_pad_token": self.add_pad_token,
            "is_mask_instruction": self.is_mask_instruction,
            "add_eos": self.add_eos,
            "mask_type": self.mask_type,
            "nvembed_search": self.extra,
        }


def is_nvembed_dir(path: str | os.PathLike) -> bool:
    config = Path(path) / CONFIG_NAME
    if not config.is_file():
        return False
    try:
        return json.loads(config.read_text()).get("model_type") == "nvembed"
    except (OSError, json.JSONDecodeError):
        return False


def read_config(path: str | os.PathLike) -> NVEmbedConfig:
    config_path = Path(path) / CONFIG_NAME
    try:
        data = json.loads(config_path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{config_path}: not valid JSON ({exc})") from exc
    return NVEmbedConfig.from_dict(data, source=str(config_path))


def weight_files(path: str | os.PathLike) -> list[Path]:
    """The safetensors files of a checkpoint, from the shard index when there is one."""
    path = Path(path)
    index = path / INDEX_NAME
    if index.is_file():
        weight_map = json.loads(index.read_text())["weight_map"]
        return [path / name for name in sorted(set(weight_map.values()))]
    single = path / WEIGHTS_NAME
    if single.is_file():
        return [single]
    found = sorted(path.glob("*.safetensors"))
    if not found:
        raise FileNotFoundError(f"{path}: no safetensors weights ({WEIGHTS_NAME} or {INDEX_NAME})")
    return found


def iter_tensors(path: str | os.PathLike, device: str = "cpu") -> Iterator[tuple[str, torch.Tensor]]:
    for file in weight_files(path):
        with safe_open(str(file), framework="pt", device=device) as handle:
            for key in handle.keys():
                yield key, handle.get_tensor(key)


def checkpoint_shapes(path: str | os.PathLike) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    for file in weight_files(path):
        with safe_open(str(file), framework="pt") as handle:
            for key in handle.keys():
                shapes[key] = tuple(handle.get_slice(key).get_shape())
    return shapes


def check_keys(expected: dict[str, tuple[int, ...]], found: dict[str, tuple[int, ...]], source: str) -> None:
    """Raise naming the first missing key, unexpected key or shape mismatch."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise CheckpointError(f"{source}: missing key {missing[0]!r}{more}")
    if unexpected:
        more = f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else ""
        raise CheckpointError(f"{source}: unexpected key {unexpected[0]!r}{more}")
    for key, shape in expected.items():
        if tuple(found[key]) != tuple(shape):
            raise CheckpointError(f"{source}: shape mismatch for {key!r}: checkpoint {tuple(found[key])}, model {tuple(shape)}")


def save_checkpoint(
    state_dict: dict[str, torch.Tensor],
    config: NVEmbedConfig,
    path: str | os.PathLike,
    max_shard_bytes: int = 5 * 1024**3,
) -> None:
    """Write config and weights (sharded above `max_shard_bytes`) in the released layout."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for key, tensor in state_dict.items():
        nbytes = tensor.numel() * tensor.element_size()
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][key] = tensor.detach().to("cpu").contiguous()
        size += nbytes
    for stale in list(path.glob("model*.safetensors")) + [path / INDEX_NAME]:
        stale.unlink(missing_ok=True)
    if len(shards) == 1:
        save_file(shards[0], str(path / WEIGHTS_NAME), metadata={"format": "pt"})
    else:
        weight_map = {}
        total = 0
        for i, shard in enumerate(shards, start=1):
            name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
            save_file(shard, str(path / name), metadata={"format": "pt"})
            for key, tensor in shard.items():
                weight_map[key] = name
                total += tensor.numel() * tensor.element_size()
        (path / INDEX_NAME).write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    (path / CONFIG_NAME).write_text(json.dumps(config.to_dict(), indent=2, sort_keys=True))
