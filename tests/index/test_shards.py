"""Sharded embedding under torchrun (index/shards.py): real `torch.distributed.run` subprocesses, gloo on CPUs.

Two processes must build the same index as one (same chunk ids and texts, same vectors, same search
results), and a run that finds shards already written must reuse them instead of embedding again.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch.distributed")

from index import Index  # noqa: E402
from index.encoders import load_encoder  # noqa: E402
from index.shards import load_shards, split  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
TOPICS = ["wing lift and drag at low speed", "boundary layer transition on a flat plate",
          "shock waves in supersonic nozzle flow", "heat transfer to a blunt body in hypersonic flight",
          "flutter of a swept wing panel", "vortex shedding behind a circular cylinder"]


def _docs(root: Path, n: int = 9) -> Path:
    docs = root / "docs"
    docs.mkdir()
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        paras = [f"Report {i}, part {j}: measurements of {topic}. The study {i}.{j} records pressure, "
                 f"temperature and velocity at station {j * 7 + i}, then compares them with theory." for j in range(4)]
        (docs / f"report-{i:02d}.txt").write_text("\n\n".join(paras))
    return docs


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    return env


def _ingest(docs: Path, index: Path, model: str, nproc: int, *extra: str) -> dict:
    cli = ["-m", "index.ingest", str(docs), "--index", str(index), "--model", model, "--chunk-tokens", "24",
           "--overlap", "4", "--batch-size", "4", "--json", *extra]
    if nproc == 1:
        cmd = [sys.executable, *cli]  # the plain CLI, no torchrun: the path that must stay unchanged
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *cli]
    proc = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout[proc.stdout.index("{"):])


def _contents(index: Path, model: str) -> tuple[list, np.ndarray, list]:
    encoder, _ = load_encoder(model)
    with Index.open(index, encoder) as ix:
        ids = np.sort(ix.store.chunk_ids())
        rows = ix.store.chunks_by_id(ids.tolist())
        chunks = [(int(i), rows[int(i)][1].path, rows[int(i)][0].ordinal, rows[int(i)][0].text) for i in ids]
        vectors = ix.vectors.reconstruct(ids)
        hits = [[(r.path, r.ordinal, round(r.score, 4)) for r in ix.search(q, k=5)] for q in TOPICS[:3]]
    return chunks, vectors, hits


def _same_index(a: Path, b: Path, model: str, atol: float) -> None:
    chunks_a, vec_a, hits_a = _contents(a, model)
    chunks_b, vec_b, hits_b = _contents(b, model)
    assert len(chunks_a) > 20 and chunks_a == chunks_b
    np.testing.assert_allclose(vec_a, vec_b, atol=atol, rtol=0)
    assert hits_a == hits_b


def test_split_covers_everything_evenly():
    assert split(7, 3) == [(0, 3), (3, 5), (5, 7)]
    assert split(1, 2) == [(0, 1), (1, 1)]
    assert split(0, 2) == [(0, 0), (0, 0)]


def test_two_processes_build_the_same_index_and_reuse_shards(tmp_path):
    model = "hash:64"
    docs = _docs(tmp_path)
    one = _ingest(docs, tmp_path / "one", model, 1)
    assert "sharding" not in one
    two = _ingest(docs, tmp_path / "two", model, 2, "--keep-shards")
    passages = one["chunks_added"]
    assert two["chunks_added"] == passages and two["added"] == one["added"]
    assert two["sharding"] == {"processes": 2, "embedded": passages, "reused": 0,
                               "shards": two["sharding"]["shards"]}
    assert two["sharding"]["shards"] >= 2  # both ranks wrote shards
    _same_index(tmp_path / "one", tmp_path / "two", model, atol=0)

    # the shards hold every passage, keyed by content hash, with the model's fingerprint
    encoder, _ = load_encoder(model)
    kept = load_shards(tmp_path / "two" / "shards", encoder.fingerprint, encoder.dimension)
    assert len(kept) == len({c[3] for c in _contents(tmp_path / "two", model)[0]})
    assert load_shards(tmp_path / "two" / "shards", "another-model", encoder.dimension) == {}

    # a run that finds the shards (as after a kill before the commit) embeds nothing again
    (tmp_path / "three").mkdir()
    shutil.copytree(tmp_path / "two" / "shards", tmp_path / "three" / "shards")
    three = _ingest(docs, tmp_path / "three", model, 2)
    assert three["sharding"]["embedded"] == 0 and three["sharding"]["reused"] == passages
    assert not (tmp_path / "three" / "shards").exists()  # committed: shards cleaned up
    _same_index(tmp_path / "one", tmp_path / "three", model, atol=0)

    # and an unchanged folder sends nothing to the other rank at all
    again = _ingest(docs, tmp_path / "three", model, 2)
    assert len(again["unchanged"]) == len(one["added"]) and again["sharding"]["embedded"] == 0


@pytest.mark.slow
def test_two_processes_match_one_with_the_tiny_model(tmp_path):
    """encoder.testing's tiny model: a real forward pass per rank, vectors equal within float tolerance."""
    pytest.importorskip("encoder.testing")
    docs = _docs(tmp_path, n=6)
    _ingest(docs, tmp_path / "one", "tiny", 1)
    two = _ingest(docs, tmp_path / "two", "tiny", 2)
    texts = [c[3] for c in _contents(tmp_path / "two", "tiny")[0]]
    assert len(texts) == two["chunks_added"]
    assert two["sharding"]["embedded"] == len(set(texts))  # short passages repeat: each text is embedded once
    _same_index(tmp_path / "one", tmp_path / "two", "tiny", atol=1e-5)


def test_an_error_on_rank_0_stops_every_rank(tmp_path):
    """A folder that does not exist fails on rank 0 inside the ingest: the other rank is released, no hang."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "index.ingest",
           str(tmp_path / "missing"), "--index", str(tmp_path / "ix"), "--model", "hash:64", "-q"]
    proc = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert f"error: {tmp_path / 'missing'}" in proc.stderr and "no such file or directory" in proc.stderr
