"""The contrastive loss (InfoNCE) and its GradCache-style chunked computation.

`info_nce` scores every query against a pool of passages (the batch's positives and hard negatives,
gathered from all ranks under data parallelism). Which passages a query may be contrasted with is decided
per query: its own positive and hard negatives always; every other passage of the batch only when that
query uses in-batch negatives (stage 1 retrieval; never for classification/clustering/STS, where another
query's positive may share the class and be a false negative). A passage whose text equals the query's
positive is never used as a negative.

`distillation_kl` is the optional teacher term: the student's score distribution over the same candidates
pulled towards a teacher's (all-MiniLM-L6-v2 for the embedded default), as in the distillation route of
the NV-Embed paper's appendix.

`grad_cache_step` gives the same loss and gradients as embedding the whole batch at once while holding
the activations of only one chunk of texts at a time (Gao et al., "Scaling Deep Contrastive Learning
Batch Size under Memory Limited Setup", 2021): (1) embed every chunk without a graph, (2) compute the loss
on those embeddings as leaf tensors and backpropagate to them, (3) re-embed each chunk with a graph and
backpropagate the cached embedding gradients into the model. The RNG state of each chunk is recorded in
(1) and restored in (3), so dropout draws the same masks in both passes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from encoder.tokenization import EncodedBatch


def candidate_mask(
    num_passages: int,
    positive: torch.Tensor,
    owner: torch.Tensor,
    query_ids: torch.Tensor,
    in_batch: torch.Tensor,
    passage_keys: torch.Tensor | None = None,
) -> torch.Tensor:
    """(B, M) bool: which passages each query is scored against (see `info_nce`)."""
    own = owner.unsqueeze(0) == query_ids.unsqueeze(1)
    allowed = own | (in_batch.unsqueeze(1) & (owner >= 0).unsqueeze(0))
    columns = torch.arange(num_passages, device=owner.device).unsqueeze(0)
    is_positive = columns == positive.unsqueeze(1)
    if passage_keys is not None:
        duplicate = passage_keys.unsqueeze(0) == passage_keys[positive].unsqueeze(1)
        allowed &= ~(duplicate & ~is_positive)
    return allowed | is_positive


def info_nce(
    queries: torch.Tensor,
    passages: torch.Tensor,
    positive: torch.Tensor,
    owner: torch.Tensor,
    query_ids: torch.Tensor,
    in_batch: torch.Tensor,
    temperature: float,
    passage_keys: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean InfoNCE over the queries.

    queries (B, d) and passages (M, d) are L2-normalised; scores are `q·p / temperature` (scale = 1/τ).
    positive (B,): index in `passages` of each query's positive. owner (M,): id of the query that brought
    each passage (-1 for padding, never scored). query_ids (B,): the ids `owner` refers to. in_batch (B,)
    bool: whether a query is also contrasted with the passages of other queries. passage_keys (M,): a
    text hash; passages with the positive's key other than the positive itself are masked out.
    """
    allowed = candidate_mask(passages.shape[0], positive, owner, query_ids, in_batch, passage_keys)
    return masked_info_nce(queries, passages, positive, allowed, temperature)


def masked_info_nce(queries: torch.Tensor, passages: torch.Tensor, positive: torch.Tensor, allowed: torch.Tensor,
                    temperature: float) -> torch.Tensor:
    """InfoNCE over the candidates `allowed` (B, M) marks (`candidate_mask`), for callers that reuse the mask."""
    logits = queries.float() @ passages.float().T / temperature  # (B, M)
    return F.cross_entropy(logits.masked_fill(~allowed, float("-inf")), positive)


def distillation_kl(
    queries: torch.Tensor,
    passages: torch.Tensor,
    teacher_queries: torch.Tensor,
    teacher_passages: torch.Tensor,
    allowed: torch.Tensor,
    temperature: float,
    teacher_temperature: float,
) -> torch.Tensor:
    """Mean over queries of KL(teacher || student) between their score distributions over the candidates.

    Each query's candidates are the columns `allowed` marks (the same pool InfoNCE contrasts). The teacher's
    distribution is a softmax of its cosine scores over those candidates; the student is pulled towards it,
    which also grades the hard negatives (a mined negative the teacher scores near the positive is a likely
    false negative, and one-hot InfoNCE would push it away). Teacher embeddings carry no gradient.
    """
    student = (queries.float() @ passages.float().T / temperature).masked_fill(~allowed, float("-inf"))
    with torch.no_grad():
        teacher = teacher_queries.float() @ teacher_passages.float().T / teacher_temperature
        target = torch.softmax(teacher.masked_fill(~allowed, float("-inf")), dim=1)
        log_target = torch.log(target.clamp_min(1e-30))
    log_student = torch.log_softmax(student, dim=1)
    terms = target * (log_target - log_student.masked_fill(~allowed, 0.0))
    return terms.masked_fill(~allowed, 0.0).sum(dim=1).mean()


