"""A bounded load test: 16 concurrent clients, 320 mixed embedding and search requests, no errors, p50/p99."""

from __future__ import annotations

import json
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np

CLIENTS, REQUESTS = 16, 320
WORDS = "violet lantern harbor banana bread oven wing lift airflow boundary layer quantum zebra marble".split()


def one(url: str, i: int) -> tuple[str, float, int]:
    rng = np.random.default_rng(i)
    text = " ".join(rng.choice(WORDS, size=int(rng.integers(2, 12))))
    if i % 2:
        path, body = "/v1/search", {"query": text, "k": 3, "mode": ["dense", "keyword", "hybrid"][i % 3]}
    else:
        path, body = "/v1/embeddings", {"input": [text, text.upper()], "model": "tiny", "encoding_format": "base64"}
    req = urllib.request.Request(url + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    start = time.perf_counter()
    with urllib.request.urlopen(req, timeout=60) as resp:
        status, payload = resp.status, json.loads(resp.read())
    took = time.perf_counter() - start
    assert payload["data"], payload
    return path, took, status


def test_sixteen_clients_mixed_requests(open_server, capsys):
    url = open_server
    one(url, 0), one(url, 1)  # warm both paths
    start = time.perf_counter()
    with ThreadPoolExecutor(CLIENTS) as pool:
        results = list(pool.map(lambda i: one(url, i), range(REQUESTS)))
    wall = time.perf_counter() - start
    assert [s for _, _, s in results] == [200] * REQUESTS
    assert wall < 60, f"{REQUESTS} requests took {wall:.1f} s"
    lat = np.asarray([t for _, t, _ in results]) * 1000
    p50, p99 = np.percentile(lat, [50, 99])
    with capsys.disabled():
        print(f"\nload: {CLIENTS} clients, {REQUESTS} requests in {wall:.2f} s ({REQUESTS / wall:.0f} req/s), "
              f"p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    with urllib.request.urlopen(url + "/metrics") as resp:
        metrics = resp.read().decode()
    merged = [line for line in metrics.splitlines() if line.startswith("nvembed_embed_batch_requests_sum")]
    count = [line for line in metrics.splitlines() if line.startswith("nvembed_embed_batch_requests_count")]
    total, calls = float(merged[0].split()[-1]), float(count[0].split()[-1])
    assert total > calls, "under 16 concurrent clients some model calls must merge several requests"
