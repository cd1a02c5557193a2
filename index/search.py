"""`python -m index.search "QUERY"`: search an index; `--rag` prints a prompt-ready context with citations.

Thin CLI over `Index.search` / `Index.context`. `--json` prints a list of result objects (path, page, score,
text, rank, highlights, ...), or with `--rag` an object with the context and its citations.
"""

from __future__ import annotations

import argparse
import sys

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
from .retrieval import DEFAULT_MODE, MODES, SearchConfig
from .store import DB_NAME


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m index.search", description=__doc__.splitlines()[0])
    p.add_argument("query", metavar="QUERY")
    add_index_option(p)
    add_model_options(p)
    p.add_argument("--k", "-k", type=int, default=10, help="number of results (default 10)")
    p.add_argument("--mode", choices=MODES, default=DEFAULT_MODE,
                   help=f"dense, keyword (BM25) or hybrid (RRF); default {DEFAULT_MODE} (best measured with the default model)")
    p.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE",
                   help="path=DIR, glob=PATTERN, type=pdf,md, after=DATE, before=DATE (repeatable)")
    p.add_argument("--instruction", default=None, help="query instruction: a task name or free text "
                   "(default: the retrieval instruction)")
    p.add_argument("--dense-weight", type=float, default=1.0, help="hybrid: weight of the dense ranking")
    p.add_argument("--keyword-weight", type=float, default=1.0, help="hybrid: weight of the keyword ranking")
    p.add_argument("--rrf-k", type=int, default=60, help="hybrid: reciprocal rank fusion constant")
    p.add_argument("--rag", action="store_true", help="print the results as a context block with citations")
    p.add_argument("--budget", type=int, default=2000, help="--rag: token budget of the context (default 2000)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    return p


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
                          keyword_weight=args.keyword_weight, candidates=max(50, args.k))
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
        if not results:
            print("no results")
        bold = ("\033[1m", "\033[0m") if sys.stdout.isatty() else ("**", "**")
        from .highlight import mark

        for r in results:
            where = r.path + (f"  (page {r.page})" if r.page is not None else "")
            print(f"{r.rank:>2}. {r.score:.4f}  {where}")
            spans = [(s - r.passage_start, e - r.passage_start) for s, e in r.highlights
                     if s >= r.passage_start and e <= r.passage_end]
            passage = mark(r.passage, spans, *bold).replace("\n", " ")
            print(f"    {passage[:400]}")
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
