"""Vectors on disk as immutable segments plus deletion files, so that a commit writes only what changed.

Until this layout, every commit rewrote one FAISS file holding every vector: 2.3 GB per commit at 1M
passages of 576 floats, so ingest cost grew with the square of the index. Now a generation's vectors are:

    vectors-<gen>.json       the manifest (what `index_record.vector_file` points at): the files below
    segment-<gen>.vec        rows (chunk id, vector) added by commit <gen>, or merged from several commits
    deleted-<gen>.ids        chunk ids removed by commit <gen>
    trained-<gen>.faiss      the trained, empty IVF index (IVF indexes only; rewritten when retrained)

Files are never modified once written. A segment covers the commits `first..last`; a deletion file of
commit g removes rows of the segments with `last < g` (an id removed and re-added in the same or a later
commit lives on in the newer segment). A commit writes one segment, one deletion file and a new manifest,
each through a temporary file, fsync and rename, before the database commit switches `vector_file` to the
manifest: killed before it, the old manifest and its files are intact (the new files are strays, deleted on
the next open); killed after it, the new manifest's files are all on disk. Files the new manifest no longer
lists are deleted after the switch; a reader that still follows the old manifest and finds a file gone
reads the new pointer again.

Merging, when it pays: after a commit, the newest two segments are merged while the newer one holds at
least a quarter of the rows of the one before it (segment sizes stay geometric: each row is rewritten
O(log N) times, and a commit that adds B rows writes O(B) rows besides the occasional merge). When the
deletion files hold more than a fifth of the rows, or there are more than 16 of them, everything is
compacted into one segment from the writer's in-memory index. An index in the single-file layout
(`vectors-<gen>.faiss`) still opens; its first commit writes the full base segment (the migration).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import faiss
import numpy as np

from .config import VectorConfig
from .vectors import VectorIndex, fsync_replace

FORMAT = 1
MANIFEST_PREFIX, MANIFEST_SUFFIX = "vectors-", ".json"
MERGE_RATIO = 4  # merge the newest two segments while newer * MERGE_RATIO >= older
COMPACT_DELETED_FRACTION = 0.2
MAX_DELETION_FILES = 16


def manifest_name(generation: int) -> str:
    return f"{MANIFEST_PREFIX}{generation:08d}{MANIFEST_SUFFIX}"


def is_manifest(name: str | None) -> bool:
    return bool(name) and name.startswith(MANIFEST_PREFIX) and name.endswith(MANIFEST_SUFFIX)


@dataclass
class Segment:
    file: str
    rows: int
    first: int  # the commits whose rows it holds: first..last
    last: int


@dataclass
class Deletion:
    file: str
    rows: int
    generation: int


@dataclass
class Manifest:
    dimension: int
    segments: list[Segment] = field(default_factory=list)
    deletions: list[Deletion] = field(default_factory=list)
    trained: str | None = None
    format: int = FORMAT

    @classmethod
    def read(cls, path: Path) -> Manifest:
        data = json.loads(Path(path).read_text())
        if data.get("format") != FORMAT:
            raise RuntimeError(f"{path}: unknown vector manifest format {data.get('format')!r}")
        return cls(int(data["dimension"]), [Segment(**s) for s in data["segments"]],
                   [Deletion(**d) for d in data["deletions"]], data.get("trained"))

    def files(self) -> list[str]:
        names = [s.file for s in self.segments] + [d.file for d in self.deletions]
        return names + ([self.trained] if self.trained else [])

    @property
    def rows(self) -> int:
        return sum(s.rows for s in self.segments)


# ------------------------------------------------------------------------------------- file I/O ----
def _write(path: Path, *arrays: np.ndarray) -> None:
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            for arr in arrays:
                np.save(fh, arr, allow_pickle=False)
        fsync_replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_segment(path: Path, dimension: int) -> tuple[np.ndarray, np.ndarray]:
    with open(path, "rb") as fh:
        ids = np.load(fh, allow_pickle=False)
        vectors = np.load(fh, allow_pickle=False)
    if vectors.shape != (len(ids), dimension):
        raise RuntimeError(f"segment {path} holds vectors of shape {vectors.shape}, expected ({len(ids)}, {dimension})")
    return ids.astype(np.int64, copy=False), vectors.astype(np.float32, copy=False)


def read_deletion(path: Path) -> np.ndarray:
    with open(path, "rb") as fh:
        return np.load(fh, allow_pickle=False).astype(np.int64, copy=False)


def _write_manifest(path: Path, manifest: Manifest) -> None:
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    try:
        tmp.write_text(json.dumps(asdict(manifest), indent=1))
        fsync_replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------------------- reading ----
def _live_rows(directory: Path, manifest: Manifest, segments: list[Segment],
               upto: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(ids, vectors) of `segments` minus the deletions that apply to them (those up to commit `upto`)."""
    deletions = [(d.generation, read_deletion(directory / d.file)) for d in manifest.deletions
                 if upto is None or d.generation <= upto]
    id_parts, vec_parts = [], []
    for seg in segments:
        ids, vecs = read_segment(directory / seg.file, manifest.dimension)
        drop = [dels for gen, dels in deletions if gen > seg.last]
        if drop and len(ids):
            keep = ~np.isin(ids, np.concatenate(drop))
            ids, vecs = ids[keep], vecs[keep]
        id_parts.append(ids)
        vec_parts.append(vecs)
    if not id_parts:
        return np.zeros(0, np.int64), np.zeros((0, manifest.dimension), np.float32)
    return np.concatenate(id_parts), np.concatenate(vec_parts)


