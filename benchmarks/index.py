"""Benchmark of the index: vector search (exact vs IVF) on synthetic vectors, and ingest without a model.

Part 1, search: N synthetic unit vectors of width d: a mixture of N/10 Gaussian clusters on the sphere
(centre + noise of norm about 1, renormalised), so a query's ten nearest neighbours are mostly its own
cluster's members. Queries come from the same mixture. This gives IVF structure to exploit, as with real
embeddings, while staying a hard case (ten true neighbours that lists can split). For the exact index
(IndexIDMap2 over IndexFlatIP) and IVF (IndexIVFFlat, nlist = 4 sqrt(N), trained by `VectorIndex.maybe_train`
on 64 points per list): build/train time, memory (serialised size), search latency p50/p99 for one query at a
time and for batches of 64, and recall@10 of IVF against exact search.

Part 2, ingest: a synthetic folder of mixed documents (txt, md, html, pdf, docx) ingested with a stand-in
encoder that returns random vectors, so parsing, chunking and storage cost is visible apart from the model:
documents/s and passages/s for a first ingest and for a re-ingest of the unchanged folder, with the time per
stage. When `encoder.testing` is importable a second row uses the real (tiny) tokenizer for chunking.

Part 3, commits (`--commits`): an index pre-filled with N vectors (d=576) in each on-disk layout, the old
single file rewritten per commit and the segments of `index/segments.py`; then the time of commits that
add 4,096 vectors each (the CLI's batch) through the real `writer.commit`, and the ingest throughput of a
folder (stand-in encoder, a commit every 64 passages) into that index. Same run, same machine.

    python benchmarks/index.py                      # the full run recorded in docs/benchmarks.md
    python benchmarks/index.py --quick              # 20k vectors, 100 documents: a smoke test
    python benchmarks/index.py --skip-search --skip-ingest --commits 10000 100000 1000000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import faiss  # noqa: E402

import index  # noqa: E402
from index.config import IndexConfig, IngestConfig, VectorConfig  # noqa: E402
from index.testing import HashEncoder  # noqa: E402
from index.vectors import VectorIndex, default_nlist  # noqa: E402

K = 10


# ------------------------------------------------------------------------------------------- search ----
def clustered(n: int, d: int, rng: np.random.Generator, centres: np.ndarray, spread: float = 1.0) -> np.ndarray:
    out = np.empty((n, d), dtype=np.float32)
    for lo in range(0, n, 8192):
        m = min(8192, n - lo)
        x = centres[rng.integers(0, len(centres), m)] + spread / np.sqrt(d) * rng.standard_normal((m, d), dtype=np.float32)
        out[lo : lo + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def latencies(search, queries: np.ndarray, batch: int, repeats: int) -> tuple[float, float]:
    """p50, p99 in milliseconds of `search(batch of queries)` over `repeats` calls."""
    times = []
    for i in range(repeats):
        q = queries[(i * batch) % len(queries) :][:batch]
        if len(q) < batch:
            q = queries[:batch]
        t0 = time.perf_counter()
        search(q)
        times.append((time.perf_counter() - t0) * 1000)
    return float(np.percentile(times, 50)), float(np.percentile(times, 99))


def bench_search(n: int, d: int, nprobes: list[int], single: int, batches: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(64, n // 10), d), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    data = clustered(n, d, rng, centres)
    queries = clustered(1000, d, rng, centres)
    ids = np.arange(1, n + 1, dtype=np.int64)
    rows = []

    t0 = time.perf_counter()
    exact = VectorIndex(d, VectorConfig(gpu="off"))
    exact.add(ids, data)
    build = time.perf_counter() - t0
    mem = exact.memory_bytes()
    truth = exact.search(queries, K)[1]
    p50_1, p99_1 = latencies(lambda q: exact.search(q, K), queries, 1, single)
    p50_64, p99_64 = latencies(lambda q: exact.search(q, K), queries, 64, batches)
    rows.append(dict(d=d, n=n, index="exact (IDMap2+FlatIP)", nlist="", nprobe="", build_s=build, memory_mb=mem / 1e6,
                     p50_1_ms=p50_1, p99_1_ms=p99_1, p50_64_ms=p50_64, p99_64_ms=p99_64, recall10=1.0))
    print(f"d={d} exact: {rows[-1]}", file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    ivf = VectorIndex(d, VectorConfig(kind="ivf", ivf_min_vectors=1, gpu="off"))
    ivf.add(ids, data)
    ivf.maybe_train()
    build = time.perf_counter() - t0
    assert ivf.kind == "ivf"
    mem = ivf.memory_bytes()
    del data
    for nprobe in nprobes:
        ivf.config = VectorConfig(kind="ivf", ivf_min_vectors=1, nprobe=nprobe, gpu="off")
        found = ivf.search(queries, K)[1]
        recall = float(np.mean([len(set(a) & set(t)) / K for a, t in zip(found, truth, strict=True)]))
        p50_1, p99_1 = latencies(lambda q: ivf.search(q, K), queries, 1, max(single, 200))
        p50_64, p99_64 = latencies(lambda q: ivf.search(q, K), queries, 64, max(batches, 20))
        rows.append(dict(d=d, n=n, index="IVF (IVFFlat)", nlist=ivf.index.nlist, nprobe=nprobe, build_s=build,
                         memory_mb=mem / 1e6, p50_1_ms=p50_1, p99_1_ms=p99_1, p50_64_ms=p50_64, p99_64_ms=p99_64,
                         recall10=recall))
        print(f"d={d} ivf: {rows[-1]}", file=sys.stderr, flush=True)
    return rows


# ------------------------------------------------------------------------------------------- ingest ----
WORDS = ("index passage search vector model query answer document river harbour crane engine signal table "
         "report policy budget schedule meeting archive sensor battery network storage memory cache kernel "
         "thread process license install update version release feature error warning result metric").split()


def _para(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words)).capitalize() + "."


def make_corpus(root: Path, n_docs: int, seed: int = 0) -> int:
    """Mixed documents of 2-12 paragraphs: 40% txt, 25% md, 20% html, 10% pdf, 5% docx. Returns bytes."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.index.docgen import make_docx, make_html, make_pdf

    rng = random.Random(seed)
    total = 0
    for i in range(n_docs):
        paras = [_para(rng, rng.randint(20, 80)) for _ in range(rng.randint(2, 12))]
        r = i % 20
        if r < 8:
            path, data = root / f"t{i:05d}.txt", "\n\n".join(paras).encode()
        elif r < 13:
            path, data = root / "md" / f"m{i:05d}.md", ("# Title\n\n" + "\n\n## Part\n\n".join(paras)).encode()
        elif r < 17:
            path, data = root / "web" / f"h{i:05d}.html", make_html(f"Page {i}", paras).encode()
        elif r < 19:
            lines = [p[j : j + 90] for p in paras for j in range(0, len(p), 90)]
            pages = ["\n".join(lines[j : j + 40]) for j in range(0, len(lines), 40)]
            path, data = root / "pdf" / f"p{i:05d}.pdf", make_pdf(pages)
        else:
            path, data = root / "docx" / f"w{i:05d}.docx", make_docx([("h1", "Title")] + [("p", p) for p in paras])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        total += len(data)
    return total


