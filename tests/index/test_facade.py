"""The facade's contract: model identity, settings, the writer lock, repair on open, lifecycle."""

from __future__ import annotations

import numpy as np
import pytest
from filelock import FileLock

import index
from index import segments
from index.config import ChunkingConfig, IndexConfig, VectorConfig
from index.errors import (
    IndexLockedError,
    IndexNotFoundError,
    InvalidInputError,
    ModelMismatchError,
    SchemaVersionError,
    SettingsMismatchError,
)
from index.store import IndexRecord
from index.testing import HashEncoder
from index.vectors import VectorIndex

from .conftest import small_config
from .docgen import mixed_folder, write


def test_open_without_model_needs_an_existing_index(tmp_path):
    with pytest.raises(IndexNotFoundError, match="python -m index.ingest"):
        index.open(tmp_path / "none")
    write(tmp_path / "file", "x")
    with pytest.raises(InvalidInputError, match="not a directory"):
        index.open(tmp_path / "file", HashEncoder())


def test_default_location_and_env_override(tmp_path, monkeypatch):
    from index.config import resolve_index_dir

    monkeypatch.delenv("NVEMBED_INDEX_DIR", raising=False)
    assert str(resolve_index_dir()) == "data/index"
    monkeypatch.setenv("NVEMBED_INDEX_DIR", str(tmp_path / "env"))
    assert resolve_index_dir() == tmp_path / "env"
    assert resolve_index_dir(tmp_path / "arg") == tmp_path / "arg"


def test_wrong_model_is_an_error_naming_both_and_reindex_reembeds(open_index, index_dir, docs, encoder):
    unique = mixed_folder(docs)
    ix = open_index()
    ix.ingest(docs)
    n = ix.vectors.ntotal
    ix.close()
    other = HashEncoder(dimension=32, max_length=40, seed=5, name="other-model")
    with pytest.raises(ModelMismatchError) as err:
        index.open(index_dir, other)
    message = str(err.value)
    assert encoder.name in message and encoder.fingerprint in message
    assert "other-model" in message and other.fingerprint in message and "reindex" in message
    with index.open(index_dir, other, reindex=True) as ix2:
        assert ix2.reindexed_model and ix2.record.model_fingerprint == other.fingerprint
        assert ix2.vectors.dimension == 32 and ix2.check().ok
        assert ix2.vectors.ntotal >= n  # passages over the new 40-token limit were re-split
        assert max(c.token_count for c in _chunks(ix2)) <= 40
        sentence = unique["guide.md"]
        assert ix2.search(sentence, k=1, mode="keyword")[0].path.endswith("guide.md")
        top = ix2.search(_chunks(ix2)[0].text, k=1, mode="dense")[0]
        assert top.score == pytest.approx(1.0, abs=1e-4)
    with pytest.raises(ModelMismatchError):
        index.open(index_dir, encoder)


def test_a_reader_opened_without_the_model_gets_it_later(open_index, index_dir, docs, encoder):
    unique = mixed_folder(docs)
    ix = open_index()
    ix.ingest(docs)
    ix.close()
    with index.open(index_dir) as reader:  # as the app opens it while the model is still loading
        sentence = unique["guide.md"]
        assert reader.search(sentence, k=1, mode="keyword")[0].path.endswith("guide.md")
        with pytest.raises(InvalidInputError, match="need the model"):
            reader.search(sentence, k=1, mode="dense")
        other = HashEncoder(dimension=32, max_length=40, seed=5, name="other-model")
        with pytest.raises(ModelMismatchError, match="other-model"):
            reader.attach_encoder(other)
        assert reader.encoder is None  # a refused model is not kept
        reader.attach_encoder(encoder)
        reader.attach_encoder(encoder)  # the same one again: nothing to do
        assert reader.search(sentence, k=1, mode="dense")[0].path.endswith("guide.md")
        with pytest.raises(InvalidInputError, match="already has a model"):
            reader.attach_encoder(HashEncoder(dimension=64, max_length=128))


