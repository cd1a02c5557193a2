"""Read-only look-ups the facade does not offer yet (see the note in docs/app.md).

`neighbours` reads the passages around a result through the index's own store and ORM models. It is the
only place where the app reaches below `index.Index`; it should become `Index.neighbours(chunk_id)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from index.store import Chunk, Document


@dataclass
class Neighbours:
    previous: str | None
    next: str | None
    total: int  # passages in the document


def neighbours(ix: Any, document_id: int, ordinal: int) -> Neighbours:
    """The passages just before and after passage `ordinal` of a document, and how many it has."""
    with ix.store.session() as s:
        rows = s.execute(
            select(Chunk.ordinal, Chunk.text)
            .where(Chunk.document_id == document_id, Chunk.ordinal.in_([ordinal - 1, ordinal + 1]))
        ).all()
        total = s.execute(select(Document.n_chunks).where(Document.id == document_id)).scalar_one_or_none()
    by_ordinal = {int(o): t for o, t in rows}
    return Neighbours(by_ordinal.get(ordinal - 1), by_ordinal.get(ordinal + 1), int(total or 0))
