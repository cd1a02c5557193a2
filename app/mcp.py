"""An MCP server over the index, for agents and IDEs: `python -m app.mcp --index DIR` (stdio).

The same server is mounted under the HTTP API at `/mcp` (streamable HTTP; `python -m app.api`). Its tools
are read-only: `search`, `context`, `read_passage` (a passage and its neighbours) and `list_documents`.
With `--allow-writes` (stdio only) it also offers `ingest_folder` (only under the uploads folder and each
`--allow-dir`) and `delete_documents`. Every tool is the `Service`'s call, so agents get exactly what the
API and the app return; a failing call comes back as an MCP tool error naming the problem.

Client configuration (Claude Desktop, VS Code and others take the same shape):

    {"mcpServers": {"nvembed": {"command": "/path/to/.venv/bin/python",
                                "args": ["-m", "app.mcp", "--index", "/path/to/index"],
                                "cwd": "/path/to/nvembed-search"}}}

This file is named after the protocol; it imports the `mcp` package absolutely (`from mcp.server...`), which
resolves to the SDK because `app/` itself is never on `sys.path` outside the Streamlit process.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations

from index.errors import IndexStoreError

from .security import SecurityError
from .service import Service, ServiceConfig, job_dict

INSTRUCTIONS = (
    "Semantic, keyword and hybrid search over the user's own documents (PDF, Word, HTML, Markdown, text). "
    "Use `search` to find passages (each has a citation: path and page), `context` for a ready-to-quote block "
    "with numbered citations, `read_passage` to read around a hit, `list_documents` to see what is indexed."
)
READ_ONLY = ToolAnnotations(readOnlyHint=True, openWorldHint=False)


def _filters(path: str | None, type: str | None) -> dict[str, Any] | None:  # noqa: A002
    spec: dict[str, Any] = {}
    if path:
        spec["paths"] = [path]
    if type:
        spec["types"] = [t.strip() for t in type.split(",") if t.strip()]
    return spec or None


async def _call(fn: Any, *args: Any) -> Any:
    """Run a blocking service call off the event loop; the index's errors become tool errors."""
    try:
        return await anyio.to_thread.run_sync(fn, *args)
    except (IndexStoreError, SecurityError) as exc:
        raise ToolError(str(exc)) from None


def build_server(service: Service, writes: bool = False) -> MCPServer:
    """The MCP server with the read-only tools, plus the write tools when `writes`."""
    server = MCPServer("nvembed-search", instructions=INSTRUCTIONS)

    @server.tool(annotations=READ_ONLY)
    async def search(query: str, k: int = 5, mode: str = "hybrid", path: str | None = None,
                     type: str | None = None) -> list[dict[str, Any]]:  # noqa: A002
        """Search the indexed documents. mode: hybrid (default), dense (meaning) or keyword (exact words).
        path: only documents under this folder or file; type: only these kinds (pdf, md, html, txt, docx).
        Returns passages, best first, with path, page, score, text, highlighted text and citation."""
        results = await _call(service.search, query, k, mode, _filters(path, type), None)
        keep = ("rank", "score", "path", "page", "title", "text", "highlighted", "passage", "citation", "chunk_id",
                "document_id", "ordinal")
        return [{key: r[key] for key in keep} for r in results]

    @server.tool(annotations=READ_ONLY)
    async def context(query: str, budget_tokens: int = 1500, k: int = 8, mode: str = "hybrid",
                      path: str | None = None, type: str | None = None) -> dict[str, Any]:  # noqa: A002
        """A prompt-ready context block for `query`: the best passages, each under a numbered citation
        ([1] path, page N), within `budget_tokens`. Quote the numbers when answering."""
        out = await _call(service.context, query, budget_tokens, k, mode, _filters(path, type), None)
        out.pop("results", None)
        return out

    @server.tool(annotations=READ_ONLY)
    async def read_passage(chunk_id: int) -> dict[str, Any]:
        """One passage by its chunk_id (from `search`), with the passages just before and after it."""
        return await _call(service.passage, chunk_id)

    @server.tool(annotations=READ_ONLY)
    async def list_documents(path: str | None = None, type: str | None = None) -> list[dict[str, Any]]:  # noqa: A002
        """The indexed documents (path, kind, title, pages, passages, size, modified time), sorted by path."""
        docs = await _call(service.documents, _filters(path, type))
        return [{k: d[k] for k in ("path", "kind", "title", "pages", "chunks", "size", "mtime")} for d in docs]

    if writes:
        @server.tool()
        async def ingest_folder(folder: str) -> dict[str, Any]:
            """Ingest every supported file under a folder on this machine (only under the allowed folders)."""
            def run() -> dict[str, Any]:
                job = service.ingest_folder(folder)
                while job.running:
                    time.sleep(0.1)
                return job_dict(job)

            return await _call(run)

        @server.tool()
        async def delete_documents(paths: list[str]) -> dict[str, Any]:
            """Remove documents (by path; a folder removes everything under it) from the index."""
            return await _call(service.delete, paths)

    return server


def parser() -> argparse.ArgumentParser:
    from index.cli import add_index_option, add_model_options

    p = argparse.ArgumentParser(prog="python -m app.mcp", description="Serve the index to MCP clients over stdio.")
    add_index_option(p)
    add_model_options(p)
    p.add_argument("--allow-writes", action="store_true", help="also offer ingest_folder and delete_documents")
    p.add_argument("--allow-dir", metavar="DIR", action="append", default=[],
                   help="a folder ingest_folder may read (repeatable; default: only the uploads folder)")
    p.add_argument("--uploads", metavar="DIR", default=None)
    return p


def main(argv: list[str] | None = None) -> int:
    from index.cli import index_dir

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    args = parser().parse_args(argv)
    config = ServiceConfig(index_dir=index_dir(args), model=args.model, device=args.device,
                           uploads_dir=Path(args.uploads).expanduser() if args.uploads else None,
                           allow_dirs=tuple(Path(d).expanduser() for d in args.allow_dir))
    try:
        service = Service.start(config)
    except IndexStoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        build_server(service, writes=args.allow_writes).run()  # stdio; stdout carries only the protocol
    finally:
        service.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
