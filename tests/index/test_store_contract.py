"""One contract for every vector store: FAISS files (the default), Milvus Lite in-process, and a Milvus
Lite server over gRPC on loopback (started here). `pytest -k milvus` runs only the Milvus backends.

Everything goes through the public `index` API with the stand-in encoder; the Milvus runs use the real
pymilvus client and the real milvus-lite engine.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import index
from index.config import ChunkingConfig, IndexConfig
from index.errors import InvalidInputError, SettingsMismatchError
from index.filters import Filters

from .docgen import make_pdf, write

BACKENDS = ["faiss", "milvus_lite", "milvus_server"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def milvus_server(tmp_path_factory):
    """A `milvus-lite server` on 127.0.0.1, for the gRPC path (the same client code as a real cluster)."""
    pytest.importorskip("pymilvus", reason="pymilvus is not installed (pip install '.[milvus]')")
    exe = shutil.which("milvus-lite") or str(Path(sys.executable).with_name("milvus-lite"))
    if not Path(exe).exists():
        pytest.skip("the milvus-lite server binary is not installed (pip install '.[milvus]')")
    port = _free_port()
    data = tmp_path_factory.mktemp("milvus-server")
    log = open(data / "server.log", "wb")
    proc = subprocess.Popen([exe, "server", "--data-dir", str(data / "d"), "--host", "127.0.0.1",
                             "--port", str(port)], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 60
    try:
        while True:
            if proc.poll() is not None:
                pytest.skip(f"milvus-lite server exited with {proc.returncode}: "
                            f"{(data / 'server.log').read_text(errors='replace')[-500:]}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if time.time() > deadline:
                    pytest.skip("milvus-lite server did not listen within 60 s")
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(params=BACKENDS)
def backend(request, tmp_path):
    """The store URI for this run (None = FAISS)."""
    if request.param == "faiss":
        return None
    pytest.importorskip("pymilvus", reason="pymilvus is not installed (pip install '.[milvus]')")
    if request.param == "milvus_lite":
        pytest.importorskip("milvus_lite", reason="milvus-lite is not installed (pip install '.[milvus]')")
        return str(tmp_path / "milvus.db")
    return request.getfixturevalue("milvus_server")


@pytest.fixture
def make(backend, tmp_path, encoder):
    opened = []

    def _open(enc=None, **kwargs):
        cfg = IndexConfig(chunking=ChunkingConfig(chunk_tokens=64, overlap_tokens=8), lock_timeout=2.0,
                          store_uri=backend)
        ix = index.open(tmp_path / "ix", enc or encoder, config=cfg, **kwargs)
        opened.append(ix)
        return ix

    yield _open
    for ix in opened:
        ix.close()


@pytest.fixture
def corpus(make, docs):
    for i in range(12):
        write(docs / "notes" / f"n{i:02d}.txt", f"Note {i} about river boats and harbour cranes number {i}.")
        write(docs / "guides" / f"g{i:02d}.md", f"# Guide {i}\n\nHow to repair harbour cranes, step {i}.")
    write(docs / "rare.txt", "Maintenance log: the part QX-7734-ZEB failed twice in winter.")
    write(docs / "manual.pdf", make_pdf(["Page one is about pumps.", "Page two covers the valve assembly."]))
    ix = make()
    report = ix.ingest(docs)
    assert not report.failed
    return ix


def test_ingest_and_dense_search_with_citations(corpus, docs, backend):
    st = corpus.stats()
    assert st.documents == 26 and st.vectors == st.chunks >= 26
    assert st.vector_kind == ("flat" if backend is None else "milvus")
    hits = corpus.search("Note 7 about river boats and harbour cranes number 7.", k=5, mode="dense")
    assert hits[0].path == str(docs / "notes" / "n07.txt") and hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert [h.rank for h in hits] == [1, 2, 3, 4, 5] and all(a.score >= b.score for a, b in zip(hits, hits[1:], strict=False))
    page = corpus.search("the valve assembly", k=1, mode="dense")[0]
    assert page.path == str(docs / "manual.pdf") and page.page == 2 and "valve assembly" in page.text
    assert corpus.check().ok


def test_keyword_and_hybrid_find_a_rare_token(corpus, docs):
    for mode in ("keyword", "hybrid"):
        hits = corpus.search("QX-7734-ZEB", k=5, mode=mode)
        assert hits[0].path == str(docs / "rare.txt"), mode
        assert hits[0].keyword_score is not None
        assert "**QX**-**7734**-**ZEB**" in hits[0].highlighted
    assert corpus.search("zzzunknownword", k=5, mode="keyword") == []


@pytest.mark.parametrize("mode", ["dense", "keyword", "hybrid"])
def test_filters_return_k_matching_results(corpus, docs, mode):
    hits = corpus.search("river boats harbour cranes", k=10, mode=mode, filters=Filters(paths=(str(docs / "guides"),)))
    assert len(hits) == 10 and all("/guides/" in h.path for h in hits)
    hits = corpus.search("harbour cranes", k=5, mode=mode, filters=Filters(kinds=("pdf",)))
    assert all(h.kind == "pdf" for h in hits) and (mode == "keyword" or hits)


def test_upsert_replaces_and_delete_removes(corpus, docs):
    before = corpus.stats().vectors
    target = docs / "notes" / "n03.txt"
    corpus.upsert(target, b"Completely new words: lighthouse keeper logbook.")
    hits = corpus.search("lighthouse keeper logbook", k=1, mode="keyword")
    assert hits and hits[0].path == str(target)
    dense = corpus.search("Note 3 about river boats and harbour cranes number 3.", k=30, mode="dense")
    assert str(target) not in {h.path for h in dense if h.score > 0.999}
    assert corpus.stats().vectors == before and corpus.check().ok
    report = corpus.delete([target, docs / "rare.txt"])
    assert sorted(report.deleted) == sorted([str(target), str(docs / "rare.txt")])
    for mode in ("dense", "keyword", "hybrid"):
        paths = {h.path for h in corpus.search("lighthouse QX-7734-ZEB", k=40, mode=mode)}
        assert str(target) not in paths and str(docs / "rare.txt") not in paths, mode
    assert corpus.stats().vectors == before - 2 and corpus.check().ok


def test_reopen_sees_the_committed_index(corpus, make, docs):
    n = corpus.stats().vectors
    corpus.close()
    ix = make()
    assert ix.stats().vectors == n
    assert ix.search("QX-7734-ZEB", k=1, mode="hybrid")[0].path == str(docs / "rare.txt")
    again = ix.ingest(docs)
    assert not again.added and not again.updated and len(again.unchanged) == 26


def test_orphan_vectors_are_skipped_and_repaired(corpus, make, encoder, backend):
    if backend is None:
        pytest.skip("FAISS orphans are covered by test_facade::test_open_repairs_orphans...")
    ghost = 10_000_000
    text = "Ghost passage about river boats."
    corpus.vectors.upsert(np.array([ghost]), encoder.encode_passages([text]), [text])
    hits = corpus.search(text, k=5, mode="hybrid")
    assert hits and ghost not in {h.chunk_id for h in hits}
    assert corpus.check().orphan_vectors == [ghost]
    corpus.close()
    ix = make()  # the open repairs it
    assert ix.check().ok and ghost not in set(ix.vectors.ids().tolist())


@pytest.mark.parametrize("backend", ["milvus_lite"], indirect=True)
def test_milvus_store_mismatches_are_clear_errors(make, backend, tmp_path, encoder, docs):
    write(docs / "a.txt", "alpha beta")
    ix = make()
    ix.ingest(docs)
    ix.close()
    with pytest.raises(SettingsMismatchError, match="Milvus collection"):
        index.open(tmp_path / "ix", encoder)  # no store_uri
    faiss_dir = tmp_path / "faiss"
    index.open(faiss_dir, encoder).close()
    with pytest.raises(SettingsMismatchError, match="FAISS"):
        index.open(faiss_dir, encoder, config=IndexConfig(store_uri=backend))
    with pytest.raises(InvalidInputError, match="ending in .db"):
        index.open(tmp_path / "new", encoder, config=IndexConfig(store_uri=str(tmp_path / "x.sqlite")))
    with pytest.raises(InvalidInputError, match="does not exist"):
        index.open(tmp_path / "new2", encoder, config=IndexConfig(store_uri=str(tmp_path / "nodir" / "x.db")))


def test_cli_store_option_builds_and_searches_milvus_lite(tmp_path, docs, capsys, monkeypatch):
    """`--store` on the CLI (and $NVEMBED_STORE_URI for the app and API): the milvus_lite run of the CLI."""
    pytest.importorskip("milvus_lite", reason="milvus-lite is not installed (pip install '.[milvus]')")
    import json

    from index import ingest as ingest_cli
    from index import search as search_cli
    from index.cli import run
    from index.milvus import STORE_URI_ENV

    monkeypatch.delenv(STORE_URI_ENV, raising=False)
    write(docs / "a.txt", "The lighthouse keeper wrote in the logbook every night.")
    write(docs / "b.txt", "Harbour cranes lift containers.")
    store, ix = str(tmp_path / "cli-milvus.db"), str(tmp_path / "ix")
    assert run(ingest_cli.main, [str(docs), "--index", ix, "--store", store, "--model", "hash:64"]) == 0
    assert STORE_URI_ENV not in os.environ  # --store does not leak past the run into this process
    capsys.readouterr()
    assert run(search_cli.main, ["lighthouse logbook", "--index", ix, "--store", store, "--json", "--k", "1"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert hits[0]["path"] == str(docs / "a.txt")
    assert run(search_cli.main, ["lighthouse", "--index", ix]) != 0  # without it: a clear error
    assert "Milvus collection" in capsys.readouterr().err


def test_milvus_failures_around_the_commit_lose_nothing(corpus, make, docs, monkeypatch, backend):
    """Milvus and SQLite share no transaction: a failed upsert commits nothing; a failed delete after the
    SQLite commit leaves orphans only, which search skips and the next open removes."""
    if backend is None:
        pytest.skip("FAISS commits are covered by test_crash and test_state_machine")
    from index.milvus import MilvusVectors

    before = corpus.stats()
    boom = RuntimeError("milvus went away")

    def failing_upsert(self, *a, **k):
        raise boom

    with monkeypatch.context() as m:
        m.setattr(MilvusVectors, "upsert", failing_upsert)
        with pytest.raises(RuntimeError, match="went away"):
            corpus.upsert(docs / "new.txt", b"A brand new lighthouse document.")
    assert corpus.stats().documents == before.documents and corpus.check().ok

    def failing_remove(self, ids):
        raise boom

    with monkeypatch.context() as m:
        m.setattr(MilvusVectors, "remove", failing_remove)
        report = corpus.delete([docs / "rare.txt"])
    assert report.deleted == [str(docs / "rare.txt")]
    assert all(h.path != str(docs / "rare.txt") for h in corpus.search("QX-7734-ZEB", k=5, mode="hybrid"))
    assert corpus.check().orphan_vectors and not corpus.check().missing_vectors
    corpus.close()
    ix = make()  # the open deletes the orphans
    assert ix.check().ok and ix.stats().vectors == before.vectors - 1
