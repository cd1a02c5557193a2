"""The app's writes go through the facade's one ingest path: batched commits, progress and stop hooks."""

from __future__ import annotations

import math
import time

import index
from app.jobs import JobManager
from index.config import IngestConfig
from index.testing import HashEncoder


def _wait(job, seconds: float = 60) -> None:
    deadline = time.time() + seconds
    while job.running and time.time() < deadline:
        time.sleep(0.02)
    assert not job.running, f"job still running after {seconds} s"


def _folder(root, n: int):
    docs = root / "docs"
    docs.mkdir()
    for i in range(n):
        (docs / f"f{i:03d}.txt").write_text(f"file number {i} about harbor lantern {i % 7}")
    return docs


def test_folder_ingest_of_n_files_makes_n_over_batch_commits_not_n(tmp_path):
    n, batch = 60, 16
    docs = _folder(tmp_path, n)
    encoder = HashEncoder(32)
    manager = JobManager(tmp_path / "index", IngestConfig(commit_every_chunks=batch, embed_group=8))
    job = manager.ingest_folder(str(docs), encoder, "hash:32")
    _wait(job)
    assert job.state == "done" and job.counts()["added"] == n and job.done == job.total == n
    with index.open(tmp_path / "index", encoder) as ix:
        commits = ix.stats().generation  # a new index is generation 0; each commit adds one
        assert ix.stats().documents == n
    assert commits <= math.ceil(n / batch) + 1 < n
    # the default settings: one commit for the whole folder
    other = JobManager(tmp_path / "index2")
    job = other.ingest_folder(str(docs), encoder, "hash:32")
    _wait(job)
    with index.open(tmp_path / "index2", encoder) as ix:
        assert ix.stats().generation == 1 and ix.stats().documents == n


def test_reingest_of_several_documents_is_one_commit(tmp_path):
    docs = _folder(tmp_path, 5)
    encoder = HashEncoder(32)
    manager = JobManager(tmp_path / "index")
    _wait(manager.ingest_folder(str(docs), encoder, "hash:32"))
    paths = [str(p) for p in sorted(docs.iterdir())[:3]] + [str(docs / "gone.txt")]
    job = manager.reingest(paths, encoder, "hash:32")
    _wait(job)
    status = {o.path.rsplit("/", 1)[-1]: o.status for o in job.outcomes}
    assert status == {"f000.txt": "updated", "f001.txt": "updated", "f002.txt": "updated", "gone.txt": "failed"}
    with index.open(tmp_path / "index", encoder) as ix:
        assert ix.stats().generation == 2


def test_progress_hook_counts_files_and_stop_hook_keeps_what_was_embedded(tmp_path):
    docs = _folder(tmp_path, 12)
    encoder = HashEncoder(32)
    seen = []
    with index.open(tmp_path / "index", encoder, config=index.IndexConfig(
            ingest=IngestConfig(embed_group=1, commit_every_chunks=1000))) as ix:
        report = ix.ingest(docs, on_progress=lambda p: seen.append((p.files_done, p.files_total)),
                           should_stop=lambda: len(seen) > 8)
        assert report.stopped and 0 < len(report.added) < 12 and report.commits == 1
        assert ix.stats().documents == len(report.added)  # what was committed is what the report says
        assert "stopped early" in report.summary()
        assert all(total == 12 for _, total in seen) and [d for d, _ in seen] == sorted(d for d, _ in seen)
        again = ix.ingest(docs)  # a re-run ingests the rest and leaves the committed ones alone
        assert not again.stopped and len(again.added) == 12 - len(report.added)
        assert len(again.unchanged) == len(report.added) and ix.stats().documents == 12