class RandomWithTokenizer(HashEncoder):
    """Random vectors, but the real encoder's tokenizer and token counts (for chunking)."""

    def __init__(self, model, dimension: int):
        super().__init__(dimension, max_length=model.max_length, random=True, name=f"random+{model.name}-tokenizer")
        self.tokenizer = model.tokenizer
        self._model = model

    def count_tokens(self, texts):
        return self._model.count_tokens(texts)


def bench_ingest(n_docs: int, dims: list[int], workdir: Path) -> list[dict]:
    docs = workdir / "docs"
    size = make_corpus(docs, n_docs)
    encoders = [(f"random:{d}", HashEncoder(d, random=True)) for d in dims]
    try:
        from encoder.testing import tiny_model

        encoders.append(("random:576 + tiny tokenizer", RandomWithTokenizer(tiny_model(), 576)))
    except ImportError:
        pass
    rows = []
    for label, enc in encoders:
        ix_dir = workdir / f"ix-{len(rows)}"
        config = IndexConfig(ingest=IngestConfig(commit_every_chunks=4096))
        with index.open(ix_dir, enc, config=config) as ix:
            first = ix.ingest(docs)
            again = ix.ingest(docs)
        assert not first.failed, first.failed[:3]
        docs_n = len(first.added)
        rows.append(dict(encoder=label, documents=docs_n, mbytes=size / 1e6, passages=first.chunks_added,
                         first_s=first.elapsed, docs_per_s=docs_n / first.elapsed,
                         passages_per_s=first.chunks_added / first.elapsed,
                         stages={k: round(v, 2) for k, v in first.timings.items()},
                         reingest_s=again.elapsed, reingest_docs_per_s=docs_n / again.elapsed))
        print(f"ingest: {rows[-1]}", file=sys.stderr, flush=True)
        shutil.rmtree(ix_dir)
    return rows


