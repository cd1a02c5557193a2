"""`python -m index.delete PATH...`: remove documents from an index (a directory removes all under it).

Thin CLI over `Index.delete`; needs no model. Exit status 1 when a path matched no document.
"""

from __future__ import annotations

import argparse
import sys

from .cli import add_index_option, index_dir, print_json, run


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m index.delete", description=__doc__.splitlines()[0])
    p.add_argument("paths", nargs="+", metavar="PATH", help="document paths or directories, as ingested")
    add_index_option(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .facade import Index

    with Index.open(index_dir(args), create=False) as ix:
        report = ix.delete(args.paths)
    if args.json:
        print_json({"deleted": report.deleted, "not_found": report.not_found, "chunks_removed": report.chunks_removed})
    else:
        for path in report.deleted:
            print(f"deleted {path}")
        for path in report.not_found:
            print(f"not in the index: {path}", file=sys.stderr)
        print(f"{len(report.deleted)} documents ({report.chunks_removed} passages) removed")
    return 1 if report.not_found else 0


if __name__ == "__main__":
    sys.exit(run(main))
