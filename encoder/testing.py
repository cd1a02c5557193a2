"""Tiny random NV-Embed models for tests and examples: built locally in well under a second, no download.

The tokenizer is a byte-level BPE trained on a few hundred words (so, as with real tokenizers, a space
before a word merges into that word's token) and prepends a BOS token, like Llama and Mistral.
Sizes follow transformers' own test models (hidden 32, 2 layers).
"""

from __future__ import annotations

from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from tokenizers.processors import TemplateProcessing
from transformers import AutoConfig, AutoModel, PreTrainedTokenizerFast

from .instructions import INSTRUCTIONS, QUERY_TEMPLATE
from .model import NVEmbedModel

SPECIAL_TOKENS = ["<unk>", "<s>", "</s>"]

_WORDS = (
    "the a an of to in and or is are was were be for on with as by at from that this it which what how why when "
    "who where can will would should may not no yes all any each more most other some such than too very just "
    "judo throws allowed wrestling become radiology technician michigan apple banana cherry river mountain ocean "
    "flight wing airflow pressure boundary layer heat transfer library catalog information retrieval search "
    "index document passage query answer question medical drug disease symptom treatment card account bank "
    "transfer money payment refund error zebra quantum violet marble orchestra galaxy lantern harbor velvet"
)


def _corpus() -> list[str]:
    instructions = [QUERY_TEMPLATE.format(instruction=i) + "what" for i in INSTRUCTIONS.values()]
    words = _WORDS.split()
    sentences = [" ".join(words[i : i + 7]) for i in range(0, len(words), 3)]
    return instructions + sentences + [w.capitalize() for w in words] + [" " + w for w in words]


def tiny_tokenizer(vocab_size: int = 600) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer (BOS `<s>`, EOS `</s>`) trained on a small fixed corpus."""
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    tok.post_processor = TemplateProcessing(single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", 1)])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="</s>",
        model_max_length=4096,
    )
    fast.padding_side = "right"
    return fast


TINY_SIZES: dict[str, Any] = {
    "hidden_size": 32,
    "intermediate_size": 37,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 4096,
}


def tiny_backbone(arch: str = "llama", seed: int = 0, attn_implementation: str = "sdpa", **overrides: Any):
    """A random decoder of architecture `arch` (llama, mistral, qwen2) matching `tiny_tokenizer`."""
    tokenizer = tiny_tokenizer()
    sizes = {**TINY_SIZES, **overrides}
    config = AutoConfig.for_model(
        arch, vocab_size=len(tokenizer), bos_token_id=1, eos_token_id=2, pad_token_id=2, **sizes
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        backbone = AutoModel.from_config(config, attn_implementation=attn_implementation)
    return backbone.eval(), tokenizer


def tiny_model(
    arch: str = "llama",
    seed: int = 0,
    attn_implementation: str = "sdpa",
    latent_config: dict[str, Any] | None = None,
    **overrides: Any,
) -> NVEmbedModel:
    """A tiny random NV-Embed model (hidden 32, 2 layers, 16 latents, 2 heads of width 32), float32, CPU."""
    backbone, tokenizer = tiny_backbone(arch, seed, attn_implementation, **overrides)
    latent = {"num_latents_value": 16, "num_cross_heads": 2, **(latent_config or {})}
    return NVEmbedModel.from_backbone(backbone, tokenizer, latent, seed=seed, name=f"tiny-{arch}-{seed}")
