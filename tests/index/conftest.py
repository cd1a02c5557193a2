"""Fixtures for the index tests: a stand-in encoder and a fresh index directory per test."""

from __future__ import annotations

from pathlib import Path

import pytest

import index
from index.config import ChunkingConfig, IndexConfig, IngestConfig, VectorConfig
from index.testing import HashEncoder


@pytest.fixture
def encoder() -> HashEncoder:
    return HashEncoder(dimension=64, max_length=128)


@pytest.fixture
def index_dir(tmp_path: Path) -> Path:
    return tmp_path / "ix"


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    d = tmp_path / "docs"
    d.mkdir()
    return d


def small_config(vectors: VectorConfig | None = None, **ingest) -> IndexConfig:
    return IndexConfig(chunking=ChunkingConfig(chunk_tokens=64, overlap_tokens=8), vectors=vectors,
                       ingest=IngestConfig(**ingest), lock_timeout=2.0)


@pytest.fixture
def open_index(index_dir, encoder):
    opened = []

    def _open(enc=None, **kwargs):
        kwargs.setdefault("config", small_config())
        ix = index.open(index_dir, enc or encoder, **kwargs)
        opened.append(ix)
        return ix

    yield _open
    for ix in opened:
        ix.close()


@pytest.fixture(scope="session")
def tiny_model():
    """The encoder package's tiny random NV-Embed model (real tokenizer, real forward pass), built once."""
    testing = pytest.importorskip("encoder.testing", reason="encoder.testing (tiny_model) is not available")
    return testing.tiny_model()
