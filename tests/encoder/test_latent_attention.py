"""The pooling layer has the released checkpoint's parameter names and shapes, and computes what the
formulas say (written out again here, independently of the module's code)."""

import math

import torch
import torch.nn.functional as F

from encoder.latent_attention import LatentAttentionConfig, LatentAttentionPooling

# nvidia/NV-Embed-v2, latent_attention_model.* (nv-embed.md §1)
RELEASED_SHAPES = {
    "latents": (512, 4096),
    "cross_attend_blocks.0.norm.weight": (4096,),
    "cross_attend_blocks.0.norm.bias": (4096,),
    "cross_attend_blocks.0.norm_context.weight": (4096,),
    "cross_attend_blocks.0.norm_context.bias": (4096,),
    "cross_attend_blocks.0.fn.to_q.weight": (32768, 4096),
    "cross_attend_blocks.0.fn.to_kv.weight": (65536, 4096),
    "cross_attend_blocks.0.fn.to_out.weight": (4096, 32768),
    "cross_attend_blocks.1.norm.weight": (4096,),
    "cross_attend_blocks.1.norm.bias": (4096,),
    "cross_attend_blocks.1.fn.net.0.weight": (32768, 4096),
    "cross_attend_blocks.1.fn.net.0.bias": (32768,),
    "cross_attend_blocks.1.fn.net.2.weight": (4096, 16384),
    "cross_attend_blocks.1.fn.net.2.bias": (4096,),
}


def test_released_names_and_shapes_on_meta():
    with torch.device("meta"):
        layer = LatentAttentionPooling(LatentAttentionConfig())  # the defaults are the released sizes
    shapes = {k: tuple(v.shape) for k, v in layer.state_dict().items()}
    assert shapes == RELEASED_SHAPES
    total = sum(math.prod(s) for s in shapes.values())
    assert 0.70e9 < total < 0.76e9  # "about 0.74 B parameters in this layer"


def test_ratios_for_another_width():
    config = LatentAttentionConfig.for_hidden_size(576)
    assert (config.num_latents_value, config.num_cross_heads, config.cross_dim_head) == (512, 8, 576)
    assert LatentAttentionConfig.for_hidden_size(576, num_latents_value=64).num_latents_value == 64


def reference_forward(p: dict, hidden: torch.Tensor, pool_mask: torch.Tensor, heads: int) -> torch.Tensor:
    """NV-Embed pooling from the formulas: pre-LN cross-attention to latents, GEGLU FFN, masked mean, L2."""
    d = hidden.shape[-1]

    def ln(x, prefix):
        return F.layer_norm(x, (d,), p[prefix + ".weight"], p[prefix + ".bias"])

    x = ln(hidden, "cross_attend_blocks.0.norm")
    ctx = ln(p["latents"], "cross_attend_blocks.0.norm_context")  # (r, d)
    q = x @ p["cross_attend_blocks.0.fn.to_q.weight"].T  # (B, T, H*dh)
    kv = ctx @ p["cross_attend_blocks.0.fn.to_kv.weight"].T  # (r, 2*H*dh)
    inner = q.shape[-1]
    k, v = kv[:, :inner], kv[:, inner:]
    dh = inner // heads
    outs = []
    for h in range(heads):
        qh, kh, vh = q[..., h * dh : (h + 1) * dh], k[:, h * dh : (h + 1) * dh], v[:, h * dh : (h + 1) * dh]
        weights = torch.softmax(qh @ kh.T / math.sqrt(dh), dim=-1)  # (B, T, r)
        outs.append(weights @ vh)
    attn = torch.cat(outs, dim=-1) @ p["cross_attend_blocks.0.fn.to_out.weight"].T
    hidden = hidden + attn
    y = ln(hidden, "cross_attend_blocks.1.norm")
    y = y @ p["cross_attend_blocks.1.fn.net.0.weight"].T + p["cross_attend_blocks.1.fn.net.0.bias"]
    half = y.shape[-1] // 2
    y = y[..., :half] * F.gelu(y[..., half:])  # value first, gate second
    y = y @ p["cross_attend_blocks.1.fn.net.2.weight"].T + p["cross_attend_blocks.1.fn.net.2.bias"]
    hidden = hidden + y
    m = pool_mask.unsqueeze(-1).float()
    pooled = (hidden * m).sum(1) / m.sum(1)
    return pooled / pooled.norm(dim=-1, keepdim=True)


def test_forward_matches_the_formulas():
    torch.manual_seed(0)
    config = LatentAttentionConfig(num_latents_value=7, num_cross_heads=3, hidden_dim=12, latent_dim=12, cross_dim_head=5)
    layer = LatentAttentionPooling(config)
    with torch.no_grad():  # non-trivial norms so a swapped weight/bias would show
        for name, param in layer.named_parameters():
            if "norm" in name:
                param.copy_(torch.randn_like(param))
    hidden = torch.randn(3, 6, 12)
    pool_mask = torch.tensor([[0, 0, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1], [0, 1, 0, 0, 0, 0]])
    expected = reference_forward(dict(layer.named_parameters()), hidden, pool_mask, heads=3)
    got = layer(hidden, pool_mask)
    assert (got - expected).abs().max() <= 1e-5
    assert torch.allclose(got.norm(dim=-1), torch.ones(3), atol=1e-6)


def test_masked_positions_do_not_reach_the_output():
    """Pooling is position-wise, so hidden states outside the pool mask cannot change the embedding."""
    torch.manual_seed(1)
    layer = LatentAttentionPooling(LatentAttentionConfig(num_latents_value=5, num_cross_heads=2, hidden_dim=8, latent_dim=8, cross_dim_head=4))
    hidden = torch.randn(1, 6, 8)
    mask = torch.tensor([[0, 0, 0, 1, 1, 1]])
    noisy = hidden.clone()
    noisy[:, :3] = torch.randn(1, 3, 8) * 10
    assert torch.allclose(layer(hidden, mask), layer(noisy, mask), atol=1e-6)


def test_unnormalised_output_when_configured():
    layer = LatentAttentionPooling(LatentAttentionConfig(num_latents_value=3, num_cross_heads=1, hidden_dim=4, latent_dim=4, cross_dim_head=4, output_normalize=False))
    out = layer(torch.randn(2, 3, 4) * 50, torch.ones(2, 3, dtype=torch.long))
    assert not torch.allclose(out.norm(dim=-1), torch.ones(2))
