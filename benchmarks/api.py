"""API throughput and latency: dynamic batching on vs off, and search through the API vs in-process.

Starts real `python -m app.api` servers on loopback (one with batching, one with `--no-batching`, one after
the other), sends single-text embedding requests from 1, 4 and 16 concurrent clients, and prints embeddings
per second and p50/p99 latency for each, with the on/off throughput ratio. Then times the same searches
through `/v1/search` and through `Index.search` in this process (the baseline), on the same index.

    python benchmarks/api.py [--model tiny] [--requests 240] [--docs 200] [--searches 100]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import index  # noqa: E402
from app.api.testing import serve_api  # noqa: E402
from app.service import load_model  # noqa: E402

WORDS = ("wing lift airflow pressure boundary layer heat transfer library catalog information retrieval search "
         "index document passage query answer question medical drug disease symptom treatment card account bank "
         "transfer money payment refund error zebra quantum violet marble orchestra galaxy lantern harbor").split()


def texts(n: int, seed: int, lo: int = 6, hi: int = 40) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(lo, hi)))) for _ in range(n)]


def post(url: str, path: str, body: dict) -> float:
    req = urllib.request.Request(url + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    start = time.perf_counter()
    with urllib.request.urlopen(req, timeout=120) as resp:
        resp.read()
    return time.perf_counter() - start


def load(url: str, model: str, clients: int, requests: int) -> tuple[float, float, float]:
    """(embeddings/s, p50 ms, p99 ms) for `requests` single-text requests from `clients` threads."""
    inputs = texts(requests, seed=clients)
    post(url, "/v1/embeddings", {"input": inputs[:1], "model": model})  # warm-up
    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        lat = list(pool.map(lambda t: post(url, "/v1/embeddings", {"input": [t], "model": model,
                                                                   "encoding_format": "base64"}), inputs))
    wall = time.perf_counter() - start
    p50, p99 = np.percentile(np.asarray(lat) * 1000, [50, 99])
    return requests / wall, float(p50), float(p99)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="tiny")
    p.add_argument("--requests", type=int, default=240, help="embedding requests per (batching, clients) cell")
    p.add_argument("--docs", type=int, default=200)
    p.add_argument("--searches", type=int, default=100)
    p.add_argument("--clients", default="1,4,16")
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="api-bench-"))
    docs = work / "docs"
    docs.mkdir()
    for i, t in enumerate(texts(args.docs, seed=99, lo=40, hi=200)):
        (docs / f"doc{i:04d}.txt").write_text(t)
    encoder, source = load_model(args.model, work / "index")
    with index.open(work / "index", encoder, model_source=source) as ix:
        ix.ingest(docs)
    clients = [int(c) for c in args.clients.split(",")]
    rows: dict[tuple[bool, int], tuple[float, float, float]] = {}
    queries = texts(args.searches, seed=7, lo=2, hi=8)
    api_search: list[float] = []
    for batching in (True, False):
        flags = [] if batching else ["--no-batching"]
        with serve_api(["--index", str(work / "index"), "--model", args.model, *flags]) as url:
            for c in clients:
                rows[(batching, c)] = load(url, args.model, c, args.requests)
            if batching:
                post(url, "/v1/search", {"query": queries[0], "k": 10})
                api_search = [post(url, "/v1/search", {"query": q, "k": 10, "mode": "hybrid"}) for q in queries]
    with index.open(work / "index", encoder) as ix:
        ix.search(queries[0], 10)
        local = []
        for q in queries:
            start = time.perf_counter()
            ix.search(q, 10, mode="hybrid")
            local.append(time.perf_counter() - start)

    print(f"\nembeddings, model {args.model}, {args.requests} single-text requests per cell")
    print(f"{'clients':>7} | {'batched emb/s':>13} {'p50 ms':>7} {'p99 ms':>7} | {'unbatched emb/s':>15} "
          f"{'p50 ms':>7} {'p99 ms':>7} | {'ratio':>5}")
    for c in clients:
        on, off = rows[(True, c)], rows[(False, c)]
        print(f"{c:>7} | {on[0]:>13.1f} {on[1]:>7.1f} {on[2]:>7.1f} | {off[0]:>15.1f} {off[1]:>7.1f} {off[2]:>7.1f} | "
              f"{on[0] / off[0]:>5.2f}")
    a50, a99 = np.percentile(np.asarray(api_search) * 1000, [50, 99])
    l50, l99 = np.percentile(np.asarray(local) * 1000, [50, 99])
    print(f"\nsearch (hybrid, k=10, {len(queries)} queries, {args.docs} documents), one client")
    print(f"{'path':>12} | {'p50 ms':>7} {'p99 ms':>7}")
    print(f"{'in-process':>12} | {l50:>7.2f} {l99:>7.2f}")
    print(f"{'HTTP API':>12} | {a50:>7.2f} {a99:>7.2f}")
    print(f"API / in-process p50 ratio: {a50 / l50:.2f}")


if __name__ == "__main__":
    main()
