"""The one way an index changes on disk: an atomic commit of database rows and the vectors that changed.

A commit, under the writer lock:
1. applies the changes to the database inside one transaction (not yet committed), which gives the new
   chunks their ids;
2. applies them to the in-memory FAISS index (remove old ids, add new vectors, train IVF if due);
3. writes the new generation's vector files: in the segment layout (the default, `segments.py`) a segment
   with the added vectors, a deletion file with the removed ids and a manifest `vectors-<gen>.json`, so
   the cost is what changed; in the single-file layout (`VectorConfig.layout="single"`, kept for the
   benchmark and read for old indexes) the whole FAISS index as `vectors-<gen>.faiss`;
4. points `index_record.vector_file` at the new manifest (or file) and commits the transaction;
5. deletes the files the new generation no longer uses.

The database commit is the single switch: a process killed before it leaves the old rows with the old
vector files (plus stray new files, deleted on the next open); killed after it, the new rows with the new
files. So every committed chunk row has exactly its vector and there are no orphans, at every instant.
If anything fails the transaction is rolled back and the caller reloads the committed vectors.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import insert, select

from . import segments
from .chunking import ChunkSpan
from .milvus import MilvusVectors
from .store import Chunk, Document, IndexRecord, Store
from .vectors import VectorIndex

log = logging.getLogger(__name__)

VECTOR_PREFIX = "vectors-"
VECTOR_SUFFIX = ".faiss"


def vector_file_name(generation: int) -> str:
    return f"{VECTOR_PREFIX}{generation:08d}{VECTOR_SUFFIX}"


@dataclass
class DocumentWrite:
    """A document to add or replace, with its passages and their vectors."""

    path: str
    kind: str
    content_hash: str
    size: int
    mtime: float
    chunking: str
    chunks: list[ChunkSpan]
    vectors: np.ndarray  # (len(chunks), d)
    title: str | None = None
    encoding: str | None = None
    pages: int | None = None


@dataclass
class Changes:
    """Everything one commit does. Empty lists change nothing; a new generation is written regardless."""

    writes: list[DocumentWrite] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)  # document paths
    touches: list[tuple[str, int, float]] = field(default_factory=list)  # (path, size, mtime) only
    remove_vector_ids: list[int] = field(default_factory=list)  # repair: orphan vectors
    add_vectors: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)  # repair: (ids, vectors)
    replace_chunks: list[tuple[int, list[ChunkSpan], np.ndarray]] = field(default_factory=list)  # reindex
    record: dict[str, Any] = field(default_factory=dict)  # index_record fields to set
    rebuild: VectorIndex | None = None  # replace the whole vector index (reindex with a new model)

    @property
    def empty(self) -> bool:
        return not (self.writes or self.deletes or self.touches or self.remove_vector_ids or self.add_vectors
                    or self.replace_chunks or self.record or self.rebuild is not None)


@dataclass
class CommitResult:
    generation: int
    added_ids: list[int] = field(default_factory=list)
    removed_ids: list[int] = field(default_factory=list)
    deleted_paths: list[str] = field(default_factory=list)


def _insert_chunks(session: Any, document_id: int, chunks: list[ChunkSpan]) -> list[int]:
    if not chunks:
        return []
    rows = [
        {"document_id": document_id, "ordinal": c.ordinal, "text": c.text, "char_start": c.start,
         "char_end": c.end, "page": c.page, "token_count": c.token_count}
        for c in chunks
    ]
    table = Chunk.__table__
    result = session.execute(insert(table).returning(table.c.id, sort_by_parameter_order=True), rows)
    return [int(r[0]) for r in result]


def commit(directory: Path, store: Store, vectors: VectorIndex, changes: Changes) -> CommitResult:
    """Apply `changes` atomically (see the module docstring). `vectors` is modified in place.

    On an exception nothing is committed, the new vector file is removed, and `vectors` no longer matches
    the disk: the caller must reload it from the committed file.
    """
    session = store.session()
    new_path: Path | None = None
    try:
        rec = session.get(IndexRecord, 1)
        old_file = rec.vector_file
        removed: list[int] = []
        added: list[tuple[list[int], np.ndarray]] = []
        deleted: list[str] = []
        texts: list[list[str]] = []  # the passages of `added`, for a store that indexes text (Milvus)
        paths = [w.path for w in changes.writes] + list(changes.deletes) + [t[0] for t in changes.touches]
        existing: dict[str, Document] = {}
        for i in range(0, len(paths), 500):
            for doc in session.execute(select(Document).where(Document.path.in_(paths[i : i + 500]))).scalars():
                existing[doc.path] = doc
        for path in changes.deletes:
            doc = existing.pop(path, None)
            if doc is not None:
                removed.extend(Store.delete_document(session, doc))
                deleted.append(path)
        for path, size, mtime in changes.touches:
            doc = existing.get(path)
            if doc is not None:
                doc.size, doc.mtime = int(size), float(mtime)
        now = Store.now()
        for w in changes.writes:
            doc = existing.get(w.path)
            if doc is not None:
                old_ids = session.execute(select(Chunk.id).where(Chunk.document_id == doc.id)).scalars().all()
                removed.extend(old_ids)
                session.execute(Chunk.__table__.delete().where(Chunk.document_id == doc.id))
            else:
                doc = Document(path=w.path)
                session.add(doc)
            doc.kind, doc.title, doc.content_hash = w.kind, w.title, w.content_hash
            doc.size, doc.mtime, doc.encoding, doc.pages = int(w.size), float(w.mtime), w.encoding, w.pages
            doc.chunking, doc.n_chunks, doc.ingested_at = w.chunking, len(w.chunks), now
            session.flush()
            added.append((_insert_chunks(session, doc.id, w.chunks), w.vectors))
            texts.append([c.text for c in w.chunks])
        for document_id, chunks, vecs in changes.replace_chunks:
            old_ids = session.execute(select(Chunk.id).where(Chunk.document_id == document_id)).scalars().all()
            removed.extend(old_ids)
            session.execute(Chunk.__table__.delete().where(Chunk.document_id == document_id))
            added.append((_insert_chunks(session, document_id, chunks), vecs))
            texts.append([c.text for c in chunks])
            doc = session.get(Document, document_id)
            doc.n_chunks = len(chunks)
        target = changes.rebuild if changes.rebuild is not None else vectors
        if isinstance(target, MilvusVectors):
            return _commit_milvus(session, store, rec, target, changes, added, texts, removed, deleted, now)
        removed_all = np.asarray(removed + list(changes.remove_vector_ids), dtype=np.int64)
        target.remove(removed_all)
        new_rows = [(np.asarray(ids, dtype=np.int64), vecs) for ids, vecs in added] + list(changes.add_vectors)
        for ids, vecs in new_rows:
            target.add(ids, vecs)
        trained = target.maybe_train()
        generation = rec.generation + 1
        if target.config.layout == "single":
            new_path = directory / vector_file_name(generation)
            target.save(new_path)
        else:
            d = target.dimension
            change = segments.SegmentWrite(
                added_ids=np.concatenate([np.asarray(i, np.int64).reshape(-1) for i, _ in new_rows] or [np.zeros(0, np.int64)]),
                added_vectors=np.concatenate([np.asarray(v, np.float32).reshape(-1, d) for _, v in new_rows]
                                             or [np.zeros((0, d), np.float32)]),
                removed_ids=removed_all, full=trained or changes.rebuild is not None)
            new_path = directory / segments.write_generation(directory, old_file, generation, target, change)
        rec.generation, rec.vector_file, rec.updated_at = generation, new_path.name, now
        for key, value in changes.record.items():
            setattr(rec, key, value)
        session.commit()
    except BaseException:
        session.rollback()
        if new_path is not None and new_path.exists():
            new_path.unlink()
        raise
    finally:
        session.close()
    for path in stray_files(directory, new_path.name):  # the old generation's files, and any merged away
        try:
            os.unlink(path)
        except OSError:
            pass  # removed on the next open
    return CommitResult(generation, [i for ids, _ in added for i in ids], removed, deleted)


def _commit_milvus(session: Any, store: Store, rec: IndexRecord, target: MilvusVectors, changes: Changes,
                   added: list[tuple[list[int], np.ndarray]], texts: list[list[str]], removed: list[int],
                   deleted: list[str], now: float) -> CommitResult:
    """Steps 2-4 for a Milvus collection: upsert the new rows, commit the database, then delete the
    removed ids (see `milvus.py` for why this order is crash safe). The caller rolls back on an exception."""
    new_rows = [(np.asarray(ids, dtype=np.int64), vecs, t) for (ids, vecs), t in zip(added, texts, strict=True)]
    if changes.add_vectors:  # repair: rows that exist in the committed database
        for ids, vecs in changes.add_vectors:
            rows = store.chunks_by_id(ids)
            new_rows.append((np.asarray(ids, dtype=np.int64), vecs, [rows[int(i)][0].text for i in ids]))
    for ids, vecs, t in new_rows:
        target.upsert(ids, vecs, t)
    generation = rec.generation + 1
    rec.generation, rec.updated_at = generation, now
    for key, value in changes.record.items():
        setattr(rec, key, value)
    session.commit()
    kept = {int(i) for ids, _, _ in new_rows for i in ids}
    gone = [int(i) for i in list(removed) + list(changes.remove_vector_ids) if int(i) not in kept]
    try:
        target.remove(np.asarray(gone, dtype=np.int64))
    except Exception as exc:  # committed already: the leftovers are orphans, which the next open removes
        log.warning("could not delete %d vectors from Milvus after the commit (%s); the next open repairs it",
                    len(gone), exc)
    return CommitResult(generation, [i for ids, _ in added for i in ids], removed, deleted)


def stray_files(directory: Path, current: str | None) -> list[Path]:
    """Vector files and temporaries the committed generation does not use: left by an interrupted commit
    or a crash before the cleanup (safe to delete under the writer lock)."""
    keep = segments.referenced_files(directory, current)
    return [p for p in directory.iterdir() if p.name not in keep and segments.is_vector_file(p.name)]
