"""Blended batches: which examples go into each step, and how they become model inputs.

`BlendedSampler` fills every batch by drawing, for each slot, a data set uniformly at random (NV-Embed
blends tasks inside a batch rather than one task per batch), then that data set's next example in a
per-epoch shuffled order, then `num_negatives` of the example's hard negatives. Its whole state is a few
integers and an RNG state, saved in checkpoints so a resumed run draws exactly the batches it would have.
Every rank draws the same global batch and keeps its own slice.

`make_batch` tokenizes a slice: queries with their own instruction, passages with it only for symmetric
tasks, each row pooled after its instruction prefix (rows of different instructions share one batch).
"""

from __future__ import annotations

import hashlib
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from encoder import NVEmbedModel
from encoder.tokenization import EncodedBatch

from .data import Dataset, Example


@dataclass
class Item:
    example: Example
    negatives: list[str]
    dataset: int


class BlendedSampler:
    """Uniform over data sets, without replacement within each data set's epoch, deterministic by seed."""

    def __init__(self, datasets: Sequence[Dataset], batch_size: int, num_negatives: int, seed: int):
        if not datasets or any(not d.examples for d in datasets):
            raise ValueError("every data set needs at least one example")
        self.datasets = list(datasets)
        self.batch_size = batch_size
        self.num_negatives = num_negatives
        self.seed = seed
        self.rng = random.Random(f"sampler-{seed}")
        self.epoch = [0] * len(datasets)
        self.position = [0] * len(datasets)
        self._orders: dict[int, tuple[int, list[int]]] = {}

    def _order(self, d: int) -> list[int]:
        cached = self._orders.get(d)
        if cached is None or cached[0] != self.epoch[d]:
            order = list(range(len(self.datasets[d].examples)))
            random.Random(f"order-{self.seed}-{d}-{self.epoch[d]}").shuffle(order)
            self._orders[d] = (self.epoch[d], order)
        return self._orders[d][1]

    def _next(self, d: int) -> Example:
        if self.position[d] >= len(self.datasets[d].examples):
            self.epoch[d] += 1
            self.position[d] = 0
        example = self.datasets[d].examples[self._order(d)[self.position[d]]]
        self.position[d] += 1
        return example

    def next_batch(self) -> list[Item]:
        items = []
        for _ in range(self.batch_size):
            d = self.rng.randrange(len(self.datasets))
            example = self._next(d)
            k = min(self.num_negatives, len(example.negatives))
            negatives = self.rng.sample(example.negatives, k) if k else []
            items.append(Item(example, negatives, d))
        return items

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.getstate(), "epoch": list(self.epoch), "position": list(self.position),
                "sizes": [len(d.examples) for d in self.datasets]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        sizes = [len(d.examples) for d in self.datasets]
        if state["sizes"] != sizes:
            raise ValueError(f"the checkpoint's data sets have sizes {state['sizes']}, the configured ones {sizes}")
        self.rng.setstate(state["rng"])
        self.epoch, self.position = list(state["epoch"]), list(state["position"])


def text_key(text: str) -> int:
    """A hash of a text that is the same in every process (Python's `hash` is salted per process)."""
    return int.from_bytes(hashlib.blake2b(text.strip().encode("utf-8"), digest_size=8).digest(), "little", signed=True)


@dataclass
class TrainBatch:
    queries: EncodedBatch  # (B, Tq)
    passages: EncodedBatch  # (M, Tp): each query's positive followed by its negatives
    positive: torch.Tensor  # (B,) index of each query's positive in `passages`
    owner: torch.Tensor  # (M,) global id of the query that brought each passage
    query_ids: torch.Tensor  # (B,) global ids of the queries
    in_batch: torch.Tensor  # (B,) bool: contrast with the other queries' passages too
    passage_keys: torch.Tensor  # (M,) text hashes (duplicates of a positive are not negatives)

    def to(self, device: torch.device | str) -> TrainBatch:
        return TrainBatch(self.queries.to(device), self.passages.to(device), self.positive.to(device),
                          self.owner.to(device), self.query_ids.to(device), self.in_batch.to(device),
                          self.passage_keys.to(device))

    @property
    def num_tokens(self) -> int:
        return int(self.queries.attention_mask.sum() + self.passages.attention_mask.sum())


def tokenize_rows(model: NVEmbedModel, texts: Sequence[str], instructions: Sequence[str | None],
                  max_length: int) -> EncodedBatch:
    """Tokenize rows that may each carry a different instruction (None: no prefix), keeping their order."""
    groups: dict[str | None, list[int]] = defaultdict(list)
    for i, instruction in enumerate(instructions):
        groups[instruction].append(i)
    parts = {key: model.tokenize([texts[i] for i in rows], instruction=key, max_length=max_length)
             for key, rows in groups.items()}
    width = max(p.input_ids.shape[1] for p in parts.values())
    n = len(texts)
    pad = model.tokenizer.pad_token_id
    out = EncodedBatch(torch.full((n, width), pad, dtype=torch.long), torch.zeros((n, width), dtype=torch.long),
                       torch.zeros((n, width), dtype=torch.long))
    for key, rows in groups.items():
        part, w = parts[key], parts[key].input_ids.shape[1]
        index = torch.tensor(rows)
        out.input_ids[index, :w] = part.input_ids
        out.attention_mask[index, :w] = part.attention_mask
        out.pool_mask[index, :w] = part.pool_mask
    return out


def batch_texts(items: Sequence[Item]) -> tuple[list[str], list[str]]:
    """The query texts and the passage texts (each query's positive, then its negatives) in batch order."""
    passages = [text for item in items for text in (item.example.positive, *item.negatives)]
    return [item.example.query for item in items], passages


def make_batch(model: NVEmbedModel, items: Sequence[Item], first_id: int, in_batch_tasks: Sequence[str],
               max_length: int) -> TrainBatch:
    """Model inputs for `items`, whose global ids are `first_id, first_id + 1, ...`."""
    query_texts, passages = batch_texts(items)
    passage_instructions: list[str | None] = []
    positive, owner = [], []
    for offset, item in enumerate(items):
        example = item.example
        positive.append(len(passage_instructions))
        count = 1 + len(item.negatives)
        passage_instructions += [example.instruction if example.symmetric else None] * count
        owner += [first_id + offset] * count
    queries = tokenize_rows(model, query_texts, [i.example.instruction for i in items], max_length)
    return TrainBatch(
        queries=queries,
        passages=tokenize_rows(model, passages, passage_instructions, max_length),
        positive=torch.tensor(positive, dtype=torch.long),
        owner=torch.tensor(owner, dtype=torch.long),
        query_ids=torch.arange(first_id, first_id + len(items), dtype=torch.long),
        in_batch=torch.tensor([i.example.task in in_batch_tasks for i in items], dtype=torch.bool),
        passage_keys=torch.tensor([text_key(t) for t in passages], dtype=torch.long),
    )
