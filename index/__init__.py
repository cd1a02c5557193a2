"""Document ingestion and search for the NV-Embed app: FAISS + SQLite, incremental, crash-safe, hybrid.

    import index
    with index.open("data/index", model) as ix:        # model: encoder.NVEmbedModel or any index.Encoder
        ix.ingest("docs/")                               # incremental; prunes vanished files
        for r in ix.search("how do I reset it?", k=5, mode="hybrid"):
            print(r.rank, r.path, r.page, r.score, r.passage)
        prompt_context = ix.context("how do I reset it?", budget_tokens=1500).text

CLI: `python -m index.ingest`, `python -m index.search`, `python -m index.delete`, `python -m index.list`
(docs/index.md). Names are imported lazily so `python -m index.<tool>` and `import index.gpu` stay light.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "Index": "facade", "open_index": "facade", "DocumentInfo": "facade", "DeleteReport": "facade",
    "IndexStats": "facade", "Neighbours": "facade",
    "ChunkingConfig": "config", "VectorConfig": "config", "IngestConfig": "config", "IndexConfig": "config",
    "resolve_index_dir": "config", "INDEX_DIR_ENV": "config",
    "Encoder": "encoders", "Filters": "filters", "SearchConfig": "retrieval", "SearchResult": "retrieval",
    "RagContext": "rag", "build_context": "rag", "IngestReport": "pipeline", "IngestProgress": "pipeline", "ConsistencyReport": "consistency",
    "IndexStoreError": "errors", "IndexNotFoundError": "errors", "ModelMismatchError": "errors",
    "SettingsMismatchError": "errors", "IndexLockedError": "errors", "InconsistentIndexError": "errors",
    "LoadError": "errors", "InvalidInputError": "errors", "SchemaVersionError": "errors",
}

__all__ = ["open", *_EXPORTS]  # noqa: F822


def open(directory: Any = None, encoder: Any = None, **kwargs: Any) -> Any:  # noqa: A001
    """Open or create an index: see `index.facade.Index.open`."""
    from .facade import Index

    return Index.open(directory, encoder, **kwargs)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'index' has no attribute {name!r}")
    return getattr(import_module(f".{module}", __name__), name)
