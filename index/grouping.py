"""Results as a person reads them: near-duplicate passages of one document shown once.

Overlapping chunks, repeated boilerplate and FAQ entries that restate a sentence make one document fill
several places of a result list with what reads as the same text. `collapse` keeps each document's
best-ranked passage and folds into it the later passages of the same document that are near-duplicates
of a passage already shown: the same best-matching sentence (whitespace and case aside), or texts whose
word 3-grams overlap by at least `NEAR_DUPLICATE` (Jaccard). A passage of the same document that says
something else stays a result of its own. The app and the CLI show the groups ("n more from this file");
`--json`, the API and the RAG context keep the raw passages.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from .retrieval import SearchResult

NEAR_DUPLICATE = 0.5  # word 3-gram Jaccard from which two passages count as the same text

_WORDS = re.compile(r"\w+", re.UNICODE)


@dataclass
class ResultGroup:
    """One shown result: the best passage and the near-duplicates folded into it (rank order)."""

    position: int  # 1-based place in the shown list
    best: SearchResult
    similar: list[SearchResult] = field(default_factory=list)

    @property
    def more(self) -> int:
        return len(self.similar)

    @property
    def more_label(self) -> str:
        """'1 more from this file' / 'n more from this file' (empty when nothing was folded)."""
        return f"{self.more} more from this file" if self.more else ""


def _shingles(text: str) -> frozenset[tuple[str, ...]]:
    words = [w.lower() for w in _WORDS.findall(text)]
    if len(words) < 3:
        return frozenset([tuple(words)]) if words else frozenset()
    return frozenset(zip(words, words[1:], words[2:], strict=False))


def _sentence_key(result: SearchResult) -> str:
    return " ".join(_WORDS.findall(result.passage.lower()))


def near_duplicates(a: SearchResult, b: SearchResult, threshold: float = NEAR_DUPLICATE) -> bool:
    """Whether two passages of one document read as the same text (see the module docstring)."""
    if a.document_id != b.document_id:
        return False
    if _sentence_key(a) and _sentence_key(a) == _sentence_key(b):
        return True
    sa, sb = _shingles(a.text), _shingles(b.text)
    if not sa or not sb:
        return False
    return len(sa & sb) / len(sa | sb) >= threshold


def collapse(results: Sequence[SearchResult], threshold: float = NEAR_DUPLICATE) -> list[ResultGroup]:
    """Groups in rank order; each later near-duplicate joins the group of the first passage it repeats."""
    groups: list[ResultGroup] = []
    for result in results:
        home = next((g for g in groups if g.best.document_id == result.document_id
                     and any(near_duplicates(shown, result, threshold) for shown in (g.best, *g.similar))), None)
        if home is None:
            groups.append(ResultGroup(len(groups) + 1, result))
        else:
            home.similar.append(result)
    return groups
