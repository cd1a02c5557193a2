"""benchmarks/dense_probes.py: each probe reads the real index, and its baseline row is the dense search itself."""

from __future__ import annotations

import json

import pytest

from benchmarks.dense_probes import INSTRUCTIONS, main, probe_center, probe_chunk, probe_instructions
from training.evaluate import load_beir

from .test_fusion import _tiny_beir


@pytest.fixture
def two_sets(tmp_path, monkeypatch):
    monkeypatch.setenv("NVEMBED_CACHE_DIR", str(tmp_path / "cache"))  # the kept dev indexes live there
    return [_tiny_beir(tmp_path / "one"), _tiny_beir(tmp_path / "two")]


def test_instruction_rows_cover_every_instruction_and_set(tiny_model, two_sets):
    table = probe_instructions(tiny_model, two_sets)
    assert set(table) == set(INSTRUCTIONS)
    assert all(set(row) == {"one", "two"} for row in table.values())
    # the tiny model's query embedding depends on the instruction, so the rows are not all the same
    assert len({round(row["one"]["mrr@10"], 9) for row in table.values()}) > 1


def test_centering_baseline_equals_the_index_dense_search(tiny_model, two_sets):
    dense = probe_instructions(tiny_model, two_sets)["default"]  # through index.search, mode dense
    table = probe_center(tiny_model, two_sets)
    for name in ("one", "two"):  # the vectors read back from FAISS rank exactly as the index does
        assert table["raw"][name] == pytest.approx(dense[name], abs=1e-9)
    assert {"center 1.0 x mean of one", "center 0.5 x mean of two, passages only"} <= set(table)


def test_chunk_probe_builds_its_own_index_and_reads_three_modes(tiny_model, two_sets):
    table = probe_chunk(tiny_model, two_sets[:1], chunk_tokens=16)
    assert set(table) == {"dense, chunks of 16", "keyword, chunks of 16", "hybrid, chunks of 16"}
    # every query shares two words with its one relevant document: BM25 ranks it first
    assert table["keyword, chunks of 16"]["one"]["ndcg@10"] == pytest.approx(1.0)
    assert len(load_beir(two_sets[0]).queries) == 6


def test_command_line_prints_a_table_and_writes_json(tiny_model, two_sets, tmp_path, capsys):
    model_dir = tmp_path / "model"
    tiny_model.save_pretrained(model_dir)
    out = tmp_path / "probe.json"
    main_args = ["instructions", "--model", str(model_dir), "--beir", *map(str, two_sets), "--json", str(out)]
    main(main_args)
    printed = capsys.readouterr().out
    assert "| variant | one | two |" in printed and "| medical |" in printed
    assert json.loads(out.read_text())["probe"] == "instructions"
