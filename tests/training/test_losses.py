"""InfoNCE against hand computation, and the GradCache chunked step against the plain step."""

from __future__ import annotations

import math

import pytest
import torch

from training.batching import BlendedSampler, make_batch
from training.config import ModelConfig
from training.data import Dataset
from training.losses import candidate_mask, distillation_kl, grad_cache_step, info_nce, plain_step
from training.modeling import Precision, add_lora, encoder_fn, trainable_parameters

from .conftest import synthetic

TAU = 0.05


def hand_loss(q, p, candidates_per_query, positive):
    """Mean over queries of -log(exp(s_pos) / sum over the query's candidates of exp(s))."""
    total = 0.0
    for i, candidates in enumerate(candidates_per_query):
        scores = {j: float(q[i] @ p[j]) / TAU for j in candidates}
        denominator = sum(math.exp(s) for s in scores.values())
        total += -math.log(math.exp(scores[positive[i]]) / denominator)
    return total / len(candidates_per_query)


@pytest.fixture
def embeddings():
    torch.manual_seed(0)
    q = torch.nn.functional.normalize(torch.randn(2, 8), dim=-1)
    p = torch.nn.functional.normalize(torch.randn(6, 8), dim=-1)
    return q, p


def call(q, p, in_batch, keys=None, owner=(0, 0, 0, 1, 1, 1)):
    return info_nce(q, p, positive=torch.tensor([0, 3]), owner=torch.tensor(owner), query_ids=torch.tensor([0, 1]),
                    in_batch=torch.tensor(in_batch), temperature=TAU, passage_keys=keys)


def test_without_in_batch_negatives_uses_own_positive_and_negatives_only(embeddings):
    q, p = embeddings
    expected = hand_loss(q, p, [[0, 1, 2], [3, 4, 5]], [0, 3])
    assert call(q, p, [False, False]).item() == pytest.approx(expected, abs=1e-5)


def test_with_in_batch_negatives_uses_every_passage(embeddings):
    q, p = embeddings
    expected = hand_loss(q, p, [range(6), range(6)], [0, 3])
    assert call(q, p, [True, True]).item() == pytest.approx(expected, abs=1e-5)


def test_in_batch_is_decided_per_query(embeddings):
    q, p = embeddings
    expected = hand_loss(q, p, [range(6), [3, 4, 5]], [0, 3])  # query 0 uses in-batch negatives, query 1 not
    assert call(q, p, [True, False]).item() == pytest.approx(expected, abs=1e-5)


def test_duplicate_of_the_positive_is_not_a_negative(embeddings):
    q, p = embeddings
    keys = torch.tensor([10, 11, 12, 13, 10, 15])  # passage 4 has the same text as query 0's positive
    expected = hand_loss(q, p, [[0, 1, 2, 3, 5], range(6)], [0, 3])
    assert call(q, p, [True, True], keys).item() == pytest.approx(expected, abs=1e-5)


def test_padding_rows_are_never_scored(embeddings):
    q, p = embeddings
    expected = hand_loss(q, p, [[0, 1, 3, 4], [0, 1, 3, 4]], [0, 3])
    got = call(q, p, [True, True], owner=(0, 0, -1, 1, 1, -1))
    assert got.item() == pytest.approx(expected, abs=1e-5)


def hand_kl(q, p, tq, tp, candidates_per_query, tau_teacher):
    """Mean over queries of sum_j t_j log(t_j / s_j), both softmaxes over the query's candidates only."""
    total = 0.0
    for i, candidates in enumerate(candidates_per_query):
        s = {j: float(q[i] @ p[j]) / TAU for j in candidates}
        t = {j: float(tq[i] @ tp[j]) / tau_teacher for j in candidates}
        zs, zt = sum(math.exp(v) for v in s.values()), sum(math.exp(v) for v in t.values())
        total += sum(math.exp(t[j]) / zt * (t[j] - math.log(zt) - s[j] + math.log(zs)) for j in candidates)
    return total / len(candidates_per_query)


def _mask(in_batch, owner=(0, 0, 0, 1, 1, 1)):
    return candidate_mask(6, torch.tensor([0, 3]), torch.tensor(owner), torch.tensor([0, 1]), torch.tensor(in_batch))


