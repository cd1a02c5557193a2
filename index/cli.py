"""Shared pieces of the command-line tools: common options, the model to load, error handling.

Each tool (`ingest.py`, `search.py`, `delete.py`, `list.py`) is a thin layer over the `Index` facade; this
module keeps them short. Errors the index raises on purpose are printed as one line, exit status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .config import DEFAULT_INDEX_DIR, INDEX_DIR_ENV, resolve_index_dir
from .errors import IndexNotFoundError, IndexStoreError
from .milvus import STORE_URI_ENV
from .store import DB_NAME, Store

INDEX_HELP = (f"index directory (default: ${INDEX_DIR_ENV} if set, else ./{DEFAULT_INDEX_DIR} "
              "under the current directory)")
MODEL_HELP = ("encoder: 'default', 'default-untrained', 'minilm', 'tiny[:SEED]', a local NV-Embed or decoder "
              "directory, a hub id, or hash:DIM / random:DIM (stand-ins without a model, for tests). "
              "Default: the model the index was built with, else 'default'")


def add_index_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--index", metavar="DIR", default=None, help=INDEX_HELP)
    parser.add_argument("--store", metavar="URI", default=None,
                        help=f"keep the vectors in Milvus: ./file.db (Milvus Lite) or http://host:19530 (a server "
                             f"or cluster); for a new index, and needed to open one built so (same as ${STORE_URI_ENV})")


def add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", metavar="NAME_OR_PATH", default=None, help=MODEL_HELP)
    parser.add_argument("--device", default=None, help="torch device for the model (default: cuda if present, else cpu)")


def stored_record(directory: Path) -> Any:
    """The index record of an existing index (None for a new one), read without opening the index."""
    if not (directory / DB_NAME).exists():
        return None
    store = Store(directory)
    try:
        return store.record()
    finally:
        store.close()


def stored_model_source(directory: Path) -> str | None:
    """The `--model` value recorded when the index was built (None for a new index)."""
    record = stored_record(directory)
    return record.model_source if record is not None else None


def load_encoder(spec: str | None, directory: Path, device: str | None = None) -> tuple[Any, str]:
    """(encoder, source string to record) for `--model`, defaulting to what the index was built with."""
    from .encoders import load_encoder as load

    return load(spec or stored_model_source(directory) or "default", device)


def resolve_instruction(value: str | None) -> str | None:
    """A task name or free text for `--instruction`, through `encoder.instructions` when available."""
    if value is None:
        return None
    try:
        from encoder.instructions import get_instruction
    except ImportError:
        return value
    try:
        return get_instruction(value)
    except (KeyError, ValueError):
        return value


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, ensure_ascii=False, default=str)
    sys.stdout.write("\n")


def run(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """Run a tool's main, turning the index's own errors into a one-line message and exit status 2."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    store = os.environ.get(STORE_URI_ENV)  # `--store` sets it for this run only (see `index_dir`)
    try:
        return main(argv)
    except IndexNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except IndexStoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: everything committed so far is kept; run the command again to resume", file=sys.stderr)
        return 130
    finally:
        if store is None:
            os.environ.pop(STORE_URI_ENV, None)
        else:
            os.environ[STORE_URI_ENV] = store


def index_dir(args: argparse.Namespace) -> Path:
    """The index directory; `--store` is handed to every `Index.open` of this process through the environment."""
    if getattr(args, "store", None):
        os.environ[STORE_URI_ENV] = args.store
    return resolve_index_dir(args.index)
