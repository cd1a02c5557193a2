"""Adapters for RAG frameworks (the optional `frameworks` extra): LangChain and LlamaIndex retrievers and
embeddings over a running API server (`app.client.NVEmbedClient`). Import the module you need:
`app.integrations.langchain` needs `langchain-core`, `app.integrations.llamaindex` needs `llama-index-core`.
"""
