"""`training.snapshot`: a checkpoint rebuilt as a model directory equals what the run itself writes.

Checkpoints are never written at a stage's last step, so "the same weights" is checked across runs that
agree up to a step: with `warmup_steps: 2` the learning rate of steps 1 and 2 does not depend on the
stage's length, so run A (4 steps) at its step-2 checkpoint has exactly the weights run B (2 steps)
saves as its finished stage.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from encoder import NVEmbedModel
from encoder.checkpoint import iter_tensors
from encoder.testing import tiny_model
from training import evaluate
from training.snapshot import SnapshotError, main, snapshot
from training.state import ResumeError
from training.two_stage import run

from .conftest import make_config

RECIPES = {
    # the long run's recipe: a plain decoder cut to fewer layers, slim latent started as mean pooling, full FT
    "full": {"finetune": "full", "latent_init": "mean", "num_layers": 1,
             "latent": {"num_cross_heads": 2, "cross_dim_head": 8}},
    "lora": {"finetune": "lora"},  # merged adapters
    "lora-kept": {"finetune": "lora", "merge_lora": False},  # stage 2 continues the kept adapter
}


@pytest.fixture(scope="module")
def plain_decoder(tmp_path_factory) -> Path:
    """A Hugging Face decoder directory (no latent layer stored), so latent sizes can be configured."""
    path = tmp_path_factory.mktemp("plain-decoder")
    model = tiny_model("llama", seed=3)
    model.embedding_model.save_pretrained(path)
    model.tokenizer.save_pretrained(path)
    return path


def weights(path: Path) -> dict[str, torch.Tensor]:
    return dict(iter_tensors(path))


def assert_same(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key


def configure(recipe: str, base: Path, data: dict, out: Path, steps: tuple[int, int], **run_options):
    config = make_config(base, data, out, steps=steps, **run_options)
    for key, value in RECIPES[recipe].items():
        setattr(config.model, key, value)
    config.stage1.warmup_steps = config.stage2.warmup_steps = 2
    return config


def keep_checkpoints(out: Path, kept: Path):
    """A step hook that copies each checkpoint aside (the run deletes them when the stage ends)."""
    def hook(stage: int, step: int, loss: float) -> None:
        for path in (out / "checkpoints").glob("stage*-step*"):
            if not (kept / path.name).exists() and (path / "state.pt").is_file():
                shutil.copytree(path, kept / path.name)
    return hook


@pytest.fixture(scope="module", params=list(RECIPES))
def runs(request, tmp_path_factory, tiny_base, plain_decoder, data_files):
    recipe = request.param
    base = plain_decoder if recipe == "full" else tiny_base
    root = tmp_path_factory.mktemp(f"snap-{recipe}")
    a, kept = root / "a", root / "kept"
    kept.mkdir()
    run(configure(recipe, base, data_files, a, (4, 4), save_every=2), hook=keep_checkpoints(a, kept))
    run(configure(recipe, base, data_files, root / "b", (2, 4), stages=[1]))
    run(configure(recipe, base, data_files, root / "d", (4, 2)))
    return {"recipe": recipe, "a": a, "b": root / "b", "d": root / "d", "kept": kept, "root": root, "base": base}


def test_snapshot_of_a_stage_end_equals_the_stage_the_run_wrote(runs):
    a, kept, root = runs["a"], runs["kept"], runs["root"]
    assert sorted(p.name for p in kept.iterdir()) == ["stage1-step000002", "stage2-step000002"]
    meta = snapshot(a, root / "snap1", kept / "stage1-step000002")
    assert_same(root / "snap1", runs["b"] / "stage1")
    assert meta["snapshot"]["pairs_seen"] == 2 * 4 and meta["stage"] == 1
    # stage 2 starts from the run's stage-1 result: D's stage 1 is A's, so D's 2-step stage 2 is A's step 2
    assert_same(runs["d"] / "stage1", a / "stage1")
    snapshot(a, root / "snap2", kept / "stage2-step000002")
    assert_same(root / "snap2", runs["d"] / "stage2")
    if runs["recipe"] == "lora-kept":
        assert (root / "snap2" / "adapter" / "adapter_config.json").is_file()
    loaded = NVEmbedModel.from_pretrained(root / "snap2", device="cpu")
    finished = NVEmbedModel.from_pretrained(runs["d"] / "stage2", device="cpu")
    assert loaded.fingerprint == finished.fingerprint
    if runs["recipe"] == "full":
        assert loaded.num_layers == 1 and loaded.config.latent.num_cross_heads == 2
        assert loaded.config.latent.cross_dim_head == 8


def test_snapshot_of_a_mid_checkpoint_differs_and_evaluates(runs, tmp_path, capsys):
    out = tmp_path / "mid"
    assert main([str(runs["a"]), "--checkpoint", str(runs["kept"] / "stage1-step000002"), "--out", str(out)]) == 0
    assert "stage1 step 2/4, 8 pairs" in capsys.readouterr().out
    mid, final = weights(out), weights(runs["a"] / "stage1")
    assert any(not torch.equal(mid[k], final[k]) for k in mid)
    config = json.loads((out / "config.json").read_text())
    assert "stage1-step000002" in json.dumps(config)
    dev = tiny_beir(tmp_path / "dev")
    assert evaluate.main(["--model", str(out), "--beir", str(dev), "--device", "cpu", "--json"]) == 0
    results = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["results"]["dev"]
    assert 0.0 <= results["ndcg@10"] <= 1.0


def test_newest_checkpoint_by_default_and_bad_inputs(runs, tmp_path, capsys, other_base):
    a, kept = runs["a"], runs["kept"]
    copy = tmp_path / "run"  # a run directory with a live checkpoint (the finished run has deleted its own)
    copy.mkdir()
    shutil.copy(a / "run.json", copy / "run.json")
    shutil.copytree(a / "stage1", copy / "stage1")
    (copy / "checkpoints").mkdir()
    shutil.copytree(kept / "stage1-step000002", copy / "checkpoints" / "stage1-step000002")
    shutil.copytree(kept / "stage2-step000002", copy / "checkpoints" / "stage2-step000002")
    meta = snapshot(copy, tmp_path / "newest")
    assert meta["stage"] == 2 and meta["steps"] == 2

    assert main([str(copy), "--out", str(tmp_path / "newest")]) == 2  # not empty
    assert "not empty" in capsys.readouterr().err
    assert main([str(copy), "--out", str(copy / "snap")]) == 2
    assert "inside the run directory" in capsys.readouterr().err
    with pytest.raises(SnapshotError, match="no run.json"):
        snapshot(tmp_path / "nowhere", tmp_path / "x")
    with pytest.raises(SnapshotError, match="not a checkpoint directory"):
        snapshot(copy, tmp_path / "x", copy / "stage1")

    # the run's config names another base: the rebuilt model is not the one the checkpoint was trained from
    data = json.loads((copy / "run.json").read_text())
    data["config"]["model"]["base"] = str(other_base)
    data["config"]["model"].update({"num_layers": None, "latent": None, "latent_init": "random"})
    (copy / "run.json").write_text(json.dumps(data))
    with pytest.raises(ResumeError, match="fingerprint"):
        snapshot(copy, tmp_path / "y", copy / "checkpoints" / "stage1-step000002")
    assert not (tmp_path / "y").exists()


def tiny_beir(root: Path) -> Path:
    """A six-document BEIR-layout set: each query shares its topic word with one document."""
    topics = ["apple", "river", "galaxy", "harbor", "violet", "zebra"]
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text("".join(json.dumps({"_id": f"d{i}", "title": "", "text": f"{t} of the {t}"})
                                               + "\n" for i, t in enumerate(topics)))
    (root / "queries.jsonl").write_text("".join(json.dumps({"_id": f"q{i}", "text": f"what about {t}"}) + "\n"
                                                for i, t in enumerate(topics)))
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n"
                                             + "".join(f"q{i}\td{i}\t1\n" for i in range(len(topics))))
    return root