# ------------------------------------------------------------------------------------------- report ----
def bench_commits(sizes: list[int], workdir: Path, d: int = 576, batch: int = 4096, repeats: int = 5,
                  n_docs: int = 60) -> list[dict]:
    """Commit time and ingest throughput at each index size, single-file layout against segments."""
    from index.writer import Changes, commit

    rows = []
    rng = np.random.default_rng(0)
    corpus = workdir / "commit-docs"
    make_corpus(corpus, n_docs)
    for n in sizes:
        base = rng.standard_normal((n, d), dtype=np.float32)
        base /= np.linalg.norm(base, axis=1, keepdims=True)
        for layout in ("single", "segments"):
            directory = workdir / f"commits-{n}-{layout}"
            config = IndexConfig(vectors=VectorConfig(layout=layout), ingest=IngestConfig(commit_every_chunks=64))
            encoder = HashEncoder(d, random=True)
            with index.open(directory, encoder, config=config) as ix:
                with ix._writing():  # the benchmark drives the writer directly: vectors without documents
                    t0 = time.perf_counter()
                    commit(directory, ix.store, ix.vectors, Changes(add_vectors=[(np.arange(n) + 10**9, base)]))
                    fill = time.perf_counter() - t0
                    times = []
                    for r in range(repeats):
                        ids = np.arange(batch) + 10**9 + n + r * batch
                        vecs = base[rng.integers(0, n, batch)]
                        t0 = time.perf_counter()
                        commit(directory, ix.store, ix.vectors, Changes(add_vectors=[(ids, vecs)]))
                        times.append(time.perf_counter() - t0)
                ix.refresh()
                t0 = time.perf_counter()
                report = ix.ingest(corpus, prune=False)
                seconds = time.perf_counter() - t0
            disk = sum(p.stat().st_size for p in directory.iterdir() if p.is_file())
            rows.append({"vectors": n, "layout": layout, "fill_s": round(fill, 2),
                         "commit_ms_median": round(1000 * float(np.median(times)), 1),
                         "commit_ms_max": round(1000 * max(times), 1),
                         "ingest_passages_per_s": round(report.chunks_added / seconds, 1),
                         "ingest_commits": report.commits, "disk_mb": round(disk / 1e6, 1)})
            print(f"commits: {rows[-1]}", file=sys.stderr, flush=True)
            shutil.rmtree(directory, ignore_errors=True)
        del base
    return rows


def commit_markdown(rows: list[dict]) -> str:
    lines = ["| vectors | layout | commit of 4,096 (median / max ms) | speed-up | ingest passages/s | speed-up |"
             " commits in ingest |", "|---:|---|---:|---:|---:|---:|---:|"]
    single = {r["vectors"]: r for r in rows if r["layout"] == "single"}
    for r in rows:
        s = single[r["vectors"]]
        lines.append(f"| {r['vectors']:,} | {r['layout']} | {r['commit_ms_median']:.1f} / {r['commit_ms_max']:.1f} | "
                     f"{s['commit_ms_median'] / r['commit_ms_median']:.1f}x | {r['ingest_passages_per_s']:.0f} | "
                     f"{r['ingest_passages_per_s'] / s['ingest_passages_per_s']:.1f}x | {r['ingest_commits']} |")
    return "\n".join(lines)


