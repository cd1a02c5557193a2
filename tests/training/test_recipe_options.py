"""The recipe's options for learning more per CPU-second: full fine-tuning, a latent layer that starts as
mean pooling (trained or frozen), distillation over every text of the batch, cached teacher embeddings,
and a wall-time budget per stage."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from encoder import NVEmbedModel
from training.batching import text_key
from training.config import ConfigError, ModelConfig, validate
from training.losses import distillation_kl
from training.modeling import Precision, load_base, prepare_trainable, start_as_mean_pooling
from training.teacher_cache import CachedTeacher, build, extend, pool_texts
from training.trainer import StageTrainer
from training.two_stage import run

from .conftest import make_config

CPU = Precision(torch.device("cpu"), torch.float32, None)


class HashTeacher:
    """A deterministic stand-in teacher: a fixed random embedding per text, L2-normalised."""

    name = "hash-teacher"

    def __init__(self, dim: int = 8):
        self.dim, self.calls, self.encoded = dim, 0, 0

    def _one(self, text: str) -> np.ndarray:
        rng = np.random.default_rng(abs(text_key(text)))
        v = rng.standard_normal(self.dim).astype(np.float32)
        return v / np.linalg.norm(v)

    def encode_passages(self, texts, batch_size=64, max_length=None, **_):
        self.encoded += len(texts)
        return np.stack([self._one(t) for t in texts])

    def embed(self, texts, max_length=None):
        self.calls += len(texts)
        return torch.from_numpy(self.encode_passages(texts))


def test_mean_pooling_start_is_exact_masked_mean(tiny):
    start_as_mean_pooling(tiny)
    batch = tiny.tokenize(["a short text", "a somewhat longer text than the first"])
    hidden = tiny.embedding_model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state
    mask = batch.pool_mask.unsqueeze(-1).float()
    expected = F.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
    got = tiny(batch.input_ids, batch.attention_mask, batch.pool_mask)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_full_finetune_trains_layer_matrices_only(tiny):
    prepare_trainable(tiny, ModelConfig(finetune="full", train_latent=False))
    trainable = {n for n, p in tiny.named_parameters() if p.requires_grad}
    assert trainable and all(".layers." in n and n.endswith("weight") for n in trainable)
    assert not any("norm" in n or "embed_tokens" in n or "latent" in n for n in trainable)
    prepare_trainable(tiny, ModelConfig(finetune="lora"))
    names = [n for n, p in tiny.named_parameters() if p.requires_grad]
    assert any("lora_" in n for n in names) and any(n.startswith("latent_attention_model.") for n in names)


def test_mean_init_refused_for_a_trained_base(tiny_base):
    model = NVEmbedModel.from_pretrained(tiny_base, device="cpu", dtype=torch.float32)
    model.config.extra["trained"] = True
    model.save_pretrained(tiny_base.parent / "trained-copy")
    with pytest.raises(ConfigError, match="latent_init=mean"):
        load_base(ModelConfig(base=str(tiny_base.parent / "trained-copy"), latent_init="mean"), CPU)


def test_latent_sizes_refused_for_a_stored_latent_layer(tiny_base):
    with pytest.raises(ValueError, match="latent_config"):
        NVEmbedModel.from_pretrained(tiny_base, device="cpu", latent_config={"num_cross_heads": 2})


@pytest.mark.parametrize("key, value", [("model.finetune", "partial"), ("model.latent_init", "zeros"),
                                        ("stage1.distill_target", "everything"), ("stage1.max_minutes", 0)])
def test_bad_option_values_name_the_key(tiny_base, data_files, tmp_path, key, value):
    config = make_config(tiny_base, data_files, tmp_path / "out")
    section, name = key.split(".")
    setattr(getattr(config, section), name, value)
    with pytest.raises(ConfigError, match=name):
        validate(config)


def test_all_texts_kl_is_the_hand_computed_row_kl():
    torch.manual_seed(0)
    student = F.normalize(torch.randn(5, 4), dim=-1)
    teacher = F.normalize(torch.randn(5, 3), dim=-1)
    others = ~torch.eye(5, dtype=torch.bool)
    got = distillation_kl(student, student, teacher, teacher, others, 0.1, 0.2)
    total = 0.0
    for i in range(5):
        cols = [j for j in range(5) if j != i]
        p = torch.softmax(teacher[i] @ teacher[cols].T / 0.2, dim=0)
        log_q = torch.log_softmax(student[i] @ student[cols].T / 0.1, dim=0)
        total += float((p * (p.log() - log_q)).sum())
    assert got.item() == pytest.approx(total / 5, rel=1e-5)


def test_teacher_cache_round_trip_and_misses(tmp_path, data_files):
    texts = pool_texts([data_files["retrieval"]])
    assert len(texts) == len(set(texts)) > 64
    live = HashTeacher()
    build(live, texts[:40], tmp_path / "cache.npz", max_length=64)
    cached = CachedTeacher(tmp_path / "cache.npz", fallback=live, max_length=64)
    got = cached.embed(texts[30:50])
    want = torch.from_numpy(live.encode_passages(texts[30:50]))
    torch.testing.assert_close(got, want, atol=2e-3, rtol=0)  # stored as float16
    assert (cached.hits, cached.misses, live.calls) == (10, 10, 10)
    with pytest.raises(ValueError, match="max_length 64"):
        CachedTeacher(tmp_path / "cache.npz", fallback=live, max_length=128)


def test_teacher_cache_extend_embeds_only_the_missing_texts(tmp_path, data_files):
    texts = pool_texts([data_files["retrieval"]])
    live, cache = HashTeacher(), tmp_path / "cache.npz"
    assert extend(live, texts[:30], cache, max_length=64)["texts"] == 30  # no file yet: built
    before = np.load(cache)["vectors"].copy()
    report = extend(live, texts[:50], cache, max_length=64)
    assert (report["texts"], report["added"], live.calls) == (50, 20, 0)
    assert live.encoded == 50  # 30 at first, then only the 20 new ones
    assert np.array_equal(np.load(cache)["vectors"][:30], before)
    cached = CachedTeacher(cache, fallback=None, max_length=64)
    torch.testing.assert_close(cached.embed(texts[:50]), torch.from_numpy(live.encode_passages(texts[:50])),
                               atol=2e-3, rtol=0)
    assert extend(live, texts[:50], cache, max_length=64)["added"] == 0
    with pytest.raises(ValueError, match="max_length 64"):
        extend(live, texts, cache, max_length=128)
    assert len(np.load(cache)["keys"]) == 50  # the refused call wrote nothing


def test_teacher_cache_command_loads_no_model_when_the_cache_is_up_to_date(tmp_path, data_files, monkeypatch):
    import training.teacher as teacher_module
    from training.teacher_cache import main

    class NeverLoaded(HashTeacher):
        name = teacher_module.MiniLMTeacher.name

        def __init__(self):
            raise AssertionError("MiniLM was loaded for a cache that lacked nothing")

    texts, cache = pool_texts([data_files["retrieval"]]), tmp_path / "cache.npz"
    stand_in = HashTeacher()
    stand_in.name = NeverLoaded.name
    build(stand_in, texts, cache, max_length=64)
    monkeypatch.setattr(teacher_module, "MiniLMTeacher", NeverLoaded)
    assert main(["--data", str(data_files["retrieval"]), "--out", str(cache), "--max-length", "64", "--extend"]) == 0
    build(stand_in, texts[:-1], cache, max_length=64)  # one text short: now the model is needed
    with pytest.raises(AssertionError, match="MiniLM was loaded"):
        main(["--data", str(data_files["retrieval"]), "--out", str(cache), "--max-length", "64", "--extend"])


def test_time_budget_ends_the_stage_and_decays_the_rate(tiny, data_files, tmp_path):
    config = make_config(tmp_path, data_files, tmp_path / "out", steps=(10_000, 1))
    config.stage1.max_minutes = 0.5 / 60  # half a second
    from training.data import load_stage_data
    from training.trainer import MetricsLog

    prepare_trainable(tiny, config.model)
    trainer = StageTrainer(tiny, 1, config.stage1, config, load_stage_data(config.stage1.data, 1), CPU,
                           MetricsLog(tmp_path / "m.jsonl"), tiny.fingerprint)
    records = trainer.train()
    assert 1 <= len(records) < 10_000 and trainer.elapsed_s >= 0.5
    rates = [r["lr"] for r in records[config.stage1.warmup_steps:]]
    assert rates == sorted(rates, reverse=True)  # the decay follows the clock, not the 10,000 steps
    assert trainer.scheduler.get_last_lr()[0] < rates[0]
    assert trainer.state_dict()["elapsed_s"] == trainer.elapsed_s


def test_cheap_recipe_runs_end_to_end(tiny_base, data_files, tmp_path, monkeypatch):
    """Full fine-tuning + mean-pooling start + all-texts KL from a cached teacher, through `run`."""
    teacher = HashTeacher()
    cache = tmp_path / "teacher.npz"
    build(teacher, pool_texts([data_files["retrieval"]]), cache, max_length=64)
    monkeypatch.setattr("training.teacher.MiniLMTeacher", lambda device=None: teacher)
    config = make_config(tiny_base, data_files, tmp_path / "out", steps=(3, 1), stages=[1])
    config.model.finetune, config.model.latent_init = "full", "mean"
    config.stage1.num_negatives = 0
    config.stage1.distill_weight, config.stage1.distill_target = 1.0, "all_texts"
    config.stage1.teacher_cache = str(cache)
    run(config)
    rows = [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2, 3]
    assert teacher.calls == 0  # every text came from the cache
    trained = NVEmbedModel.from_pretrained(tmp_path / "out" / "stage1", device="cpu", dtype=torch.float32)
    base = NVEmbedModel.from_pretrained(tiny_base, device="cpu", dtype=torch.float32)
    changed = [n for n, p in trained.embedding_model.named_parameters()
               if not torch.equal(p, dict(base.embedding_model.named_parameters())[n])]
    assert changed and all(".weight" in n and "layers." in n and "norm" not in n for n in changed)
