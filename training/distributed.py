"""Data parallelism across processes (`torchrun`): setup, gathering embeddings with gradients, gradient sync.

Each rank embeds its share of the global batch. For the loss, every rank needs all passages of the global
batch (in-batch negatives come from every rank), so `gather_with_grad` concatenates them from all ranks
and, in the backward pass, sums the gradients that every rank's loss sends to each passage and returns to
each rank the part for its own passages. With the per-rank losses averaged, the resulting update equals
the update of one process on the combined batch (tested with two gloo processes).

Gradients are then averaged as DDP does, by `all_reduce_gradients` (one coalesced all-reduce per step):
the GradCache step runs several backward passes per optimizer step, which the DDP wrapper would try to
synchronise each time, and only the LoRA and latent-layer parameters need syncing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

BUCKET_ELEMENTS = 64 * 1024 * 1024  # 256 MB of float32 per all-reduce


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_from_env(device_type: str) -> DistInfo:
    """Join the process group that `torchrun` describes in the environment (no-op for one process)."""
    if dist.is_available() and dist.is_initialized():  # already set up by the caller (tests, notebooks)
        return current()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, timeout=timedelta(minutes=30))
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def current() -> DistInfo:
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    return DistInfo()


def barrier() -> None:
    if current().enabled:
        dist.barrier()


def broadcast_object(value: Any, src: int = 0) -> Any:
    """The value of rank `src` on every rank."""
    if not current().enabled:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=src)
    return box[0]


class _GatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tensor: torch.Tensor, sizes: list[int], rank: int) -> torch.Tensor:
        ctx.sizes, ctx.rank = sizes, rank
        longest = max(sizes)
        padded = tensor.new_zeros((longest, *tensor.shape[1:]))
        padded[: tensor.shape[0]] = tensor
        parts = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(parts, padded.contiguous())
        return torch.cat([part[:size] for part, size in zip(parts, sizes, strict=True)])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)  # every rank's loss contributes to every passage
        start = sum(ctx.sizes[: ctx.rank])
        return grad[start : start + ctx.sizes[ctx.rank]], None, None


def _sizes(n: int, device: torch.device) -> list[int]:
    local = torch.tensor([n], device=device)
    parts = [torch.zeros_like(local) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, local)
    return [int(p.item()) for p in parts]


def gather_with_grad(tensor: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Concatenate `tensor` (first dimensions may differ) from all ranks, differentiably.

    Returns the gathered tensor and the offset of this rank's rows in it.
    """
    info = current()
    if not info.enabled:
        return tensor, 0
    sizes = _sizes(tensor.shape[0], tensor.device)
    return _GatherWithGrad.apply(tensor, sizes, info.rank), sum(sizes[: info.rank])


def gather(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate a tensor without gradients (ids, masks) from all ranks."""
    if not current().enabled:
        return tensor
    with torch.no_grad():
        return _GatherWithGrad.apply(tensor, _sizes(tensor.shape[0], tensor.device), current().rank)


def all_reduce_gradients(parameters: list[torch.nn.Parameter]) -> None:
    """Average the gradients of `parameters` over ranks (a parameter without gradient counts as zero)."""
    info = current()
    if not info.enabled:
        return
    grads = []
    for param in parameters:
        if param.grad is None:
            param.grad = torch.zeros_like(param)
        grads.append(param.grad)
    buckets: list[list[torch.Tensor]] = []
    open_buckets: dict[torch.dtype, list[torch.Tensor]] = {}
    for grad in grads:  # buckets of at most BUCKET_ELEMENTS, one dtype each (bounded extra memory)
        bucket = open_buckets.setdefault(grad.dtype, [])
        if bucket and sum(g.numel() for g in bucket) + grad.numel() > BUCKET_ELEMENTS:
            buckets.append(bucket)
            bucket = open_buckets[grad.dtype] = []
        bucket.append(grad)
    buckets += [b for b in open_buckets.values() if b]
    for group in buckets:
        flat = torch._utils._flatten_dense_tensors(group)
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat /= info.world_size
        for grad, synced in zip(group, torch._utils._unflatten_dense_tensors(flat, group), strict=True):
            grad.copy_(synced)


def broadcast_parameters(parameters: list[torch.nn.Parameter], src: int = 0) -> None:
    """Make every rank start from rank `src`'s trainable weights, as DDP does at construction."""
    if not current().enabled:
        return
    with torch.no_grad():
        for param in parameters:
            dist.broadcast(param.data, src=src)


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
