"""Metadata in SQLite through SQLAlchemy 2.x: the index record, documents, chunks and a BM25 table.

Tables:
- `index_record` (one row): schema version, model identity, dimension, chunking and vector settings, and
  the name + generation of the vector file that matches the committed rows (see `writer.py`).
- `documents`: path, content hash, size, modified time, type, title, encoding, pages, chunking signature.
- `chunks`: document, ordinal, text, character offsets, page, token count. Its integer id is the FAISS id;
  AUTOINCREMENT guarantees an id is never reused, so a reader's older vector file can never attach a stale
  vector to a new chunk.
- `chunks_fts`: an FTS5 table over `chunks.text` with external content (so `highlight()`/`snippet()` work),
  kept in step by triggers inside the same transactions.

The database runs in WAL mode: readers see the last commit and never block the single writer.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import (
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    delete,
    event,
    func,
    select,
    text,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

from .errors import SchemaVersionError

SCHEMA_VERSION = 1
DB_NAME = "meta.sqlite3"


class Base(DeclarativeBase):
    pass


class IndexRecord(Base):
    """The index's own record: what built it and which vector file matches the rows."""

    __tablename__ = "index_record"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    schema_version: Mapped[int] = mapped_column(Integer)
    model_name: Mapped[str] = mapped_column(String)
    model_fingerprint: Mapped[str] = mapped_column(String)
    model_source: Mapped[str | None] = mapped_column(String, nullable=True)  # what `--model` loads it again
    dimension: Mapped[int] = mapped_column(Integer)
    max_length: Mapped[int] = mapped_column(Integer)
    chunk_tokens: Mapped[int] = mapped_column(Integer)
    overlap_tokens: Mapped[int] = mapped_column(Integer)
    section_tokens: Mapped[int] = mapped_column(Integer)
    vector_kind: Mapped[str] = mapped_column(String, default="flat")
    nlist: Mapped[int | None] = mapped_column(Integer, nullable=True)
    nprobe: Mapped[int] = mapped_column(Integer, default=32)
    ivf_min_vectors: Mapped[int] = mapped_column(Integer, default=30_000)
    generation: Mapped[int] = mapped_column(Integer, default=0)
    vector_file: Mapped[str | None] = mapped_column(String, nullable=True)
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)


class Document(Base):
    __tablename__ = "documents"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    path: Mapped[str] = mapped_column(String, unique=True, index=True)
    kind: Mapped[str] = mapped_column(String, index=True)
    title: Mapped[str | None] = mapped_column(String, nullable=True)
    content_hash: Mapped[str] = mapped_column(String, index=True)
    size: Mapped[int] = mapped_column(Integer)
    mtime: Mapped[float] = mapped_column(Float, index=True)
    encoding: Mapped[str | None] = mapped_column(String, nullable=True)
    pages: Mapped[int | None] = mapped_column(Integer, nullable=True)
    chunking: Mapped[str] = mapped_column(String)  # ChunkingConfig.signature at the time it was chunked
    n_chunks: Mapped[int] = mapped_column(Integer, default=0)
    ingested_at: Mapped[float] = mapped_column(Float)
    chunks: Mapped[list[Chunk]] = relationship(back_populates="document", cascade="all, delete-orphan",
                                               passive_deletes=True)


class Chunk(Base):
    __tablename__ = "chunks"
    __table_args__ = (UniqueConstraint("document_id", "ordinal"), {"sqlite_autoincrement": True})
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"), index=True)
    ordinal: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    char_start: Mapped[int] = mapped_column(Integer)
    char_end: Mapped[int] = mapped_column(Integer)
    page: Mapped[int | None] = mapped_column(Integer, nullable=True)
    token_count: Mapped[int] = mapped_column(Integer)
    document: Mapped[Document] = relationship(back_populates="chunks")


