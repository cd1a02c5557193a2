"""Fusion methods by hand, the model's stored fusion settings, and the calibration command end to end."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import pytest

import index
from index import calibrate
from index.errors import InvalidInputError
from index.fusion import SAFE_DEFAULT, FusionConfig, fuse, model_fusion
from index.rankings import DevRankings, cache_root
from index.retrieval import SearchConfig, rrf

from .conftest import small_config
from .docgen import write

DENSE = [(1, 0.9), (2, 0.5), (3, 0.1)]
KEYWORD = [(3, 12.0), (4, 6.0)]


def test_rrf_is_weighted_reciprocal_rank():
    got = dict(fuse(DENSE, KEYWORD, FusionConfig("rrf", 2.0, 1.0, rrf_k=10)))
    assert got[3] == pytest.approx(2 / 13 + 1 / 11)
    assert got[1] == pytest.approx(2 / 11) and got[4] == pytest.approx(1 / 12)
    assert fuse(DENSE, KEYWORD, FusionConfig("rrf", 1.0, 1.0, rrf_k=60)) == rrf([[1, 2, 3], [3, 4]], [1.0, 1.0])


def test_minmax_scales_each_list_and_missing_gets_zero():
    got = dict(fuse(DENSE, KEYWORD, FusionConfig("minmax", 0.3, 0.7)))
    # dense: (s - 0.1) / 0.8; keyword: (s - 6) / 6; a passage absent from a list gets 0 there
    assert got[1] == pytest.approx(0.3 * 1.0)
    assert got[2] == pytest.approx(0.3 * 0.5)
    assert got[3] == pytest.approx(0.3 * 0.0 + 0.7 * 1.0)
    assert got[4] == pytest.approx(0.0)
    assert [i for i, _ in fuse(DENSE, KEYWORD, FusionConfig("minmax", 0.3, 0.7))] == [3, 1, 2, 4]


def test_zscore_standardises_and_missing_gets_the_lowest():
    got = dict(fuse(DENSE, KEYWORD, FusionConfig("zscore", 1.0, 1.0)))
    mean = 0.5
    std = math.sqrt(((0.4) ** 2 + 0 + 0.4**2) / 3)
    zk = {3: 1.0, 4: -1.0}  # two values: always +-1
    assert got[1] == pytest.approx(0.4 / std + (-1.0))  # absent from keyword: its lowest z
    assert got[3] == pytest.approx((0.1 - mean) / std + zk[3])
    assert got[4] == pytest.approx((-0.4) / std + zk[4])  # absent from dense: its lowest z


def test_one_empty_list_leaves_the_other_order():
    for method in ("rrf", "minmax", "zscore"):
        assert [i for i, _ in fuse(DENSE, [], FusionConfig(method, 0.2, 0.8))] == [1, 2, 3]
        assert [i for i, _ in fuse([], KEYWORD, FusionConfig(method, 0.9, 0.1))] == [3, 4]


@pytest.mark.parametrize("bad", [dict(method="max"), dict(dense_weight=-1), dict(dense_weight=0, keyword_weight=0),
                                 dict(rrf_k=0), dict(candidates=0), dict(dense_weight=float("nan"))])
def test_bad_settings_are_refused_by_name(bad):
    with pytest.raises(InvalidInputError, match="fusion"):
        FusionConfig(**bad).validate()
    with pytest.raises(InvalidInputError, match="unknown fusion field"):
        FusionConfig.from_dict({"weight": 1})


# ----------------------------------------------------------------- the model's stored settings ----

@pytest.fixture
def model_dir(tmp_path, tiny_model):
    path = tmp_path / "model"
    tiny_model.save_pretrained(path)
    return path


def _load(path: Path):
    from encoder import NVEmbedModel

    return NVEmbedModel.from_pretrained(path, device="cpu")


def _set_block(path: Path, block: dict) -> None:
    config = json.loads((path / "config.json").read_text())
    config.setdefault("nvembed_search", {})["search"] = block
    (path / "config.json").write_text(json.dumps(config))


def test_model_without_a_block_gets_the_safe_default(model_dir):
    model = _load(model_dir)
    assert model_fusion(model) == SAFE_DEFAULT
    assert SearchConfig().fusion_for(model) == SAFE_DEFAULT
    assert SearchConfig(dense_weight=0.2, fusion="zscore").fusion_for(model) == FusionConfig("zscore", 0.2, 1.0)


def test_a_stored_block_sets_the_search_and_a_stale_one_is_ignored(model_dir, tmp_path):
    model = _load(model_dir)
    block = {"fingerprint": model.fingerprint, "fusion": {"method": "minmax", "dense_weight": 0.25,
                                                          "keyword_weight": 0.75, "candidates": 40}}
    _set_block(model_dir, block)
    model = _load(model_dir)
    assert model_fusion(model) == FusionConfig("minmax", 0.25, 0.75, 60, 40)
    docs = tmp_path / "docs"
    write(docs / "a.txt", "The harbor lantern glows over the ocean.")
    write(docs / "b.txt", "A bank transfer refund error on my card account.")
    with index.open(tmp_path / "ix", model, config=small_config()) as ix:
        ix.ingest(docs)
        hits = ix.search("harbor lantern", k=2, mode="hybrid")
        assert hits[0].path.endswith("a.txt") and hits[0].fusion == "minmax" and hits[0].score <= 1.0 + 1e-9
        # an explicit setting still wins over the model's
        assert ix.search("harbor lantern", k=2, config=SearchConfig(fusion="rrf"))[0].fusion == "rrf"

    _set_block(model_dir, {**block, "fingerprint": "someone-else"})  # measured with other weights
    assert model_fusion(_load(model_dir)) == SAFE_DEFAULT

    _set_block(model_dir, {**block, "fusion": {"method": "minmax", "dense_weight": "high"}})
    with pytest.raises(InvalidInputError, match="config.json"):
        model_fusion(_load(model_dir))


# ------------------------------------------------------------------------------ calibration ----

def _tiny_beir(root: Path) -> Path:
    """A 12-document BEIR-layout set built at test time: each query shares its words with one document."""
    topics = ["harbor lantern ocean", "bank transfer refund", "flight wing pressure", "medical drug symptom",
              "violet marble orchestra", "galaxy velvet mountain"]
    (root / "qrels").mkdir(parents=True)
    with (root / "corpus.jsonl").open("w") as corpus:
        for i, topic in enumerate(topics):
            corpus.write(json.dumps({"_id": f"d{i}", "title": "", "text": f"Notes on {topic}: the {topic} facts."}) + "\n")
            corpus.write(json.dumps({"_id": f"x{i}", "title": "", "text": f"Other text {i} about the river."}) + "\n")
    with (root / "queries.jsonl").open("w") as queries:
        for i, topic in enumerate(topics):
            queries.write(json.dumps({"_id": f"q{i}", "text": topic.split()[0] + " " + topic.split()[1]}) + "\n")
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n"
                                             + "".join(f"q{i}\td{i}\t1\n" for i in range(len(topics))))
    return root


def test_calibrate_measures_caches_and_stores_the_block(model_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NVEMBED_CACHE_DIR", str(tmp_path / "cache"))
    dev = _tiny_beir(tmp_path / "tinyset")
    assert calibrate.main(["--model", str(model_dir), "--beir", str(dev), "--device", "cpu",
                           "--json", str(tmp_path / "sweep.json")]) == 0
    out = capsys.readouterr()
    assert "embedding tinyset once" in out.err and "wrote the search block" in out.out
    cached = list(cache_root().glob("tinyset-*.json.gz"))
    assert len(cached) == 1
    model = _load(model_dir)
    block = json.loads((model_dir / "config.json").read_text())["nvembed_search"]["search"]
    assert block["fingerprint"] == model.fingerprint
    assert model_fusion(model) == FusionConfig.from_dict(block["fusion"])
    measured = block["measured"]["dev_ndcg@10"]["tinyset"]
    assert measured["hybrid"] >= max(measured["dense"], measured["keyword"]) - 1e-9  # chosen on this set

    # the second run reuses the cached lists: nothing is embedded again
    assert calibrate.main(["--model", str(model_dir), "--beir", str(dev), "--device", "cpu", "--dry-run"]) == 0
    out = capsys.readouterr()
    assert "embedding" not in out.err and "nothing written" in out.out

    # the vectorised sweep ranks exactly as run_search's fuse() does on the same lists
    with gzip.open(cached[0], "rt") as handle:
        rankings = DevRankings.from_json(json.load(handle))
    settings = [FusionConfig(m, w, 1 - w, k, c) for m in ("rrf", "minmax", "zscore") for w in (0.1, 0.5, 0.9)
                for k in (10, 60) for c in (100, 300) if m == "rrf" or k == 60]
    sw = calibrate.sweep([rankings], settings)
    for c, row in zip(settings, sw.ndcg, strict=True):
        assert row["tinyset"] == pytest.approx(calibrate.score_mode(rankings, "hybrid", c)["ndcg@10"], abs=1e-12)


def test_calibrate_refuses_a_stand_in_or_missing_set(tmp_path):
    with pytest.raises(SystemExit, match="BEIR"):
        calibrate.main(["--model", "default", "--beir", str(tmp_path)])
    with pytest.raises(SystemExit, match="model directory"):
        calibrate.write_block(str(tmp_path / "nothing"), {})


def test_a_stale_block_of_this_model_warns_and_falls_back(model_dir, caplog):
    """Weights changed after calibration (e.g. a re-export): the block is not used, and the log says so."""
    _set_block(model_dir, {"fingerprint": "measured-before", "fusion": {"method": "zscore", "dense_weight": 0.9,
                                                                        "keyword_weight": 0.1}})
    with caplog.at_level("WARNING", logger="index.fusion"):
        assert model_fusion(_load(model_dir)) == SAFE_DEFAULT
    assert "measured-before" in caplog.text and "python -m index.calibrate" in caplog.text


def test_calibrate_uses_only_a_method_whose_one_set_choice_holds_on_the_other_set():
    """z-score has the best worst margin on both sets together, but its setting chosen on set b alone loses
    to keyword on set a: min-max, whose one-set choices hold on the other set, is chosen."""
    singles = {"a": {"dense": 0.25, "keyword": 0.34}, "b": {"dense": 0.35, "keyword": 0.33}}
    settings = [FusionConfig("zscore", 0.45, 0.55), FusionConfig("zscore", 0.7, 0.3),
                FusionConfig("minmax", 0.3, 0.7), FusionConfig("minmax", 0.4, 0.6), FusionConfig("rrf")]
    ndcg = [{"a": 0.366, "b": 0.399}, {"a": 0.327, "b": 0.400},
            {"a": 0.364, "b": 0.384}, {"a": 0.363, "b": 0.390}, {"a": 0.30, "b": 0.30}]
    sw = calibrate.Sweep(sets=["a", "b"], singles=singles, settings=settings, ndcg=ndcg)
    assert sw.best(["a", "b"]) == 0  # the best worst margin over both sets, any method
    assert sw.transfer_margin("zscore") == pytest.approx(0.327 - 0.34)  # chosen on b, checked on a
    assert sw.transfer_margin("minmax") > 0
    assert sw.transferring_methods() == ["minmax"]
    text, config, measured = calibrate.report(sw)
    assert config == settings[2]  # min-max 0.3: worst margin over both sets +0.024, against 0.4's +0.023
    assert measured["chosen_on_one_checked_on_the_others"]["b"]["margin_on_others"] > 0
    assert "among minmax" in text
    # With no method that transfers, every method competes again.
    sw.ndcg[3]["a"] = sw.ndcg[2]["a"] = 0.33
    assert set(sw.transferring_methods()) == {"minmax", "rrf", "zscore"}
