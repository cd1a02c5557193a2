"""Incremental ingest, pruning, and bad inputs that are reported without crashing or losing stored data."""

from __future__ import annotations

import os

import pytest

from index.config import IndexConfig
from index.errors import InvalidInputError, LoadError
from index.testing import HashEncoder

from .conftest import small_config
from .docgen import make_blank_pdf, make_html, mixed_folder, write


def _sentences_found(ix, unique):
    for name, sentence in unique.items():
        hits = ix.search(sentence, k=1, mode="keyword")
        assert hits and hits[0].path.endswith(name), (name, hits[:1])


def test_mixed_folder_then_incremental(open_index, docs, encoder):
    unique = mixed_folder(docs)
    ix = open_index()
    report = ix.ingest(docs)
    assert sorted(os.path.basename(p) for p in report.added) == sorted(unique)
    assert not report.failed and report.commits == 1
    _sentences_found(ix, unique)
    pdf_hit = ix.search(unique["report.pdf"], k=1)[0]
    assert pdf_hit.page == 2 and pdf_hit.kind == "pdf"
    assert ix.check().ok

    calls = encoder.calls
    again = ix.ingest(docs)
    assert len(again.unchanged) == len(unique) and not (again.added or again.updated or again.removed)
    assert encoder.calls == calls, "unchanged files are not re-embedded"
    assert again.commits == 0

    os.utime(docs / "notes.txt", (1, 1))  # touched, same content: only the row changes
    touched = ix.ingest(docs)
    assert touched.unchanged and not touched.updated and encoder.calls == calls

    write(docs / "notes.txt", "Completely new notes about a narwhal orchestra.\n")
    (docs / "memo.docx").unlink()
    before = {d.path: d for d in ix.documents()}
    changed = ix.ingest(docs)
    assert [os.path.basename(p) for p in changed.updated] == ["notes.txt"]
    assert [os.path.basename(p) for p in changed.removed] == ["memo.docx"]
    assert ix.search("narwhal orchestra", k=1, mode="keyword")[0].path.endswith("notes.txt")
    assert not ix.search("quokka eucalyptus", k=5, mode="keyword")
    assert not ix.search("archive basement", k=5, mode="keyword")
    after = {d.path: d for d in ix.documents()}
    assert set(before) - set(after) == {str(docs / "memo.docx")}
    assert ix.check().ok


