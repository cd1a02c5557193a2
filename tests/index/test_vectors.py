"""FAISS wrapper: exact IDMap2 search, id selectors, IVF training and its recall, torch top-k, persistence."""

from __future__ import annotations

import numpy as np
import pytest

from index.config import VectorConfig
from index.gpu import TorchSearcher
from index.vectors import VectorIndex, default_nlist


def _unit(n, d, seed=0):
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _clustered(n, d, clusters=64, seed=0):
    rng = np.random.default_rng(seed)
    centres = _unit(clusters, d, seed + 1)
    x = centres[rng.integers(0, clusters, n)] + 0.6 * rng.standard_normal((n, d)).astype(np.float32) / np.sqrt(d)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_flat_add_remove_search_by_chunk_id():
    v = VectorIndex(16)
    x = _unit(100, 16)
    ids = np.arange(1000, 1100)
    v.add(ids, x)
    scores, found = v.search(x[5], 3)
    assert found[0, 0] == 1005 and scores[0, 0] == pytest.approx(1.0, abs=1e-5)
    assert v.remove([1005, 1006, 424242]) == 2
    assert 1005 not in v.search(x[5], 10)[1]
    assert sorted(v.ids().tolist()) == sorted(set(ids.tolist()) - {1005, 1006})
    np.testing.assert_allclose(v.reconstruct([1010])[0], x[10], atol=1e-6)


def test_selector_returns_k_matching_when_they_exist():
    v = VectorIndex(16)
    x = _unit(500, 16)
    v.add(np.arange(500), x)
    allowed = np.arange(0, 500, 50)  # 10 ids, far from most queries
    scores, ids = v.search(x[7], 10, allowed)
    assert sorted(ids[0].tolist()) == sorted(allowed.tolist())
    scores, ids = v.search(x[7], 10, allowed[:3])
    assert sorted(ids[0][:3].tolist()) == sorted(allowed[:3].tolist()) and (ids[0][3:] == -1).all()


def test_ivf_trains_when_large_enough_and_recall_against_exact():
    n, d = 6000, 32
    x = _clustered(n, d)
    queries = _clustered(200, d, seed=7)
    exact = VectorIndex(d)
    exact.add(np.arange(n), x)
    cfg = VectorConfig(kind="ivf", ivf_min_vectors=5000, nprobe=16)
    ivf = VectorIndex(d, cfg)
    ivf.add(np.arange(3000), x[:3000])
    assert not ivf.maybe_train() and ivf.kind == "flat"  # too few vectors: stays exact
    ivf.add(np.arange(3000, n), x[3000:])
    assert ivf.maybe_train() and ivf.kind == "ivf"
    assert ivf.index.nlist == default_nlist(n)
    _, truth = exact.search(queries, 10)
    _, approx = ivf.search(queries, 10)
    recall = np.mean([len(set(a) & set(t)) / 10 for a, t in zip(approx, truth, strict=True)])
    assert recall >= 0.9, recall
    # removal and reconstruction by chunk id keep working on IVF
    assert ivf.remove([0, 1]) == 2 and ivf.ntotal == n - 2
    np.testing.assert_allclose(ivf.reconstruct([5])[0], x[5], atol=1e-6)
    # a filter whose ids sit in lists nprobe does not visit still yields k results
    allowed = np.arange(100, 6000, 500)
    _, ids = ivf.search(queries[:1], len(allowed), allowed)
    assert sorted(ids[0].tolist()) == sorted(allowed.tolist())
    # switching back to exact converts the index
    ivf.config = VectorConfig(kind="flat")
    assert ivf.maybe_train() and ivf.kind == "flat" and ivf.ntotal == n - 2


def test_save_is_atomic_and_loads(tmp_path):
    v = VectorIndex(8)
    v.add([3, 4], _unit(2, 8))
    path = tmp_path / "v.faiss"
    v.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["v.faiss"]
    w = VectorIndex.load(path, 8)
    assert sorted(w.ids().tolist()) == [3, 4]


def test_torch_topk_matches_faiss():
    x = _unit(3000, 24)
    ids = np.arange(10, 3010)
    v = VectorIndex(24, VectorConfig(gpu="off"))
    v.add(ids, x)
    searcher = TorchSearcher(x, ids, device="cpu", rows_per_step=700)
    q = _unit(5, 24, seed=3)
    s1, i1 = v.search(q, 7)
    s2, i2 = searcher.search(q, 7)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_allclose(s1, s2, atol=1e-5)
    allowed = ids[::300]
    _, i1 = v.search(q, 12, allowed)
    _, i2 = searcher.search(q, 12, allowed)
    np.testing.assert_array_equal(i1, i2)  # 10 allowed: the last two slots are -1 in both


def test_gpu_copy_only_when_available():
    v = VectorIndex(8)
    v.add([1], _unit(1, 8))
    from index.gpu import cuda_available
    from index.vectors import faiss_gpu_available

    expected = "faiss-gpu" if faiss_gpu_available() else "torch-cuda" if cuda_available() else "cpu"
    assert v.search_device == expected