def markdown(search_rows: list[dict], ingest_rows: list[dict]) -> str:
    out = ["| d | index | nlist | nprobe | build/train s | memory MB | 1 query p50 ms | p99 ms | "
           "64 queries p50 ms | p99 ms | recall@10 |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in search_rows:
        out.append(f"| {r['d']} | {r['index']} | {r['nlist']} | {r['nprobe']} | {r['build_s']:.1f} | "
                   f"{r['memory_mb']:.0f} | {r['p50_1_ms']:.2f} | {r['p99_1_ms']:.2f} | {r['p50_64_ms']:.1f} | "
                   f"{r['p99_64_ms']:.1f} | {r['recall10']:.3f} |")
    out += ["", "| stand-in encoder | documents (MB) | passages | first ingest s | documents/s | passages/s | "
            "read / parse / chunk / embed / commit s | re-ingest unchanged s (documents/s) |",
            "|---|---|---|---|---|---|---|---|"]
    for r in ingest_rows:
        st = r["stages"]
        out.append(f"| {r['encoder']} | {r['documents']} ({r['mbytes']:.1f}) | {r['passages']} | {r['first_s']:.1f} | "
                   f"{r['docs_per_s']:.0f} | {r['passages_per_s']:.0f} | {st['read']:.1f} / {st['parse']:.1f} / "
                   f"{st['chunk']:.1f} / {st['embed']:.1f} / {st['commit']:.1f} | {r['reingest_s']:.2f} "
                   f"({r['reingest_docs_per_s']:.0f}) |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=100_000, help="vectors per search benchmark")
    p.add_argument("--dims", type=int, nargs="+", default=[576, 4096])
    p.add_argument("--nprobe", type=int, nargs="+", default=[8, 32, 64])
    p.add_argument("--docs", type=int, default=500, help="documents in the ingest benchmark")
    p.add_argument("--quick", action="store_true", help="20k vectors, 100 documents")
    p.add_argument("--skip-search", action="store_true")
    p.add_argument("--skip-ingest", action="store_true")
    p.add_argument("--commits", type=int, nargs="*", default=[], metavar="N",
                   help="index sizes for the commit benchmark (e.g. 10000 100000 1000000)")
    p.add_argument("--json", type=Path, default=None, help="also write the raw figures here")
    args = p.parse_args(argv)
    if args.quick:
        args.n, args.docs = 20_000, 100
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, faiss {faiss.__version__} "
          f"({faiss.omp_get_max_threads()} threads), numpy {np.__version__}", flush=True)
    search_rows: list[dict] = []
    ingest_rows: list[dict] = []
    if not args.skip_search:
        for d in args.dims:
            single = 100 if d <= 1024 else 40
            search_rows += bench_search(args.n, d, args.nprobe, single=single, batches=10)
            print(f"  nlist default for N={args.n}: {default_nlist(args.n)}", file=sys.stderr)
    if not args.skip_ingest:
        with tempfile.TemporaryDirectory(prefix="index-bench-") as tmp:
            ingest_rows = bench_ingest(args.docs, args.dims, Path(tmp))
    commit_rows: list[dict] = []
    if args.commits:
        with tempfile.TemporaryDirectory(prefix="index-bench-") as tmp:
            commit_rows = bench_commits(args.commits, Path(tmp))
    if search_rows or ingest_rows:
        print(markdown(search_rows, ingest_rows))
    if commit_rows:
        print(commit_markdown(commit_rows))
    if args.json:
        args.json.write_text(json.dumps({"search": search_rows, "ingest": ingest_rows, "commits": commit_rows},
                                        indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
