"""The encoding API: shapes, order, batch invariance, truncation, bad input, OOM back-off."""

import numpy as np
import pytest
import torch

from encoder.instructions import INSTRUCTIONS, get_instruction, query_prefix

SHORT = ["apple", "banana cherry", "the river and the ocean", "zebra", "quantum violet marble"]


def test_shapes_norms_and_dtype(model):
    out = model.encode_passages(SHORT)
    assert out.shape == (5, model.dimension) and out.dtype == np.float32
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    q = model.encode_queries(SHORT, "NQ")
    assert q.shape == out.shape and not np.allclose(q, out)


def test_batch_invariance(model):
    """Alone, among short texts, and beside a much longer text: the same vector."""
    text = "the river and the ocean"
    alone = model.encode_passages([text])[0]
    among_short = model.encode_passages(SHORT, batch_size=5)[2]
    longer = " ".join(["heat transfer boundary layer pressure"] * 60)
    beside_long = model.encode_passages([longer, text, "zebra"], batch_size=3)[1]
    for other in (among_short, beside_long):
        assert np.abs(alone - other).max() <= 1e-5
    for bs in (1, 2, 3, 64):
        assert np.abs(model.encode_queries(SHORT, "NQ", batch_size=bs) - model.encode_queries(SHORT, "NQ", batch_size=5)).max() <= 1e-5


def test_input_order_is_kept_despite_length_sorting(model):
    texts = ["zebra", " ".join(["galaxy lantern"] * 30), "apple banana", "orchestra"]
    together = model.encode_passages(texts, batch_size=2)
    one_by_one = np.stack([model.encode_passages([t])[0] for t in texts])
    assert np.abs(together - one_by_one).max() <= 1e-5


def test_empty_list_and_empty_string(llama):
    assert llama.encode_passages([]).shape == (0, llama.dimension)
    assert llama.encode_queries([], "NQ").shape == (0, llama.dimension)
    out = llama.encode_passages(["", "apple"])
    assert np.isfinite(out).all() and np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert np.isfinite(llama.encode_queries([""], "NQ")).all()


def test_long_text_is_truncated_with_eos_kept(llama):
    long_text = " ".join(["heat transfer boundary layer"] * 200)
    batch = llama.tokenize([long_text], max_length=64)
    assert batch.input_ids.shape == (1, 64)
    assert int(batch.input_ids[0, -1]) == llama.tokenizer.eos_token_id
    # a query whose prefix alone exceeds the limit still pools its EOS
    q = llama.tokenize([long_text], "NQ", max_length=8)
    assert q.pool_mask.sum() >= 1
    # beyond max_length the text no longer matters
    a = llama.encode_passages([long_text], max_length=64)
    b = llama.encode_passages([long_text + " zebra zebra"], max_length=64)
    assert np.abs(a - b).max() <= 1e-6
    assert llama.count_tokens([long_text])[0] > 64


def test_non_string_raises_type_error_naming_the_position(llama):
    with pytest.raises(TypeError, match=r"texts\[2\] is int"):
        llama.encode_passages(["a", "b", 3])
    with pytest.raises(TypeError, match="single string"):
        llama.encode_queries("just one string", "NQ")
    with pytest.raises(TypeError, match=r"texts\[0\] is NoneType"):
        llama.encode_queries([None], "NQ")


def test_out_of_memory_halves_the_batch(llama, monkeypatch):
    calls = []
    forward = type(llama).forward

    def flaky(self, input_ids, attention_mask, pool_mask):
        calls.append(input_ids.shape[0])
        if input_ids.shape[0] > 2:
            raise torch.OutOfMemoryError("simulated")
        return forward(self, input_ids, attention_mask, pool_mask)

    expected = llama.encode_passages(SHORT)
    monkeypatch.setattr(type(llama), "forward", flaky)
    got = llama.encode_passages(SHORT, batch_size=8)
    assert calls[:3] == [5, 4, 2] and max(calls[3:]) <= 2
    assert np.abs(got - expected).max() <= 1e-5


def test_symmetric_passages_take_the_instruction(llama):
    q = llama.encode_queries(SHORT, "STS")
    p = llama.encode_passages(SHORT, instruction="STS")
    assert np.abs(q - p).max() <= 1e-6


def test_instruction_registry():
    assert get_instruction("nq") == INSTRUCTIONS["NQ"] == "Given a question, retrieve passages that answer the question"
    assert get_instruction("Find my keys") == "Find my keys"
    assert query_prefix("SciFact") == "Instruct: Given a scientific claim, retrieve documents that support or refute the claim\nQuery: "
    assert len(INSTRUCTIONS) >= 18


def test_fingerprint_is_stable_and_sensitive(llama):
    first = llama.fingerprint
    assert first == llama.fingerprint and len(first) == 16
    with torch.no_grad():
        llama.latent_attention_model.latents[0, 0] += 1.0
    llama._fingerprint = None
    assert llama.fingerprint != first
