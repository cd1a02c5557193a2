"""The index served to other programs: one object that the HTTP API and the MCP server share.

It loads the model once, runs every model call through one `Batcher`, opens the index for reading (the
facade's reader: no lock, reloads after other processes commit), and sends writes through the app's
`JobManager` (the facade's writer lock keeps the app and the CLI out meanwhile). Search, context, documents
and passages are the facade's calls; this module only turns arguments into them and results into plain
dicts (JSON for the API, structured content for MCP). Folder ingest checks the allowed roots first
(`security.check_folder`), uploads their size (`security.check_upload`).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import index
from index.errors import IndexNotFoundError, InvalidInputError
from index.filters import Filters, parse_time
from index.rag import build_context
from index.retrieval import MODES

from .batching import PASSAGE, QUERY, BatchConfig, BatchedEncoder, Batcher
from .jobs import Job, JobManager
from .security import DEFAULT_MAX_UPLOAD_MB, allowed_roots, check_folder, check_upload

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class ServiceConfig:
    index_dir: Path
    model: str | None = None  # None: the model the index was built with, else "default"
    device: str | None = None
    uploads_dir: Path | None = None  # default: uploads/ beside the index directory (as in the app)
    allow_dirs: tuple[Path, ...] = ()  # folders besides the uploads folder that folder ingest may read
    batching: BatchConfig = field(default_factory=BatchConfig)
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB
    budget: int = 2000  # default token budget of a context block

    @property
    def uploads(self) -> Path:
        return Path(self.uploads_dir) if self.uploads_dir else Path(self.index_dir).parent / "uploads"

    @property
    def roots(self) -> tuple[Path, ...]:
        return allowed_roots(self.uploads, self.allow_dirs)


def load_model(spec: str | None, index_dir: Path, device: str | None = None) -> tuple[Any, str]:
    """(encoder, source to record) for a `--model` value, resolved exactly as the CLI and the app do
    (`encoder.registry` names, `hash:DIM` / `random:DIM` stand-ins, else the model the index was built with)."""
    from index.cli import load_encoder

    return load_encoder(spec, Path(index_dir), device)


def make_filters(spec: dict[str, Any] | None) -> Filters | None:
    """`Filters` from a JSON object: paths, globs, types (or kinds), modified_after, modified_before."""
    if not spec:
        return None
    known = {"paths", "globs", "types", "kinds", "modified_after", "modified_before"}
    unknown = set(spec) - known
    if unknown:
        raise InvalidInputError(f"unknown filter field(s) {', '.join(sorted(unknown))} (known: {', '.join(sorted(known))})")

    def strings(name: str) -> tuple[str, ...]:
        value = spec.get(name) or ()
        if isinstance(value, str):
            value = [value]
        if not all(isinstance(v, str) for v in value):
            raise InvalidInputError(f"filter {name} must be a string or a list of strings")
        return tuple(value)

    after, before = spec.get("modified_after"), spec.get("modified_before")
    return Filters(paths=strings("paths"), globs=strings("globs"), kinds=strings("types") + strings("kinds"),
                   modified_after=None if after is None else parse_time(after),
                   modified_before=None if before is None else parse_time(before))


def result_dict(r: Any) -> dict[str, Any]:
    """A search result for clients: the facade's fields plus a ready citation label."""
    d = r.to_dict()
    d["citation"] = f"{r.path}, page {r.page}" if r.page is not None else r.path
    return d


def resolve_instruction(value: str | None) -> str | None:
    if value is None:
        return None
    from index.cli import resolve_instruction as resolve

    return resolve(value)


