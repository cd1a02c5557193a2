"""Turn texts into model inputs the NV-Embed way: prefix + text + EOS, right padding, and the pool mask.

The pool mask is the attention mask with its first `n` positions zeroed, where
`n = len(tokenizer.tokenize(prefix))` (the prefix tokenised without special tokens), exactly as the
released code computes it. With a BOS token at position 0 and the prefix's trailing space merged into the
query's first token, those `n` positions are BOS plus the instruction prefix, so pooling starts exactly at
the query. That is why every tokenizer used here prepends a BOS token (`ensure_bos`).

Truncation keeps the EOS token: an over-long text is cut to `max_length - 1` tokens and EOS is put last
(the reference truncates after appending EOS and so loses it; for texts within the limit both agree).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from tokenizers.processors import TemplateProcessing
from transformers import PreTrainedTokenizerBase


def ensure_bos(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """Make the tokenizer prepend exactly one BOS token (Llama/Mistral do; SmolLM2 and Qwen2 do not)."""
    probe = tokenizer("a").input_ids
    if tokenizer.bos_token_id is not None and probe and probe[0] == tokenizer.bos_token_id:
        return tokenizer
    if tokenizer.bos_token is None:
        # Qwen2 has no BOS; its document separator plays that role.
        fallback = "<|endoftext|>" if "<|endoftext|>" in tokenizer.get_vocab() else tokenizer.eos_token
        tokenizer.bos_token = fallback
    bos, bos_id = tokenizer.bos_token, tokenizer.bos_token_id
    tokenizer.backend_tokenizer.post_processor = TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A $B", special_tokens=[(bos, bos_id)]
    )
    return tokenizer


def ensure_pad(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """Pad token = EOS and right padding, as the reference sets them (`add_pad_token`)."""
    if tokenizer.eos_token is None:
        raise ValueError("the tokenizer has no EOS token; NV-Embed appends EOS to every input")
    tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    return tokenizer


def check_texts(texts: Sequence[str]) -> list[str]:
    """Accept a list of strings; raise a TypeError naming the first position that is not one."""
    if isinstance(texts, str):
        raise TypeError("expected a list of strings, got a single string; wrap it in a list")
    texts = list(texts)
    for position, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{position}] is {type(text).__name__}, expected str")
    return texts


def prefix_length(tokenizer: PreTrainedTokenizerBase, prefix: str) -> int:
    """Number of leading positions left out of pooling (the reference's `instruction_lens`)."""
    return len(tokenizer.tokenize(prefix)) if prefix else 0


@dataclass
class EncodedBatch:
    input_ids: torch.Tensor  # (B, T) long
    attention_mask: torch.Tensor  # (B, T) long, 1 for real tokens
    pool_mask: torch.Tensor  # (B, T) long, attention mask without the instruction prefix

    def to(self, device: torch.device | str) -> EncodedBatch:
        return EncodedBatch(self.input_ids.to(device), self.attention_mask.to(device), self.pool_mask.to(device))


def token_ids(
    tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], prefix: str, max_length: int
) -> list[list[int]]:
    """Token ids of `prefix + text + EOS` for each text, at most `max_length` long, EOS always last."""
    if max_length < 2:
        raise ValueError(f"max_length must be at least 2, got {max_length}")
    eos, eos_id = tokenizer.eos_token, tokenizer.eos_token_id
    ids = tokenizer([prefix + text + eos for text in texts], add_special_tokens=True, truncation=True,
                    max_length=max_length).input_ids
    return [row if row[-1] == eos_id else row[:-1] + [eos_id] for row in ids]


def collate(
    rows: Sequence[Sequence[int]], pad_id: int, pool_start: int, pad_to: int | None = None
) -> EncodedBatch:
    """Right-pad token rows into tensors; the pool mask drops the first `pool_start` positions.

    The last real token (EOS) is always pooled, so a prefix that fills a whole truncated row never
    yields an empty pool mask.
    """
    width = max(max(len(r) for r in rows), pad_to or 0)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    pool_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        attention_mask[i, : len(row)] = 1
        pool_mask[i, min(pool_start, len(row) - 1) : len(row)] = 1
    return EncodedBatch(input_ids, attention_mask, pool_mask)
