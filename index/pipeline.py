"""Incremental ingest of a folder: walk it, skip what is unchanged, parse, chunk, embed, commit in batches.

- Discovery walks the folder (symlinks followed, loops detected by device/inode and reported), hidden
  entries skipped unless asked, unsupported types reported as skipped.
- A file is unchanged when its SHA-256 and the chunking settings it was cut with match the stored ones:
  nothing is re-embedded (a changed modification time alone only updates the row).
- New and changed files are parsed, chunked and embedded; a file that cannot be read or parsed is reported
  with the reason and the run goes on; its previously stored version, if any, is kept.
- Work is committed every `commit_every_chunks` passages or `commit_every_seconds` (see `writer.py`), so a
  killed run keeps what it had committed and a re-run resumes with the rest.
- Prune (on by default): documents stored under the ingested folder whose files are gone are removed in the
  final commit. Never pruned: files that exist but failed, entries that could not be listed or were in an
  unreadable directory, and nothing at all when the walk found no file (an unmounted drive looks empty).
- Hooks: `on_progress(IngestProgress)` after each file and each embedded slice (the app's progress bar, the
  CLI's tqdm bars); `should_stop()` is polled between files and between embedded slices: a stopped run
  commits the files it had finished embedding, prunes nothing and says `stopped` in its report.

The run sees the index only through `IngestTarget` (the store to look documents up, the chunking settings
and token counter, an `embed` and a `commit` function), which the facade builds for each run, so this
module does not depend on the facade.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .chunking import chunk_document
from .errors import InvalidInputError, LoadError
from .filters import normalise_path
from .loaders import detect_kind, load_bytes
from .writer import Changes, CommitResult, DocumentWrite

if TYPE_CHECKING:
    from .config import ChunkingConfig, IngestConfig
    from .encoders import TokenCounter
    from .store import Store


@dataclass
class Discovery:
    files: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason): unsupported, not a file
    errors: list[tuple[str, str]] = field(default_factory=list)  # (path, reason): loops, broken links, unreadable
    unlisted: list[str] = field(default_factory=list)  # directories that could not be listed


def discover(root: str | os.PathLike[str], include_hidden: bool = False, follow_symlinks: bool = True) -> Discovery:
    """Supported files under `root` (or `root` itself when it is a file), sorted, with what was left out."""
    root_s = normalise_path(root)
    out = Discovery()
    try:
        st = os.stat(root_s)
    except OSError as exc:
        raise InvalidInputError(f"{root}: {_reason(exc, os.path.islink(root_s))}") from None
    if not stat.S_ISDIR(st.st_mode):
        if detect_kind(root_s):
            out.files.append(root_s)
        else:
            out.skipped.append((root_s, f"unsupported type {Path(root_s).suffix or '(no extension)'}"))
        return out
    visited = {(st.st_dev, st.st_ino)}
    stack = [root_s]
    while stack:
        directory = stack.pop()
        try:
            with os.scandir(directory) as it:
                entries = sorted(it, key=lambda e: e.name, reverse=True)
        except OSError as exc:
            out.errors.append((directory, f"directory not listed: {_reason(exc)}"))
            out.unlisted.append(directory)
            continue
        for entry in entries:
            if not include_hidden and entry.name.startswith("."):
                continue
            path = os.path.join(directory, entry.name)
            is_link = entry.is_symlink()
            if is_link and not follow_symlinks:
                out.skipped.append((path, "symbolic link (not followed)"))
                continue
            try:
                est = os.stat(path)
            except OSError as exc:
                out.errors.append((path, _reason(exc, is_link)))
                continue
            if stat.S_ISDIR(est.st_mode):
                key = (est.st_dev, est.st_ino)
                if key in visited:
                    out.errors.append((path, "symlink loop: directory already visited"))
                    continue
                visited.add(key)
                stack.append(path)
            elif stat.S_ISREG(est.st_mode):
                if detect_kind(path):
                    out.files.append(path)
                else:
                    out.skipped.append((path, f"unsupported type {Path(path).suffix or '(no extension)'}"))
            else:
                out.skipped.append((path, "not a regular file"))
    out.files.sort()
    return out


def _reason(exc: OSError, is_link: bool = False) -> str:
    if exc.errno == errno.ELOOP:
        return "symlink loop"
    if exc.errno == errno.ENOENT:
        return "broken symlink (target missing)" if is_link else "no such file or directory"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    return exc.strerror or str(exc)


def read_file(path: str, max_bytes: int) -> tuple[bytes, os.stat_result]:
    """The file's bytes and stat; `LoadError` with the reason when it cannot be read."""
    try:
        st = os.stat(path)
        if st.st_size > max_bytes:
            raise LoadError(f"file too large ({st.st_size / 1e6:.1f} MB > {max_bytes / 1e6:.0f} MB limit; raise --max-file-mb)")
        with open(path, "rb") as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise LoadError(f"unreadable: {_reason(exc, os.path.islink(path))}") from None
    if len(data) > max_bytes:
        raise LoadError(f"file too large (> {max_bytes / 1e6:.0f} MB limit; raise --max-file-mb)")
    return data, st


