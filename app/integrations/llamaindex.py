"""LlamaIndex: `NVEmbedLlamaRetriever` (over `/v1/search`) and `NVEmbedLlamaEmbedding` (over `/v1/embeddings`).

    from app.integrations.llamaindex import NVEmbedLlamaRetriever
    retriever = NVEmbedLlamaRetriever(base_url="http://127.0.0.1:8000", k=4)
    nodes = retriever.retrieve("how do I reset it?")   # NodeWithScore(node=TextNode(text, metadata), score)
"""

from __future__ import annotations

from typing import Any

from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.retrievers import BaseRetriever
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
from pydantic import PrivateAttr

from ..client import METADATA, NVEmbedClient


class NVEmbedLlamaRetriever(BaseRetriever):
    """Top-k passages from an NV-Embed search server as LlamaIndex nodes with scores."""

    def __init__(self, base_url: str = "http://127.0.0.1:8000", api_key: str | None = None, k: int = 4,
                 mode: str | None = None, filters: dict[str, Any] | None = None, instruction: str | None = None,
                 timeout: float = 60.0, **kwargs: Any):
        super().__init__(**kwargs)
        self.client = NVEmbedClient(base_url, api_key, timeout)
        self.k, self.mode, self.filters, self.instruction = k, mode, filters, instruction

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        hits = self.client.search(query_bundle.query_str, self.k, self.mode, self.filters, self.instruction)
        return [NodeWithScore(node=TextNode(text=h["text"], id_=f"chunk-{h['chunk_id']}",
                                            metadata={k: h.get(k) for k in METADATA}), score=float(h["score"]))
                for h in hits]


class NVEmbedLlamaEmbedding(BaseEmbedding):
    """The server's model as a LlamaIndex embedding (texts as passages, queries with the instruction)."""

    base_url: str = "http://127.0.0.1:8000"
    api_key: str | None = None
    instruction: str | None = None
    served_model: str | None = None
    _client: NVEmbedClient = PrivateAttr()

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self._client = NVEmbedClient(self.base_url, self.api_key)

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._client.embed([query], "query", self.instruction, model=self.served_model)[0]

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._client.embed([text], "passage", model=self.served_model)[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._client.embed(list(texts), "passage", model=self.served_model)
