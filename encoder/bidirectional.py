"""Turn a stock Hugging Face decoder into a bidirectional encoder, as NV-Embed does.

transformers >= 5.2 builds a padding-only attention mask when `config.is_causal` is False (through
`masking_utils.create_bidirectional_mask`) and tells every attention implementation (eager, SDPA,
flash-attention) that it is not causal. That is all NV-Embed needs: no copied decoder-layer classes.
Mistral's sliding window is dropped as well, because the released NV-Embed code applies none.

Only architectures whose bidirectional behaviour is tested here are accepted; others are refused with a
clear error rather than silently staying causal.
"""

from __future__ import annotations

from transformers import PretrainedConfig, PreTrainedModel

SUPPORTED_ARCHITECTURES = ("mistral", "llama", "qwen2")


def canonical_model_type(model_type: str) -> str:
    """`bidir_mistral` (the released checkpoint's name) -> `mistral`."""
    return model_type.removeprefix("bidir_")


def check_supported(config: PretrainedConfig | dict, source: str = "model") -> str:
    """Return the canonical model type or raise naming the unsupported one."""
    model_type = config.get("model_type", "") if isinstance(config, dict) else config.model_type
    canonical = canonical_model_type(model_type or "")
    if canonical not in SUPPORTED_ARCHITECTURES:
        raise ValueError(
            f"{source}: architecture {model_type!r} is not supported; NV-Embed backbones here must be one of "
            f"{', '.join(SUPPORTED_ARCHITECTURES)} (decoders whose bidirectional attention is tested)"
        )
    return canonical


def make_bidirectional_config(config: PretrainedConfig) -> PretrainedConfig:
    """Set the fields that make a decoder config bidirectional. Idempotent."""
    check_supported(config)
    config.is_causal = False
    if getattr(config, "sliding_window", None) is not None:
        config.sliding_window = None
    config.use_cache = False
    return config


def make_bidirectional(model: PreTrainedModel) -> PreTrainedModel:
    """Make an already built base model bidirectional (config and every sub-module config). Idempotent."""
    make_bidirectional_config(model.config)
    for module in model.modules():
        if hasattr(module, "is_causal"):
            module.is_causal = False
    return model