@dataclass
class IngestReport:
    """What an ingest (or upsert) did; `summary()` is what the CLI prints."""

    root: str
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    warnings: list[tuple[str, str]] = field(default_factory=list)  # (path, note): e.g. encoding guessed
    chunks_added: int = 0
    chunks_removed: int = 0
    bytes_read: int = 0
    commits: int = 0
    passages: dict[str, int] = field(default_factory=dict)  # path -> passages written, for each added/updated
    stopped: bool = False  # should_stop() ended the run early: the rest was not ingested, nothing pruned
    prune_note: str | None = None
    elapsed: float = 0.0
    timings: dict[str, float] = field(default_factory=lambda: dict.fromkeys(
        ("read", "parse", "chunk", "embed", "commit"), 0.0))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self, verbose: bool = False) -> str:
        lines = [
            f"ingest of {self.root}: {len(self.added)} added, {len(self.updated)} updated, "
            f"{len(self.unchanged)} unchanged, {len(self.removed)} removed, {len(self.failed)} failed, "
            f"{len(self.skipped)} skipped",
            f"passages: +{self.chunks_added} -{self.chunks_removed}; {self.commits} commit(s); "
            f"elapsed {self.elapsed:.1f} s ("
            + ", ".join(f"{k} {v:.1f} s" for k, v in self.timings.items()) + ")",
        ]
        if self.stopped:
            lines.append("note: stopped early; run the same command again to ingest the rest")
        if self.prune_note:
            lines.append(f"note: {self.prune_note}")
        for title, items in (("failed", self.failed), ("skipped", self.skipped), ("warnings", self.warnings)):
            if items and (verbose or title == "failed"):
                lines.append(f"{title}:")
                lines.extend(f"  {p}: {r}" for p, r in items)
            elif items:
                lines.append(f"{title}: {len(items)} (use --verbose to list them)")
        if verbose and self.removed:
            lines.append("removed:")
            lines.extend(f"  {p}" for p in self.removed)
        return "\n".join(lines)


@dataclass
class IngestTarget:
    """What an ingest run needs from the index it writes to (built by the facade for each run)."""

    store: Store  # documents already stored, looked up by path
    chunking: ChunkingConfig
    counter: TokenCounter
    config: IngestConfig
    embed: Callable[[list[str]], np.ndarray]  # passages -> (n, d) unit vectors
    commit: Callable[[Changes], CommitResult]  # one atomic commit (see writer.py)


@dataclass
class IngestProgress:
    """Where a run stands, passed to `on_progress` after each file and each embedded slice."""

    files_total: int
    files_done: int
    current: str  # the file just handled ("" before the first and after the last)
    passages_queued: int  # passages of new and changed files found so far
    passages_embedded: int
    commits: int
    report: IngestReport  # the run's report so far (committed files are in added/updated)


@dataclass
class _Pending:
    write: DocumentWrite
    is_new: bool


