"""Check that the vector file and the database agree, and say what a repair has to do.

The commit protocol (`writer.py`) keeps them in step, so an inconsistency means outside interference: a
vector file deleted or restored from an older backup, a database edited by hand, a disk error. `check`
finds vectors without a chunk row (orphans), chunk rows without a vector (missing), ids stored twice
(duplicates), a damaged FTS table, and files left by an interrupted commit. The facade's `repair` removes
orphans and duplicates, rebuilds the FTS table, and re-embeds missing chunks from their stored text when it
has the model (otherwise it reports them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .store import Store
from .vectors import VectorIndex
from .writer import stray_files


@dataclass
class ConsistencyReport:
    chunks: int
    vectors: int
    orphan_vectors: list[int] = field(default_factory=list)  # FAISS ids with no chunk row
    missing_vectors: list[int] = field(default_factory=list)  # chunk ids with no FAISS vector
    duplicate_vectors: list[int] = field(default_factory=list)  # ids stored more than once
    fts_ok: bool = True
    stray_files: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.orphan_vectors or self.missing_vectors or self.duplicate_vectors) and self.fts_ok

    def describe(self) -> str:
        if self.ok:
            return f"consistent: {self.chunks} chunks, {self.vectors} vectors"
        parts = []
        if self.orphan_vectors:
            parts.append(f"{len(self.orphan_vectors)} vectors without a chunk")
        if self.missing_vectors:
            parts.append(f"{len(self.missing_vectors)} chunks without a vector")
        if self.duplicate_vectors:
            parts.append(f"{len(self.duplicate_vectors)} ids stored twice")
        if not self.fts_ok:
            parts.append("keyword (FTS5) table out of step")
        return f"inconsistent ({self.chunks} chunks, {self.vectors} vectors): " + "; ".join(parts)


def check(directory: Path, store: Store, vectors: VectorIndex, fts: bool = True) -> ConsistencyReport:
    """Compare chunk ids in the database with ids in the vector index."""
    chunk_ids = store.chunk_ids()
    vector_ids = vectors.ids()
    unique, counts = np.unique(vector_ids, return_counts=True)
    rec_file = store.generation()[1]
    return ConsistencyReport(
        chunks=int(len(chunk_ids)),
        vectors=int(len(vector_ids)),
        orphan_vectors=np.setdiff1d(unique, chunk_ids).tolist(),
        missing_vectors=np.setdiff1d(chunk_ids, unique).tolist(),
        duplicate_vectors=unique[counts > 1].tolist(),
        fts_ok=store.fts_ok() if fts else True,
        stray_files=[p.name for p in stray_files(directory, rec_file)],
    )
