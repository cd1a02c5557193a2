"""NV-Embed served in-process: bidirectional decoder + latent-attention pooling (see `model.py`).

`load_model(name)` is the one way to turn a model name (`default`, `minilm`, `tiny`, a directory, a hub id)
into a model: see `registry.py`.
"""

from .instructions import INSTRUCTIONS, get_instruction, query_prefix
from .latent_attention import LatentAttentionConfig, LatentAttentionPooling
from .model import NVEmbedModel
from .registry import NAMES_HELP, ModelRef, load_model, resolve

__all__ = [
    "INSTRUCTIONS",
    "NAMES_HELP",
    "LatentAttentionConfig",
    "LatentAttentionPooling",
    "ModelRef",
    "NVEmbedModel",
    "get_instruction",
    "load_model",
    "query_prefix",
    "resolve",
]
