"""The dynamic batcher: concurrent requests merge into one model call, results match one-at-a-time, errors
reach the caller and the worker survives."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from app.batching import BatchConfig, BatchedEncoder, Batcher
from index.testing import HashEncoder


class Recording(HashEncoder):
    def __init__(self) -> None:
        super().__init__(16)
        self.batches: list[int] = []
        self.gate = threading.Event()
        self.started = threading.Event()

    def encode_passages(self, texts, **kw):
        self.started.set()
        self.gate.wait(10)
        self.batches.append(len(texts))
        if "boom" in texts:
            raise ValueError("boom is not a text")
        return super().encode_passages(texts)


def run(batcher: Batcher, enc: Recording, n: int) -> list[np.ndarray]:
    """Hold the worker in a first call, queue `n` requests of two texts, release; the first call is dropped
    from `enc.batches`."""
    blocker = batcher.submit(["blocker"])
    assert enc.started.wait(10)
    futures = [batcher.submit([f"text {i}", f"more {i}"]) for i in range(n)]
    enc.gate.set()
    blocker.result(timeout=10)
    out = [f.result(timeout=10) for f in futures]
    enc.batches.pop(0)
    return out


def test_concurrent_requests_merge_and_match():
    enc = Recording()
    batcher = Batcher(enc, BatchConfig(max_wait_ms=50, max_batch=64))
    out = run(batcher, enc, 8)
    for i, got in enumerate(out):
        np.testing.assert_allclose(got, HashEncoder(16).encode_passages([f"text {i}", f"more {i}"]))
    assert sum(enc.batches) == 16 and len(enc.batches) < 8  # the waiting requests went in together
    batcher.close()


def test_batching_off_runs_one_request_per_call():
    enc = Recording()
    batcher = Batcher(enc, BatchConfig(enabled=False))
    run(batcher, enc, 6)
    assert enc.batches == [2] * 6
    batcher.close()


def test_max_batch_bounds_a_merged_call():
    enc = Recording()
    batcher = Batcher(enc, BatchConfig(max_wait_ms=50, max_batch=4))
    run(batcher, enc, 6)
    assert max(enc.batches) <= 4 and sum(enc.batches) == 12
    batcher.close()


def test_an_error_reaches_its_callers_and_the_worker_survives():
    enc = Recording()
    enc.gate.set()
    batcher = Batcher(enc)
    with pytest.raises(ValueError, match="boom"):
        batcher.embed(["boom"])
    assert batcher.embed(["fine"]).shape == (1, 16)
    wrapped = BatchedEncoder(enc, batcher)
    assert wrapped.dimension == 16 and wrapped.fingerprint == enc.fingerprint
    assert wrapped.encode_passages(["a b"]).shape == (1, 16) and wrapped.encode_queries(["a"]).shape == (1, 16)
    batcher.close()
