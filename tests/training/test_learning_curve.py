"""benchmarks/learning_curve.py: a row per checkpoint while the run goes on, kept after the run deletes them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.learning_curve import main, read_rows, update
from training.two_stage import run

from .conftest import make_config
from .test_snapshot import tiny_beir


class Stop(Exception):
    pass


def stop_at(step: int):
    def hook(stage: int, n: int, loss: float) -> None:
        if (stage, n) == (1, step):
            raise Stop
    return hook


def test_curve_follows_a_run_and_survives_deleted_checkpoints(tiny_base, data_files, tmp_path, capsys):
    dev = tiny_beir(tmp_path / "dev")
    out_dir = tmp_path / "run"
    config = make_config(tiny_base, data_files, out_dir, steps=(6, 2), save_every=2, keep_checkpoints=2, stages=[1])
    config.eval.beir, config.eval.max_queries, config.eval.max_docs = [str(dev)], 4, 6
    config.model.finetune, config.model.latent_init = "full", "mean"
    with pytest.raises(Stop):
        run(config, hook=stop_at(4))  # interrupted: checkpoints at steps 2 and 4 are live
    curve, table = tmp_path / "curve.jsonl", tmp_path / "curve.md"

    rows = update(out_dir, curve, table)
    assert [(r["stage"], r["step"], r["source"]) for r in rows] == [
        (1, 0, "start"), (1, 2, "checkpoint stage1-step000002"), (1, 4, "checkpoint stage1-step000004")]
    assert [r["pairs_seen"] for r in rows] == [0, 8, 16]
    assert rows[0]["cpu_hours"] == 0 and 0 < rows[1]["stage_train_seconds"] <= rows[2]["stage_train_seconds"]
    assert all(set(r["ndcg@10"]) == {"dev"} and 0 <= r["ndcg@10"]["dev"] <= 1 for r in rows)
    assert rows[0]["subset"] == {"max_queries": 4, "max_docs": 6, "max_length": 512}
    assert update(out_dir, curve, table) == []  # nothing new: nothing evaluated twice
    thinned = update(out_dir, tmp_path / "thinned.jsonl", min_gap=1)  # only the newest live checkpoint
    assert [r["step"] for r in thinned] == [0, 4]

    config.resume = True
    run(config)  # finishes stage 1 and deletes its checkpoints
    assert not list((out_dir / "checkpoints").glob("stage1-*"))
    rows = update(out_dir, curve, table)
    assert [(r["step"], r["source"]) for r in rows] == [(6, "stage stage1")]
    kept = read_rows(curve)
    assert [r["step"] for r in kept] == [0, 2, 4, 6]  # the deleted checkpoints' rows are still there
    text = table.read_text()
    assert "| stage1 | 4 | 16 |" in text and "1.00x" in text and "dev nDCG@10" in text

    # the command line: pinned (affinity left alone here), prints the table; --min-gap thins checkpoints
    assert main([str(out_dir), "--out", str(tmp_path / "other.jsonl"), "--core", "-1", "--min-gap", "100",
                 "--beir", str(dev), "--max-queries", "4"]) == 0
    assert "| stage1 | 6 |" in capsys.readouterr().out
    assert [r["step"] for r in read_rows(tmp_path / "other.jsonl")] == [0, 6]
    assert main([str(out_dir), "--out", str(tmp_path / "branch.jsonl"), "--core", "-1", "--no-start",
                 "--beir", str(dev), "--max-queries", "4"]) == 0  # a cool-down branch: no start row of its own
    assert [r["step"] for r in read_rows(tmp_path / "branch.jsonl")] == [6]
    assert main([str(out_dir), "--out", str(curve), "--core", "-1", "--beir", str(tmp_path / "nope")]) == 2
    assert "not found" in capsys.readouterr().err
    assert json.loads(curve.read_text().splitlines()[0])["run"] == str(Path(out_dir).resolve())
