"""Result lists as a person reads them: whole-term highlighting, near-duplicate passages of one file folded,
bold only on a terminal; `--json` and the RAG block keep the raw passages."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from index import search as search_cli
from index.cli import run
from index.grouping import collapse
from index.highlight import best_passage, mark, query_terms, term_spans

from .docgen import write

ROOT = Path(__file__).resolve().parents[2]
LEAK_QUERY = "how do I find memory leaks in my C program"


def _marked(text: str, query: str) -> list[str]:
    return [text[s:e] for s, e in term_spans(text, query_terms(query))]


def test_a_one_letter_query_word_marks_only_itself():
    text = ("In certain cases you can find common classes of memory leaks in C programs. "
            "Check c code with care; C++ counts too.")
    marked = _marked(text, LEAK_QUERY)
    assert marked == ["find", "memory", "leaks", "C", "programs", "c", "C"]
    for word in ("certain", "can", "common", "classes", "cases", "code", "care", "counts"):
        assert word not in marked


def test_longer_words_are_marked_through_stemming_only():
    text = "A leak, leaking pipes, leaked oil; leakage. Programming programs; a programmer. Memories."
    assert _marked(text, "memory leaks program") == ["leak", "leaking", "leaked", "Programming", "programs",
                                                     "Memories"]
    # a query word is not a prefix that marks anything starting with it
    assert _marked("Categories of cats and a catalogue.", "cat") == ["cats"]
    assert _marked("Index indexes indexing indexer indices", "index") == ["Index", "indexes", "indexing",
                                                                           "indexer"]


def test_marked_words_are_the_words_fts5_keyword_search_matches():
    import sqlite3

    words = ("leak leaks leaking leakage program programs programming programmer memory memories c can certain "
             "index indexation indexical connect connection connected cat cats catalogue running runner run").split()
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE VIRTUAL TABLE t USING fts5(w, tokenize='porter unicode61 remove_diacritics 2')")
    conn.executemany("INSERT INTO t(rowid, w) VALUES (?, ?)", list(enumerate(words)))
    for query in ("leaks", "program", "memory", "c", "indexing", "connections", "cat", "runs"):
        fts = {words[r] for (r,) in conn.execute("SELECT rowid FROM t WHERE t MATCH ?", (f'"{query}"',))}
        assert set(_marked(" ".join(words), query)) == fts, query


def test_stopword_only_queries_and_the_best_sentence():
    assert query_terms("how do I") == ["how", "do", "i"]
    text = "Nothing here. Memory leaks in C: find them. One memory leak."
    spans = term_spans(text, query_terms(LEAK_QUERY))
    s, e = best_passage(text, spans)
    assert text[s:e] == "Memory leaks in C: find them."  # four distinct stems beat "memory leak"
    assert mark("C or c", term_spans("C or c", ["c"])) == "**C** or **c**"


FAQ_INTRO = ("To find memory leaks in a C program, run it under valgrind with the option leak-check set to "
             "full and read the summary it prints at exit.")


@pytest.fixture
def faq_index(open_index, docs):
    """A FAQ whose two answers repeat one sentence (two passages reading the same), a second document."""
    filler = " ".join(f"word{i}" for i in range(40))
    write(docs / "faq.txt", f"{FAQ_INTRO} {filler}.\n\n{FAQ_INTRO} {filler} again.\n\n"
          "Unrelated: the harbour cranes are painted yellow every spring by the city.")
    write(docs / "manual.txt", "The C compiler manual: memory allocation with malloc and free, and leaks.")
    ix = open_index()
    ix.ingest(docs)
    return ix


def test_near_duplicates_of_one_file_fold_into_the_best(faq_index, docs):
    results = faq_index.search("memory leaks C program valgrind", k=5, mode="keyword")
    faq = [r for r in results if r.path.endswith("faq.txt")]
    assert len(faq) >= 2 and faq[0].passage == faq[1].passage  # raw: the same sentence twice
    groups = collapse(results)
    assert [g.position for g in groups] == list(range(1, len(groups) + 1))
    first = next(g for g in groups if g.best.path.endswith("faq.txt"))
    assert first.best is faq[0] and faq[1] in first.similar and first.more_label.endswith("more from this file")
    assert sum(1 + g.more for g in groups) == len(results)  # nothing lost, only folded
    # a passage of the same file that says something else stays its own result
    cranes = faq_index.search("harbour cranes yellow memory", k=5, mode="keyword")
    assert len({g.best.chunk_id for g in collapse(cranes) if g.best.path.endswith("faq.txt")}) >= 2


def _cli(argv, capsys):
    code = run(search_cli.main, argv)
    return code, capsys.readouterr().out


def test_cli_folds_but_json_and_rag_keep_raw_passages(faq_index, index_dir, capsys):
    faq_index.close()
    query = "memory leaks C program valgrind"
    base = [query, "--index", str(index_dir), "--mode", "keyword", "--k", "5"]
    code, out = _cli(base, capsys)
    assert code == 0 and "more from this file" in out
    assert "**" not in out and "\033[" not in out  # piped: plain text
    assert out.count("faq.txt") == 1 + out.count("faq.txt  (page")  # one line per shown faq group
    code, out = _cli(base + ["--json"], capsys)
    raw = json.loads(out)
    assert sum(r["path"].endswith("faq.txt") for r in raw) >= 2  # every passage
    assert all("**" in r["highlighted"] for r in raw)
    code, out = _cli(base + ["--rag", "--json"], capsys)
    payload = json.loads(out)
    assert payload["passages"] == len(payload["results"]) and payload["context"].count(FAQ_INTRO) >= 2


def test_cli_bold_is_ansi_on_a_terminal(faq_index, index_dir):
    faq_index.close()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-m", "index.search", "memory leaks valgrind", "--index", str(index_dir), "--mode",
            "keyword", "--k", "3"]
    master, slave = pty.openpty()
    try:
        proc = subprocess.run(argv, stdout=slave, stderr=subprocess.PIPE, env=env, cwd=ROOT, timeout=120)
        os.close(slave)
        chunks = []
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child side is closed and drained
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
    tty_out = b"".join(chunks).decode()
    assert proc.returncode == 0, proc.stderr
    assert "\033[1mleaks\033[0m" in tty_out and "**" not in tty_out
    piped = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert piped.returncode == 0 and "leaks" in piped.stdout
    assert "\033[" not in piped.stdout and "**" not in piped.stdout
