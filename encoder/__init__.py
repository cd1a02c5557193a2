"""NV-Embed served in-process: bidirectional decoder + latent-attention pooling (see `model.py`).

`load_model(name)` is the one way to turn a model name (`default`, `minilm`, `tiny`, a directory, a hub id)
into a model: see `registry.py`.

The names below are imported on first use (PEP 562), so `encoder.instructions` (plain strings, wanted by the
app's search form) can be imported without importing torch and transformers, which take several seconds
and are loaded by the model in the background while the app's first page is already usable.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "INSTRUCTIONS": "instructions",
    "get_instruction": "instructions",
    "query_prefix": "instructions",
    "LatentAttentionConfig": "latent_attention",
    "LatentAttentionPooling": "latent_attention",
    "NVEmbedModel": "model",
    "NAMES_HELP": "registry",
    "ModelRef": "registry",
    "load_model": "registry",
    "resolve": "registry",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'encoder' has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
