"""The API server's options (`python -m app.api --help`), as one dataclass built from the command line.

The index and model options are the CLI's (`--index`, `--model`, `--device`); the rest are the server's
network, security and limit settings. The defaults are closed: 127.0.0.1, no folder outside the uploads
folder, writes only with a write key.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path

from index.cli import add_index_option, add_model_options, index_dir

from ..batching import BatchConfig
from ..security import API_KEYS_ENV, DEFAULT_MAX_UPLOAD_MB, ApiKeys, require_auth_for_bind
from ..service import ServiceConfig


@dataclass(frozen=True)
class Limits:
    max_inputs: int = 256  # inputs per embeddings request (OpenAI allows 2048)
    max_input_tokens: int | None = None  # tokens per input; None: the model's max_length
    max_body_mb: float = 4.0  # JSON request bodies
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB  # each uploaded file (multipart bodies may hold several)
    max_upload_files: int = 32


@dataclass(frozen=True)
class ApiConfig:
    service: ServiceConfig
    host: str = "127.0.0.1"
    port: int = 8000
    keys: ApiKeys = field(default_factory=ApiKeys, repr=False)
    limits: Limits = field(default_factory=Limits)
    mcp: bool = True  # serve MCP (streamable HTTP) at /mcp
    log_level: str = "warning"

    def check(self) -> None:
        """Refuse a network-reachable address without API keys (`UnsafeBindError`)."""
        require_auth_for_bind(self.host, bool(self.keys), "--api-key KEY[:write], --api-key-file or $" + API_KEYS_ENV)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m app.api",
                                description="Serve an index over HTTP: OpenAI-compatible embeddings, search, "
                                            "RAG context, documents, MCP (docs/api.md).")
    add_index_option(p)
    add_model_options(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; any other needs API keys)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--uploads", metavar="DIR", default=None, help="where uploads are stored (default: uploads/ beside the index)")
    p.add_argument("--allow-dir", metavar="DIR", action="append", default=[],
                   help="a folder on the server that folder ingest may read (repeatable; default: only the uploads folder)")
    p.add_argument("--api-key", metavar="KEY[:write]", action="append", default=[],
                   help=f"accept this key (read-only unless :write; repeatable; also ${API_KEYS_ENV}, comma-separated)")
    p.add_argument("--api-key-file", metavar="FILE", action="append", default=[],
                   help="file with one `KEY [read|write]` a line")
    p.add_argument("--no-batching", action="store_true", help="one model call per request (for comparisons)")
    p.add_argument("--batch-wait-ms", type=float, default=5.0, help="how long a request waits to be merged (default 5)")
    p.add_argument("--max-batch", type=int, default=64, help="texts per merged model call (default 64)")
    p.add_argument("--max-inputs", type=int, default=256, help="inputs per embeddings request (default 256)")
    p.add_argument("--max-input-tokens", type=int, default=None, help="tokens per input (default: the model's limit)")
    p.add_argument("--max-body-mb", type=float, default=4.0, help="JSON body size limit (default 4 MB)")
    p.add_argument("--max-upload-mb", type=float, default=DEFAULT_MAX_UPLOAD_MB,
                   help=f"size limit of one uploaded file (default {DEFAULT_MAX_UPLOAD_MB} MB)")
    p.add_argument("--budget", type=int, default=2000, help="default token budget of /v1/context")
    p.add_argument("--no-mcp", action="store_true", help="do not serve MCP at /mcp")
    p.add_argument("--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"])
    return p


def from_args(argv: list[str] | None = None, environ: dict[str, str] | None = None) -> ApiConfig:
    args = parser().parse_args(argv)
    env = os.environ if environ is None else environ
    keys = ApiKeys.load(args.api_key, args.api_key_file, env.get(API_KEYS_ENV))
    batching = BatchConfig(enabled=not args.no_batching, max_wait_ms=args.batch_wait_ms, max_batch=args.max_batch)
    service = ServiceConfig(
        index_dir=index_dir(args), model=args.model, device=args.device,
        uploads_dir=Path(args.uploads).expanduser() if args.uploads else None,
        allow_dirs=tuple(Path(d).expanduser() for d in args.allow_dir), batching=batching,
        max_upload_mb=args.max_upload_mb, budget=args.budget,
    )
    limits = Limits(max_inputs=args.max_inputs, max_input_tokens=args.max_input_tokens, max_body_mb=args.max_body_mb,
                    max_upload_mb=args.max_upload_mb)
    return ApiConfig(service=service, host=args.host, port=args.port, keys=keys, limits=limits, mcp=not args.no_mcp,
                     log_level=args.log_level)
