"""Vectors and keyword search in a Milvus collection, for indexes that outgrow one machine.

`index.open(dir, encoder, config=IndexConfig(store_uri=...))` puts the passages' vectors and texts in a
Milvus collection instead of the FAISS files: `./x.db` (a path) runs Milvus Lite in-process, and
`http://host:19530` talks to a Milvus server or cluster through the same `pymilvus.MilvusClient` calls.

What lives where (one code path for everything else):
- SQLite in the index directory keeps the metadata exactly as for FAISS: documents, chunks (their ids are
  the collection's primary keys), pages, the index record, the writer lock. Ingest, change detection,
  filters, citations, highlighting and fusion are therefore the same code for both backends; filters are
  resolved in SQLite and passed to Milvus as `chunk_id in [...]`.
- Milvus keeps one row per chunk: `chunk_id` (primary key), `text` (analysed VARCHAR), `dense` (the
  normalised vector, searched with inner product = cosine) and `sparse` (filled by Milvus's built-in BM25
  function from `text`). Dense search and BM25 keyword search both run in Milvus; hybrid fuses the two
  lists with the same calibrated fusion (`fusion.py`) as the FAISS backend.

Crash safety without a shared transaction: a commit upserts the new rows into Milvus *before* the SQLite
commit and deletes the removed ids *after* it. A process killed in between leaves vectors whose rows are
gone (search skips ids without a row, and the repair on the next open deletes them), never a committed
row without its vector; chunk ids are never reused, so an orphan can never attach to a new chunk.
The collection uses Strong consistency, so a search sees every committed write.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

import numpy as np

from .config import VectorConfig
from .errors import InvalidInputError

#: `index_record.vector_kind` of an index whose vectors live in Milvus.
KIND = "milvus"
#: `index_record.vector_file` of such an index: this prefix + the collection name.
FILE_PREFIX = "milvus:"
#: Environment variable: the store URI when `IndexConfig.store_uri` is not given.
STORE_URI_ENV = "NVEMBED_STORE_URI"
#: Environment variable: the token (`user:password` or an API key) for a Milvus server.
TOKEN_ENV = "MILVUS_TOKEN"
_MAX_TEXT = 65535  # VARCHAR max_length, in bytes
_BATCH = 1000  # rows per insert / ids per `in [...]` expression


def new_collection_name() -> str:
    return "nvembed_" + uuid.uuid4().hex[:16]


def collection_of(vector_file: str | None) -> str | None:
    if vector_file and vector_file.startswith(FILE_PREFIX):
        return vector_file[len(FILE_PREFIX):]
    return None


def _client(uri: str, token: str | None) -> Any:
    try:
        from pymilvus import MilvusClient
    except ImportError:
        raise InvalidInputError(
            f"store URI {uri!r} needs pymilvus (and milvus-lite for a local file): pip install 'nvembed-search[milvus]'"
        ) from None
    if "://" not in uri:  # a Milvus Lite file: pymilvus wants it to end in .db
        if not uri.endswith(".db"):
            raise InvalidInputError(f"a Milvus Lite store URI must be a path ending in .db, got {uri!r}")
        uri = os.path.abspath(os.path.expanduser(uri))
        parent = os.path.dirname(uri)
        if not os.path.isdir(parent):
            raise InvalidInputError(f"directory {parent} of the Milvus Lite file does not exist")
    elif not uri.startswith(("http://", "https://", "tcp://", "grpc://", "unix:")):
        raise InvalidInputError(f"store URI {uri!r}: use ./file.db (Milvus Lite) or http(s)://host:19530 (server)")
    kwargs = {"uri": uri}
    token = token if token is not None else os.environ.get(TOKEN_ENV)
    if token:
        kwargs["token"] = token
    try:
        return MilvusClient(**kwargs)
    except Exception as exc:
        raise InvalidInputError(f"cannot connect to Milvus at {uri!r}: {exc}") from None


def _ids_expr(ids: np.ndarray) -> str:
    return "chunk_id in [" + ",".join(str(int(i)) for i in ids) + "]"


class MilvusVectors:
    """The `VectorIndex` interface the facade, writer, retrieval and consistency check use, on Milvus."""

    kind = KIND
    search_device = "milvus"
    provides_keyword = True  # retrieval asks this object for BM25 instead of SQLite FTS5
    trained_size = 0

    def __init__(self, uri: str, collection: str, dimension: int, config: VectorConfig | None = None,
                 token: str | None = None, create: bool = False):
        self.uri = uri
        self.collection = collection
        self.dimension = int(dimension)
        self.config = config or VectorConfig()
        self._gpu = None  # the facade clears this on close; Milvus has no local GPU copy
        self.client = _client(uri, token)
        if not self.client.has_collection(collection):
            if not create:
                raise InvalidInputError(
                    f"Milvus collection {collection!r} does not exist at {uri!r}: is this the store the index was built on?"
                )
            self._create()

    def _create(self) -> None:
        from pymilvus import DataType, Function, FunctionType

        c = self.client
        schema = c.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("chunk_id", DataType.INT64, is_primary=True)
        schema.add_field("text", DataType.VARCHAR, max_length=_MAX_TEXT, enable_analyzer=True)
        schema.add_field("dense", DataType.FLOAT_VECTOR, dim=self.dimension)
        schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
        schema.add_function(Function(name="bm25", function_type=FunctionType.BM25, input_field_names=["text"],
                                     output_field_names=["sparse"]))
        params = c.prepare_index_params()
        # FLAT = exact, like the default FAISS index; a server deployment can switch to HNSW/IVF in Milvus
        params.add_index("dense", index_type="FLAT" if "://" not in self.uri else "AUTOINDEX", metric_type="IP")
        params.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
        c.create_collection(self.collection, schema=schema, index_params=params, consistency_level="Strong")

    # ----------------------------------------------------------------------------------- writes ----
    def upsert(self, ids: np.ndarray, vectors: np.ndarray, texts: list[str]) -> None:
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        vectors = np.asarray(vectors, dtype=np.float32).reshape(-1, self.dimension)
        if not (len(ids) == len(vectors) == len(texts)):
            raise InvalidInputError(f"{len(ids)} ids, {len(vectors)} vectors and {len(texts)} texts")
        for i in range(0, len(ids), _BATCH):
            rows = [{"chunk_id": int(cid), "text": _clip(t), "dense": v.tolist()}
                    for cid, v, t in zip(ids[i:i + _BATCH], vectors[i:i + _BATCH], texts[i:i + _BATCH], strict=True)]
            self.client.upsert(self.collection, rows)

    def add(self, ids: Any, vectors: np.ndarray) -> None:
        raise InvalidInputError("Milvus rows need their texts: use MilvusVectors.upsert(ids, vectors, texts)")

    def remove(self, ids: Any) -> int:
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        gone = 0
        for i in range(0, len(ids), _BATCH):
            res = self.client.delete(self.collection, ids=[int(x) for x in ids[i:i + _BATCH]])
            gone += len(res) if isinstance(res, list) else int(res.get("delete_count", 0))
        return gone

    def maybe_train(self) -> bool:
        return False

    def drop(self) -> None:
        self.client.drop_collection(self.collection)

    def close(self) -> None:
        try:
            self.client.close()
        except Exception:  # closing must not fail the caller
            pass

    # ------------------------------------------------------------------------------------ reads ----
    @property
    def ntotal(self) -> int:
        rows = self.client.query(self.collection, filter="", output_fields=["count(*)"])
        return int(rows[0]["count(*)"])

    def ids(self) -> np.ndarray:
        it = self.client.query_iterator(self.collection, batch_size=4096, filter="", output_fields=["chunk_id"])
        out: list[int] = []
        try:
            while batch := it.next():
                out.extend(int(r["chunk_id"]) for r in batch)
        finally:
            it.close()
        return np.asarray(out, dtype=np.int64)

    def reconstruct(self, ids: Any) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        found: dict[int, list[float]] = {}
        for i in range(0, len(ids), _BATCH):
            for r in self.client.get(self.collection, ids=[int(x) for x in ids[i:i + _BATCH]],
                                     output_fields=["chunk_id", "dense"]):
                found[int(r["chunk_id"])] = r["dense"]
        missing = [int(i) for i in ids if int(i) not in found]
        if missing:
            raise KeyError(f"ids not in Milvus collection {self.collection}: {missing[:10]}")
        return np.asarray([found[int(i)] for i in ids], dtype=np.float32).reshape(-1, self.dimension)

    def _filter(self, allowed: np.ndarray | None) -> str:
        return "" if allowed is None else _ids_expr(np.asarray(allowed, dtype=np.int64).reshape(-1))

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids), each (n, k), like `VectorIndex.search`: empty slots have id -1."""
        queries = np.asarray(queries, dtype=np.float32).reshape(-1, self.dimension)
        k = int(k)
        if k < 1:
            raise InvalidInputError(f"k must be at least 1, got {k}")
        scores = np.full((len(queries), k), -np.inf, np.float32)
        ids = np.full((len(queries), k), -1, np.int64)
        if allowed is not None and len(allowed) == 0:
            return scores, ids
        hits = self.client.search(self.collection, data=[q.tolist() for q in queries], anns_field="dense",
                                  limit=min(k, 16384), filter=self._filter(allowed),
                                  search_params={"metric_type": "IP"}, output_fields=["chunk_id"])
        for row, found in enumerate(hits):
            for j, h in enumerate(found):
                ids[row, j], scores[row, j] = int(h["chunk_id"]), float(h["distance"])
        return scores, ids

    def keyword(self, query: str, k: int, allowed: np.ndarray | None = None) -> list[tuple[int, float]]:
        """BM25 (Milvus's analyser and scorer) over the chunk texts: (chunk id, score), best first."""
        if allowed is not None and len(allowed) == 0:
            return []
        hits = self.client.search(self.collection, data=[query], anns_field="sparse", limit=min(int(k), 16384),
                                  filter=self._filter(allowed), search_params={"metric_type": "BM25"},
                                  output_fields=["chunk_id"])
        return [(int(h["chunk_id"]), float(h["distance"])) for h in hits[0]]

    def memory_bytes(self) -> int:
        return 0  # held by Milvus, not this process


def _clip(text: str) -> str:
    """A VARCHAR holds at most 65,535 bytes: longer passages (rare; chunks are a few hundred tokens) are
    cut for BM25 only; the full text stays in SQLite and is what results show."""
    raw = text.encode("utf-8")
    return text if len(raw) <= _MAX_TEXT else raw[:_MAX_TEXT].decode("utf-8", "ignore")
