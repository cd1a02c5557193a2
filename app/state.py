"""Resources shared by every session and kept across reruns (`st.cache_resource`): the model, the index
opened for reading, and the manager of background writes.

- The model is loaded once per (source, device), on a background thread (`ModelLoader`): importing torch
  and transformers, loading the weights and the first (slow) forward pass take most of the app's start-up,
  and keyword search, the index's figures and the documents list do not need the model.
- The reader `Index` is opened once per (directory, model source, device) and shared by all sessions; it
  never takes the writer lock and reloads the vectors by itself when a writer commits, so searches keep
  working during an ingest. An existing index is opened without waiting for the model, which is attached
  to it when it is ready (`attach_model`); a new index is created with the model, so that waits.
- Writes (ingest, re-ingest, delete) go through one `JobManager` per index directory, which opens a
  separate writer `Index` for each job (see `jobs.py`), so a long ingest never blocks the reader.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import streamlit as st

import index
from index.cli import stored_model_source
from index.encoders import load_encoder as load_index_encoder
from index.errors import IndexNotFoundError, IndexStoreError

from .jobs import JobManager
from .threads import run_query

log = logging.getLogger(__name__)

#: How many times each cached resource was really built in this process (tests check it stays at 1).
LOADS: Counter[str] = Counter()

class ModelLoadError(RuntimeError):
    """The configured model could not be loaded; the message names it and says why."""


def resolve_model_source(model: str | None, index_dir: Path) -> str:
    """The model to load: the configured one, else the one recorded in the index, else the default."""
    if model:
        return model
    try:
        return stored_model_source(index_dir) or "default"
    except Exception:  # an unreadable index: opening it reports the problem properly
        return "default"


class ModelLoader:
    """One model loading on a background thread; `result()` waits for it."""

    def __init__(self, source: str, device: str | None):
        self.source, self.device = source, device
        self._future: Future[tuple[Any, str]] = Future()
        threading.Thread(target=self._run, name=f"model-loader:{source}", daemon=True).start()

    def _run(self) -> None:
        try:
            self._future.set_result(_load(self.source, self.device))
        except BaseException as exc:  # noqa: B036 - handed to whoever waits for the model
            self._future.set_exception(exc)

    def done(self) -> bool:
        return self._future.done()

    def result(self, timeout: float | None = None) -> tuple[Any, str]:
        """(encoder, source string to record in the index); `ModelLoadError` if it could not be loaded."""
        return self._future.result(timeout)


def _load(source: str, device: str | None) -> tuple[Any, str]:
    LOADS[f"model:{source}:{device}"] += 1
    try:
        encoder, recorded = load_index_encoder(source, device)
    except IndexStoreError as exc:
        raise ModelLoadError(str(exc).removeprefix("cannot load model ")) from None
    except Exception as exc:  # a broken checkpoint raises whatever its parser raises
        raise ModelLoadError(f"{source!r}: {type(exc).__name__}: {exc}") from None
    if hasattr(encoder, "parameters"):  # a real model: its first forward pass is slow, do it now
        run_query(encoder.encode_queries, ["warm-up"], show_progress=False)
    return encoder, recorded


_LOADERS: dict[tuple[str, str | None], ModelLoader] = {}
_LOADERS_LOCK = threading.Lock()


def model_loader(source: str, device: str | None, start: bool = True) -> ModelLoader | None:
    """The one loader of (source, device) in this server, started on first call (`start=False`: None if not
    started yet). The first page starts it only after it has rendered: importing torch on a second thread
    holds the interpreter lock for seconds, which would slow that first page down as much."""
    with _LOADERS_LOCK:
        loader = _LOADERS.get((source, device))
        if loader is None and start:
            loader = _LOADERS[(source, device)] = ModelLoader(source, device)
        return loader


def clear_loaders() -> None:
    """Forget every loader (tests; a loaded model stays in memory while something refers to it)."""
    with _LOADERS_LOCK:
        _LOADERS.clear()


def load_encoder(source: str, device: str | None) -> tuple[Any, str]:
    """(encoder, source string to record in the index), waiting for the model if it is still loading."""
    loader = model_loader(source, device)
    assert loader is not None
    return loader.result()


def model_ready(source: str, device: str | None) -> bool:
    """Whether the model of (source, device) is loaded (or failed to load), without starting it."""
    loader = model_loader(source, device, start=False)
    return loader is not None and loader.done()


@st.cache_resource(show_spinner=False)
def open_reader(directory: str, source: str, device: str | None) -> Any:
    """The index opened for searching and listing; created with the model if it does not exist yet.

    An existing index opens at once, without the model while it is still loading (keyword search works);
    `attach_model` gives it the model later.
    """
    LOADS[f"index:{directory}:{source}"] += 1
    if not model_ready(source, device):
        try:
            return index.open(directory, create=False)
        except IndexNotFoundError:
            pass  # a new index is created with the model's identity: wait for it
    encoder, recorded = load_encoder(source, device)
    return index.open(directory, encoder, model_source=recorded)


_ATTACH = threading.Lock()


def attach_model(reader: Any, source: str, device: str | None) -> Any:
    """Wait for the model and give it to `reader` if it has none yet; returns the encoder.

    `ModelLoadError` / `ModelMismatchError` (the index was built with another model) as opening would raise.
    """
    encoder, _recorded = load_encoder(source, device)
    with _ATTACH:
        if reader.encoder is None:
            reader.attach_encoder(encoder)
    return encoder


@st.cache_resource(show_spinner=False)
def job_manager(directory: str) -> JobManager:
    """The one writer queue of an index directory, shared by all sessions of this server."""
    return JobManager(Path(directory))