class IngestRun:
    """One ingest under the writer lock; the facade creates it and calls `run` or `one`."""

    def __init__(self, target: IngestTarget, report: IngestReport, force: bool = False, progress: bool = False,
                 on_progress: Callable[[IngestProgress], None] | None = None,
                 should_stop: Callable[[], bool] | None = None):
        self.target = target
        self.cfg = target.config
        self.report = report
        self.force = force
        self.progress = progress
        self.on_progress = on_progress
        self.should_stop = should_stop or (lambda: False)
        self.pending: list[_Pending] = []
        self.unembedded = 0
        self.pending_chunks = 0
        self.touches: list[tuple[str, int, float]] = []
        self.last_commit = time.monotonic()
        self.files_total = 0
        self.files_done = 0
        self.queued = 0
        self.embedded = 0
        self.current = ""
        self.bars: tuple[Any, Any] | None = None  # tqdm bars (files, passages) with progress=True

    # ------------------------------------------------------------------------------------ hooks ----
    def _notify(self) -> None:
        if self.bars is not None:
            files, passages = self.bars
            files.n, passages.total, passages.n = self.files_done, self.queued, self.embedded
            files.refresh()
            passages.refresh()
        if self.on_progress is not None:
            self.on_progress(IngestProgress(self.files_total, self.files_done, self.current, self.queued,
                                            self.embedded, self.report.commits, self.report))

    def _stopping(self) -> bool:
        if not self.report.stopped and self.should_stop():
            self.report.stopped = True
        return self.report.stopped

    # ------------------------------------------------------------------------------------ steps ----
    def prepare(self, path: str, data: bytes, size: int, mtime: float, known: Any, kind: str | None = None) -> None:
        """Decide unchanged / new / changed for one file's bytes and queue the work."""
        t = self.report.timings
        kind = kind or detect_kind(path)
        digest = hashlib.sha256(data).hexdigest()
        signature = self.target.chunking.signature
        if known is not None and not self.force and known.content_hash == digest and known.chunking == signature:
            self.report.unchanged.append(path)
            if known.size != size or abs(known.mtime - mtime) > 1e-6:
                self.touches.append((path, size, mtime))
            return
        t0 = time.perf_counter()
        try:
            doc = load_bytes(data, kind, path)
        finally:
            t["parse"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        try:
            chunks = chunk_document(doc.text, doc.blocks, self.target.counter, self.target.chunking)
        except InvalidInputError:
            raise  # settings: the same for every file, so stop the run
        except Exception as exc:  # e.g. the tokenizer rejects some text: report the file, go on
            raise LoadError(f"chunking failed: {type(exc).__name__}: {exc}") from exc
        finally:
            t["chunk"] += time.perf_counter() - t0
        if not chunks:
            raise LoadError("no text found in the file")
        for note in doc.warnings:
            self.report.warnings.append((path, note))
        write = DocumentWrite(path=path, kind=doc.kind, content_hash=digest, size=size, mtime=mtime,
                              chunking=signature, chunks=chunks, vectors=np.zeros((0, 0), np.float32),
                              title=doc.title, encoding=doc.encoding, pages=doc.pages)
        self.pending.append(_Pending(write, known is None))
        self.unembedded += len(chunks)
        self.pending_chunks += len(chunks)
        self.queued += len(chunks)
        if self.unembedded >= self.cfg.embed_group:
            self.embed()
        if (self.pending_chunks >= self.cfg.commit_every_chunks
                or time.monotonic() - self.last_commit >= self.cfg.commit_every_seconds):
            self.flush()

    def embed(self) -> None:
        """Embed the queued passages in slices; a stop request between slices leaves the rest unembedded."""
        todo = [p for p in self.pending if p.write.vectors.shape[0] != len(p.write.chunks)]
        if not todo:
            return
        t0 = time.perf_counter()
        step = max(1, 2 * self.cfg.batch_size)  # slices, so progress moves (and a stop lands) during a long embed
        doc, parts, have = 0, [], 0  # the document being filled, its vector parts, and how many it has
        texts = [c.text for p in todo for c in p.write.chunks]
        for lo in range(0, len(texts), step):
            if self._stopping():
                break
            vecs = self.target.embed(texts[lo : lo + step])
            self.embedded += len(vecs)
            while len(vecs):
                need = len(todo[doc].write.chunks) - have
                parts.append(vecs[:need])
                have += len(parts[-1])
                vecs = vecs[need:]
                if have == len(todo[doc].write.chunks):
                    todo[doc].write.vectors = np.concatenate(parts)
                    doc, parts, have = doc + 1, [], 0
            self._notify()
        self.report.timings["embed"] += time.perf_counter() - t0
        self.unembedded = sum(len(p.write.chunks) for p in todo[doc:])

    def flush(self, deletes: list[str] | None = None) -> None:
        """Commit every pending file that is fully embedded (all of them unless the run was stopped)."""
        self.embed()
        ready = [p for p in self.pending if p.write.vectors.shape[0] == len(p.write.chunks)]
        changes = Changes(writes=[p.write for p in ready], touches=self.touches, deletes=deletes or [])
        if changes.empty:
            return
        t0 = time.perf_counter()
        result = self.target.commit(changes)
        self.report.timings["commit"] += time.perf_counter() - t0
        self.report.commits += 1
        for p in ready:
            (self.report.added if p.is_new else self.report.updated).append(p.write.path)
            self.report.chunks_added += len(p.write.chunks)
            self.report.passages[p.write.path] = len(p.write.chunks)
        self.report.chunks_removed += len(result.removed_ids)
        self.report.removed.extend(result.deleted_paths)
        self.pending = [p for p in self.pending if p.write.vectors.shape[0] != len(p.write.chunks)]
        self.touches, self.pending_chunks = [], sum(len(p.write.chunks) for p in self.pending)
        self.last_commit = time.monotonic()
        self._notify()
        if os.environ.get("NVEMBED_INDEX_COMMIT_LOG"):  # used by the kill test to time its kills
            print(f"committed generation {result.generation}", file=sys.stderr, flush=True)

    # ------------------------------------------------------------------------------------- runs ----
    def run(self, roots: Sequence[str | os.PathLike[str]], prune: bool) -> IngestReport:
        """Ingest every supported file under each of `roots` (folders or files)."""
        started = time.perf_counter()
        walks = []
        for root in roots:
            found = discover(root, self.cfg.include_hidden, self.cfg.follow_symlinks)
            root_s = normalise_path(root)
            self.report.skipped.extend(found.skipped)
            self.report.failed.extend(found.errors)
            known = self.target.store.documents_by_path(prefix=root_s)
            known = {p: d for p, d in known.items() if p == root_s or p.startswith(root_s.rstrip(os.sep) + os.sep)}
            walks.append((root_s, found, known))
        self.files_total = sum(len(f.files) for _, f, _ in walks)
        max_bytes = int(self.cfg.max_file_mb * 1e6)
        if self.progress:
            self.bars = (_progress(self.files_total, "files", "file", 0), _progress(0, "embedded", "passage", 1))
        try:
            self._notify()
            for _root_s, found, known in walks:
                for path in found.files:
                    if self._stopping():
                        break
                    self.current = path
                    t0 = time.perf_counter()
                    try:
                        data, st = read_file(path, max_bytes)
                        self.report.bytes_read += len(data)
                        self.report.timings["read"] += time.perf_counter() - t0
                        self.prepare(path, data, st.st_size, st.st_mtime, known.get(path))
                    except LoadError as exc:
                        self.report.failed.append((path, str(exc)))
                    self.files_done += 1
                    self._notify()
            deletes: list[str] = []
            if prune and not self.report.stopped:
                for root_s, found, known in walks:
                    deletes.extend(self._prune_list(found, known, root_s))
            self.current = ""
            self.flush(deletes)
        finally:
            if self.bars is not None:
                for b in self.bars:
                    b.close()
                self.bars = None
        self.report.elapsed = time.perf_counter() - started
        return self.report

    def _prune_list(self, found: Discovery, known: dict[str, Any], root_s: str) -> list[str]:
        deletes: list[str] = []
        present = set(found.files) | {p for p, _ in found.errors}
        blocked = [d.rstrip(os.sep) + os.sep for d in found.unlisted]
        gone = [p for p in known if p not in present and not any(p.startswith(b) for b in blocked)]
        if gone and not found.files and not found.errors:
            self.report.prune_note = (
                f"{root_s} has no supported files; not pruning its {len(gone)} stored documents "
                "(remove them with `python -m index.delete`)"
            )
        else:
            deletes = gone
        return deletes

    def one(self, path: str, data: bytes, size: int, mtime: float, kind: str | None) -> IngestReport:
        """Add or replace one document from its bytes."""
        started = time.perf_counter()
        known = self.target.store.documents_by_path([path]).get(path)
        self.prepare(path, data, size, mtime, known, kind)
        self.flush()
        self.report.elapsed = time.perf_counter() - started
        return self.report


def _progress(total: int, desc: str, unit: str, position: int) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, unit=unit, desc=f"{desc:>8}", file=sys.stderr, dynamic_ncols=True, position=position)