def test_distillation_matches_hand_computation_over_the_same_candidates(embeddings):
    q, p = embeddings
    torch.manual_seed(1)
    tq = torch.nn.functional.normalize(torch.randn(2, 5), dim=-1)  # the teacher's width may differ
    tp = torch.nn.functional.normalize(torch.randn(6, 5), dim=-1)
    for in_batch, candidates in (([False, False], [[0, 1, 2], [3, 4, 5]]), ([True, False], [range(6), [3, 4, 5]])):
        got = distillation_kl(q, p, tq, tp, _mask(in_batch), TAU, 0.1).item()
        assert got == pytest.approx(hand_kl(q, p, tq, tp, candidates, 0.1), abs=1e-5)
    padded = _mask([True, True], owner=(0, 0, -1, 1, 1, -1))
    got = distillation_kl(q, p, tq, tp, padded, TAU, 0.1).item()
    assert got == pytest.approx(hand_kl(q, p, tq, tp, [[0, 1, 3, 4]] * 2, 0.1), abs=1e-5)


def test_distillation_is_zero_only_when_the_student_scores_like_the_teacher(embeddings):
    q, p = embeddings
    mask = _mask([True, True])
    assert distillation_kl(q, p, q.clone(), p.clone(), mask, TAU, TAU).item() == pytest.approx(0.0, abs=1e-6)
    other = torch.nn.functional.normalize(torch.randn(6, 8), dim=-1)
    student = q.clone().requires_grad_(True)
    loss = distillation_kl(student, p, q, other, mask, TAU, TAU)
    loss.backward()
    assert loss.item() > 1e-3 and student.grad.abs().sum() > 0


def test_candidate_mask_names_own_passages_and_in_batch_ones_per_query(embeddings):
    q, p = embeddings
    mask = _mask([True, False])
    assert mask.tolist() == [[True] * 6, [False, False, False, True, True, True]]


def _batch(model, in_batch_tasks=("retrieval",)):
    data = [Dataset("r", synthetic("retrieval", 16, seed=3)), Dataset("c", synthetic("classification", 16, seed=4))]
    items = BlendedSampler(data, batch_size=6, num_negatives=3, seed=0).next_batch()
    return make_batch(model, items, 0, list(in_batch_tasks), max_length=64)


def _grads(model):
    return {n: p.grad.clone() for n, p in trainable_parameters(model)}


@pytest.mark.parametrize("chunk_size", [1, 4, 7])
def test_chunked_loss_and_gradients_equal_plain(tiny, chunk_size):
    """Tolerance (float32, summation order differs): loss within 1e-5 relative; for every parameter, the largest
    gradient difference within 1e-5 of that parameter's largest gradient (measured: about 1e-6)."""
    add_lora(tiny, ModelConfig(lora_dropout=0.0))
    with torch.no_grad():  # B starts at zero, which would leave lora_A without gradient to compare
        for name, param in trainable_parameters(tiny):
            if "lora_B" in name:
                param.normal_(0, 0.1, generator=torch.Generator().manual_seed(len(name)))
    tiny.train()
    batch = _batch(tiny)
    encode = encoder_fn(tiny, Precision(torch.device("cpu"), torch.float32, None))

    def loss_fn(q, p):
        return info_nce(q, p, batch.positive, batch.owner, batch.query_ids, batch.in_batch, 0.02, batch.passage_keys)

    plain = plain_step(encode, batch.queries, batch.passages, loss_fn)
    expected = _grads(tiny)
    tiny.zero_grad(set_to_none=True)
    chunked = grad_cache_step(encode, batch.queries, batch.passages, loss_fn, chunk_size)
    assert chunked.loss.item() == pytest.approx(plain.loss.item(), rel=1e-5)
    assert chunked.num_tokens == plain.num_tokens
    grads = _grads(tiny)
    assert grads.keys() == expected.keys()
    for name, grad in grads.items():
        scale = expected[name].abs().max().item()
        assert scale > 0, name
        assert (grad - expected[name]).abs().max().item() <= 1e-5 * scale, name


def test_grad_cache_replays_dropout(tiny):
    """With dropout on, the re-embedding pass sees exactly the embeddings of the first pass."""
    add_lora(tiny, ModelConfig(lora_dropout=0.5))
    tiny.train()
    batch = _batch(tiny)
    inner = encoder_fn(tiny, Precision(torch.device("cpu"), torch.float32, None))
    seen = []

    def encode(chunk):
        out = inner(chunk)
        seen.append(out.detach().clone())
        return out

    def loss_fn(q, p):
        return info_nce(q, p, batch.positive, batch.owner, batch.query_ids, batch.in_batch, 0.02)

    grad_cache_step(encode, batch.queries, batch.passages, loss_fn, chunk_size=5)
    half = len(seen) // 2
    for first, second in zip(seen[:half], seen[half:], strict=True):
        torch.testing.assert_close(first, second, rtol=0, atol=0)
