"""Writes to the index from the app: ingest of uploads or a server folder, re-ingest, delete.

A job runs in a background thread with its own writer `Index` (opened with the same model object as the
reader), so it survives Streamlit reruns, the user can keep searching while it runs, and any session of the
server can watch its progress. One job runs at a time per index directory; the facade's writer lock keeps
other processes (the CLI) out meanwhile.

The work itself is the facade's, through the same calls as the CLI: `Index.ingest(folder)` for a folder
(committing in batches, pruning vanished files), `Index.ingest(paths, force=True)` to re-ingest,
`Index.upsert` for an uploaded file, `Index.delete`. The facade's progress hook moves the job's counters and
its stop hook is the job's Stop button: a stopped ingest commits the files it had embedded. This module only
turns the facade's report into one outcome per file.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import index
from index.config import IndexConfig, IngestConfig
from index.errors import IndexStoreError, LoadError
from index.filters import normalise_path
from index.loaders import KINDS as SUPPORTED
from index.pipeline import IngestProgress, IngestReport

log = logging.getLogger(__name__)

STATUSES = ("added", "updated", "unchanged", "removed", "skipped", "failed")
_ids = itertools.count(1)


class BusyError(RuntimeError):
    """Another write is running in this server."""


@dataclass
class FileOutcome:
    name: str  # what the user recognises: the uploaded name or the path
    path: str  # where the document is stored in the index
    status: str  # one of STATUSES
    passages: int = 0
    reason: str = ""


@dataclass
class Job:
    title: str
    kind: str  # upload | folder | reingest
    total: int = 0  # files found
    done: int = 0  # files read (new and changed ones are then embedded and committed in batches)
    passages_total: int = 0  # passages of new and changed files found so far
    passages_done: int = 0  # of which embedded
    current: str = ""
    outcomes: list[FileOutcome] = field(default_factory=list)
    state: str = "running"  # running | done | stopped | failed
    error: str | None = None
    note: str | None = None
    started: float = field(default_factory=time.time)
    finished: float | None = None
    id: int = field(default_factory=lambda: next(_ids))
    stop_requested: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def running(self) -> bool:
        return self.state == "running"

    @property
    def fraction(self) -> float:
        """How far the job is, 0..1: files read and passages embedded, whichever lags."""
        files = min(1.0, self.done / self.total) if self.total else 0.0
        if self.passages_total:
            return min(files, self.passages_done / self.passages_total)
        return files

    @property
    def elapsed(self) -> float:
        return (self.finished or time.time()) - self.started

    def counts(self) -> Counter[str]:
        return Counter(o.status for o in self.outcomes)

    def summary(self) -> str:
        c = self.counts()
        parts = [f"{c[s]} {s}" for s in STATUSES if c[s]]
        return ", ".join(parts) or "nothing to do"

    def add(self, outcome: FileOutcome) -> None:
        self.outcomes.append(outcome)


def safe_name(name: str) -> str:
    """A file name that is safe to write in the uploads folder (no directories, no control characters)."""
    base = Path(name.replace("\\", "/")).name
    base = re.sub(r"[\x00-\x1f/]", "_", base).strip().lstrip(".") or "upload"
    return base[:200]


def outcome_from_report(name: str, path: str, report: IngestReport) -> FileOutcome:
    """One file's outcome from the facade's report of an ingest or upsert of that file."""
    notes = "; ".join(n for p, n in report.warnings if p == path)
    if report.failed:
        return FileOutcome(name, path, "failed", 0, "; ".join(r for _, r in report.failed))
    if report.skipped:
        return FileOutcome(name, path, "skipped", 0, "; ".join(r for _, r in report.skipped))
    if report.added:
        return FileOutcome(name, path, "added", report.chunks_added, notes)
    if report.updated:
        return FileOutcome(name, path, "updated", report.chunks_added, notes)
    return FileOutcome(name, path, "unchanged", 0, notes)


def outcomes_from_report(report: IngestReport) -> list[FileOutcome]:
    """One outcome per file of a folder or multi-file ingest, from the facade's report."""
    notes: dict[str, list[str]] = {}
    for path, note in report.warnings:
        notes.setdefault(path, []).append(note)
    out = [FileOutcome(p, p, "skipped", 0, r) for p, r in report.skipped]
    out += [FileOutcome(p, p, "failed", 0, r) for p, r in report.failed]
    for status, paths in (("added", report.added), ("updated", report.updated)):
        out += [FileOutcome(p, p, status, report.passages.get(p, 0), "; ".join(notes.get(p, []))) for p in paths]
    out += [FileOutcome(p, p, "unchanged", 0, "; ".join(notes.get(p, []))) for p in report.unchanged]
    out += [FileOutcome(p, p, "removed", 0, "file no longer in the folder") for p in report.removed]
    return out


def _reason(exc: BaseException, path: str) -> str:
    text = str(exc)
    for prefix in (f"{path}: ", f"{Path(path).name}: "):
        text = text.removeprefix(prefix)
    return text