@dataclass
class StepOutput:
    loss: torch.Tensor  # detached scalar
    num_texts: int
    num_tokens: int


def slice_batch(batch: EncodedBatch, start: int, end: int) -> EncodedBatch:
    """Rows [start, end) with the all-padding columns at the right cut off."""
    mask = batch.attention_mask[start:end]
    width = int(mask.sum(dim=1).max().item()) if mask.numel() else 0
    return EncodedBatch(batch.input_ids[start:end, :width], mask[:, :width], batch.pool_mask[start:end, :width])


def _chunks(batch: EncodedBatch, chunk_size: int) -> list[EncodedBatch]:
    rows = batch.input_ids.shape[0]
    return [slice_batch(batch, i, min(i + chunk_size, rows)) for i in range(0, rows, chunk_size)]


def _tokens(batch: EncodedBatch) -> int:
    return int(batch.attention_mask.sum().item())


def plain_step(
    encode: Callable[[EncodedBatch], torch.Tensor],
    queries: EncodedBatch,
    passages: EncodedBatch,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> StepOutput:
    """Embed the whole batch with a graph, compute the loss and backpropagate (gradients accumulate)."""
    loss = loss_fn(encode(queries), encode(passages))
    loss.backward()
    texts = queries.input_ids.shape[0] + passages.input_ids.shape[0]
    return StepOutput(loss.detach(), texts, _tokens(queries) + _tokens(passages))


class _RngState:
    """The CPU and current-CUDA-device generator states, to replay dropout exactly."""

    def __init__(self, device: torch.device):
        self.device = device
        self.cpu = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None

    def restore(self) -> None:
        torch.set_rng_state(self.cpu)
        if self.cuda is not None:
            torch.cuda.set_rng_state(self.cuda, self.device)


def grad_cache_step(
    encode: Callable[[EncodedBatch], torch.Tensor],
    queries: EncodedBatch,
    passages: EncodedBatch,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    chunk_size: int,
    before_last_backward: Callable[[], None] | None = None,
) -> StepOutput:
    """Same loss and gradients as `plain_step`, with activations for at most `chunk_size` texts at a time.

    `before_last_backward` is called before the final chunk's backward (e.g. to let a data-parallel
    wrapper synchronise only once).
    """
    chunks = [("q", c) for c in _chunks(queries, chunk_size)] + [("p", c) for c in _chunks(passages, chunk_size)]
    device = queries.input_ids.device
    states, embeddings = [], {"q": [], "p": []}
    with torch.no_grad():
        for side, chunk in chunks:
            states.append(_RngState(device))
            embeddings[side].append(encode(chunk))
    after_first_pass = _RngState(device)
    q = torch.cat(embeddings["q"]).detach().requires_grad_(True)
    p = torch.cat(embeddings["p"]).detach().requires_grad_(True)
    loss = loss_fn(q, p)
    loss.backward()
    grads = {"q": q.grad.split([e.shape[0] for e in embeddings["q"]]),
             "p": p.grad.split([e.shape[0] for e in embeddings["p"]])}
    position = {"q": 0, "p": 0}
    for i, ((side, chunk), state) in enumerate(zip(chunks, states, strict=True)):
        state.restore()
        emb = encode(chunk)
        if i == len(chunks) - 1 and before_last_backward is not None:
            before_last_backward()
        emb.backward(gradient=grads[side][position[side]].to(emb.dtype))
        position[side] += 1
    after_first_pass.restore()  # leave the RNG where one pass over the batch leaves it
    texts = queries.input_ids.shape[0] + passages.input_ids.shape[0]
    return StepOutput(loss.detach(), texts, _tokens(queries) + _tokens(passages))
