"""`python -m index.list`: list the documents in an index, with `--stats` for the index itself.

Thin CLI over `Index.documents` / `Index.stats` / `Index.check`; needs no model.
"""

from __future__ import annotations

import argparse
import sys
import time

from .cli import add_index_option, index_dir, print_json, run
from .filters import Filters


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m index.list", description=__doc__.splitlines()[0])
    add_index_option(p)
    p.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE",
                   help="path=DIR, glob=PATTERN, type=pdf,md, after=DATE, before=DATE (repeatable)")
    p.add_argument("--stats", action="store_true", help="print the index record and counts")
    p.add_argument("--check", action="store_true", help="verify that vectors and database agree (exit 1 if not)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .facade import Index

    with Index.open(index_dir(args), create=False) as ix:
        if args.check:
            report = ix.check()
            print_json(report.__dict__ | {"ok": report.ok}) if args.json else print(report.describe())
            return 0 if report.ok else 1
        if args.stats:
            stats = ix.stats()
            if args.json:
                print_json(stats.to_dict())
            else:
                for key, value in stats.to_dict().items():
                    print(f"{key:>18}: {value}")
            return 0
        docs = ix.documents(Filters.parse(args.filter))
    if args.json:
        print_json([d.to_dict() for d in docs])
        return 0
    for d in docs:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(d.mtime))
        pages = f"{d.pages}p" if d.pages else ""
        print(f"{d.kind:<8} {d.chunks:>5} passages {pages:>5} {d.size:>10} B  {when}  {d.path}")
    print(f"{len(docs)} documents", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
