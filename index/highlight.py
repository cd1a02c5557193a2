"""Mark where a result matches the query: term spans, the best sentence, and a marked-up copy.

Dense hits have no "matched words" of their own, so every result is highlighted the same way a search
engine does it: the query's content words (light suffix stemming, like FTS5's porter tokenizer) are located
in the passage, the sentence with the most distinct matches is the `passage`, and `highlighted` wraps each
match in markers. Offsets are relative to the chunk text (add the chunk's `char_start` for the document).
"""

from __future__ import annotations

import re

_WORD = re.compile(r"\w+", re.UNICODE)
_SENTENCE = re.compile(r"[^.!?\n]+(?:[.!?]+|\n|$)")
_STOPWORDS = frozenset(
    "a an and are as at be but by can do does for from had has have how i if in into is it its of on or so "
    "than that the their then there these they this to was what when where which who why will with you your "
    "we our not no".split()
)
_SUFFIXES = ("ations", "ation", "ness", "ings", "ing", "ies", "ied", "ed", "es", "ly", "s")


def _stem(word: str) -> str:
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def query_terms(query: str) -> list[str]:
    """Distinct stemmed content words of a query (all words when it has only stopwords)."""
    words = [w.lower() for w in _WORD.findall(query)]
    content = [w for w in words if w not in _STOPWORDS] or words
    return list(dict.fromkeys(_stem(w) for w in content if w))


def term_spans(text: str, terms: list[str]) -> list[tuple[int, int]]:
    """Character spans of words in `text` that start with one of the stemmed `terms`."""
    if not terms:
        return []
    pattern = re.compile(r"\b(?:" + "|".join(re.escape(t) for t in sorted(terms, key=len, reverse=True)) + r")\w*",
                         re.IGNORECASE | re.UNICODE)
    return [m.span() for m in pattern.finditer(text)]


def best_passage(text: str, spans: list[tuple[int, int]]) -> tuple[int, int]:
    """The sentence (span) holding the most distinct matched words; the first sentence if none match."""
    best = (0, min(len(text), 300))
    best_score = 0
    for m in _SENTENCE.finditer(text):
        s, e = m.span()
        inside = {text[a:b].lower() for a, b in spans if a >= s and b <= e}
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
