"""`python -m index.ingest DOCS_DIR`: build or update an index from a folder of documents.

Thin CLI over `Index.ingest`; prints a progress bar and a summary (added, updated, unchanged, removed,
failed with reasons, elapsed time). Under `torchrun --nproc_per_node N -m index.ingest DOCS ...` the N
processes share the embedding and rank 0 commits (see `shards.py`). See docs/index.md.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from .allocator import allocator, reexec_with_jemalloc
from .cli import (
    add_index_option,
    add_model_options,
    index_dir,
    load_encoder,
    print_json,
    run,
    stored_model_source,
    stored_record,
)
from .config import ChunkingConfig, IndexConfig, IngestConfig, VectorConfig
from .errors import IndexStoreError
from .shards import world_size_from_env


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m index.ingest", description=__doc__.splitlines()[0])
    p.add_argument("docs", metavar="DOCS_DIR", help="folder (or single file) to ingest")
    add_index_option(p)
    add_model_options(p)
    p.add_argument("--chunk-tokens", type=int, default=None, help="passage size in the model's tokens (default 256; "
                   "stored in the index)")
    p.add_argument("--overlap", type=int, default=None, help="tokens repeated between passages of a section (default 32)")
    p.add_argument("--prune", dest="prune", action="store_true", default=True,
                   help="remove documents whose files are gone from DOCS_DIR (default)")
    p.add_argument("--no-prune", dest="prune", action="store_false", help="keep documents whose files are gone")
    p.add_argument("--reindex", action="store_true", help="re-embed everything: with a different --model, or to "
                   "apply new --chunk-tokens/--overlap")
    p.add_argument("--vector-index", choices=["flat", "ivf"], default=None,
                   help="flat: exact (default); ivf: approximate, trained once there are enough vectors")
    p.add_argument("--nprobe", type=int, default=None, help="IVF lists searched per query (default 32)")
    p.add_argument("--batch-size", type=int, default=32, help="passages per encoder batch")
    p.add_argument("--commit-every", type=int, default=4096, metavar="N", help="commit every N new passages")
    p.add_argument("--max-file-mb", type=float, default=200.0, help="skip (and report) larger files")
    p.add_argument("--include-hidden", action="store_true", help="also ingest dot-files and dot-directories")
    p.add_argument("--no-follow-symlinks", action="store_true", help="do not follow symbolic links")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--verbose", "-v", action="store_true", help="list skipped files and warnings too")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.add_argument("--strict", action="store_true", help="exit with status 1 when a file failed")
    p.add_argument("--keep-shards", action="store_true", help="under torchrun: keep the shard files of embedded "
                   "passages after the commit (a later run with the same model reuses them)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    directory = index_dir(args)
    if world_size_from_env() > 1:
        return _sharded(args, directory)
    if argv is None:  # the command itself, not a call from Python: embedding runs faster under jemalloc
        reexec_with_jemalloc()
    encoder, source = load_encoder(args.model, directory, args.device)
    return _ingest(args, directory, encoder, source)


def _ingest(args: argparse.Namespace, directory: Path, encoder: Any, source: str, sharded: Any = None) -> int:
    """The ingest itself; `sharded` (a `shards.ShardedEmbedder`, rank 0 under torchrun) embeds new passages."""
    from .facade import Index

    chunking = None
    if args.chunk_tokens is not None or args.overlap is not None:
        base = ChunkingConfig()
        chunk_tokens = args.chunk_tokens if args.chunk_tokens is not None else base.chunk_tokens
        overlap = args.overlap if args.overlap is not None else min(base.overlap_tokens, chunk_tokens // 2)
        chunking = ChunkingConfig(chunk_tokens, overlap)
    vectors = None
    if args.vector_index is not None or args.nprobe is not None:
        record = stored_record(directory)  # change only what was asked for
        base = VectorConfig() if record is None else VectorConfig(
            kind=record.vector_kind, nlist=record.nlist, nprobe=record.nprobe, ivf_min_vectors=record.ivf_min_vectors)
        vectors = replace(base, kind=args.vector_index or base.kind, nprobe=args.nprobe or base.nprobe)
    config = IndexConfig(chunking=chunking, vectors=vectors, ingest=IngestConfig(
        batch_size=args.batch_size, commit_every_chunks=args.commit_every, max_file_mb=args.max_file_mb,
        prune=args.prune, include_hidden=args.include_hidden, follow_symlinks=not args.no_follow_symlinks,
    ))
    with Index.open(directory, encoder, config=config, reindex=args.reindex, model_source=source) as ix:
        force = args.reindex and not ix.reindexed_model
        report = ix.ingest(args.docs, prune=args.prune, force=force, progress=not (args.quiet or args.json),
                           embed=sharded)
        shard_line = None
        if sharded is not None:
            if not report.stopped and not args.keep_shards:
                sharded.clean()  # everything the shards held is committed
            s = sharded.stats
            shard_line = (f"sharded embedding over {sharded.info.world_size} processes: {s.embedded} passages "
                          f"embedded, {s.reused} reused from shards, {s.shards} shard files written")
        if args.json:
            out = {**report.to_dict(), "allocator": allocator()}
            if sharded is not None:
                out["sharding"] = {"processes": sharded.info.world_size, **asdict(sharded.stats)}
            print_json(out)
        else:
            print(report.summary(verbose=args.verbose))
            if shard_line:
                print(shard_line)
            docs, chunks = ix.store.count()
            print(f"index {ix.directory}: {docs} documents, {chunks} passages, model {ix.record.model_name}")
    return 1 if args.strict and report.failed else 0


def _sharded(args: argparse.Namespace, directory: Path) -> int:
    """One of the torchrun processes: rank 0 ingests and commits, the others embed their shares."""
    import torch

    from training.distributed import broadcast_object, init_from_env, shutdown

    from .encoders import embed_passages
    from .shards import ShardedEmbedder, gather_object, rank_device, serve, shard_dir

    # the CUDA device is set before the process group exists, so nccl binds each rank to its own GPU
    device = rank_device(args.device, int(os.environ.get("LOCAL_RANK", "0")))
    info = init_from_env(torch.device(device).type)  # nccl on GPUs, gloo on CPUs
    try:
        spec = broadcast_object((args.model or stored_model_source(directory) or "default") if info.is_main else None)
        encoder, source, error = None, spec, None
        try:
            encoder, source = load_encoder(spec, directory, device)
        except Exception as exc:  # every rank must hear of it, or the others would wait for this one
            error = f"rank {info.rank}: {exc}"
        loaded = gather_object((getattr(encoder, "fingerprint", None), error))
        errors = [e for _, e in loaded if e]
        if errors:
            raise IndexStoreError("; ".join(errors))
        if len({fp for fp, _ in loaded}) != 1:
            raise IndexStoreError(f"the processes loaded different models for {spec!r}: {[fp for fp, _ in loaded]}")

        def embed(texts: list[str]) -> Any:
            return embed_passages(encoder, texts, args.batch_size)

        shards = shard_dir(directory)
        if not info.is_main:
            serve(embed, shards, str(encoder.fingerprint))
            return 0
        sharded = ShardedEmbedder(embed, shards, str(encoder.fingerprint), int(encoder.dimension))
        try:
            return _ingest(args, directory, encoder, source, sharded)
        finally:
            sharded.stop()
    finally:
        shutdown()


if __name__ == "__main__":
    sys.exit(run(main))
