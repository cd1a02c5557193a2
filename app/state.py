"""Resources shared by every session and kept across reruns (`st.cache_resource`): the model, the index
opened for reading, and the manager of background writes.

- The model is loaded once per (source, device).
- The reader `Index` is opened once per (directory, model source, device) and shared by all sessions; it
  never takes the writer lock and reloads the vectors by itself when a writer commits, so searches keep
  working during an ingest.
- Writes (ingest, re-ingest, delete) go through one `JobManager` per index directory, which opens a
  separate writer `Index` for each job (see `jobs.py`), so a long ingest never blocks the reader.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

import streamlit as st

import index
from index.cli import stored_model_source
from index.encoders import load_encoder as load_index_encoder
from index.errors import IndexStoreError

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


@st.cache_resource(show_spinner=False)
def load_encoder(source: str, device: str | None) -> tuple[Any, str]:
    """(encoder, source string to record in the index) for a model name, path or test stand-in."""
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


@st.cache_resource(show_spinner=False)
def open_reader(directory: str, source: str, device: str | None) -> Any:
    """The index opened with the model, for searching and listing; created if it does not exist yet."""
    LOADS[f"index:{directory}:{source}"] += 1
    encoder, recorded = load_encoder(source, device)
    return index.open(directory, encoder, model_source=recorded)


@st.cache_resource(show_spinner=False)
def job_manager(directory: str) -> JobManager:
    """The one writer queue of an index directory, shared by all sessions of this server."""
    return JobManager(Path(directory))
