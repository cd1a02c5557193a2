"""The passages around a search result: `Index.neighbours` when the facade has it, else a read of the
index's own store (the only place where the app reaches below `index.Index`; remove it once every index
package in use has `neighbours`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Neighbours:
    previous: str | None
    next: str | None
    total: int  # passages in the document


def neighbours(ix: Any, document_id: int, ordinal: int) -> Any:
    """The passages just before and after passage `ordinal` of a document, and how many it has."""
    method = getattr(ix, "neighbours", None)
    if callable(method):
        return method(document_id, ordinal)
    from sqlalchemy import select

    from index.store import Chunk, Document

    with ix.store.session() as s:
        rows = s.execute(
            select(Chunk.ordinal, Chunk.text)
            .where(Chunk.document_id == document_id, Chunk.ordinal.in_([ordinal - 1, ordinal + 1]))
        ).all()
        total = s.execute(select(Document.n_chunks).where(Document.id == document_id)).scalar_one_or_none()
    by_ordinal = {int(o): t for o, t in rows}
    return Neighbours(by_ordinal.get(ordinal - 1), by_ordinal.get(ordinal + 1), int(total or 0))
