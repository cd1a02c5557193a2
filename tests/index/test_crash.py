"""Crash safety and concurrency: kill -9 during ingest, kills at exact commit points, failed commits,
and a reader searching while another process writes."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

import index
from index import segments
from index.store import Chunk, Document
from index.testing import HashEncoder

from .docgen import write

ROOT = Path(__file__).resolve().parents[2]
MODEL = "hash:64"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["NVEMBED_INDEX_COMMIT_LOG"] = "1"
    return env


def _corpus(docs: Path, n: int, version: int = 0) -> dict[str, str]:
    unique = {}
    for i in range(n):
        sentence = f"Unique marker zz{i}v{version}q appears in document {i}."
        body = "\n\n".join(f"Filler paragraph {j} of file {i} with some words." for j in range(1 + i % 4))
        write(docs / f"d{i:03d}.txt", f"{body}\n\n{sentence}\n")
        unique[f"d{i:03d}.txt"] = sentence
    return unique


def _ingest_cmd(docs: Path, ix: Path) -> list[str]:
    return [sys.executable, "-m", "index.ingest", str(docs), "--index", str(ix), "--model", MODEL,
            "--commit-every", "3", "--chunk-tokens", "32", "--overlap", "4", "--quiet"]


def assert_consistent(ix_dir: Path) -> None:
    """Opens (which repairs leftovers), then: one vector per chunk, no orphans, every document complete."""
    with index.open(ix_dir) as ix:
        report = ix.check()
        assert report.ok, report.describe()
        assert report.chunks == report.vectors
        assert not list(ix_dir.glob("*.tmp-*"))
        assert sorted(p.name for p in ix_dir.glob("vectors-*")) == ([ix.record.vector_file] if ix.record.vector_file else [])
        on_disk = {p.name for p in ix_dir.iterdir() if segments.is_vector_file(p.name)}
        assert on_disk == segments.referenced_files(ix_dir, ix.record.vector_file)  # no strays, nothing missing
        with ix.store.session() as s:
            declared = s.execute(select(func.coalesce(func.sum(Document.n_chunks), 0))).scalar_one()
            rows = s.execute(select(func.count()).select_from(Chunk)).scalar_one()
        assert declared == rows, "a document is stored with only part of its chunks"


def test_kill_9_at_random_points_then_resume(tmp_path):
    docs, ix_dir = tmp_path / "docs", tmp_path / "ix"
    unique = _corpus(docs, 60)
    rng = random.Random(1234)
    kills = 0
    for round_ in range(6):
        if round_ == 3:  # change the corpus half-way: updates and removals get interrupted too
            for i in range(0, 60, 7):
                (docs / f"d{i:03d}.txt").unlink()
                unique.pop(f"d{i:03d}.txt")
            for i in range(1, 60, 5):
                if f"d{i:03d}.txt" in unique:
                    sentence = f"Unique marker zz{i}v1q appears in document {i}."
                    write(docs / f"d{i:03d}.txt", f"Rewritten file.\n\n{sentence}\n")
                    unique[f"d{i:03d}.txt"] = sentence
        proc = subprocess.Popen(_ingest_cmd(docs, ix_dir), env=_env(), cwd=ROOT, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        target = rng.randint(0, 6)
        seen = 0
        while seen < target:
            line = proc.stderr.readline()
            if not line:
                break
            seen += "committed generation" in line
        time.sleep(rng.uniform(0, 0.03))  # land anywhere: parsing, embedding, writing the file, committing
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(timeout=60)
        proc.stderr.close()
        if ix_dir.joinpath("meta.sqlite3").exists():
            assert_consistent(ix_dir)
    assert kills >= 3, "the kills should interrupt running ingests"
    done = subprocess.run(_ingest_cmd(docs, ix_dir), env=_env(), cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert_consistent(ix_dir)
    with index.open(ix_dir) as ix:
        assert sorted(os.path.basename(d.path) for d in ix.documents()) == sorted(unique)
        for name, sentence in unique.items():
            assert ix.search(sentence, k=1, mode="keyword")[0].path.endswith(name)
        assert not ix.search("zz0v0q", k=5, mode="keyword")  # d000 was deleted
    again = subprocess.run(_ingest_cmd(docs, ix_dir), env=_env(), cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert "0 added, 0 updated" in again.stdout and f"{len(unique)} unchanged" in again.stdout


_KILL_SCRIPT = textwrap.dedent('''
    import os, signal, sys
    import index
    from index import segments, vectors, writer
    from index.config import ChunkingConfig, IndexConfig, IngestConfig, VectorConfig
    from index.testing import HashEncoder

    point, layout, docs, ix_dir = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
    state = {"saves": 0}
    real_save, real_write = vectors.VectorIndex.save, segments.write_generation
    real_manifest, real_unlink = segments._write_manifest, os.unlink

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    def save(self, path):
        state["saves"] += 1
        if state["saves"] == 2 and point == "before-save":
            die()
        real_save(self, path)
        if state["saves"] == 2 and point == "after-save":
            die()

    def write_generation(*args, **kwargs):
        state["saves"] += 1
        if state["saves"] == 2 and point == "before-save":
            die()
        name = real_write(*args, **kwargs)
        if state["saves"] == 2 and point == "after-save":
            die()
        return name

    def write_manifest(*args, **kwargs):  # the segment (and a merge) written, the manifest not yet
        if state["saves"] == 2 and point == "before-manifest":
            die()
        real_manifest(*args, **kwargs)

    def unlink(path, *a, **k):
        if state["saves"] == 2 and point == "after-commit" and ".tmp-" not in str(path):
            die()  # the database switched to generation 2; its old files are not all deleted yet
        real_unlink(path, *a, **k)

    vectors.VectorIndex.save = save
    segments.write_generation = write_generation
    segments._write_manifest = write_manifest
    writer.os.unlink = unlink
    config = IndexConfig(chunking=ChunkingConfig(32, 4), ingest=IngestConfig(commit_every_chunks=3),
                         vectors=VectorConfig(layout=layout))
    with index.open(ix_dir, HashEncoder(64, max_length=128), config=config) as ix:
        ix.ingest(docs)
''')


@pytest.mark.parametrize("point, layout", [
    ("before-save", "segments"), ("after-save", "segments"), ("after-commit", "segments"),
    ("before-manifest", "segments"), ("before-save", "single"), ("after-save", "single"), ("after-commit", "single"),
])
def test_kill_at_each_commit_step(tmp_path, point, layout):
    docs, ix_dir = tmp_path / "docs", tmp_path / "ix"
    unique = _corpus(docs, 12)
    proc = subprocess.run([sys.executable, "-c", _KILL_SCRIPT, point, layout, str(docs), str(ix_dir)], env=_env(),
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert_consistent(ix_dir)
    with index.open(ix_dir) as ix:
        committed = len(ix.documents())
        assert 0 < committed < len(unique)  # the first batch survived, the second did not finish
        assert ix.record.generation == (2 if point == "after-commit" else 1)
    encoder = HashEncoder(64, max_length=128)
    with index.open(ix_dir, encoder) as ix:
        report = ix.ingest(docs)
        assert len(report.unchanged) == committed and len(report.added) == len(unique) - committed
        assert ix.check().ok


def test_failed_commit_rolls_back_and_keeps_stored_data(tmp_path, monkeypatch):
    docs, ix_dir = tmp_path / "docs", tmp_path / "ix"
    _corpus(docs, 5)
    encoder = HashEncoder(64, max_length=128)
    with index.open(ix_dir, encoder) as ix:
        ix.ingest(docs)
        before = ({d.path: d.content_hash for d in ix.documents()}, sorted(ix.vectors.ids().tolist()))
        write(docs / "new.txt", "a new document")
        write(docs / "d001.txt", "changed document")
        from sqlalchemy.orm import Session

        def boom(self):
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(Session, "commit", boom)
        with pytest.raises(OSError, match="No space"):
            ix.ingest(docs)
        monkeypatch.undo()
        assert ({d.path: d.content_hash for d in ix.documents()}, sorted(ix.vectors.ids().tolist())) == before
        assert ix.check().ok and sorted(p.name for p in ix_dir.glob("vectors-*")) == [ix.record.vector_file]
        assert len(ix.ingest(docs).added) == 1


def test_reader_searches_while_another_process_ingests(tmp_path):
    docs, ix_dir = tmp_path / "docs", tmp_path / "ix"
    _corpus(docs, 3)
    subprocess.run(_ingest_cmd(docs, ix_dir), env=_env(), cwd=ROOT, check=True, capture_output=True, timeout=120)
    _corpus(docs, 80, version=1)
    writer = subprocess.Popen(_ingest_cmd(docs, ix_dir), env=_env(), cwd=ROOT, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    searches = generations = 0
    with index.open(ix_dir, HashEncoder(64, max_length=128)) as reader:
        seen_generation = reader.record.generation
        while writer.poll() is None or searches < 5:
            for mode in ("dense", "keyword", "hybrid"):
                hits = reader.search("Unique marker appears in document", k=5, mode=mode)
                docs_now, _ = reader.store.count()
                assert len(hits) == min(5, reader.vectors.ntotal) or mode == "keyword"
                assert all(h.text and h.path for h in hits)
                searches += 1
            if reader.record.generation != seen_generation:
                generations += 1
                seen_generation = reader.record.generation
    assert writer.wait(timeout=120) == 0
    assert generations >= 1, "the reader picked up commits made while it was open"
    assert_consistent(ix_dir)
