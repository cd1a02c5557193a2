"""The models a training command line names: the teacher (all-MiniLM-L6-v2) and any embedder to mine with
or evaluate.

NV-Embed-v2 mined its hard negatives with a stronger embedder (E5-Mistral) as teacher; on a CPU the
strongest embedder that installs offline is all-MiniLM-L6-v2 (`encoder.minilm`). Names are resolved by
`encoder.registry`, like everywhere else; this module adds what training needs on top: the precision to run
under and the layer truncation of `load_base`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from encoder.minilm import MAX_LENGTH, MiniLMEmbedder, minilm_path
from encoder.registry import load_model, resolve

if TYPE_CHECKING:
    from .modeling import Precision

MiniLMTeacher = MiniLMEmbedder  # the name training code and tests know it by

__all__ = ["MAX_LENGTH", "MiniLMTeacher", "load_embedder", "minilm_path"]


def load_embedder(name: str, num_layers: int | None, device: torch.device) -> tuple[Any, Precision]:
    """The model a command line names (any `encoder.registry` name), with the precision to run it under.

    `minilm` and `tiny` run in float32 as they are; NV-Embed names go through `load_base` (so
    `num_layers` can cut the decoder).
    """
    from .config import ModelConfig
    from .modeling import load_base, resolve_precision

    ref = resolve(name)
    if ref.kind in ("minilm", "tiny"):
        return load_model(ref, device), resolve_precision(ModelConfig(dtype="float32"), device)
    config = ModelConfig(base=ref.source, num_layers=num_layers)
    precision = resolve_precision(config, device)
    return load_base(config, precision), precision
