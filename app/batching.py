"""Dynamic batching: concurrent embedding requests merged into one model call after a few milliseconds' wait.

One worker thread owns the model. Callers (API requests, searches, ingest jobs) put their texts on a queue
and wait on a future. The worker takes the first waiting request, keeps collecting for up to `max_wait_ms`
or until `max_batch` texts are waiting, groups what it has by (query or passage, instruction), runs one
encoder call per group and hands each caller its rows. With batching off it runs one request per model call,
which is what the benchmark compares against (benchmarks/api.py).

`BatchedEncoder` wraps an encoder so that everything the index does with the model (the query vector of a
search, the passages of an ingest) goes through the same queue: one model, one thread, no contention.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

QUERY, PASSAGE = "query", "passage"


@dataclass(frozen=True)
class BatchConfig:
    enabled: bool = True  # merge concurrent requests (off: one request per model call)
    max_wait_ms: float = 5.0  # how long the first request of a batch waits for company
    max_batch: int = 64  # texts per merged model call (a larger single request runs alone)
    model_batch_size: int = 32  # the encoder's own batch size inside one call

    def validate(self) -> None:
        if self.max_wait_ms < 0 or self.max_batch < 1 or self.model_batch_size < 1:
            raise ValueError(f"bad batching settings: {self}")


@dataclass
class _Request:
    texts: list[str]
    kind: str  # QUERY | PASSAGE
    instruction: str | None
    future: Future = field(default_factory=Future)
    queued: float = field(default_factory=time.perf_counter)

    @property
    def key(self) -> tuple[str, str | None]:
        return self.kind, self.instruction


class Batcher:
    """Runs every model call of a server in one worker thread, merging concurrent requests."""

    def __init__(self, encoder: Any, config: BatchConfig | None = None,
                 on_batch: Callable[[int, int, float], None] | None = None):
        self.encoder = encoder
        self.config = config or BatchConfig()
        self.config.validate()
        self.on_batch = on_batch  # (requests merged, texts, seconds in the model) for metrics
        self._queue: queue.Queue[_Request | None] = queue.Queue()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="nvembed-batcher", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------------------ callers ----
    def submit(self, texts: Sequence[str], kind: str = PASSAGE, instruction: str | None = None) -> Future:
        if self._closed:
            raise RuntimeError("the model worker is stopped")
        if kind not in (QUERY, PASSAGE):
            raise ValueError(f"kind must be {QUERY!r} or {PASSAGE!r}, got {kind!r}")
        request = _Request(list(texts), kind, instruction)
        if not request.texts:
            request.future.set_result(np.zeros((0, int(self.encoder.dimension)), dtype=np.float32))
        else:
            self._queue.put(request)
        return request.future

    def embed(self, texts: Sequence[str], kind: str = PASSAGE, instruction: str | None = None) -> np.ndarray:
        """(n, d) float32 vectors; blocks until the worker has run them."""
        return self.submit(texts, kind, instruction).result()

    async def aembed(self, texts: Sequence[str], kind: str = PASSAGE, instruction: str | None = None) -> np.ndarray:
        return await asyncio.wrap_future(self.submit(texts, kind, instruction))

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._thread.join(timeout=30)

    # ------------------------------------------------------------------------------- worker ----
    def _collect(self, first: _Request) -> list[_Request]:
        batch = [first]
        if not self.config.enabled:
            return batch
        size = len(first.texts)
        deadline = time.perf_counter() + self.config.max_wait_ms / 1000
        while size < self.config.max_batch:
            remaining = deadline - time.perf_counter()
            try:
                item = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                self._queue.put(None)  # keep the stop signal for the loop
                break
            if size + len(item.texts) > self.config.max_batch:
                self._queue.put(item)  # next batch (order among waiting requests is not guaranteed)
                break
            batch.append(item)
            size += len(item.texts)
        return batch

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = self._collect(first)
            groups: dict[tuple[str, str | None], list[_Request]] = {}
            for request in batch:
                groups.setdefault(request.key, []).append(request)
            for (kind, instruction), requests in groups.items():
                self._encode(kind, instruction, requests)

    def _encode(self, kind: str, instruction: str | None, requests: list[_Request]) -> None:
        texts = [t for r in requests for t in r.texts]
        kwargs: dict[str, Any] = {"batch_size": self.config.model_batch_size, "show_progress": False}
        if instruction is not None:
            kwargs["instruction"] = instruction
        start = time.perf_counter()
        try:
            fn = self.encoder.encode_queries if kind == QUERY else self.encoder.encode_passages
            vectors = np.asarray(fn(texts, **kwargs), dtype=np.float32)
        except BaseException as exc:  # noqa: BLE001 - handed to every caller, never kills the worker
            for r in requests:
                r.future.set_exception(exc)
            return
        took = time.perf_counter() - start
        if self.on_batch is not None:
            try:
                self.on_batch(len(requests), len(texts), took)
            except Exception:  # metrics must never fail a request
                log.exception("batch metrics callback failed")
        offset = 0
        for r in requests:
            r.future.set_result(vectors[offset : offset + len(r.texts)])
            offset += len(r.texts)


class BatchedEncoder:
    """An encoder whose `encode_queries` / `encode_passages` go through a `Batcher`; all else is the model's."""

    def __init__(self, encoder: Any, batcher: Batcher):
        self._encoder = encoder
        self._batcher = batcher

    def __getattr__(self, name: str) -> Any:
        return getattr(self._encoder, name)

    @property
    def wrapped(self) -> Any:
        return self._encoder

    def encode_queries(self, texts: Sequence[str], instruction: str | None = None, batch_size: int = 32,
                       max_length: int | None = None, show_progress: bool | None = None) -> np.ndarray:
        return self._batcher.embed(texts, QUERY, instruction)

    def encode_passages(self, texts: Sequence[str], batch_size: int = 32, max_length: int | None = None,
                        show_progress: bool | None = None, instruction: str | None = None) -> np.ndarray:
        return self._batcher.embed(texts, PASSAGE, instruction)
