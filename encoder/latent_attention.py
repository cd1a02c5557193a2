"""Latent-attention pooling: NV-Embed's replacement for mean or last-token pooling.

The decoder's last hidden states attend (as queries) to a trainable array of latent vectors (keys and
values), pass through a GEGLU feed-forward block, and are averaged over the *pool mask* and L2-normalised.
Module and parameter names mirror the released `nvidia/NV-Embed-v2` checkpoint exactly
(`latents`, `cross_attend_blocks.{0,1}.norm`, `...0.norm_context`, `...0.fn.to_q|to_kv|to_out`,
`...1.fn.net.0|net.2`), so its `latent_attention_model.*` tensors load without renaming.

Note the per-head width: the reference uses `cross_dim_head = 4096` with 8 heads, so the inner width of
the attention is 8 × 4096 = 32768, not 4096 / 8.

At inference the latents are constants, so the cross-attention folds into two plain linear layers
(`FoldedCrossAttention`): per head h, the scores `norm(x) Wq_h^T K_h^T / sqrt(dh)` are `norm(x)` times the
fixed (d, r) matrix `Wq_h^T K_h^T / sqrt(dh)`, and `softmax(.) V_h Wo_h^T` is the softmax times the fixed
(r, d) matrix `V_h Wo_h^T`. That is the same function with 2·d·H·r multiply-adds per token instead of
2·d·H·dh + 2·H·r·dh (at width 576: 4.7M instead of 10M; NV-Embed-v2's 4096: 34M instead of 302M).
The folded form is built lazily in eval mode without gradients, is never part of the state dict, and is
rebuilt when any weight it depends on changes (training, `load_state_dict`, a move to another device).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class LatentAttentionConfig:
    """Sizes of the pooling layer. Defaults are the released checkpoint's (its config omits them)."""

    num_latents_value: int = 512  # r: number of latent vectors (keys/values of the cross-attention)
    num_cross_heads: int = 8  # H
    hidden_dim: int = 4096  # width of the latents as attention context (= backbone hidden size)
    latent_dim: int = 4096  # width of the pooled hidden states (= backbone hidden size)
    cross_dim_head: int = 4096  # dh, per-head width (the reference's ratio: dh = hidden size)
    output_normalize: bool = True  # L2-normalise the pooled vector

    @classmethod
    def for_hidden_size(cls, hidden_size: int, **overrides: Any) -> LatentAttentionConfig:
        """The reference's ratios for a backbone of another width: dh = d, r = 512, H = 8."""
        values = {"hidden_dim": hidden_size, "latent_dim": hidden_size, "cross_dim_head": hidden_size}
        values.update(overrides)
        return cls(**values)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> LatentAttentionConfig:
        """Read the checkpoint's `latent_attention_config`, ignoring keys that are not sizes."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (data or {}).items() if k in known})

    def to_dict(self) -> dict[str, Any]:
        return {"model_type": "latent_attention", **asdict(self)}


class PreNorm(nn.Module):
    """LayerNorm on the input (and on the context, for cross-attention), then `fn`."""

    def __init__(self, dim: int, fn: nn.Module, context_dim: int | None = None):
        super().__init__()
        self.fn = fn
        self.norm = nn.LayerNorm(dim)
        self.norm_context = nn.LayerNorm(context_dim) if context_dim is not None else None

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        x = self.norm(x)
        if self.norm_context is None:
            return self.fn(x)
        return self.fn(x, context=self.norm_context(context))


class GEGLU(nn.Module):
    """Split the last dimension in two halves: value first, gate second; value * gelu(gate)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = x.chunk(2, dim=-1)
        return value * F.gelu(gate)