class Service:
    """Model, batcher, reader index and writer queue of one served index directory."""

    def __init__(self, config: ServiceConfig, encoder: Any, source: str):
        self.config = config
        self.raw_encoder = encoder
        self.source = source
        self.on_batch: Any = None  # set by the API to record batch sizes
        self.batcher = Batcher(encoder, config.batching, on_batch=self._batch_done)
        self.encoder = BatchedEncoder(encoder, self.batcher)
        try:
            self.reader = index.open(config.index_dir, self.encoder, model_source=source)
        except BaseException:
            self.batcher.close()
            raise
        self.jobs = JobManager(Path(config.index_dir))
        self.started = time.time()
        self.model_names = {str(encoder.name), source, str(encoder.fingerprint)}  # what `model` may say

    @classmethod
    def start(cls, config: ServiceConfig) -> Service:
        encoder, source = load_model(config.model, Path(config.index_dir), config.device)
        return cls(config, encoder, source)

    def _batch_done(self, requests: int, texts: int, seconds: float) -> None:
        if self.on_batch is not None:
            self.on_batch(requests, texts, seconds)

    def close(self) -> None:
        self.reader.close()
        self.batcher.close()

    # ---------------------------------------------------------------------------- embeddings ----
    def count_tokens(self, texts: list[str], input_type: str = PASSAGE, instruction: str | None = None) -> list[int]:
        """Tokens each input occupies in the model (the query prefix included for queries)."""
        if input_type == QUERY:
            from encoder.instructions import DEFAULT_RETRIEVAL, query_prefix

            prefix = query_prefix(instruction if instruction is not None else DEFAULT_RETRIEVAL)
            return [int(n) for n in self.raw_encoder.count_tokens([prefix + t for t in texts])]
        return [int(n) for n in self.raw_encoder.count_tokens(texts)]

    # ------------------------------------------------------------------------------- reading ----
    def search(self, query: str, k: int = 10, mode: str | None = None, filters: dict[str, Any] | None = None,
               instruction: str | None = None) -> list[dict[str, Any]]:
        if mode is not None and mode not in MODES:
            raise InvalidInputError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        results = self.reader.search(query, k, mode=mode, filters=make_filters(filters),
                                     instruction=resolve_instruction(instruction))
        return [result_dict(r) for r in results]

    def context(self, query: str, budget_tokens: int | None = None, k: int = 10, mode: str | None = None,
                filters: dict[str, Any] | None = None, instruction: str | None = None) -> dict[str, Any]:
        budget = int(budget_tokens or self.config.budget)
        if budget < 16:
            raise InvalidInputError(f"budget_tokens must be at least 16, got {budget}")
        if mode is not None and mode not in MODES:
            raise InvalidInputError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        results = self.reader.search(query, k, mode=mode, filters=make_filters(filters),
                                     instruction=resolve_instruction(instruction))
        block = build_context(results, budget, self.raw_encoder.count_tokens)
        out = block.to_dict()
        out["results"] = [result_dict(r) for r in results[: block.passages]]
        return out

    def documents(self, filters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        return [d.to_dict() for d in self.reader.documents(make_filters(filters))]

    def passage(self, chunk_id: int, neighbours: bool = True) -> dict[str, Any]:
        """One stored passage by its `chunk_id` (from a search result), with the passages around it."""
        self.reader.refresh()
        rows = self.reader.store.chunks_by_id([int(chunk_id)])
        if int(chunk_id) not in rows:
            raise IndexNotFoundError(f"no passage with chunk_id {chunk_id} (it may have been re-ingested)")
        chunk, doc = rows[int(chunk_id)]
        out: dict[str, Any] = {
            "chunk_id": chunk.id, "document_id": doc.id, "ordinal": chunk.ordinal, "path": doc.path,
            "page": chunk.page, "title": doc.title, "text": chunk.text, "char_start": chunk.char_start,
            "char_end": chunk.char_end, "citation": f"{doc.path}, page {chunk.page}" if chunk.page is not None else doc.path,
        }
        if neighbours:
            n = self.reader.neighbours(doc.id, chunk.ordinal)
            out.update(previous=n.previous, next=n.next, total=n.total)
        return out

    def info(self) -> dict[str, Any]:
        stats = self.reader.stats()
        enc = self.raw_encoder
        return {
            "model": {"name": str(enc.name), "source": self.source, "fingerprint": str(enc.fingerprint),
                      "dimension": int(enc.dimension), "max_tokens": int(enc.max_length)},
            "index": stats.to_dict(),
            "batching": {"enabled": self.config.batching.enabled, "max_wait_ms": self.config.batching.max_wait_ms,
                         "max_batch": self.config.batching.max_batch},
            "uptime_s": round(time.time() - self.started, 1),
        }

    # ------------------------------------------------------------------------------- writing ----
    def ingest_folder(self, folder: str) -> Job:
        """Start ingesting a folder on the server; refused outside the allowed roots."""
        target = check_folder(folder, self.config.roots)
        if not target.is_dir():
            raise InvalidInputError(f"the folder {folder} does not exist on the server (or is not a folder)")
        return self.jobs.ingest_folder(str(target), self.encoder, self.source)

    def upload(self, files: list[tuple[str, bytes]]) -> Job:
        """Start ingesting uploaded files (stored under the uploads folder by their safe base name)."""
        if not files:
            raise InvalidInputError("no files in the upload")
        for name, data in files:
            check_upload(name, len(data), self.config.max_upload_mb)
        return self.jobs.ingest_uploads(files, self.config.uploads, self.encoder, self.source)

    def delete(self, paths: list[str]) -> dict[str, Any]:
        if not paths or not all(isinstance(p, str) and p.strip() for p in paths):
            raise InvalidInputError("give one or more document paths to delete")
        report = self.jobs.delete([os.fspath(p) for p in paths], self.encoder, self.source)
        return {"deleted": report.deleted, "not_found": report.not_found, "chunks_removed": report.chunks_removed}

    def job(self, job_id: int) -> Job | None:
        return self.jobs.get(job_id)


def job_dict(job: Job) -> dict[str, Any]:
    return {
        "id": job.id, "title": job.title, "kind": job.kind, "state": job.state, "total": job.total,
        "done": job.done, "error": job.error, "note": job.note, "elapsed_s": round(job.elapsed, 3),
        "counts": dict(job.counts()),
        "files": [{"name": o.name, "path": o.path, "status": o.status, "passages": o.passages, "reason": o.reason}
                  for o in job.outcomes],
    }


def wait(job: Job, timeout: float) -> Job:
    deadline = time.time() + timeout
    while job.running and time.time() < deadline:
        time.sleep(0.05)
    return job
