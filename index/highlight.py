"""Mark where a result matches the query: term spans, the best sentence, and a marked-up copy.

Dense hits have no "matched words" of their own, so every result is highlighted the same way a search
engine does it: the query's content words are located in the passage, the sentence with the most distinct
matches is the `passage`, and `highlighted` wraps each match in markers. Offsets are relative to the chunk
text (add the chunk's `char_start` for the document).

What counts as a match: a whole word of the passage whose Porter stem equals the stem of a query word,
the rule SQLite FTS5's `porter` tokenizer applies to keyword search, so what is marked is what BM25
matched. A longer word is marked only through that stemming ("leaks" marks "leak", "leaking",
"leaked"; "program" marks "programs", "programming"); a query word never marks every word that merely
starts with it, so the "C" of "memory leaks in my C program" marks "C", not "certain" or "can".
"""

from __future__ import annotations

import re
from functools import lru_cache

import snowballstemmer

_WORD = re.compile(r"\w+", re.UNICODE)
_SENTENCE = re.compile(r"[^.!?\n]+(?:[.!?]+|\n|$)")
_STOPWORDS = frozenset(
    "a an and are as at be but by can do does for from had has have how i if in into is it its of on or so "
    "than that the their then there these they this to was what when where which who why will with you your "
    "we our not no my me".split()
)
_PORTER = snowballstemmer.stemmer("porter")  # Martin Porter's algorithm, as FTS5's porter tokenizer


@lru_cache(maxsize=65536)
def stem(word: str) -> str:
    """The Porter stem of a lower-cased word (FTS5's keyword matching unit)."""
    return _PORTER.stemWord(word.lower())


def query_terms(query: str) -> list[str]:
    """Distinct stems of a query's content words (of all its words when it has only stopwords)."""
    words = [w.lower() for w in _WORD.findall(query)]
    content = [w for w in words if w not in _STOPWORDS] or words
    return list(dict.fromkeys(stem(w) for w in content if w))


def term_spans(text: str, terms: list[str]) -> list[tuple[int, int]]:
    """Character spans of the whole words of `text` whose stem is one of `terms` (see the module docstring)."""
    if not terms:
        return []
    wanted = set(terms)
    return [m.span() for m in _WORD.finditer(text) if stem(m.group()) in wanted]


def best_passage(text: str, spans: list[tuple[int, int]]) -> tuple[int, int]:
    """The sentence (span) holding the most distinct matched words; the first sentence if none match."""
    best = (0, min(len(text), 300))
    best_score = 0
    for m in _SENTENCE.finditer(text):
        s, e = m.span()
        inside = {stem(text[a:b]) for a, b in spans if a >= s and b <= e}
        if len(inside) > best_score:
            best, best_score = (s, e), len(inside)
    s, e = best
    while s < e and text[s].isspace():
        s += 1
    while e > s and text[e - 1].isspace():
        e -= 1
    return s, e


def mark(text: str, spans: list[tuple[int, int]], before: str = "**", after: str = "**") -> str:
    """`text` with each span wrapped in `before`/`after`."""
    out: list[str] = []
    pos = 0
    for s, e in spans:
        if s < pos:
            continue
        out.extend([text[pos:s], before, text[s:e], after])
        pos = e
    out.append(text[pos:])
    return "".join(out)