class FeedForward(nn.Module):
    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, dim * mult * 2), GEGLU(), nn.Linear(dim * mult, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class CrossAttention(nn.Module):
    """Multi-head attention from `x` (queries) to `context` (keys and values), no bias, no mask."""

    def __init__(self, query_dim: int, context_dim: int, heads: int, dim_head: int):
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.to_q = nn.Linear(query_dim, inner, bias=False)
        self.to_kv = nn.Linear(context_dim, inner * 2, bias=False)
        self.to_out = nn.Linear(inner, query_dim, bias=False)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """x: (B, T, d) queries; context: (B, r, d), or (r, d) shared by the whole batch."""
        b, t, _ = x.shape
        q = self.to_q(x).view(b, t, self.heads, -1).transpose(1, 2)  # (B, H, T, dh)
        k, v = self.to_kv(context).chunk(2, dim=-1)  # first half keys, second half values
        r = k.shape[-2]
        # Shared latents: their keys/values are computed once and broadcast over the batch, not per text.
        k, v = (z.view(-1, r, self.heads, z.shape[-1] // self.heads).transpose(1, 2).expand(b, -1, -1, -1) for z in (k, v))
        out = F.scaled_dot_product_attention(q, k, v)  # scale 1/sqrt(dh)
        return self.to_out(out.transpose(1, 2).reshape(b, t, -1))


class FoldedCrossAttention(nn.Module):
    """The cross-attention to fixed latents as `scores` (d -> H*r) + per-head softmax + `mix` (H*r -> d)."""

    def __init__(self, attention: CrossAttention, context: torch.Tensor):
        super().__init__()
        h = attention.heads
        with torch.no_grad():
            wq = attention.to_q.weight.float()  # (H*dh, d)
            wo = attention.to_out.weight.float()  # (d, H*dh)
            k, v = (attention.to_kv.weight.float() @ context.float().T).T.chunk(2, dim=-1)  # (r, H*dh) each
            r, dh = k.shape[0], k.shape[1] // h
            scores = torch.einsum("rhe,hed->hrd", k.view(r, h, dh), wq.view(h, dh, -1)) * dh**-0.5  # (H, r, d)
            mix = torch.einsum("dhe,rhe->dhr", wo.view(-1, h, dh), v.view(r, h, dh))  # (d, H, r)
        d = wq.shape[1]
        self.heads, self.num_latents = h, r
        dtype, device = attention.to_q.weight.dtype, attention.to_q.weight.device
        self.scores = nn.Linear(d, h * r, bias=False, dtype=dtype, device=device)
        self.mix = nn.Linear(h * r, d, bias=False, dtype=dtype, device=device)
        with torch.no_grad():
            self.scores.weight.copy_(scores.reshape(h * r, d))
            self.mix.weight.copy_(mix.reshape(d, h * r))
        self.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, T, d), already normalised -> (B, T, d)."""
        b, t, _ = x.shape
        scores = self.scores(x).view(b, t, self.heads, self.num_latents)
        weights = scores.float().softmax(dim=-1).to(x.dtype)  # softmax in float32, as SDPA does
        return self.mix(weights.view(b, t, -1))


class LatentAttentionPooling(nn.Module):
    """Hidden states (B, T, d) and a pool mask (B, T) -> one embedding per sequence (B, d)."""

    def __init__(self, config: LatentAttentionConfig):
        super().__init__()
        if config.latent_dim != config.hidden_dim:
            raise ValueError(
                f"latent_dim ({config.latent_dim}) must equal hidden_dim ({config.hidden_dim}): the reference "
                "applies norm_context(hidden_dim) to latents of width latent_dim"
            )
        self.config = config
        d = config.latent_dim
        self.cross_attend_blocks = nn.ModuleList(
            [
                PreNorm(d, CrossAttention(d, config.hidden_dim, config.num_cross_heads, config.cross_dim_head),
                        context_dim=config.hidden_dim),
                PreNorm(d, FeedForward(d)),
            ]
        )
        self.latents = nn.Parameter(torch.randn(config.num_latents_value, d))
        self.fold_latents = True  # use the folded cross-attention in eval mode without gradients
        self.__dict__["_folded"] = None  # (key, FoldedCrossAttention): kept out of the state dict and modules

    def folded(self) -> FoldedCrossAttention:
        """The folded cross-attention for the current weights (built on first use and after any change)."""
        cross_attn = self.cross_attend_blocks[0]
        tensors = [self.latents, cross_attn.norm_context.weight, cross_attn.norm_context.bias,
                   cross_attn.fn.to_q.weight, cross_attn.fn.to_kv.weight, cross_attn.fn.to_out.weight]
        key = tuple((None if t.is_inference() else t._version, t.data_ptr(), t.dtype, t.device) for t in tensors)
        cached = self.__dict__["_folded"]
        if cached is None or cached[0] != key:
            with torch.inference_mode(False), torch.no_grad():  # normal tensors, even when first used for inference
                folded = FoldedCrossAttention(cross_attn.fn, cross_attn.norm_context(self.latents))
            if any(type(m).__name__ == "Int8Linear" for m in cross_attn.fn.modules()):
                from .int8 import enable_int8

                enable_int8(folded)
            cached = (key, folded)
            self.__dict__["_folded"] = cached
        return cached[1]

    def forward(self, hidden: torch.Tensor, pool_mask: torch.Tensor) -> torch.Tensor:
        cross_attn, feed_forward = self.cross_attend_blocks
        if self.fold_latents and not self.training and not torch.is_grad_enabled():
            pooled = self._pool_folded(hidden, pool_mask)
        else:
            # The latents are the same for every text: (r, d), normalised and projected once per batch.
            hidden = cross_attn(hidden, context=self.latents) + hidden
            hidden = feed_forward(hidden) + hidden  # (B, T, d)
            # Masked mean in float32, as the reference does (its mask is `.float()`), whatever the weights' dtype.
            mask = pool_mask.unsqueeze(-1).float()
            pooled = (hidden * mask).sum(dim=1) / pool_mask.sum(dim=1, keepdim=True).float()
        if self.config.output_normalize:
            pooled = F.normalize(pooled, p=2, dim=-1)
        return pooled

    def _pool_folded(self, hidden: torch.Tensor, pool_mask: torch.Tensor) -> torch.Tensor:
        """The inference path: every step before the mean acts on each token alone, so only the pooled tokens
        go through it (padding and a query's instruction are skipped), as one (1, N, d) sequence."""
        cross_attn, feed_forward = self.cross_attend_blocks
        b, t, d = hidden.shape
        flat = pool_mask.reshape(-1).nonzero().squeeze(1)
        x = hidden.reshape(b * t, d).index_select(0, flat).unsqueeze(0)  # (1, N, d)
        x = self.folded()(cross_attn.norm(x)) + x
        x = feed_forward(x) + x
        sums = torch.zeros(b, d, dtype=torch.float32, device=x.device).index_add_(0, flat // t, x[0].float())
        return sums / pool_mask.sum(dim=1, keepdim=True).float()