def load(directory: Path, name: str, dimension: int, config: VectorConfig | None = None) -> VectorIndex:
    """The in-memory index of a manifest. Raises FileNotFoundError when one of its files is gone."""
    manifest = Manifest.read(directory / name)
    if manifest.dimension != dimension:
        raise RuntimeError(f"vector manifest {name} has dimension {manifest.dimension}, the record says {dimension}")
    ids, vectors = _live_rows(directory, manifest, manifest.segments)
    if manifest.trained:
        vi = VectorIndex(dimension, config, faiss.read_index(str(directory / manifest.trained)))
        vi.add(ids, vectors)
        vi.trained_size = max(vi.ntotal, 1)
    else:
        vi = VectorIndex(dimension, config)
        vi.add(ids, vectors)
    return vi


# --------------------------------------------------------------------------------------- writing ----
@dataclass
class SegmentWrite:
    """What one commit hands to `write_generation`."""

    added_ids: np.ndarray
    added_vectors: np.ndarray
    removed_ids: np.ndarray
    full: bool  # rewrite everything from the in-memory index (new model, IVF (re)trained, migration)


def write_generation(directory: Path, old_name: str | None, generation: int, vectors: VectorIndex,
                     change: SegmentWrite) -> str:
    """Write commit `generation`'s files and manifest (not yet pointed at); returns the manifest's name."""
    old = None
    if is_manifest(old_name):
        try:
            old = Manifest.read(directory / old_name)
            if not all((directory / f).is_file() for f in old.files()):
                old = None
        except (OSError, ValueError, RuntimeError, KeyError, TypeError):
            old = None  # unreadable (a repair is running): the writer's in-memory index is the truth
    trained = old.trained if old is not None else None
    full = change.full or old is None or (vectors.kind == "ivf") != bool(trained)
    if not full:
        manifest = Manifest(vectors.dimension, list(old.segments), list(old.deletions), trained)
        if len(change.removed_ids):
            d = Deletion(f"deleted-{generation:08d}.ids", int(len(change.removed_ids)), generation)
            _write(directory / d.file, np.ascontiguousarray(change.removed_ids, dtype=np.int64))
            manifest.deletions.append(d)
        if len(change.added_ids):
            s = Segment(f"segment-{generation:08d}.vec", int(len(change.added_ids)), generation, generation)
            _write(directory / s.file, np.ascontiguousarray(change.added_ids, dtype=np.int64),
                   np.ascontiguousarray(change.added_vectors, dtype=np.float32))
            manifest.segments.append(s)
        deleted = sum(d.rows for d in manifest.deletions)
        if deleted > COMPACT_DELETED_FRACTION * max(manifest.rows, 1) or len(manifest.deletions) > MAX_DELETION_FILES:
            full = True
        else:
            _merge_tail(directory, manifest, generation)
    if full:
        manifest = Manifest(vectors.dimension)
        ids, vecs = vectors.all_vectors()
        seg = Segment(f"segment-{generation:08d}.vec", int(len(ids)), 0, generation)
        _write(directory / seg.file, ids, vecs)
        manifest.segments.append(seg)
        if vectors.kind == "ivf":
            manifest.trained = f"trained-{generation:08d}.faiss"
            empty = faiss.clone_index(vectors.index)
            empty.reset()
            tmp = directory / (manifest.trained + f".tmp-{os.getpid()}")
            faiss.write_index(empty, str(tmp))
            fsync_replace(tmp, directory / manifest.trained)
    name = manifest_name(generation)
    _write_manifest(directory / name, manifest)
    _fsync_dir(directory)
    return name


def _merge_tail(directory: Path, manifest: Manifest, generation: int) -> None:
    """Merge the newest two segments while the newer holds at least 1/MERGE_RATIO of the older's rows."""
    segs = manifest.segments
    while len(segs) >= 2 and segs[-1].rows * MERGE_RATIO >= segs[-2].rows:
        a, b = segs[-2], segs[-1]
        ids, vecs = _live_rows(directory, manifest, [a, b], upto=b.last)
        merged = Segment(f"segment-{generation:08d}-{a.first:08d}.vec", int(len(ids)), a.first, b.last)
        _write(directory / merged.file, ids, vecs)
        segs[-2:] = [merged]
    oldest_last = min((s.last for s in segs), default=generation)
    manifest.deletions = [d for d in manifest.deletions if d.generation > oldest_last]  # the rest apply to nothing


def referenced_files(directory: Path, name: str | None) -> set[str]:
    """The files generation `name` needs (itself included); empty when it cannot be read."""
    if not name:
        return set()
    if not is_manifest(name):
        return {name}
    try:
        return {name, *Manifest.read(directory / name).files()}
    except (OSError, ValueError, RuntimeError, KeyError, TypeError):
        return {name}


def is_vector_file(name: str) -> bool:
    """A file of either layout (or its temporary), which only commits create."""
    return name.startswith(("vectors-", "segment-", "deleted-", "trained-"))
