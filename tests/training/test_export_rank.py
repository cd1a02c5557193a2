"""Exporting a fully fine-tuned model (full-rank deltas) to the default's parts: the rank is measured.

A tiny plain decoder stands in for SmolLM2 (`--base`), so this runs in seconds: every layer matrix gets a
full-rank change, as full fine-tuning gives, and the latent layer a slim size (4 heads of width 8)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from encoder import NVEmbedModel
from encoder.default import build_default
from encoder.testing import tiny_model
from training.export_default import check, export, main, sweep

from .test_snapshot import tiny_beir

SLIM = {"num_cross_heads": 4, "cross_dim_head": 8}
TEXTS = ["what about the harbor lantern", "apple of the apple", "a river with a violet marble", "zebra galaxy"]


@pytest.fixture(scope="module")
def dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("export-rank")
    model = tiny_model("llama", seed=5, latent_config=SLIM)
    model.embedding_model.save_pretrained(root / "base")
    model.tokenizer.save_pretrained(root / "base")
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in model.embedding_model.named_parameters():
            if name.startswith("layers.") and param.dim() == 2:
                param += 0.02 * torch.randn(param.shape, generator=gen)  # full rank
    model.config.extra["max_length"] = 128
    model.save_pretrained(root / "trained")
    return {"root": root, "base": root / "base", "trained": root / "trained"}


def test_sweep_measures_error_and_size_per_rank(dirs):
    rows = sweep(dirs["trained"], [2, 8, 32], dirs["base"])
    assert [r["rank"] for r in rows] == [2, 8, 32]
    assert rows[0]["matrices"] == 2 * 7  # two layers x seven projections
    assert rows[0]["worst_error"] > rows[1]["worst_error"] > rows[2]["worst_error"]
    assert rows[0]["mean_error"] > 0.5 and rows[2]["worst_error"] < 1e-6  # hidden 32: rank 32 is full rank
    # q/o 32 x 32, k/v 16 x 32 (one KV head of 16), gate/up 37 x 32, down 32 x 37: 2 bytes x r x (in + out)
    per_layer = 2 * 64 + 2 * 48 + 3 * 69
    assert rows[1]["bytes"] == 2 * 8 * per_layer * 2


def test_export_reports_each_matrix_and_check_measures_the_loss(dirs):
    root = dirs["root"]
    low = export(dirs["trained"], root / "r2", rank=2, base_dir=dirs["base"])
    full = export(dirs["trained"], root / "r32", rank=32, base_dir=dirs["base"])
    assert len(low["delta_errors"]) == 14 and min(low["delta_errors"].values()) > 0.5
    assert low["delta_worst_relative_error"] == max(low["delta_errors"].values())
    assert full["delta_worst_relative_error"] < 1e-5
    assert low["latent"]["num_cross_heads"] == 4 and low["latent"]["cross_dim_head"] == 8

    dev = tiny_beir(root / "dev")
    good = check(dirs["trained"], root / "r32", TEXTS, [str(dev)], base_dir=dirs["base"])
    bad = check(dirs["trained"], root / "r2", TEXTS, [str(dev)], base_dir=dirs["base"])
    assert good["passages"]["n"] == 6 + len(TEXTS) and good["queries"]["n"] == 6
    assert good["passages"]["cosine_min"] > 0.999 and good["queries"]["cosine_min"] > 0.999
    assert bad["passages"]["cosine_mean"] < good["passages"]["cosine_mean"]
    assert set(good["ndcg@10"]) == {"source", "exported"}
    assert abs(good["ndcg@10"]["source"]["dev"] - good["ndcg@10"]["exported"]["dev"]) < 1e-6


def test_slim_latent_round_trips_through_the_loader(dirs, tmp_path):
    manifest = export(dirs["trained"], tmp_path / "parts", rank=32, base_dir=dirs["base"])
    on_disk = json.loads((tmp_path / "parts" / "default.json").read_text())
    assert on_disk["latent"] == manifest["latent"] and "delta_errors" not in on_disk
    build_default(tmp_path / "model", on_disk, parts_dir=tmp_path / "parts", base=dirs["base"])
    rebuilt = NVEmbedModel.from_pretrained(tmp_path / "model", device="cpu")
    source = NVEmbedModel.from_pretrained(dirs["trained"], device="cpu")
    assert rebuilt.config.latent.to_dict() == source.config.latent.to_dict()
    assert rebuilt.max_length == 128
    assert sum(p.numel() for p in rebuilt.latent_attention_model.parameters()) == \
        sum(p.numel() for p in source.latent_attention_model.parameters())


def test_search_block_kept_for_the_same_parts_dropped_for_others(dirs, tmp_path, capsys):
    out = tmp_path / "shipped"
    export(dirs["trained"], out, rank=8, base_dir=dirs["base"])
    manifest = json.loads((out / "default.json").read_text())
    block = {"fingerprint": "abc", "fusion": {"method": "zscore", "dense_weight": 0.3, "keyword_weight": 0.7}}
    (out / "default.json").write_text(json.dumps({**manifest, "search": block}))
    export(dirs["trained"], out, rank=8, base_dir=dirs["base"])  # the same parts again
    assert json.loads((out / "default.json").read_text())["search"] == block
    assert "dropped" not in capsys.readouterr().err
    export(dirs["trained"], out, rank=16, base_dir=dirs["base"])  # other parts: another model
    assert "search" not in json.loads((out / "default.json").read_text())
    err = capsys.readouterr().err
    assert "dropped the search block" in err and "python -m index.calibrate --model default" in err


def test_cli_sweep_and_export(dirs, tmp_path, capsys):
    assert main([str(dirs["trained"]), "--sweep", "4,32", "--base", str(dirs["base"])]) == 0
    out = capsys.readouterr().out
    assert "| rank | deltas MiB |" in out and "| 32 |" in out
    assert not (tmp_path / "x").exists()
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(TEXTS))
    assert main([str(dirs["trained"]), "--rank", "32", "--out", str(tmp_path / "x"), "--base", str(dirs["base"]),
                 "--check-texts", str(texts)]) == 0
    out = capsys.readouterr().out
    assert "layers.0.self_attn.q_proj.weight: relative error" in out and "wrote" in out
    report = json.loads(out[out.index("{"):])
    assert report["passages"]["n"] == len(TEXTS) and report["passages"]["cosine_min"] > 0.999


def test_int8_deltas_keep_a_full_rank_change_that_low_rank_loses(dirs, tmp_path):
    rows = sweep(dirs["trained"], [8, "int8"], dirs["base"])
    per_layer = 2 * 32 * 32 + 2 * 16 * 32 + 3 * 37 * 32  # one byte per weight
    per_layer_rows = 32 + 16 + 16 + 32 + 37 + 37 + 32  # one float32 scale per output row
    assert rows[1]["bytes"] == 2 * (per_layer + 4 * per_layer_rows)
    assert rows[1]["worst_error"] < 0.01 < rows[0]["mean_error"]

    manifest = export(dirs["trained"], tmp_path / "int8", base_dir=dirs["base"], delta_format="int8")
    assert manifest["delta_format"] == "int8" and manifest["delta_rank"] is None
    assert manifest["delta_worst_relative_error"] == pytest.approx(rows[1]["worst_error"])
    low = export(dirs["trained"], tmp_path / "r8", rank=8, base_dir=dirs["base"])
    assert manifest["version"] != low["version"]
    dev = tiny_beir(tmp_path / "dev")
    report = check(dirs["trained"], tmp_path / "int8", TEXTS, [str(dev)], base_dir=dirs["base"])
    worse = check(dirs["trained"], tmp_path / "r8", TEXTS, [str(dev)], base_dir=dirs["base"])
    assert report["passages"]["cosine_min"] > 0.9999 and report["queries"]["cosine_min"] > 0.9999
    assert report["passages"]["cosine_min"] > worse["passages"]["cosine_min"]

    on_disk = json.loads((tmp_path / "int8" / "default.json").read_text())
    build_default(tmp_path / "model", on_disk, parts_dir=tmp_path / "int8", base=dirs["base"])
    rebuilt = NVEmbedModel.from_pretrained(tmp_path / "model", device="cpu")
    source = NVEmbedModel.from_pretrained(dirs["trained"], device="cpu")
    for (name, got), (_, want) in zip(rebuilt.embedding_model.named_parameters(),
                                      source.embedding_model.named_parameters(), strict=True):
        scale = (want - got).abs().max() / want.abs().max()
        assert scale < 0.01, name


def test_unknown_delta_format_is_refused(dirs, tmp_path):
    with pytest.raises(ValueError, match="delta_format"):
        export(dirs["trained"], tmp_path / "x", base_dir=dirs["base"], delta_format="int4")
    assert not (tmp_path / "x").exists()