_FTS_DDL = [
    "CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5(text, content='chunks', content_rowid='id', "
    "tokenize='porter unicode61 remove_diacritics 2')",
    "CREATE TRIGGER IF NOT EXISTS chunks_ai AFTER INSERT ON chunks BEGIN "
    "INSERT INTO chunks_fts(rowid, text) VALUES (new.id, new.text); END",
    "CREATE TRIGGER IF NOT EXISTS chunks_ad AFTER DELETE ON chunks BEGIN "
    "INSERT INTO chunks_fts(chunks_fts, rowid, text) VALUES ('delete', old.id, old.text); END",
    "CREATE TRIGGER IF NOT EXISTS chunks_au AFTER UPDATE ON chunks BEGIN "
    "INSERT INTO chunks_fts(chunks_fts, rowid, text) VALUES ('delete', old.id, old.text); "
    "INSERT INTO chunks_fts(rowid, text) VALUES (new.id, new.text); END",
]


def _pragmas(dbapi_conn: Any, _record: Any) -> None:
    # let SQLAlchemy emit BEGIN itself (see `_begin`): pysqlite would otherwise run SELECTs outside any
    # transaction, and a search needs one read snapshot for the generation, the rows and the FTS query
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")  # in WAL mode: durable against a killed process
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _begin(conn: Any) -> None:
    conn.exec_driver_sql("BEGIN")


