"""Shared fixtures: a tiny random base saved once per session, synthetic learnable data, run configs."""

from __future__ import annotations

import copy
import random
import warnings
from pathlib import Path

import pytest
import torch

from encoder.testing import tiny_model
from training.config import RunConfig, StageConfig
from training.data import Example, write_jsonl

warnings.filterwarnings("ignore", category=FutureWarning)
# Tiny models gain nothing from threads, and on a shared 2-core machine OpenMP's spinning threads make each
# small matmul ~40x slower under load: one thread keeps this suite fast.
torch.set_num_threads(1)

TOPICS = ["apple", "banana", "cherry", "river", "mountain", "ocean", "flight", "library", "galaxy", "harbor",
          "violet", "marble", "orchestra", "lantern", "velvet", "zebra"]
FILLER = ["the", "a", "of", "in", "and", "with", "for", "on", "at", "from"]


def synthetic(task: str, n: int, seed: int, negatives: int = 3) -> list[Example]:
    """A learnable task: the positive shares the query's topic word, negatives are about other topics."""
    rng = random.Random(seed)
    symmetric = task != "retrieval"
    instruction = "Given a question, retrieve passages that answer the question" if task == "retrieval" \
        else "Given a online banking query, find the corresponding intents"
    out = []
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        others = rng.sample([t for t in TOPICS if t != topic], negatives)
        def text(word: str) -> str:
            return " ".join([word, *rng.sample(FILLER, 3), word])
        out.append(Example(query=f"what about {topic}", positive=text(topic), negatives=[text(o) for o in others],
                           instruction=instruction, task=task, symmetric=symmetric, id=f"{task}-{i}"))
    return out


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory) -> Path:
    """A tiny random NV-Embed model (llama, hidden 32, 2 layers) in the encoder's checkpoint layout."""
    path = tmp_path_factory.mktemp("tiny-base")
    tiny_model("llama", seed=0).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def other_base(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("other-base")
    tiny_model("llama", seed=1).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def _tiny():
    return tiny_model("llama", seed=0)


@pytest.fixture
def tiny(_tiny):
    return copy.deepcopy(_tiny)


@pytest.fixture(scope="session")
def data_files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("data")
    files = {
        "retrieval": synthetic("retrieval", 64, seed=0),
        "classification": synthetic("classification", 48, seed=1),
        "sts": synthetic("sts", 32, seed=2),
    }
    out = {}
    for name, examples in files.items():
        out[name] = root / f"{name}.jsonl"
        write_jsonl(examples, out[name])
    return out


def make_config(base: Path, data: dict[str, Path], out: Path, steps: tuple[int, int] = (4, 4), **run) -> RunConfig:
    """A small two-stage config on the tiny base (CPU, float32, learning rates for a tiny model)."""
    config = RunConfig(output_dir=str(out), device="cpu", log_every=1000, **run)
    config.model.base = str(base)
    config.stage1 = StageConfig(data=[str(data["retrieval"])], steps=steps[0], batch_size=4, num_negatives=2,
                                learning_rate=2e-3, warmup_steps=1, max_length=64, in_batch_tasks=["retrieval"])
    config.stage2 = StageConfig(data=[str(data["retrieval"]), str(data["classification"]), str(data["sts"])],
                                steps=steps[1], batch_size=4, num_negatives=2, learning_rate=2e-3, warmup_steps=1,
                                max_length=64, in_batch_tasks=[])
    config.eval.at_stage_end = False
    return config
