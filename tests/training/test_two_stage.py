"""Whole runs: exact resume, loadable checkpoints, and every bad input refused before a training step."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from encoder import NVEmbedModel
from encoder.checkpoint import iter_tensors
from training.config import ConfigError
from training.data import DataError
from training.state import ResumeError, list_checkpoints
from training.two_stage import main, run

from .conftest import make_config


class Stop(Exception):
    pass


def stop_at(stage: int, step: int):
    def hook(s: int, n: int, loss: float) -> None:
        if (s, n) == (stage, step):
            raise Stop
    return hook


def losses(out: Path) -> list[tuple[int, int, float]]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [(r["stage"], r["step"], r["loss"]) for r in rows if "loss" in r]


def weights(path: Path) -> dict[str, torch.Tensor]:
    return dict(iter_tensors(path))


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_base, data_files):
    """An uninterrupted run (LoRA dropout on, so RNG restoration matters)."""
    out = tmp_path_factory.mktemp("reference") / "run"
    run(make_config(tiny_base, data_files, out, steps=(4, 4), save_every=2))
    return out


@pytest.mark.parametrize("interrupt", [(1, 3), (2, 3)])
def test_resume_continues_exactly(reference, tiny_base, data_files, tmp_path, interrupt):
    out = tmp_path / "run"
    config = make_config(tiny_base, data_files, out, steps=(4, 4), save_every=2)
    with pytest.raises(Stop):
        run(config, hook=stop_at(*interrupt))
    assert list_checkpoints(out)[-1][:2] == (interrupt[0], 2)
    config.resume = True
    run(config)
    assert losses(out) == losses(reference)  # bit-identical: same batches, dropout masks and updates
    for stage in ("stage1", "stage2"):
        expected, got = weights(reference / stage), weights(out / stage)
        assert expected.keys() == got.keys()
        for key in expected:
            torch.testing.assert_close(got[key], expected[key], rtol=0, atol=0, msg=key)
    assert not list_checkpoints(out)  # a finished stage's step checkpoints are removed


def test_checkpoint_loads_and_embeds(reference, tiny_base):
    base = weights(tiny_base)
    for stage in ("stage1", "stage2"):
        model = NVEmbedModel.from_pretrained(reference / stage, device="cpu")
        assert model.trained and model.config.extra["stage"] == int(stage[-1])
        vectors = model.encode_queries(["what about apple", "what about river"], "retrieval")
        passages = model.encode_passages(["apple with at the apple"])
        assert vectors.shape == (2, 32) and passages.shape == (1, 32)
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
        trained = weights(reference / stage)
        assert trained.keys() == base.keys()  # merged: no LoRA keys left, the encoder's layout
        assert not torch.equal(trained["embedding_model.layers.0.self_attn.q_proj.weight"],
                               base["embedding_model.layers.0.self_attn.q_proj.weight"])
    run_file = json.loads((reference / "run.json").read_text())
    assert run_file["completed"] == [1, 2]


def test_adapter_kept_apart(tiny_base, data_files, tmp_path):
    out = tmp_path / "run"
    config = make_config(tiny_base, data_files, out, steps=(2, 2))
    config.model.merge_lora = False
    run(config)
    for stage in ("stage1", "stage2"):
        assert (out / stage / "adapter" / "adapter_config.json").is_file()
        assert NVEmbedModel.from_pretrained(out / stage, device="cpu").encode_passages(["x"]).shape == (1, 32)


def test_evaluation_at_stage_end(tiny_base, data_files, tmp_path):
    beir = tmp_path / "beir"
    (beir / "qrels").mkdir(parents=True)
    (beir / "corpus.jsonl").write_text("".join(json.dumps({"_id": f"d{i}", "text": t}) + "\n" for i, t in
                                               enumerate(["apple with apple", "river at river", "zebra of zebra"])))
    (beir / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "what about river"}) + "\n")
    (beir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    out = tmp_path / "run"
    config = make_config(tiny_base, data_files, out, steps=(1, 1))
    config.eval.beir, config.eval.at_stage_end, config.eval.base = [str(beir)], True, True
    result = run(config)
    assert set(result["evaluations"]) == {"base", "stage1", "stage2"}
    assert "| stage2 |" in (out / "results.md").read_text()


# ----------------------------------------------------------------------------- refused before training


def _no_training(out: Path) -> None:
    assert not (out / "metrics.jsonl").exists() or not losses(out)


def test_unsupported_base(tmp_path, data_files):
    bert = tmp_path / "bert"
    bert.mkdir()
    (bert / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 32}))
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match="architecture 'bert' is not supported"):
        run(make_config(bert, data_files, out))
    _no_training(out)


def test_resume_from_another_models_checkpoint(tiny_base, other_base, data_files, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(Stop):
        run(make_config(tiny_base, data_files, out, steps=(4, 4), save_every=2), hook=stop_at(1, 3))
    before = losses(out)
    config = make_config(other_base, data_files, out, steps=(4, 4), save_every=2)
    config.resume = True
    with pytest.raises(ResumeError, match="fingerprint"):
        run(config)
    assert losses(out) == before


def test_stage2_without_non_retrieval_data(tiny_base, data_files, tmp_path):
    config = make_config(tiny_base, data_files, tmp_path / "run")
    config.stage2.data = [str(data_files["retrieval"])]
    with pytest.raises(DataError, match="stage 2 needs non-retrieval data"):
        run(config)
    _no_training(tmp_path / "run")


def test_existing_output_needs_resume(reference, tiny_base, data_files):
    with pytest.raises(ConfigError, match="--resume"):
        run(make_config(tiny_base, data_files, reference))


def test_instruction_longer_than_max_length(tiny_base, data_files, tmp_path):
    config = make_config(tiny_base, data_files, tmp_path / "run")
    config.stage1.max_length = 20
    with pytest.raises(ValueError, match="leaves fewer than 8 tokens"):
        run(config)


def test_cli_reports_bad_data_with_file_and_line(tiny_base, data_files, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"query": "q", "positive": "p", "instruction": "i", "task": "ranking"}) + "\n")
    code = main(["--base", str(tiny_base), "--stage1-data", str(bad), "--stage2-data", str(data_files["sts"]),
                 "--output-dir", str(tmp_path / "run"), "--device", "cpu"])
    assert code == 2
    assert f"{bad}:1: unknown task 'ranking'" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_cool_down_branches_from_a_checkpoint_of_a_run_at_its_peak(tiny_base, data_files, tmp_path):
    """Warm-up-stable-decay: the long run holds its peak; a copy of one checkpoint, resumed with `steps` =
    that step + `decay_steps`, decays to zero from there (scripts/cool-down.sh)."""
    main_run = tmp_path / "long"
    config = make_config(tiny_base, data_files, main_run, steps=(100, 4), save_every=2, stages=[1])
    config.log_every = 1
    config.stage1.decay_steps = 10
    with pytest.raises(Stop):
        run(config, hook=stop_at(1, 5))
    lr = [r["lr"] for r in (json.loads(x) for x in (main_run / "metrics.jsonl").read_text().splitlines()) if "lr" in r]
    assert lr[1:] == [pytest.approx(2e-3)] * (len(lr) - 1)  # after one warm-up step: the peak, held
    branch = tmp_path / "cool"
    (branch / "checkpoints").mkdir(parents=True)
    step, checkpoint = list_checkpoints(main_run)[-1][1:]
    assert step == 4
    shutil.copytree(checkpoint, branch / "checkpoints" / checkpoint.name)
    config.output_dir, config.resume = str(branch), True
    config.stage1.steps, config.stage1.decay_steps = step + 4, 4
    run(config)
    rows = [json.loads(x) for x in (branch / "metrics.jsonl").read_text().splitlines()]
    lr = [r["lr"] for r in rows if "lr" in r and r["step"] > step]
    assert lr == [pytest.approx(2e-3 * f) for f in (1.0, 0.75, 0.5, 0.25)]
    assert (branch / "stage1").is_dir() and not list_checkpoints(branch)
