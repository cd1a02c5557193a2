"""Chunking: passages respect the encoder's max_length, keep offsets and pages, honour headings and overlap."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from index.chunking import chunk_document
from index.config import ChunkingConfig
from index.encoders import TokenCounter
from index.errors import InvalidInputError
from index.loaders import Block, load_bytes, paragraph_blocks
from index.testing import HashEncoder


def _check(text, chunks, counter, limit):
    for c in chunks:
        assert text[c.start : c.end] == c.text
        assert c.text == c.text.strip() and c.text
        assert c.token_count <= limit
        assert counter.count([c.text])[0] == c.token_count
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))


def test_packs_paragraphs_and_splits_long_ones():
    enc = HashEncoder(16, max_length=40)
    counter = TokenCounter(enc)
    text = "Short one.\n\n" + " ".join(f"w{i}." for i in range(200)) + "\n\nTail paragraph."
    chunks = chunk_document(text, paragraph_blocks(text), counter, ChunkingConfig(32, 6))
    _check(text, chunks, counter, 40)
    assert chunks[0].text.startswith("Short one.")
    assert chunks[-1].text.endswith("Tail paragraph.")
    covered = set()
    for c in chunks:
        covered.update(range(c.start, c.end))
    assert all(i in covered for i, ch in enumerate(text) if not ch.isspace())  # nothing lost


def test_overlap_repeats_tail_of_previous_chunk():
    enc = HashEncoder(16, max_length=64)
    text = " ".join(f"word{i}." for i in range(120))
    chunks = chunk_document(text, paragraph_blocks(text), TokenCounter(enc), ChunkingConfig(30, 8))
    for a, b in zip(chunks, chunks[1:], strict=False):
        assert b.start < a.end, "consecutive passages of one paragraph overlap"
        assert a.end - b.start < (a.end - a.start)


def test_headings_start_new_passages_and_pages_never_mix():
    enc = HashEncoder(16, max_length=512)
    md = "# A\n\n" + "alpha text here. " * 20 + "\n\n# B\n\nbeta text here.\n"
    doc = load_bytes(md.encode(), "markdown")
    chunks = chunk_document(doc.text, doc.blocks, TokenCounter(enc), ChunkingConfig(256, 16))
    assert len(chunks) == 2 and chunks[1].text.startswith("# B")
    text = "page one words\n\npage two words"
    blocks = [Block(0, 14, 1), Block(16, 30, 2)]
    chunks = chunk_document(text, blocks, TokenCounter(enc), ChunkingConfig(256, 16))
    assert [(c.page, c.text) for c in chunks] == [(1, "page one words"), (2, "page two words")]


def test_settings_validated_against_model():
    counter = TokenCounter(HashEncoder(8, max_length=64))
    with pytest.raises(InvalidInputError, match="max_length=64"):
        chunk_document("x", [Block(0, 1)], counter, ChunkingConfig(128, 8))
    with pytest.raises(InvalidInputError, match="overlap"):
        ChunkingConfig(64, 40).validate()


words = st.text(alphabet=st.sampled_from(list("abcdefghij .,!?\n-é")), min_size=0, max_size=400)


@settings(max_examples=15, deadline=None, database=None)
@given(words, st.integers(12, 60), st.integers(0, 6))
def test_property_no_chunk_over_limit_offsets_exact(text, chunk_tokens, overlap):
    enc = HashEncoder(8, max_length=chunk_tokens)
    counter = TokenCounter(enc)
    chunks = chunk_document(text, paragraph_blocks(text), counter, ChunkingConfig(chunk_tokens, overlap))
    _check(text, chunks, counter, chunk_tokens)


class _Limited:
    """The tiny model with a smaller max_length (so the limit, not the target, is what binds)."""

    def __init__(self, model, max_length):
        self._model, self.max_length = model, max_length

    def __getattr__(self, name):
        return getattr(self._model, name)


def test_real_tokenizer_never_exceeds_max_length(tiny_model):
    """With the encoder's own tokenizer (byte-level BPE): the limit holds for odd text too.

    Pieces tokenized apart can merge differently once joined, so `chunk_tokens` is a target (a passage may
    pass it by a token or two) while `max_length` is never exceeded.
    """
    model = _Limited(tiny_model, 64)
    counter = TokenCounter(model)
    assert counter._tokenizer is not None and counter.overhead == tiny_model.count_tokens([""])[0]
    text = ("The quokka sleeps under the eucalyptus tree. " * 40 + "\n\n" + "ünïcödé ✓ 混合 text " * 60
            + "\n\n" + "x" * 3000)
    chunks = chunk_document(text, paragraph_blocks(text), counter, ChunkingConfig(64, 8))
    _check(text, chunks, counter, 64)
    assert len(chunks) > 5
    chunks = chunk_document(text, paragraph_blocks(text), counter, ChunkingConfig(48, 8))
    _check(text, chunks, counter, 64)
    assert max(c.token_count for c in chunks) <= 48 + 4
