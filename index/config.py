"""Settings of an index as dataclasses, and where an index lives on disk by default.

Chunking and vector settings are stored in the index's own record when it is created; ingest settings
(batching, commit frequency, file limits) only affect one run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .errors import InvalidInputError

#: Environment variable that overrides the default index directory.
INDEX_DIR_ENV = "NVEMBED_INDEX_DIR"
#: Default index directory, relative to the current working directory.
DEFAULT_INDEX_DIR = Path("data") / "index"


def resolve_index_dir(path: str | os.PathLike[str] | None = None) -> Path:
    """The index directory: `path` if given, else `$NVEMBED_INDEX_DIR`, else `./data/index`."""
    if path is not None and str(path) != "":
        return Path(path).expanduser()
    env = os.environ.get(INDEX_DIR_ENV)
    if env:
        return Path(env).expanduser()
    return DEFAULT_INDEX_DIR


@dataclass(frozen=True)
class ChunkingConfig:
    """How documents are cut into passages, counted in the encoder's own tokens."""

    chunk_tokens: int = 256  # target passage size, special tokens included; never above the model's max_length
    overlap_tokens: int = 32  # tokens repeated from the previous passage when a section is cut mid-way
    min_section_tokens: int | None = None  # a heading starts a new passage once this many are gathered (default chunk_tokens // 4)

    def validate(self, max_length: int | None = None) -> None:
        """Raise `InvalidInputError` naming the setting when the values cannot work together."""
        if self.chunk_tokens < 8:
            raise InvalidInputError(f"chunk_tokens must be at least 8, got {self.chunk_tokens}")
        if max_length is not None and self.chunk_tokens > max_length:
            raise InvalidInputError(
                f"chunk_tokens={self.chunk_tokens} exceeds the model's max_length={max_length}; "
                f"use --chunk-tokens {max_length} or less"
            )
        if not 0 <= self.overlap_tokens <= self.chunk_tokens // 2:
            raise InvalidInputError(
                f"overlap_tokens must be between 0 and chunk_tokens/2 ({self.chunk_tokens // 2}), got {self.overlap_tokens}"
            )

    @classmethod
    def default_for(cls, max_length: int) -> ChunkingConfig:
        """The defaults, shrunk to fit a model whose max_length is below them."""
        base = cls()
        if max_length >= base.chunk_tokens:
            return base
        return cls(chunk_tokens=max_length, overlap_tokens=min(base.overlap_tokens, max_length // 8))

    @property
    def section_tokens(self) -> int:
        return self.chunk_tokens // 4 if self.min_section_tokens is None else self.min_section_tokens

    @property
    def signature(self) -> str:
        """Stored on each document: a document chunked under another signature is re-chunked by ingest."""
        return f"{self.chunk_tokens}/{self.overlap_tokens}/{self.section_tokens}"


@dataclass(frozen=True)
class VectorConfig:
    """The FAISS index: exact by default, IVF on request once there are enough vectors to train it."""

    kind: Literal["flat", "ivf"] = "flat"  # flat = IndexIDMap2(IndexFlatIP), exact; ivf = IndexIVFFlat, approximate
    ivf_min_vectors: int = 30_000  # below this an "ivf" index stays exact (k-means needs >= 39 vectors per list)
    nlist: int | None = None  # IVF lists; default 4 * sqrt(N) at training time
    nprobe: int = 32  # IVF lists visited per query
    retrain_growth: float = 4.0  # retrain IVF when the corpus has grown this many times since training
    gpu: Literal["auto", "off", "faiss", "torch"] = "auto"  # search on a GPU copy when one is available
    layout: Literal["segments", "single"] = "segments"  # on disk: segments + deletions (a commit writes what
    # changed, see segments.py) or one FAISS file rewritten per commit (the old layout; both are read)

    def validate(self) -> None:
        if self.kind not in ("flat", "ivf"):
            raise InvalidInputError(f"vector index kind must be 'flat' or 'ivf', got {self.kind!r}")
        if self.gpu not in ("auto", "off", "faiss", "torch"):
            raise InvalidInputError(f"gpu must be auto, off, faiss or torch, got {self.gpu!r}")
        if self.layout not in ("segments", "single"):
            raise InvalidInputError(f"vector layout must be 'segments' or 'single', got {self.layout!r}")
        if self.nprobe < 1 or (self.nlist is not None and self.nlist < 1):
            raise InvalidInputError("nprobe and nlist must be positive")


@dataclass(frozen=True)
class IngestConfig:
    """One ingest run: batching, commit frequency and limits on input files."""

    batch_size: int = 32  # passages per encoder forward pass
    embed_group: int = 64  # passages gathered before calling the encoder (it sorts them by length)
    commit_every_chunks: int = 4096  # new passages between two commits
    commit_every_seconds: float = 60.0  # and at most this long between commits
    max_file_mb: float = 200.0  # larger files are reported and skipped
    prune: bool = True  # remove documents whose files are gone from the ingested folder
    include_hidden: bool = False  # walk into dot-files and dot-directories
    follow_symlinks: bool = True  # follow symbolic links (loops are detected and reported)


@dataclass(frozen=True)
class IndexConfig:
    """Everything `index.open` accepts besides the directory and the encoder."""

    chunking: ChunkingConfig | None = None  # None: the stored settings (or the defaults for a new index)
    vectors: VectorConfig | None = None  # None: the stored settings (or the defaults for a new index)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    lock_timeout: float = 10.0  # seconds to wait for the writer lock before IndexLockedError
    store_uri: str | None = None  # vectors in Milvus (see milvus.py): ./x.db = Milvus Lite, http://host:19530 =
    # a server or cluster; None = FAISS files in the index directory, or $NVEMBED_STORE_URI for a Milvus index
    store_token: str | None = None  # Milvus server credentials ("user:password" or an API key; else $MILVUS_TOKEN)
