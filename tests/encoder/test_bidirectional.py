"""The backbone must see the whole sequence (no causal mask) and ignore padding, for every supported
architecture and attention implementation."""

import pytest
import torch
from transformers import AutoConfig, AutoModel

from encoder.bidirectional import check_supported, make_bidirectional
from encoder.testing import tiny_backbone

CASES = [(arch, attn) for arch in ("llama", "mistral", "qwen2") for attn in ("eager", "sdpa")]


def hidden(backbone, ids, mask=None):
    mask = torch.ones_like(ids) if mask is None else mask
    with torch.no_grad():
        return backbone(input_ids=ids, attention_mask=mask).last_hidden_state


@pytest.mark.parametrize("arch,attn", CASES)
def test_last_token_changes_first_state(arch, attn):
    backbone, _ = tiny_backbone(arch, attn_implementation=attn)
    make_bidirectional(backbone)
    ids = torch.randint(3, 500, (1, 12), generator=torch.Generator().manual_seed(1))
    changed = ids.clone()
    changed[0, -1] = (ids[0, -1] + 7) % 500 + 3
    assert (hidden(backbone, ids)[0, 0] - hidden(backbone, changed)[0, 0]).abs().max() > 1e-4


@pytest.mark.parametrize("arch,attn", CASES)
def test_causal_backbone_would_fail_the_same_check(arch, attn):
    """Guards the test above: a stock (causal) decoder keeps the first state unchanged."""
    backbone, _ = tiny_backbone(arch, attn_implementation=attn)
    ids = torch.randint(3, 500, (1, 12), generator=torch.Generator().manual_seed(1))
    changed = ids.clone()
    changed[0, -1] = (ids[0, -1] + 7) % 500 + 3
    assert torch.allclose(hidden(backbone, ids)[0, 0], hidden(backbone, changed)[0, 0], atol=1e-6)


@pytest.mark.parametrize("arch,attn", CASES)
def test_padding_with_random_tokens_changes_nothing(arch, attn):
    backbone, _ = tiny_backbone(arch, attn_implementation=attn)
    make_bidirectional(backbone)
    gen = torch.Generator().manual_seed(2)
    ids = torch.randint(3, 500, (1, 9), generator=gen)
    padded = torch.cat([ids, torch.randint(3, 500, (1, 6), generator=gen)], dim=1)
    mask = torch.cat([torch.ones(1, 9, dtype=torch.long), torch.zeros(1, 6, dtype=torch.long)], dim=1)
    alone = hidden(backbone, ids)
    in_padding = hidden(backbone, padded, mask)[:, :9]
    assert (alone - in_padding).abs().max() <= 1e-5


@pytest.mark.parametrize("arch", ["llama", "mistral", "qwen2"])
def test_eager_and_sdpa_agree(arch):
    eager, _ = tiny_backbone(arch, attn_implementation="eager")
    sdpa, _ = tiny_backbone(arch, attn_implementation="sdpa")
    make_bidirectional(eager)
    make_bidirectional(sdpa)
    gen = torch.Generator().manual_seed(3)
    ids = torch.randint(3, 500, (2, 10), generator=gen)
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    assert (hidden(eager, ids, mask)[0] - hidden(sdpa, ids, mask)[0]).abs().max() <= 1e-5
    assert (hidden(eager, ids, mask)[1, :6] - hidden(sdpa, ids, mask)[1, :6]).abs().max() <= 1e-5


def test_mistral_sliding_window_is_removed():
    backbone, _ = tiny_backbone("mistral", sliding_window=4)
    make_bidirectional(backbone)
    assert backbone.config.sliding_window is None
    ids = torch.randint(3, 500, (1, 12), generator=torch.Generator().manual_seed(4))
    changed = ids.clone()
    changed[0, -1] = (ids[0, -1] + 7) % 500 + 3  # 11 positions away: outside a window of 4
    assert (hidden(backbone, ids)[0, 0] - hidden(backbone, changed)[0, 0]).abs().max() > 1e-4


def test_make_bidirectional_is_idempotent():
    backbone, _ = tiny_backbone("llama")
    make_bidirectional(backbone)
    ids = torch.randint(3, 500, (1, 8), generator=torch.Generator().manual_seed(5))
    first = hidden(backbone, ids)
    make_bidirectional(backbone)
    assert torch.equal(first, hidden(backbone, ids))


def test_unsupported_architecture_is_refused():
    config = AutoConfig.for_model("gpt2", n_layer=1, n_embd=16, n_head=2, vocab_size=50)
    with pytest.raises(ValueError, match="'gpt2' is not supported"):
        make_bidirectional(AutoModel.from_config(config))
    with pytest.raises(ValueError, match="bidir_falcon"):
        check_supported({"model_type": "bidir_falcon"})
    assert check_supported({"model_type": "bidir_mistral"}) == "mistral"
