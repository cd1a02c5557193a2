"""NV-Embed served in-process: bidirectional decoder + latent-attention pooling (see `model.py`)."""

from .instructions import INSTRUCTIONS, get_instruction, query_prefix
from .latent_attention import LatentAttentionConfig, LatentAttentionPooling
from .model import NVEmbedModel

__all__ = [
    "INSTRUCTIONS",
    "LatentAttentionConfig",
    "LatentAttentionPooling",
    "NVEmbedModel",
    "get_instruction",
    "query_prefix",
]