class JobManager:
    """Runs one write at a time for an index directory and remembers the recent jobs."""

    def __init__(self, directory: Path, ingest: IngestConfig | None = None):
        self.directory = Path(directory)
        self.ingest = ingest or IngestConfig()  # batching and commit frequency of this server's ingests
        self._lock = threading.Lock()
        self._jobs: dict[int, Job] = {}
        self.current: Job | None = None

    # --------------------------------------------------------------------------------- public ----
    def get(self, job_id: int | None) -> Job | None:
        return self._jobs.get(job_id) if job_id is not None else None

    @property
    def busy(self) -> bool:
        return self.current is not None and self.current.running

    def ingest_uploads(self, files: list[tuple[str, bytes]], uploads_dir: Path, encoder: Any, source: str) -> Job:
        job = Job(title=f"upload of {len(files)} file{'s' * (len(files) != 1)}", kind="upload", total=len(files))
        return self._start(job, lambda ix: self._uploads(ix, job, files, Path(uploads_dir)), encoder, source)

    def ingest_folder(self, folder: str, encoder: Any, source: str) -> Job:
        job = Job(title=f"folder {normalise_path(folder)}", kind="folder")
        return self._start(job, lambda ix: self._folder(ix, job, folder), encoder, source)

    def reingest(self, paths: list[str], encoder: Any, source: str) -> Job:
        job = Job(title=f"re-ingest of {len(paths)} document{'s' * (len(paths) != 1)}", kind="reingest",
                  total=len(paths))
        return self._start(job, lambda ix: self._reingest(ix, job, paths), encoder, source)

    def delete(self, paths: list[str], encoder: Any, source: str) -> Any:
        """Delete documents now (a short write, run in the caller's thread); returns the `DeleteReport`."""
        with self._exclusive(), self._writer(encoder, source) as ix:
            return ix.delete(paths)

    # -------------------------------------------------------------------------------- running ----
    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        with self._lock:
            if self.busy:
                raise BusyError(f"an ingest is already running ({self.current.title}); wait for it to finish")
            yield

    @contextmanager
    def _writer(self, encoder: Any, source: str) -> Iterator[Any]:
        ix = index.open(self.directory, encoder, model_source=source, config=IndexConfig(ingest=self.ingest))
        try:
            yield ix
        finally:
            ix.close()

    def _start(self, job: Job, work: Callable[[Any], None], encoder: Any, source: str) -> Job:
        with self._lock:
            if self.busy:
                raise BusyError(f"an ingest is already running ({self.current.title}); wait for it to finish")
            self.current = job
            self._jobs[job.id] = job
            for old in sorted(self._jobs)[:-20]:
                self._jobs.pop(old)

        def run() -> None:
            try:
                with self._writer(encoder, source) as ix:
                    work(ix)
                job.state = "stopped" if job.stop_requested.is_set() else "done"
            except IndexStoreError as exc:
                job.error, job.state = str(exc), "failed"
            except Exception as exc:  # never let a thread die silently: the page shows the reason
                log.exception("ingest job %s failed", job.title)
                job.error, job.state = f"{type(exc).__name__}: {exc}", "failed"
            finally:
                job.current = ""
                job.finished = time.time()

        threading.Thread(target=run, name=f"nvembed-ingest-{job.id}", daemon=True).start()
        return job

    # ---------------------------------------------------------------------------------- work ----
    @staticmethod
    def _uploads(ix: Any, job: Job, files: list[tuple[str, bytes]], uploads_dir: Path) -> None:
        uploads_dir.mkdir(parents=True, exist_ok=True)
        for name, data in files:
            if job.stop_requested.is_set():
                break
            job.current = name
            target = uploads_dir / safe_name(name)
            path = normalise_path(target)
            if target.suffix.lower() not in SUPPORTED:
                kinds = ", ".join(sorted({k.lstrip('.') for k in SUPPORTED}))
                job.add(FileOutcome(name, path, "failed", 0,
                                    f"unsupported file type {target.suffix or '(no extension)'} (supported: {kinds})"))
                job.done += 1
                continue
            # Write a temporary copy first: the upload is kept on disk only when it could be ingested.
            fd, tmp = tempfile.mkstemp(dir=uploads_dir, prefix=".upload-", suffix=target.suffix)
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                mtime = os.stat(tmp).st_mtime
                report = ix.upsert(path, content=data, mtime=mtime)
                os.replace(tmp, target)
                job.add(outcome_from_report(name, path, report))
            except (LoadError, IndexStoreError) as exc:
                job.add(FileOutcome(name, path, "failed", 0, _reason(exc, path)))
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
            job.done += 1

    @staticmethod
    def _hooks(job: Job) -> dict[str, Any]:
        def on_progress(p: IngestProgress) -> None:
            job.total, job.done = p.files_total, p.files_done
            job.passages_total, job.passages_done = p.passages_queued, p.passages_embedded
            job.current = Path(p.current).name if p.current else ""

        return {"on_progress": on_progress, "should_stop": job.stop_requested.is_set}

    @classmethod
    def _folder(cls, ix: Any, job: Job, folder: str) -> None:
        report = ix.ingest(folder, prune=True, **cls._hooks(job))
        job.outcomes.extend(outcomes_from_report(report))
        job.note = report.prune_note

    @classmethod
    def _reingest(cls, ix: Any, job: Job, paths: list[str]) -> None:
        present = [p for p in paths if os.path.isfile(p)]
        for path in paths:
            if path not in present:
                job.add(FileOutcome(path, path, "failed", 0,
                                    "the file is no longer on disk: restore it, or delete the document"))
        if present:
            report = ix.ingest(present, prune=False, force=True, **cls._hooks(job))
            job.outcomes.extend(outcomes_from_report(report))
        job.total = job.done = len(paths)