class Store:
    """The SQLite side of an index directory: engine, schema, and the queries the index needs."""

    def __init__(self, directory: Path):
        self.path = directory / DB_NAME
        self.engine: Engine = create_engine(
            f"sqlite:///{self.path}", connect_args={"check_same_thread": False, "timeout": 30}
        )
        event.listen(self.engine, "connect", _pragmas)
        event.listen(self.engine, "begin", _begin)
        self._snapshot = threading.local()

    @contextmanager
    def snapshot(self) -> Iterator[Connection]:
        """One read transaction: every read method called inside sees the same committed state (WAL)."""
        current = getattr(self._snapshot, "conn", None)
        if current is not None:
            yield current
            return
        with self.engine.connect() as conn:
            # BEGIN, then a read of the database: that is when SQLite fixes the WAL snapshot
            conn.execute(select(func.count()).select_from(IndexRecord)).scalar_one()
            self._snapshot.conn = conn
            try:
                yield conn
            finally:
                self._snapshot.conn = None
                conn.rollback()

    @property
    def in_snapshot(self) -> bool:
        return getattr(self._snapshot, "conn", None) is not None

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        current = getattr(self._snapshot, "conn", None)
        if current is not None:
            yield current
        else:
            with self.engine.connect() as conn:
                yield conn

    @contextmanager
    def _read_session(self) -> Iterator[Session]:
        with self._read() as conn, Session(bind=conn) as session:
            yield session

    def exists(self) -> bool:
        with self.engine.connect() as conn:
            return bool(conn.execute(text("SELECT 1 FROM sqlite_master WHERE name='index_record'")).first())

    def create_schema(self) -> None:
        Base.metadata.create_all(self.engine)
        with self.engine.begin() as conn:
            for ddl in _FTS_DDL:
                conn.exec_driver_sql(ddl)

    def session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    def record(self, session: Session | None = None) -> IndexRecord | None:
        if session is not None:
            return session.get(IndexRecord, 1)
        with self._read_session() as s:
            rec = s.get(IndexRecord, 1)
        if rec is not None and rec.schema_version > SCHEMA_VERSION:
            raise SchemaVersionError(
                f"index at {self.path.parent} has schema version {rec.schema_version}; this package reads "
                f"up to {SCHEMA_VERSION}: upgrade nvembed-search"
            )
        return rec

    def generation(self) -> tuple[int, str | None]:
        """(generation, vector file) of the last commit: cheap, read before every search."""
        with self._read() as conn:
            row = conn.execute(select(IndexRecord.generation, IndexRecord.vector_file)).first()
        return (int(row[0]), row[1]) if row else (0, None)

    def close(self) -> None:
        self.engine.dispose()

    # ------------------------------------------------------------------------------------- reads ----
    def chunk_ids(self) -> np.ndarray:
        with self._read() as conn:
            ids = conn.execute(select(Chunk.id)).scalars().all()
        return np.asarray(ids, dtype=np.int64)

    def documents_by_path(self, paths: Iterable[str] | None = None, prefix: str | None = None) -> dict[str, Document]:
        with self._read_session() as s:
            q = select(Document)
            if prefix is not None:
                q = q.where(Document.path.startswith(prefix, autoescape=True))
            docs = s.execute(q).scalars().all()
        wanted = set(paths) if paths is not None else None
        return {d.path: d for d in docs if wanted is None or d.path in wanted}

    def chunks_by_id(self, ids: Sequence[int]) -> dict[int, tuple[Chunk, Document]]:
        out: dict[int, tuple[Chunk, Document]] = {}
        ids = [int(i) for i in ids]
        with self._read_session() as s:
            for i in range(0, len(ids), 500):
                rows = s.execute(
                    select(Chunk, Document).join(Document, Chunk.document_id == Document.id)
                    .where(Chunk.id.in_(ids[i : i + 500]))
                ).all()
                for chunk, doc in rows:
                    out[chunk.id] = (chunk, doc)
        return out

    def count(self) -> tuple[int, int]:
        """(documents, chunks)."""
        with self._read() as conn:
            docs = conn.execute(select(func.count()).select_from(Document)).scalar_one()
            chunks = conn.execute(select(func.count()).select_from(Chunk)).scalar_one()
        return int(docs), int(chunks)

    def fts_ok(self) -> bool:
        with self.engine.begin() as conn:
            try:
                conn.exec_driver_sql("INSERT INTO chunks_fts(chunks_fts, rank) VALUES ('integrity-check', 1)")
            except Exception:
                return False
        return True

    def rebuild_fts(self) -> None:
        with self.engine.begin() as conn:
            conn.exec_driver_sql("INSERT INTO chunks_fts(chunks_fts) VALUES ('rebuild')")

    def iter_chunks(self, batch: int = 2048) -> Iterable[list[tuple[int, int, str, int, int, int | None]]]:
        """All chunks as (id, document_id, text, char_start, char_end, page), in id order, in batches."""
        last = 0
        while True:
            with self.engine.connect() as conn:
                rows = conn.execute(
                    select(Chunk.id, Chunk.document_id, Chunk.text, Chunk.char_start, Chunk.char_end, Chunk.page)
                    .where(Chunk.id > last).order_by(Chunk.id).limit(batch)
                ).all()
            if not rows:
                return
            yield [tuple(r) for r in rows]
            last = rows[-1][0]

    def keyword(self, match: str, k: int, where_sql: str, params: dict[str, Any]) -> list[tuple[int, float]]:
        """BM25 over chunks_fts for an FTS5 MATCH expression, filters applied in the same query."""
        sql = (
            "SELECT c.id, bm25(chunks_fts) AS score FROM chunks_fts "
            "JOIN chunks c ON c.id = chunks_fts.rowid JOIN documents d ON d.id = c.document_id "
            f"WHERE chunks_fts MATCH :match {where_sql} ORDER BY score LIMIT :k"
        )
        with self._read() as conn:
            rows = conn.execute(text(sql), {"match": match, "k": int(k), **params}).all()
        return [(int(r[0]), -float(r[1])) for r in rows]  # bm25() is lower-is-better: negate

    def filtered_chunk_ids(self, where_sql: str, params: dict[str, Any]) -> np.ndarray:
        sql = f"SELECT c.id FROM chunks c JOIN documents d ON d.id = c.document_id WHERE 1=1 {where_sql}"
        with self._read() as conn:
            ids = conn.execute(text(sql), params).scalars().all()
        return np.asarray(ids, dtype=np.int64)

    # ------------------------------------------------------------------------------------ writes ----
    @staticmethod
    def delete_document(session: Session, doc: Document) -> list[int]:
        """Delete a document and its chunks inside `session`; returns the chunk ids that went."""
        ids = session.execute(select(Chunk.id).where(Chunk.document_id == doc.id)).scalars().all()
        session.execute(delete(Chunk).where(Chunk.document_id == doc.id))
        session.execute(delete(Document).where(Document.id == doc.id))
        return list(ids)

    @staticmethod
    def now() -> float:
        return time.time()
