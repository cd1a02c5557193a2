"""The pool mask leaves the instruction prefix out of the mean, exactly as the released code does."""

import torch

from encoder.instructions import query_prefix

QUERIES = ["are judo throws allowed in wrestling?", "how can a radiology technician find work", "zebra"]


def query_start(tokenizer, prefix: str, text: str) -> int:
    """Index of the first token that covers a character of the query (checked with offsets)."""
    enc = tokenizer(prefix + text, return_offsets_mapping=True)
    return next(i for i, (_, end) in enumerate(enc.offset_mapping) if end > len(prefix))


def test_mask_starts_exactly_where_the_query_starts(model):
    for instruction in ("NQ", "Given a claim, retrieve documents that support or refute the claim"):
        prefix = query_prefix(instruction)
        batch = model.tokenize(QUERIES, instruction)
        n = len(model.tokenizer.tokenize(prefix))  # the reference's instruction_lens
        for row, text in enumerate(QUERIES):
            first_pooled = int(batch.pool_mask[row].nonzero()[0])
            assert first_pooled == n == query_start(model.tokenizer, prefix, text)
            assert batch.pool_mask[row].sum() == batch.attention_mask[row].sum() - n
    passages = model.tokenize(QUERIES)
    assert torch.equal(passages.pool_mask, passages.attention_mask)  # passages pool over BOS, text, EOS


def test_changing_the_instruction_changes_the_embedding(model):
    a = model.encode_queries(QUERIES, "NQ")
    b = model.encode_queries(QUERIES, "Given a claim, retrieve documents that support or refute the claim")
    assert abs(a - b).max() > 1e-4  # the instruction still acts through attention


def test_changing_the_pooled_range_changes_the_embedding(model):
    batch = model.tokenize(QUERIES, "NQ")
    with torch.no_grad():
        masked = model(batch.input_ids, batch.attention_mask, batch.pool_mask)
        unmasked = model(batch.input_ids, batch.attention_mask, batch.attention_mask)
    assert (masked - unmasked).abs().max() > 1e-4
    assert torch.allclose(masked, torch.from_numpy(model.encode_queries(QUERIES, "NQ")), atol=1e-5)


def test_instruction_tokens_act_only_through_attention(model):
    """Replacing the prefix's hidden states (after the backbone) leaves the embedding unchanged."""
    batch = model.tokenize(QUERIES, "NQ")
    start = int(batch.pool_mask[0].nonzero()[0])
    with torch.no_grad():
        hidden = model.embedding_model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state
        noisy = hidden.clone()
        noisy[:, :start] = torch.randn_like(noisy[:, :start]) * 5
        a = model.latent_attention_model(hidden, batch.pool_mask)
        b = model.latent_attention_model(noisy, batch.pool_mask)
    assert torch.allclose(a, b, atol=1e-6)


def test_mask_can_be_switched_off_by_config(llama):
    llama.config.is_mask_instruction = False
    batch = llama.tokenize(QUERIES, "NQ")
    assert torch.equal(batch.pool_mask, batch.attention_mask)