def test_no_prune_keeps_vanished_and_prune_is_scoped_to_the_folder(open_index, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    write(a / "one.txt", "alpha one")
    write(b / "two.txt", "beta two")
    ix = open_index()
    ix.ingest(a)
    ix.ingest(b)
    (a / "one.txt").unlink()
    write(a / "other.txt", "gamma")
    assert ix.ingest(a, prune=False).removed == []
    assert len(ix.documents()) == 3
    report = ix.ingest(a)
    assert report.removed == [str(a / "one.txt")]
    assert {os.path.basename(d.path) for d in ix.documents()} == {"other.txt", "two.txt"}


def test_empty_folder_does_not_wipe_the_index(open_index, docs):
    write(docs / "x.txt", "kept text")
    ix = open_index()
    ix.ingest(docs)
    (docs / "x.txt").unlink()
    report = ix.ingest(docs)
    assert report.removed == [] and "not pruning" in report.prune_note
    assert len(ix.documents()) == 1


def test_missing_folder_is_an_error_naming_it(open_index, tmp_path):
    with pytest.raises(InvalidInputError, match="nowhere"):
        open_index().ingest(tmp_path / "nowhere")


def _make_unreadable(path, monkeypatch):
    """chmod 000, or (as root, who reads anything) make opening that file fail the same way."""
    os.chmod(path, 0)
    if os.geteuid() == 0:
        import builtins

        real_open = builtins.open

        def fake_open(file, *args, **kwargs):
            if os.fspath(file) == str(path):
                raise PermissionError(13, "Permission denied", str(path))
            return real_open(file, *args, **kwargs)

        monkeypatch.setattr(builtins, "open", fake_open)


def test_bad_inputs_are_reported_and_stored_data_survives(open_index, docs, monkeypatch):
    unique = mixed_folder(docs)
    # default 256-token passages keep the 50 MB page at ~30k passages
    ix = open_index(HashEncoder(64, max_length=512), config=IndexConfig())
    ix.ingest(docs)
    stored = {d.path: d.content_hash for d in ix.documents()}

    write(docs / "zero.txt", b"")
    write(docs / "binary.txt", os.urandom(4096))
    write(docs / "corrupt.pdf", b"%PDF-1.7\n" + os.urandom(2048))
    write(docs / "scanned.pdf", make_blank_pdf(3))
    write(docs / "latin1.txt", "Der Bär überquert die Straße in München, schön.\n".encode("latin-1") * 3)
    write(docs / "secret.txt", "cannot be read")
    _make_unreadable(docs / "secret.txt", monkeypatch)
    os.symlink("loop", docs / "loop")  # a link to itself
    os.symlink("..", docs / "sub" / "up")  # a directory link back up the tree
    big = docs / "big.html"
    paragraph = "<div class='row'><p>Big page paragraph about tide tables and harbour pilots.</p></div>\n"
    with open(big, "w") as fh:
        fh.write("<html><head><title>Big</title></head><body><nav>menu</nav><main>")
        for _ in range(50_000_000 // len(paragraph) + 1):
            fh.write(paragraph)
        fh.write("</main></body></html>")
    assert big.stat().st_size >= 50_000_000
    # a previously good file that turns corrupt keeps its stored version
    write(docs / "report.pdf", b"%PDF-1.4 truncated")

    report = ix.ingest(docs)
    failed = dict(report.failed)
    assert "empty file" in failed[str(docs / "zero.txt")]
    assert "binary" in failed[str(docs / "binary.txt")]
    assert "PDF" in failed[str(docs / "corrupt.pdf")]
    assert "no extractable text" in failed[str(docs / "scanned.pdf")]
    assert "permission denied" in failed[str(docs / "secret.txt")]
    assert "symlink loop" in failed[str(docs / "loop")]
    assert "symlink loop" in failed[str(docs / "sub" / "up")]
    assert "PDF" in failed[str(docs / "report.pdf")]
    assert str(big) in report.added and str(docs / "latin1.txt") in report.added
    assert any("latin1.txt" in p for p, _ in report.warnings)
    assert not report.removed
    # stored data intact: the old report.pdf is still there and searchable
    docs_now = {d.path: d.content_hash for d in ix.documents()}
    for path, digest in stored.items():
        assert docs_now[path] == digest
    _sentences_found(ix, unique)
    assert ix.search("Bär überquert Straße", k=1, mode="keyword")[0].path.endswith("latin1.txt")
    assert ix.check().ok


def test_upsert_and_delete_single_documents(open_index, docs):
    ix = open_index()
    path = write(docs / "a.md", "# A\n\nfirst version with kiwi")
    ix.upsert(path)
    ix.upsert(docs / "virtual.html", content=make_html("Virt", ["uploaded mango text"]).encode())
    assert ix.search("mango", k=1, mode="keyword")[0].path == str(docs / "virtual.html")
    write(path, "# A\n\nsecond version with papaya")
    report = ix.upsert(path)
    assert report.updated == [str(path)]
    assert not ix.search("kiwi", k=3, mode="keyword")
    with pytest.raises(LoadError, match="broken.pdf"):
        ix.upsert(docs / "broken.pdf", content=b"%PDF-1.4 nope")
    with pytest.raises(InvalidInputError, match="unsupported"):
        ix.upsert(docs / "x.exe", content=b"MZ")
    result = ix.delete([path, docs / "not-there.txt"])
    assert result.deleted == [str(path)] and result.not_found == [str(docs / "not-there.txt")]
    assert ix.delete(docs).deleted == [str(docs / "virtual.html")]  # a directory removes what is under it
    assert ix.documents() == [] and ix.check().ok


def test_commits_in_batches(index_dir, encoder, docs):
    import index

    for i in range(12):
        write(docs / f"d{i:02d}.txt", f"document number {i} " * 5)
    with index.open(index_dir, encoder, config=small_config(commit_every_chunks=5)) as ix:
        report = ix.ingest(docs)
        assert report.commits >= 2 and len(report.added) == 12
        files = sorted(p.name for p in index_dir.iterdir() if p.name.startswith("vectors-"))
        assert files == [ix.record.vector_file]  # old generations are removed after each commit