def _chunks(ix):
    from sqlalchemy import select

    from index.store import Chunk

    with ix.store.session() as s:
        return s.execute(select(Chunk).order_by(Chunk.id)).scalars().all()


def test_chunking_settings_mismatch_and_rechunk(open_index, index_dir, docs, encoder):
    write(docs / "a.txt", " ".join(f"word{i}." for i in range(300)))
    ix = open_index()
    ix.ingest(docs)
    before = ix.vectors.ntotal
    ix.close()
    new = IndexConfig(chunking=ChunkingConfig(chunk_tokens=32, overlap_tokens=4))
    with pytest.raises(SettingsMismatchError, match="chunk_tokens=64"):
        index.open(index_dir, encoder, config=new)
    with index.open(index_dir, encoder, config=new, reindex=True) as ix2:
        report = ix2.ingest(docs)
        assert report.updated == [str(docs / "a.txt")] and ix2.vectors.ntotal > before
        assert ix2.record.chunk_tokens == 32
    with index.open(index_dir, encoder) as ix3:  # the new settings are now the stored ones
        assert ix3.chunking.chunk_tokens == 32 and ix3.ingest(docs).unchanged


def test_one_writer_at_a_time_readers_unaffected(open_index, index_dir, docs):
    write(docs / "a.txt", "searchable zeppelin text")
    ix = open_index(config=small_config())
    ix.ingest(docs)
    ix.config = IndexConfig(lock_timeout=0.2)
    other = FileLock(str(index_dir / "write.lock"))
    other.acquire()
    try:
        (index_dir / "writer.json").write_text('{"pid": 4242, "host": "h", "since": "now"}')
        with pytest.raises(IndexLockedError, match="pid 4242"):
            ix.upsert(docs / "a.txt")
        with pytest.raises(IndexLockedError):
            ix.delete(docs / "a.txt")
        assert ix.search("zeppelin", k=1, mode="keyword")[0].path.endswith("a.txt")
        with index.open(index_dir) as reader:  # opening to read works while a writer holds the lock
            assert reader.search("zeppelin", k=1, mode="keyword")
    finally:
        other.release()
    assert ix.delete(docs / "a.txt").deleted


def test_reader_sees_another_writers_commits(open_index, index_dir, docs, encoder):
    write(docs / "a.txt", "first document about owls")
    writer = open_index()
    writer.ingest(docs)
    reader = index.open(index_dir, encoder)
    assert len(reader.search("owls", k=5)) == 1
    write(docs / "b.txt", "second document about owls")
    writer.ingest(docs)
    assert len(reader.search("owls", k=5)) == 2  # reloaded the new generation
    writer.delete(docs / "a.txt")
    assert [h.path for h in reader.search("owls", k=5)] == [str(docs / "b.txt")]
    reader.close()


@pytest.mark.parametrize("layout", ["segments", "single"])
def test_open_repairs_orphans_duplicates_missing_and_strays(open_index, index_dir, docs, encoder, caplog, layout):
    mixed_folder(docs)
    ix = open_index(config=small_config(vectors=VectorConfig(layout=layout)))
    ix.ingest(docs)
    ids = np.sort(ix.vectors.ids())
    name, generation = ix.record.vector_file, ix.record.generation
    ix.close()
    # tamper: add an orphan, duplicate one id, drop another; leave a stray temporary file
    v = segments.load(index_dir, name, 64) if layout == "segments" else VectorIndex.load(index_dir / name, 64)
    v.add([999_999], np.eye(64, dtype=np.float32)[:1])
    v.add([ids[0]], v.reconstruct([ids[0]]))
    v.remove([ids[1]])
    if layout == "segments":  # rewrite the same generation's manifest with the tampered vectors
        empty = np.zeros(0, np.int64)
        segments.write_generation(index_dir, None, generation, v, segments.SegmentWrite(
            empty, np.zeros((0, 64), np.float32), empty, full=True))
    else:
        v.save(index_dir / name)
    (index_dir / "vectors-00000099.faiss.tmp-1").write_bytes(b"partial")
    # without the model: orphans and duplicates are fixed, the missing vector is reported
    with index.open(index_dir) as ro:
        assert ro.consistency is not None and ro.consistency.missing_vectors == [int(ids[1])]
        assert not (index_dir / "vectors-00000099.faiss.tmp-1").exists()
        assert ro.check().orphan_vectors == [] and ro.check().duplicate_vectors == []
    # with the model: the missing vector is re-embedded from the stored text
    with index.open(index_dir, encoder) as rw:
        assert rw.consistency.ok and rw.check().ok
        assert sorted(rw.vectors.ids().tolist()) == ids.tolist()


