"""LangChain and LlamaIndex retrievers and embeddings over a running server."""

from __future__ import annotations

import numpy as np
import pytest

from app.client import NVEmbedAPIError


def test_langchain_retriever_and_embeddings(open_server, tiny):
    from langchain_core.documents import Document

    from app.integrations.langchain import NVEmbedEmbeddings, NVEmbedRetriever

    docs = NVEmbedRetriever(base_url=open_server, k=2).invoke("violet lantern harbor")
    assert isinstance(docs[0], Document) and "violet lantern" in docs[0].page_content
    assert docs[0].metadata["path"].endswith("harbor.html") and docs[0].metadata["citation"]
    only_md = NVEmbedRetriever(base_url=open_server, k=3, filters={"types": ["md"]}).invoke("banana bread")
    assert only_md and all(d.metadata["path"].endswith(".md") for d in only_md)
    emb = NVEmbedEmbeddings(base_url=open_server)
    np.testing.assert_allclose(emb.embed_documents(["Banana bread"]), tiny.encode_passages(["Banana bread"]), atol=1e-5)
    np.testing.assert_allclose(emb.embed_query("Banana bread"), tiny.encode_queries(["Banana bread"])[0], atol=1e-5)


def test_llamaindex_retriever_and_embedding(open_server, tiny):
    from app.integrations.llamaindex import NVEmbedLlamaEmbedding, NVEmbedLlamaRetriever

    nodes = NVEmbedLlamaRetriever(base_url=open_server, k=2).retrieve("banana bread oven")
    assert nodes[0].node.metadata["path"].endswith("bread.txt") and nodes[0].score > 0
    assert "Banana bread" in nodes[0].node.get_content()
    emb = NVEmbedLlamaEmbedding(base_url=open_server)
    np.testing.assert_allclose(emb.get_query_embedding("wing lift"), tiny.encode_queries(["wing lift"])[0], atol=1e-5)
    np.testing.assert_allclose(emb.get_text_embedding("wing lift"), tiny.encode_passages(["wing lift"])[0], atol=1e-5)


def test_client_reports_server_errors(open_server):
    from app.integrations.langchain import NVEmbedRetriever

    with pytest.raises(NVEmbedAPIError, match="mode"):
        NVEmbedRetriever(base_url=open_server, mode="fuzzy").invoke("x")
    with pytest.raises(NVEmbedAPIError, match="cannot reach"):
        NVEmbedRetriever(base_url="http://127.0.0.1:9", k=1).invoke("x")
