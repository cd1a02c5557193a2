"""`python -m index.search "QUERY"`: search an index; `--rag` prints a prompt-ready context with citations.

Thin CLI over `Index.search` / `Index.context`. For a person, near-duplicate passages of one file are shown
once ("+n more from this file") and query words are bold on a terminal (plain text when piped). `--json`
prints every raw passage as a result object (path, page, score, text, rank, highlights, ...), or with
`--rag` an object with the context and its citations.
"""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from .cli import (
    add_index_option,
    add_model_options,
    index_dir,
    load_encoder,
    print_json,
    resolve_instruction,
    run,
)
from .filters import Filters
from .fusion import METHODS
from .grouping import collapse
from .highlight import mark
from .retrieval import DEFAULT_MODE, MODES, SearchConfig, SearchResult
from .store import DB_NAME


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m index.search", description=__doc__.splitlines()[0])
    p.add_argument("query", metavar="QUERY")
    add_index_option(p)
    add_model_options(p)
    p.add_argument("--k", "-k", type=int, default=10, help="number of results (default 10)")
    p.add_argument("--mode", choices=MODES, default=DEFAULT_MODE,
                   help=f"dense, keyword (BM25) or hybrid (both fused, see --fusion); default {DEFAULT_MODE} "
                        "(best measured with the default model)")
    p.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE",
                   help="path=DIR, glob=PATTERN, type=pdf,md, after=DATE, before=DATE (repeatable)")
    p.add_argument("--instruction", default=None, help="query instruction: a task name or free text "
                   "(default: the retrieval instruction)")
    p.add_argument("--fusion", choices=METHODS, default=None,
                   help="hybrid: rrf, minmax or zscore (default: what was measured for the model, see "
                        "`python -m index.calibrate`; rrf for a model nobody calibrated)")
    p.add_argument("--dense-weight", type=float, default=None, help="hybrid: weight of the dense list (default: the model's)")
    p.add_argument("--keyword-weight", type=float, default=None, help="hybrid: weight of the keyword list (default: the model's)")
    p.add_argument("--rrf-k", type=int, default=None, help="hybrid, rrf: rank constant (default: the model's, else 60)")
    p.add_argument("--candidates", type=int, default=None, help="hybrid: passages taken from each list "
                   "(default: the model's, else 100)")
    p.add_argument("--rag", action="store_true", help="print the results as a context block with citations")
    p.add_argument("--budget", type=int, default=2000, help="--rag: token budget of the context (default 2000)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    return p


def print_results(results: list[SearchResult], out: TextIO) -> None:
    """Results for a person: near-duplicate passages of a file folded into the best one (`grouping`),
    query words in bold (ANSI) when `out` is a terminal and plain text otherwise."""
    if not results:
        print("no results", file=out)
        return
    isatty = getattr(out, "isatty", None)
    bold = ("\033[1m", "\033[0m") if isatty is not None and isatty() else ("", "")
    for group in collapse(results):
        r = group.best
        where = r.path + (f"  (page {r.page})" if r.page is not None else "")
        print(f"{group.position:>2}. {r.score:.4f}  {where}", file=out)
        shown = r.passage[:400]
        spans = [(s - r.passage_start, e - r.passage_start) for s, e in r.highlights
                 if s >= r.passage_start and e <= r.passage_start + len(shown)]
        print("    " + mark(shown, spans, *bold).replace("\n", " "), file=out)
        if group.more:
            print(f"    (+{group.more_label})", file=out)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .facade import Index

    directory = index_dir(args)
    filters = Filters.parse(args.filter)
    encoder = None
    if args.mode != "keyword":
        if not (directory / DB_NAME).exists():
            Index.open(directory)  # raises IndexNotFoundError with the hint, before a model is loaded
        encoder, _ = load_encoder(args.model, directory, args.device)
    config = SearchConfig(mode=args.mode, rrf_k=args.rrf_k, dense_weight=args.dense_weight,
                          keyword_weight=args.keyword_weight, candidates=args.candidates, fusion=args.fusion)
    with Index.open(directory, encoder, create=False) as ix:
        results = ix.search(args.query, args.k, filters=filters, instruction=resolve_instruction(args.instruction),
                            config=config)
        if args.rag:
            from .rag import build_context

            count = encoder.count_tokens if encoder is not None else None
            context = build_context(results, args.budget, count)
            if args.json:
                print_json({**context.to_dict(), "results": [r.to_dict() for r in results]})
            else:
                print(context.text)
            return 0
        if args.json:
            print_json([r.to_dict() for r in results])
            return 0
        print_results(results, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
