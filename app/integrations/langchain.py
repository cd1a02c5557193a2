"""LangChain: `NVEmbedRetriever` (over `/v1/search`) and `NVEmbedEmbeddings` (over `/v1/embeddings`).

    from app.integrations.langchain import NVEmbedRetriever
    retriever = NVEmbedRetriever(base_url="http://127.0.0.1:8000", k=4, mode="hybrid")
    docs = retriever.invoke("how do I reset it?")    # Document(page_content, metadata={path, page, ...})

Queries are embedded with NV-Embed's instruction, documents without (`input_type` query vs passage).
"""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.retrievers import BaseRetriever

from ..client import METADATA, NVEmbedClient


def to_document(hit: dict[str, Any]) -> Document:
    return Document(page_content=hit["text"], metadata={k: hit.get(k) for k in METADATA})


class NVEmbedRetriever(BaseRetriever):
    """Top-k passages from an NV-Embed search server as LangChain `Document`s."""

    base_url: str = "http://127.0.0.1:8000"
    api_key: str | None = None
    k: int = 4
    mode: str | None = None  # dense, keyword, hybrid (server default: hybrid)
    filters: dict[str, Any] | None = None  # {"paths": [...], "types": [...], ...} (docs/api.md)
    instruction: str | None = None
    timeout: float = 60.0

    def _client(self) -> NVEmbedClient:
        return NVEmbedClient(self.base_url, self.api_key, self.timeout)

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        hits = self._client().search(query, self.k, self.mode, self.filters, self.instruction)
        return [to_document(h) for h in hits]


class NVEmbedEmbeddings(Embeddings):
    """The server's model as LangChain `Embeddings` (documents as passages, queries with the instruction)."""

    def __init__(self, base_url: str = "http://127.0.0.1:8000", api_key: str | None = None,
                 instruction: str | None = None, model: str | None = None, timeout: float = 60.0):
        self.client = NVEmbedClient(base_url, api_key, timeout)
        self.instruction, self.model = instruction, model

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.client.embed(list(texts), "passage", model=self.model) if texts else []

    def embed_query(self, text: str) -> list[float]:
        return self.client.embed([text], "query", self.instruction, model=self.model)[0]
