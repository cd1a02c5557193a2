"""The MCP SDK's own client: over stdio against `python -m app.mcp`, and over streamable HTTP under the API."""

from __future__ import annotations

import os
import sys

import anyio
import httpx2
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from app.testing import ROOT

from .conftest import READ_KEY, call

READ_TOOLS = {"search", "context", "read_passage", "list_documents"}


async def exercise(client: Client) -> None:
    tools = {t.name for t in (await client.list_tools()).tools}
    assert tools == READ_TOOLS  # writes stay off
    found = await client.call_tool("search", {"query": "violet lantern harbor", "k": 2})
    assert not found.is_error
    hits = found.structured_content["result"]
    assert hits[0]["path"].endswith("harbor.html") and hits[0]["citation"]
    ctx = await client.call_tool("context", {"query": "banana bread", "budget_tokens": 300})
    assert ctx.structured_content["context"].startswith("[1] ")
    passage = await client.call_tool("read_passage", {"chunk_id": hits[0]["chunk_id"]})
    assert "violet lantern" in passage.structured_content["text"]
    docs = await client.call_tool("list_documents", {"type": "md"})
    assert [d["path"].rsplit("/", 1)[1] for d in docs.structured_content["result"]] == ["wings.md"]
    bad = await client.call_tool("search", {"query": "x", "mode": "fuzzy"})
    assert bad.is_error and "mode must be one of" in bad.content[0].text
    missing = await client.call_tool("read_passage", {"chunk_id": 424242})
    assert missing.is_error and "no passage with chunk_id 424242" in missing.content[0].text


def test_stdio_server_finds_a_known_document(corpus):
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "app.mcp", "--index", str(corpus / "index-open"), "--model", "tiny"],
        cwd=str(ROOT), env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"},
    )

    async def main() -> None:
        async with Client(params, read_timeout_seconds=120) as client:
            await exercise(client)

    anyio.run(main)


def test_streamable_http_under_the_api_with_a_key(keyed):
    async def main() -> None:
        async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {READ_KEY}"}, timeout=60) as http:
            async with Client(streamable_http_client(keyed + "/mcp", http_client=http)) as client:
                await exercise(client)

    anyio.run(main)


def test_streamable_http_refuses_without_a_key(keyed):
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}}
    headers = {"Accept": "application/json, text/event-stream"}
    status, err = call(keyed + "/mcp", "POST", init, headers=headers)
    assert status == 401 and err["error"]["code"] == "invalid_api_key"
    status, _ = call(keyed + "/mcp", "POST", init, key=READ_KEY, headers=headers)
    assert status == 200
