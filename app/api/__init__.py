"""The HTTP API: `python -m app.api [--index DIR] [--model NAME] [--host 127.0.0.1] [--port 8000]`.

An OpenAI-compatible `/v1/embeddings` (dynamic batching, float and base64), search, RAG context, documents,
uploads and ingest (write keys), health, info, Prometheus metrics and MCP over streamable HTTP, all over
the same `index` facade the app and the CLI use. `config.py` has the options, `server.py` the routes,
`errors.py` the OpenAI-style errors and the key/size guard; docs/api.md documents every route.
"""
