"""Search modes, filters inside the search, highlighting, and the RAG context block."""

from __future__ import annotations

import os
import time

import pytest

from index.errors import InvalidInputError
from index.filters import Filters
from index.rag import approx_tokens, build_context
from index.retrieval import SearchConfig, fts_query, rrf

from .docgen import write


@pytest.fixture
def corpus(open_index, docs):
    ix = open_index()
    for i in range(30):
        write(docs / "notes" / f"n{i:02d}.txt", f"Note {i} about river boats and harbour cranes number {i}.")
        write(docs / "guides" / f"g{i:02d}.md", f"# Guide {i}\n\nHow to repair harbour cranes, step {i}.")
    write(docs / "rare.txt", "Maintenance log: the part QX-7734-ZEB failed twice in winter.")
    ix.ingest(docs)
    return ix


def test_rare_exact_token_found_by_keyword_and_hybrid(corpus, docs):
    for mode in ("keyword", "hybrid"):
        hits = corpus.search("QX-7734-ZEB", k=5, mode=mode)
        assert hits[0].path == str(docs / "rare.txt"), mode
        assert hits[0].keyword_score is not None
    top = corpus.search("QX-7734-ZEB", k=1, mode="keyword")[0]
    assert "**QX**-**7734**-**ZEB**" in top.highlighted
    assert top.passage.startswith("Maintenance log")


def test_dense_finds_its_own_text_and_scores_are_ordered(corpus):
    hits = corpus.search("Note 7 about river boats and harbour cranes number 7.", k=5, mode="dense")
    assert hits[0].path.endswith("n07.txt") and hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert [h.rank for h in hits] == [1, 2, 3, 4, 5]
    assert all(a.score >= b.score for a, b in zip(hits, hits[1:], strict=False))
    around = corpus.neighbours(hits[0].document_id, hits[0].ordinal)
    assert around.total == 1 and around.previous is None and around.next is None


@pytest.mark.parametrize("mode", ["dense", "keyword", "hybrid"])
def test_filters_return_k_results_when_k_match(corpus, docs, mode):
    # the query matches the notes best; only guides are allowed: still k guides come back
    f = Filters(paths=(str(docs / "guides"),))
    hits = corpus.search("river boats harbour cranes", k=10, mode=mode, filters=f)
    assert len(hits) == 10 and all("/guides/" in h.path for h in hits)
    hits = corpus.search("river boats harbour cranes", k=10, mode=mode, filters=Filters(kinds=("md",)))
    assert len(hits) == 10 and all(h.kind == "markdown" for h in hits)
    hits = corpus.search("river harbour", k=10, mode=mode, filters=Filters(globs=("n0*.txt",)))
    assert len(hits) == 10 and all(os.path.basename(h.path).startswith("n0") for h in hits)
    hits = corpus.search("harbour", k=10, mode=mode, filters=Filters(paths=(str(docs / "rare.txt"),)))
    assert [h.path for h in hits] == ([str(docs / "rare.txt")] if mode != "keyword" else [])


def test_time_filters(corpus, docs):
    old = docs / "notes" / "n03.txt"
    os.utime(old, (1_000_000_000, 1_000_000_000))
    corpus.ingest(docs)
    before = Filters.parse(["before=2005-01-01"])
    hits = corpus.search("river", k=10, filters=before)
    assert [h.path for h in hits] == [str(old)]
    after = Filters(modified_after=time.time() - 3600)
    assert str(old) not in {h.path for h in corpus.search("river", k=50, filters=after)}


def test_filter_and_query_errors_name_the_input(corpus):
    with pytest.raises(InvalidInputError, match="colour"):
        Filters.parse(["colour=red"])
    with pytest.raises(InvalidInputError, match="yesterday"):
        Filters.parse(["after=yesterday"])
    with pytest.raises(InvalidInputError, match="spreadsheet"):
        Filters(kinds=("spreadsheet",))
    with pytest.raises(InvalidInputError, match="empty"):
        corpus.search("   ")
    with pytest.raises(InvalidInputError, match="mode"):
        corpus.search("x", mode="fuzzy")


def test_fts_query_is_safe_and_rrf_is_standard():
    assert fts_query('what "is" NEAR(x) -y*') == '"what" OR """is""" OR "NEAR(x)" OR "-y*"'
    assert fts_query("?? !!") is None
    fused = rrf([[1, 2, 3], [3, 4]], [1.0, 1.0], k=60)
    assert fused[0][0] == 3 and fused[0][1] == pytest.approx(1 / 63 + 1 / 61)
    weighted = rrf([[1], [2]], [1.0, 2.0])
    assert [i for i, _ in weighted] == [2, 1]


def test_hybrid_weights_change_the_order(corpus, docs):
    dense_first = corpus.search("QX-7734-ZEB harbour", k=3, config=SearchConfig(mode="hybrid", keyword_weight=0.01))
    keyword_first = corpus.search("QX-7734-ZEB harbour", k=3, config=SearchConfig(mode="hybrid", dense_weight=0.01))
    assert keyword_first[0].path == str(docs / "rare.txt")
    assert [h.chunk_id for h in dense_first] != [h.chunk_id for h in keyword_first]


def test_rag_context_numbered_citations_within_budget(corpus):
    results = corpus.search("harbour cranes", k=8, mode="hybrid")
    ctx = corpus.context("harbour cranes", budget_tokens=60, k=8, mode="hybrid")
    assert ctx.tokens <= 60 and ctx.passages >= 1 and ctx.truncated
    assert ctx.text.startswith("[1] ")
    assert ctx.citations[0].path == results[0].path
    big = build_context(results, budget_tokens=10_000, count_tokens=approx_tokens)
    assert big.passages == 8 and not big.truncated
    assert [c.number for c in big.citations] == list(range(1, len(big.citations) + 1))
    for c in big.citations:
        assert f"[{c.number}] {c.label}\n" in big.text
    # the same source cited twice keeps its number
    twice = build_context([results[0], results[0]], 10_000, approx_tokens)
    assert len(twice.citations) == 1 and twice.text.count("[1] ") == 2
    assert build_context([], 100).text == ""
    label = approx_tokens([f"[1] {results[0].path}\n"])[0]
    budget = label + 6  # room for a few words of the passage only
    cut = build_context(results[:1], budget_tokens=budget, count_tokens=approx_tokens, min_passage_tokens=2)
    assert cut.truncated and cut.tokens <= budget and cut.text.endswith("…") and cut.passages == 1
