"""The `Index` facade: open, ingest, upsert, delete, search, context, documents, check/repair, close.

The app, the tests and the CLI all go through this class. It owns an index directory:

    <dir>/meta.sqlite3            documents, chunks, FTS5 table, the index record (WAL mode)
    <dir>/vectors-<gen>.faiss     the FAISS index matching the committed rows (see writer.py)
    <dir>/write.lock              the writer lock (flock; released by the OS if the process dies)
    <dir>/writer.json             who holds / last held it, for error messages

Readers never take the lock: each search first compares the committed generation with the one it has
loaded and reloads the vector file when another process committed. Writers (ingest, upsert, delete,
repair, reindex) take the lock for the whole operation, so one writer runs at a time and readers carry on.
An `Index` is safe to share between threads (a re-entrant mutex serialises calls), e.g. in Streamlit's
`st.cache_resource`.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock, Timeout
from sqlalchemy import select
from sqlalchemy import text as sql_text

from . import consistency, milvus, segments
from .chunking import chunk_document
from .config import ChunkingConfig, IndexConfig, VectorConfig, resolve_index_dir
from .encoders import Encoder, TokenCounter, embed_passages
from .errors import (
    InconsistentIndexError,
    IndexLockedError,
    IndexNotFoundError,
    IndexStoreError,
    InvalidInputError,
    LoadError,
    ModelMismatchError,
    SettingsMismatchError,
)
from .filters import Filters, normalise_path
from .loaders import Block, detect_kind
from .pipeline import IngestProgress, IngestReport, IngestRun, IngestTarget, read_file
from .rag import RagContext, build_context
from .retrieval import SearchConfig, SearchResult, run_search
from .store import DB_NAME, SCHEMA_VERSION, Chunk, Document, IndexRecord, Store
from .vectors import VectorIndex
from .writer import Changes, CommitResult, commit, stray_files

log = logging.getLogger(__name__)


class _StaleSnapshot(Exception):
    """The vector file of the snapshot being read was replaced meanwhile: read a newer snapshot."""


@dataclass
class DocumentInfo:
    path: str
    kind: str
    title: str | None
    size: int
    mtime: float
    pages: int | None
    chunks: int
    encoding: str | None
    content_hash: str
    ingested_at: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Neighbours:
    """The passages just before and after one passage of a document (for showing context around a hit)."""

    previous: str | None
    next: str | None
    total: int  # passages in the document


@dataclass
class DeleteReport:
    deleted: list[str] = field(default_factory=list)
    not_found: list[str] = field(default_factory=list)
    chunks_removed: int = 0


@dataclass
class IndexStats:
    directory: str
    documents: int
    chunks: int
    vectors: int
    model_name: str
    model_fingerprint: str
    model_source: str | None
    dimension: int
    chunking: dict[str, int]
    vector_kind: str
    search_device: str
    generation: int
    disk_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Index:
    """An index directory opened for searching and (with an encoder) writing. Use `Index.open`."""

    def __init__(self, directory: Path, store: Store, encoder: Any, config: IndexConfig):
        self.directory = directory
        self.store = store
        self.encoder = encoder
        self.config = config
        self._mutex = threading.RLock()
        self._lock = FileLock(str(directory / "write.lock"), thread_local=False)
        self._lock_depth = 0
        self._generation = -1
        self._counter: TokenCounter | None = TokenCounter(encoder) if encoder is not None else None
        self._record_updates: dict[str, Any] = {}
        self.record: IndexRecord = store.record()
        self.chunking = self._stored_chunking()
        self.vector_config = self._stored_vector_config()
        self.vectors: VectorIndex | milvus.MilvusVectors = VectorIndex(self.record.dimension, self.vector_config)
        if self.record.vector_kind == milvus.KIND:
            self.vectors = self._open_milvus(create=False)
        self.consistency: consistency.ConsistencyReport | None = None
        self.reindexed_model = False
        self.closed = False

    # ------------------------------------------------------------------------------------- open ----
    @classmethod
    def open(cls, directory: str | os.PathLike[str] | None = None, encoder: Encoder | None = None, *,
             config: IndexConfig | None = None, reindex: bool = False, model_source: str | None = None,
             create: bool = True, repair: bool = True) -> Index:
        """Open (or, with an encoder, create) the index in `directory` (default: see `resolve_index_dir`).

        - `encoder`: needed to create, ingest and run dense search; its fingerprint must match the one the
          index was built with, unless `reindex` (then every stored passage is re-embedded with it).
        - `config.chunking` differing from the stored settings is an error unless `reindex` (then changed
          documents are re-chunked on the next ingest).
        - On open, when no other writer is active, leftovers of an interrupted commit are deleted and the
          vectors are checked against the database; a problem is repaired when possible and reported in
          `index.consistency` otherwise.
        """
        config = config or IndexConfig()
        directory = resolve_index_dir(directory)
        if directory.exists() and not directory.is_dir():
            raise InvalidInputError(f"index path {directory} exists and is not a directory")
        has_db = (directory / DB_NAME).exists()
        if not has_db and (encoder is None or not create):
            raise IndexNotFoundError(
                f"no index at {directory}: build one with `python -m index.ingest DOCS_DIR --index {directory}`"
            )
        if encoder is not None:
            _validate_encoder(encoder)
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InvalidInputError(f"cannot create index directory {directory}: {exc.strerror}") from None
        store = Store(directory)
        if not has_db or store.record() is None:
            if encoder is None:
                raise IndexNotFoundError(f"index at {directory} was never completed; ingest into it with a model")
            cls._create(directory, store, encoder, config, model_source)
        ix = cls(directory, store, encoder, config)
        try:
            ix._configure(config, reindex, model_source)
            ix._load_vectors()
            if encoder is not None:
                ix._check_model(reindex)
            if repair:
                ix._maintain()
        except BaseException:
            ix.close()
            raise
        return ix

    @staticmethod
    def _create(directory: Path, store: Store, encoder: Any, config: IndexConfig, model_source: str | None) -> None:
        chunking = config.chunking or ChunkingConfig.default_for(int(encoder.max_length))
        chunking.validate(int(encoder.max_length))
        vcfg = config.vectors or VectorConfig()
        vcfg.validate()
        kind, vector_file = vcfg.kind, None
        uri = config.store_uri or os.environ.get(milvus.STORE_URI_ENV)
        if uri:
            kind, vector_file = milvus.KIND, milvus.FILE_PREFIX + milvus.new_collection_name()
            milvus.MilvusVectors(uri, milvus.collection_of(vector_file), int(encoder.dimension),
                                 token=config.store_token, create=True).close()
        lock = FileLock(str(directory / "write.lock"), thread_local=False)
        with _acquire(lock, directory, config.lock_timeout):
            store.create_schema()
            with store.session() as s:
                if s.get(IndexRecord, 1) is None:
                    now = time.time()
                    s.add(IndexRecord(
                        id=1, schema_version=SCHEMA_VERSION, model_name=str(encoder.name),
                        model_fingerprint=str(encoder.fingerprint), model_source=model_source,
                        dimension=int(encoder.dimension), max_length=int(encoder.max_length),
                        chunk_tokens=chunking.chunk_tokens, overlap_tokens=chunking.overlap_tokens,
                        section_tokens=chunking.section_tokens, vector_kind=kind, nlist=vcfg.nlist,
                        nprobe=vcfg.nprobe, ivf_min_vectors=vcfg.ivf_min_vectors, generation=0,
                        vector_file=vector_file, created_at=now, updated_at=now,
                    ))
                    s.commit()

    def _stored_chunking(self) -> ChunkingConfig:
        r = self.record
        return ChunkingConfig(r.chunk_tokens, r.overlap_tokens, r.section_tokens)

    def _open_milvus(self, create: bool) -> milvus.MilvusVectors:
        uri = self.config.store_uri or os.environ.get(milvus.STORE_URI_ENV)
        name = milvus.collection_of(self.record.vector_file)
        if not uri:
            raise SettingsMismatchError(
                f"index at {self.directory} keeps its vectors in the Milvus collection {name!r}: open it with "
                f"store_uri (CLI: --store URI, or ${milvus.STORE_URI_ENV}) pointing at that Milvus"
            )
        return milvus.MilvusVectors(uri, name, self.record.dimension, token=self.config.store_token, create=create)

    @property
    def on_milvus(self) -> bool:
        return isinstance(self.vectors, milvus.MilvusVectors)

    def _stored_vector_config(self) -> VectorConfig:
        r = self.record
        if r.vector_kind == milvus.KIND:
            return VectorConfig(gpu="off")
        gpu = self.config.vectors.gpu if self.config.vectors else "auto"
        layout = self.config.vectors.layout if self.config.vectors else "segments"
        return VectorConfig(kind=r.vector_kind, ivf_min_vectors=r.ivf_min_vectors, nlist=r.nlist, nprobe=r.nprobe,
                            gpu=gpu, layout=layout)

    def _configure(self, config: IndexConfig, reindex: bool, model_source: str | None) -> None:
        if config.store_uri and not self.on_milvus:
            raise SettingsMismatchError(
                f"index at {self.directory} keeps its vectors in FAISS files; store_uri={config.store_uri!r} "
                "applies to new indexes only: ingest into a new index directory to use Milvus"
            )
        requested = config.chunking
        if requested is not None and requested.signature != self.chunking.signature:
            docs, _ = self.store.count()
            if docs and not reindex:
                c = self.chunking
                raise SettingsMismatchError(
                    f"index at {self.directory} was built with chunk_tokens={c.chunk_tokens}, "
                    f"overlap={c.overlap_tokens}; you asked for chunk_tokens={requested.chunk_tokens}, "
                    f"overlap={requested.overlap_tokens}. Leave the options out to keep the stored ones, or "
                    "pass reindex=True (CLI: --reindex) to re-chunk the documents with the new settings"
                )
            self.chunking = requested
            self._record_updates.update(chunk_tokens=requested.chunk_tokens, overlap_tokens=requested.overlap_tokens,
                                        section_tokens=requested.section_tokens)
        if self.encoder is not None and self.record.model_fingerprint == self.encoder.fingerprint:
            self.chunking.validate(int(self.encoder.max_length))
        if config.vectors is not None and not self.on_milvus:
            v = config.vectors
            v.validate()
            self.vector_config = v
            self.vectors.config = v
            stored = (self.record.vector_kind, self.record.nlist, self.record.nprobe, self.record.ivf_min_vectors)
            if stored != (v.kind, v.nlist, v.nprobe, v.ivf_min_vectors):
                self._record_updates.update(vector_kind=v.kind, nlist=v.nlist, nprobe=v.nprobe,
                                            ivf_min_vectors=v.ivf_min_vectors)
        if model_source and model_source != self.record.model_source and self.encoder is not None \
                and self.encoder.fingerprint == self.record.model_fingerprint:
            self._record_updates["model_source"] = model_source

    def _check_model(self, reindex: bool) -> None:
        enc, rec = self.encoder, self.record
        if str(enc.fingerprint) == rec.model_fingerprint and int(enc.dimension) == rec.dimension:
            return
        if not reindex:
            raise ModelMismatchError(
                f"index at {self.directory} was built with model {rec.model_name!r} (fingerprint "
                f"{rec.model_fingerprint}, dimension {rec.dimension}), but the model given is {enc.name!r} "
                f"(fingerprint {enc.fingerprint}, dimension {enc.dimension}). Use the same model, or pass "
                "reindex=True (CLI: --reindex) to re-embed every passage with the new model"
            )
        self._reindex_model()

    # ---------------------------------------------------------------------------- disk state ----
    def _load_vectors(self) -> None:
        """Load the committed vector file (retrying if a writer replaces it meanwhile)."""
        if self.on_milvus:  # nothing to load: every search asks the collection
            self._generation = self.store.generation()[0]
            return
        for _attempt in range(5):
            generation, name = self.store.generation()
            if name is None:
                self.vectors = VectorIndex(self.record.dimension, self.vector_config)
                self._generation = generation
                return
            try:
                if segments.is_manifest(name):
                    self.vectors = segments.load(self.directory, name, self.record.dimension, self.vector_config)
                else:
                    self.vectors = VectorIndex.load(self.directory / name, self.record.dimension, self.vector_config)
                self._generation = generation
                return
            except FileNotFoundError:
                if self.store.in_snapshot:
                    raise _StaleSnapshot from None
                time.sleep(0.05)  # a writer just replaced a file: read the new pointer
            except (RuntimeError, ValueError, OSError) as exc:
                if (self.directory / name).exists():
                    raise InconsistentIndexError(f"vector file {self.directory / name} cannot be read: {exc}") from None
                if self.store.in_snapshot:
                    raise _StaleSnapshot from None  # a writer moved on: the caller opens a newer snapshot
                time.sleep(0.05)  # a writer just replaced it: read the new pointer
        log.warning("vector file %s is missing; dense search sees no vectors until the index is repaired", name)
        self.vectors = VectorIndex(self.record.dimension, self.vector_config)
        self._generation = generation

    def refresh(self) -> bool:
        """Reload the vector file and record if another process committed. True when it did."""
        with self._mutex:
            generation, _ = self.store.generation()
            if generation == self._generation:
                return False
            self.record = self.store.record()
            if self.encoder is not None and self.record.model_fingerprint != str(self.encoder.fingerprint):
                raise ModelMismatchError(
                    f"index at {self.directory} was re-embedded by another process with model "
                    f"{self.record.model_name!r} (fingerprint {self.record.model_fingerprint}); this process "
                    f"has {self.encoder.name!r} (fingerprint {self.encoder.fingerprint}): reopen it with that model"
                )
            if not self._record_updates:
                self.chunking = self._stored_chunking()
            self._load_vectors()
            return True

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """Hold the writer lock (re-entrant) and start from the latest committed state."""
        with self._mutex:
            self._ensure_open()
            if self._lock_depth == 0:
                with _acquire(self._lock, self.directory, self.config.lock_timeout, hold=True):
                    self._lock_depth = 1
                    try:
                        self.refresh()
                        yield
                    finally:
                        self._lock_depth = 0
            else:
                self._lock_depth += 1
                try:
                    yield
                finally:
                    self._lock_depth -= 1

    def _commit(self, changes: Changes) -> CommitResult:
        if self._lock_depth == 0:
            raise RuntimeError("commit outside the writer lock")
        if self._record_updates:
            changes.record = {**self._record_updates, **changes.record}
        try:
            result = commit(self.directory, self.store, self.vectors, changes)
        except BaseException:
            self._generation = -1
            self._load_vectors()  # the in-memory index was changed: go back to the committed file
            raise
        if changes.rebuild is not None:
            self.vectors = changes.rebuild
        self._generation = result.generation
        self._record_updates = {}
        self.record = self.store.record()
        return result

    def _maintain(self) -> None:
        """On open, if no writer is active: delete leftovers, check consistency, repair what can be."""
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            return  # another process is writing: its commits are in flight, do not touch anything
        try:
            self._lock_depth = 1
            self.refresh()
            for path in stray_files(self.directory, self.store.generation()[1]):
                path.unlink(missing_ok=True)
            report = consistency.check(self.directory, self.store, self.vectors, fts=False)
            if not report.ok:
                log.warning("index %s: %s; repairing", self.directory, report.describe())
                try:
                    report = self._repair(report)
                except InconsistentIndexError as exc:
                    log.warning("%s", exc)
            self.consistency = report
        finally:
            self._lock_depth = 0
            self._lock.release()

    def attach_encoder(self, encoder: Encoder) -> None:
        """Give an index opened without a model its model: dense and hybrid search work from then on.

        For a reader opened before the model finished loading (the app shows keyword search meanwhile).
        `ModelMismatchError` if the index was built with another model (the index stays without one).
        """
        _validate_encoder(encoder)
        with self._mutex:
            if self.encoder is encoder:
                return
            if self.encoder is not None:
                raise InvalidInputError(f"index at {self.directory} already has a model ({self.encoder.name!r})")
            self.encoder = encoder
            try:
                self._check_model(reindex=False)
            except BaseException:
                self.encoder = None
                raise
            self._counter = TokenCounter(encoder)

    # ------------------------------------------------------------------------------ embedding ----
    def _require_encoder(self, what: str) -> Any:
        if self.encoder is None:
            raise InvalidInputError(f"{what} needs the model: open the index with an encoder")
        return self.encoder

    def _embed_passages(self, texts: list[str], encoder: Any = None) -> np.ndarray:
        encoder = encoder or self._require_encoder("embedding passages")
        return embed_passages(encoder, texts, self.config.ingest.batch_size)

    # ------------------------------------------------------------------------------- writing ----
    def ingest(self, source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], *,
               prune: bool | None = None, force: bool = False, progress: bool = False,
               on_progress: Callable[[IngestProgress], None] | None = None,
               should_stop: Callable[[], bool] | None = None,
               embed: Callable[[list[str]], np.ndarray] | None = None) -> IngestReport:
        """Add new, re-embed changed, skip unchanged files under `source`; prune vanished ones (default on).

        `source` is a folder, a file, or a list of them (each pruned under itself). Work is committed in
        batches (`config.ingest.commit_every_chunks` / `commit_every_seconds`), not per file.
        `progress` draws tqdm bars on stderr; `on_progress` is called with an `IngestProgress` after each file
        and each embedded slice; `should_stop` is polled between them: a stopped run commits what it had
        embedded, prunes nothing and reports `stopped` (run it again to ingest the rest).
        `embed` replaces the encoder call for new passages (texts -> unit vectors of the index's model), e.g.
        `shards.ShardedEmbedder` under torchrun.
        """
        self._require_encoder("ingest")
        prune = self.config.ingest.prune if prune is None else prune
        roots = [source] if isinstance(source, str | os.PathLike) else list(source)
        if not roots:
            raise InvalidInputError("nothing to ingest: no folder or file given")
        label = normalise_path(roots[0]) if len(roots) == 1 else f"{len(roots)} paths"
        with self._writing():
            run = IngestRun(self._ingest_target(embed), IngestReport(root=label), force=force, progress=progress,
                            on_progress=on_progress, should_stop=should_stop)
            report = run.run(roots, prune)
            if self._record_updates:  # new settings with nothing else to commit: record them anyway
                self._commit(Changes())
                report.commits += 1
            return report

    def _ingest_target(self, embed: Callable[[list[str]], np.ndarray] | None = None) -> IngestTarget:
        """The narrow view of this index an ingest run writes through (see `pipeline.IngestTarget`)."""
        assert self._counter is not None
        return IngestTarget(store=self.store, chunking=self.chunking, counter=self._counter,
                            config=self.config.ingest, embed=embed or self._embed_passages, commit=self._commit)

    def upsert(self, path: str | os.PathLike[str], content: bytes | None = None, *, kind: str | None = None,
               mtime: float | None = None) -> IngestReport:
        """Add or replace one document: the file at `path`, or `content` stored under the name `path`.

        Raises `LoadError` (naming the path) when it cannot be read or parsed; stored data is then untouched.
        """
        self._require_encoder("upsert")
        key = normalise_path(path)
        kind = kind or detect_kind(key)
        if kind is None:
            raise InvalidInputError(f"{path}: unsupported document type (supported: txt, md, html, pdf, docx)")
        max_bytes = int(self.config.ingest.max_file_mb * 1e6)
        try:
            if content is None:
                data, st = read_file(key, max_bytes)
                size, file_mtime = st.st_size, st.st_mtime
            else:
                data = bytes(content)
                if len(data) > max_bytes:
                    raise LoadError(f"content too large ({len(data) / 1e6:.1f} MB)")
                size, file_mtime = len(data), time.time() if mtime is None else float(mtime)
            with self._writing():
                return IngestRun(self._ingest_target(), IngestReport(root=key)).one(key, data, size, file_mtime, kind)
        except LoadError as exc:
            raise LoadError(f"{path}: {exc}") from None

    def delete(self, paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> DeleteReport:
        """Remove documents by path; a directory path removes every document under it."""
        if isinstance(paths, str | os.PathLike):
            paths = [paths]
        report = DeleteReport()
        with self._writing():
            targets: list[str] = []
            for raw in paths:
                key = normalise_path(raw)
                exact = self.store.documents_by_path([key])
                under = {p for p in self.store.documents_by_path(prefix=key.rstrip(os.sep) + os.sep)}
                found = sorted(set(exact) | under)
                if found:
                    targets.extend(p for p in found if p not in targets)
                else:
                    report.not_found.append(str(raw))
            if targets:
                result = self._commit(Changes(deletes=targets))
                report.deleted = result.deleted_paths
                report.chunks_removed = len(result.removed_ids)
        return report

    def repair(self) -> consistency.ConsistencyReport:
        """Check the index and fix what it can; raises `InconsistentIndexError` for what needs the model."""
        with self._writing():
            report = consistency.check(self.directory, self.store, self.vectors)
            for path in stray_files(self.directory, self.store.generation()[1]):
                path.unlink(missing_ok=True)
            return self._repair(report) if not report.ok else report

    def _repair(self, report: consistency.ConsistencyReport) -> consistency.ConsistencyReport:
        changes = Changes()
        dups = report.duplicate_vectors
        if dups:
            keep = self.vectors.reconstruct(dups)
            changes.add_vectors.append((np.asarray(dups, dtype=np.int64), keep))
        changes.remove_vector_ids = list(report.orphan_vectors) + list(dups)
        missing = report.missing_vectors
        unresolved = 0
        if missing and self.encoder is not None:
            rows = self.store.chunks_by_id(missing)
            ids = [i for i in missing if i in rows]
            for start in range(0, len(ids), 1024):
                part = ids[start : start + 1024]
                vecs = self._embed_passages([rows[i][0].text for i in part])
                changes.add_vectors.append((np.asarray(part, dtype=np.int64), vecs))
        elif missing:
            unresolved = len(missing)
        if not report.fts_ok:
            self.store.rebuild_fts()
        if changes.remove_vector_ids or changes.add_vectors:
            self._commit(changes)
        after = consistency.check(self.directory, self.store, self.vectors, fts=not report.fts_ok)
        if unresolved:
            raise InconsistentIndexError(
                f"index at {self.directory}: {unresolved} passages have no vector; open it with the model "
                "(e.g. run `python -m index.ingest` on it) to re-embed them from their stored text"
            )
        return after

    def _reindex_model(self) -> None:
        """Re-embed every stored passage with `self.encoder` (re-split those over its max_length)."""
        enc = self.encoder
        if self.on_milvus:
            raise InvalidInputError(
                f"index at {self.directory} is on Milvus: re-embedding with another model is not supported there; "
                "ingest the documents into a new index with the new model"
            )
        counter = TokenCounter(enc)
        chunking = self.chunking
        if chunking.chunk_tokens > counter.max_length:
            chunking = replace(chunking, chunk_tokens=counter.max_length,
                               overlap_tokens=min(chunking.overlap_tokens, counter.max_length // 2))
        with self._writing():
            over_docs: set[int] = set()
            for batch in self.store.iter_chunks():
                counts = counter.count([row[2] for row in batch])
                over_docs.update(row[1] for row, n in zip(batch, counts, strict=True) if n > counter.max_length)
            vcfg = replace(self.vector_config)
            changes = Changes(rebuild=VectorIndex(int(enc.dimension), vcfg), record=dict(
                model_name=str(enc.name), model_fingerprint=str(enc.fingerprint), dimension=int(enc.dimension),
                max_length=int(enc.max_length), chunk_tokens=chunking.chunk_tokens,
                overlap_tokens=chunking.overlap_tokens, section_tokens=chunking.section_tokens,
            ))
            for batch in self.store.iter_chunks():
                keep = [row for row in batch if row[1] not in over_docs]
                if keep:
                    vecs = self._embed_passages([row[2] for row in keep], enc)
                    changes.add_vectors.append((np.asarray([row[0] for row in keep], dtype=np.int64), vecs))
            for doc_id in sorted(over_docs):
                with self.store.session() as s:
                    rows = s.execute(select(Chunk).where(Chunk.document_id == doc_id).order_by(Chunk.ordinal)).scalars().all()
                pieces = []
                for row in rows:
                    local = chunk_document(row.text, [Block(0, len(row.text), row.page)], counter, chunking)
                    pieces.extend(replace(p, start=p.start + row.char_start, end=p.end + row.char_start) for p in local)
                pieces = [replace(p, ordinal=i) for i, p in enumerate(pieces)]
                changes.replace_chunks.append((doc_id, pieces, self._embed_passages([p.text for p in pieces], enc)))
            self._commit(changes)
            self._counter = counter
            self.chunking = chunking
            self.reindexed_model = True
            log.info("re-embedded %d passages with %s", self.vectors.ntotal, enc.name)

    # ------------------------------------------------------------------------------- reading ----
    def search(self, query: str, k: int = 10, *, mode: str | None = None, filters: Filters | None = None,
               instruction: str | None = None, config: SearchConfig | None = None) -> list[SearchResult]:
        """Top-k passages for `query`: mode dense (default), keyword or hybrid (see `retrieval.py`).

        `filters` apply inside the search; `instruction` overrides the encoder's query instruction;
        `config` sets the hybrid weights and RRF constant (`mode`, when given, overrides its mode).
        """
        with self._mutex:
            self._ensure_open()
            self.refresh()
            config = config or SearchConfig()
            if mode is not None:
                config = replace(config, mode=mode)
            for _attempt in range(50):
                try:
                    # one read snapshot: the generation, its vector file, the rows and the FTS table agree
                    with self.store.snapshot():
                        self.refresh()
                        return run_search(self.store, self.vectors, self.encoder, query, k, config, filters,
                                          instruction)
                except _StaleSnapshot:
                    continue
            raise IndexStoreError(f"index at {self.directory} changed too fast to search; try again")

    def context(self, query: str, budget_tokens: int = 2000, k: int = 10, *, mode: str | None = None,
                filters: Filters | None = None, instruction: str | None = None,
                count_tokens: Any = None) -> RagContext:
        """The top passages as a prompt-ready block with numbered citations, within `budget_tokens`."""
        results = self.search(query, k, mode=mode, filters=filters, instruction=instruction)
        if count_tokens is None and self.encoder is not None:
            count_tokens = self.encoder.count_tokens
        return build_context(results, budget_tokens, count_tokens)

    def documents(self, filters: Filters | None = None) -> list[DocumentInfo]:
        """Stored documents (optionally filtered), sorted by path."""
        with self._mutex:
            self._ensure_open()
            where, params = (filters or Filters()).to_sql()
            stmt = select(Document).from_statement(
                sql_text(f"SELECT d.* FROM documents d WHERE 1=1 {where} ORDER BY d.path")
            )
            with self.store.session() as s:
                docs = s.execute(stmt, params).scalars().all()
            return [DocumentInfo(d.path, d.kind, d.title, d.size, d.mtime, d.pages, d.n_chunks, d.encoding,
                                 d.content_hash, d.ingested_at) for d in docs]

    def neighbours(self, document_id: int, ordinal: int) -> Neighbours:
        """The passages around passage `ordinal` of a document (`SearchResult.document_id`/`.ordinal`)."""
        with self._mutex:
            self._ensure_open()
            with self.store.session() as s:
                rows = s.execute(
                    select(Chunk.ordinal, Chunk.text)
                    .where(Chunk.document_id == document_id, Chunk.ordinal.in_([ordinal - 1, ordinal + 1]))
                ).all()
                total = s.execute(select(Document.n_chunks).where(Document.id == document_id)).scalar_one_or_none()
            by_ordinal = {int(o): t for o, t in rows}
            return Neighbours(by_ordinal.get(ordinal - 1), by_ordinal.get(ordinal + 1), int(total or 0))

    def stats(self) -> IndexStats:
        with self._mutex:
            self._ensure_open()
            self.refresh()
            docs, chunks = self.store.count()
            r = self.record
            disk = sum(p.stat().st_size for p in self.directory.iterdir() if p.is_file())
            return IndexStats(str(self.directory), docs, chunks, self.vectors.ntotal, r.model_name, r.model_fingerprint,
                              r.model_source, r.dimension, {"chunk_tokens": r.chunk_tokens,
                                                            "overlap_tokens": r.overlap_tokens},
                              self.vectors.kind, self.vectors.search_device, r.generation, disk)

    def check(self) -> consistency.ConsistencyReport:
        """Compare the vectors with the database (read-only)."""
        with self._mutex:
            self._ensure_open()
            for _attempt in range(50):
                try:
                    with self.store.snapshot():
                        self.refresh()
                        return consistency.check(self.directory, self.store, self.vectors)
                except _StaleSnapshot:
                    continue
            raise IndexStoreError(f"index at {self.directory} changed too fast to check; try again")

    # ------------------------------------------------------------------------------ lifecycle ----
    def _ensure_open(self) -> None:
        if self.closed:
            raise InvalidInputError(f"index at {self.directory} is closed")

    def close(self) -> None:
        with self._mutex:
            if self.closed:
                return
            self.closed = True
            self.store.close()
            self.vectors._gpu = None
            if self.on_milvus:
                self.vectors.close()

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Index({str(self.directory)!r}, model={self.record.model_name!r}, vectors={self.vectors.ntotal})"


def _validate_encoder(encoder: Any) -> None:
    missing = [a for a in ("dimension", "max_length", "name", "fingerprint", "count_tokens", "encode_queries",
                           "encode_passages") if not hasattr(encoder, a)]
    if missing:
        raise InvalidInputError(f"encoder {type(encoder).__name__} lacks {', '.join(missing)} (see index.encoders.Encoder)")


@contextmanager
def _acquire(lock: FileLock, directory: Path, timeout: float, hold: bool = True) -> Iterator[None]:
    """Take the writer lock or raise `IndexLockedError` saying who holds it."""
    try:
        lock.acquire(timeout=timeout)
    except Timeout:
        holder = ""
        try:
            info = json.loads((directory / "writer.json").read_text())
            holder = f" (held by pid {info.get('pid')} on {info.get('host')} since {info.get('since')})"
        except (OSError, ValueError):
            pass
        raise IndexLockedError(
            f"index at {directory} is being written by another process{holder}; waited {timeout:g} s. "
            "Try again when it finishes (searching works meanwhile)"
        ) from None
    try:
        try:
            (directory / "writer.json").write_text(json.dumps({
                "pid": os.getpid(), "host": socket.gethostname(),
                "since": time.strftime("%Y-%m-%d %H:%M:%S"),
            }))
        except OSError:
            pass
        yield
    finally:
        lock.release()


def open_index(directory: str | os.PathLike[str] | None = None, encoder: Encoder | None = None, **kwargs: Any) -> Index:
    """`Index.open` as a function (exported as `index.open`)."""
    return Index.open(directory, encoder, **kwargs)


__all__ = ["DeleteReport", "DocumentInfo", "Index", "IndexStats", "Neighbours", "open_index"]