def test_missing_vector_file_is_rebuilt_with_the_model(open_index, index_dir, docs, encoder):
    mixed_folder(docs)
    ix = open_index()
    ix.ingest(docs)
    n = ix.vectors.ntotal
    name = ix.record.vector_file
    ix.close()
    (index_dir / name).unlink()
    with index.open(index_dir) as ro:
        assert len(ro.consistency.missing_vectors) == n
        assert ro.search("quokka eucalyptus", k=1, mode="keyword")  # keyword search still works
    with index.open(index_dir, encoder) as rw:
        assert rw.check().ok and rw.vectors.ntotal == n


def test_newer_schema_is_refused(open_index, index_dir):
    ix = open_index()
    with ix.store.session() as s:
        s.get(IndexRecord, 1).schema_version = 99
        s.commit()
    ix.close()
    with pytest.raises(SchemaVersionError, match="99"):
        index.open(index_dir)


def test_context_manager_and_closed(open_index, index_dir, encoder):
    with index.open(index_dir, encoder, config=small_config()) as ix:
        assert "Index(" in repr(ix)
    with pytest.raises(InvalidInputError, match="closed"):
        ix.search("x")


def test_encoder_returning_bad_vectors_is_reported(open_index, docs):
    class Broken(HashEncoder):
        def encode_passages(self, texts, **kwargs):
            return np.zeros((len(texts), 3), dtype=np.float32)

    write(docs / "a.txt", "text")
    ix = open_index(Broken(64, max_length=128))
    with pytest.raises(InvalidInputError, match="shape"):
        ix.ingest(docs)
    assert ix.documents() == [] and ix.check().ok  # nothing half-written


def test_with_the_real_tiny_encoder(tiny_model, tmp_path, docs):
    """encoder.testing.tiny_model: real tokenizer and forward pass through the whole pipeline."""
    pytest.importorskip("encoder.testing")
    unique = mixed_folder(docs)
    config = IndexConfig(chunking=ChunkingConfig(chunk_tokens=48, overlap_tokens=8))
    with index.open(tmp_path / "tiny", tiny_model, config=config) as ix:
        report = ix.ingest(docs)
        assert len(report.added) == len(unique) and not report.failed
        assert ix.record.model_fingerprint == tiny_model.fingerprint and ix.vectors.dimension == tiny_model.dimension
        chunks = _chunks(ix)
        assert all(c.token_count <= tiny_model.max_length for c in chunks)
        assert tiny_model.count_tokens([chunks[0].text])[0] == chunks[0].token_count
        top = ix.search(chunks[0].text, k=1, instruction="")[0]  # no instruction: query == passage encoding
        assert top.chunk_id == chunks[0].id
        assert ix.search(unique["memo.docx"], k=1, mode="hybrid")
        assert ix.context("archive basement", budget_tokens=64, mode="keyword").tokens <= 64
    from encoder.testing import tiny_model as make

    other = make(seed=1)
    with pytest.raises(ModelMismatchError, match=other.fingerprint):
        index.open(tmp_path / "tiny", other)
