"""LLM2Vec's pre-stages: the MNTP loss and SimCSE's dropout views checked by hand, and whole runs through the CLI."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoConfig, AutoModelForCausalLM

from encoder import NVEmbedModel
from encoder.checkpoint import iter_tensors
from encoder.testing import TINY_SIZES, tiny_model, tiny_tokenizer
from training.config import ConfigError, parse
from training.llm2vec import (
    IGNORE,
    check_lm_head,
    dropout,
    lm_head_weight,
    mask_tokens,
    mntp_loss,
    random_pool,
    resolve_mask_token,
    simcse_loss,
    special_token_ids,
)
from training.state import list_checkpoints
from training.two_stage import run

from .conftest import make_config

ROOT = Path(__file__).resolve().parents[2]
TEXTS = ["the apple of the river", "a banana with the ocean", "flight wing airflow pressure boundary layer",
         "the library catalog of information retrieval", "what is the heat transfer of a mountain"]


@pytest.fixture(scope="module")
def _tied():
    return tiny_model("llama", seed=0, tie_word_embeddings=True)


@pytest.fixture
def tied(_tied):
    return copy.deepcopy(_tied)


@pytest.fixture(scope="module")
def tied_base(tmp_path_factory, _tied) -> Path:
    path = tmp_path_factory.mktemp("tied-base")
    _tied.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def texts_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("texts") / "texts.txt"
    path.write_text("\n".join(TEXTS * 2) + "\n")  # duplicates are dropped on reading
    return path


# ---------------------------------------------------------------------------------------------- MNTP


def _masked(model, probability=0.4, seed=0):
    batch = model.tokenize(TEXTS[:3], max_length=32)
    special = special_token_ids(model.tokenizer)
    generator = torch.Generator().manual_seed(seed)
    ids, labels = mask_tokens(batch.input_ids, batch.attention_mask, probability, resolve_mask_token(model.tokenizer),
                              special, random_pool(len(model.tokenizer), special), generator)
    return batch, ids, labels


def test_mntp_loss_equals_hand_computation(tied):
    tied.train()
    batch, ids, labels = _masked(tied)
    head = lm_head_weight(tied, None)
    assert head is tied.embedding_model.embed_tokens.weight  # tied: the LM head is the input embedding matrix
    loss = mntp_loss(tied.embedding_model, head, ids, batch.attention_mask, labels)

    hidden = tied.embedding_model(input_ids=ids, attention_mask=batch.attention_mask).last_hidden_state
    terms = []
    for row in range(ids.shape[0]):
        for i in range(1, ids.shape[1]):
            if labels[row, i] != IGNORE:
                logits = hidden[row, i - 1] @ head.T  # token i predicted from the output at i - 1
                terms.append(torch.logsumexp(logits, 0) - logits[labels[row, i]])
    assert len(terms) == int((labels != IGNORE).sum()) >= 3
    torch.testing.assert_close(loss, torch.stack(terms).mean())
    loss.backward()
    assert head.grad is not None and head.grad.abs().sum() > 0


def test_mask_tokens_chooses_only_text_tokens_and_splits_80_10_10():
    tokenizer = tiny_tokenizer()
    special = special_token_ids(tokenizer)
    rows = [[1] + [int(t) for t in torch.randint(3, len(tokenizer), (60,))] + [2] for _ in range(200)]
    ids = torch.tensor(rows)
    attention = torch.ones_like(ids)
    attention[:, 50:] = 0  # right padding
    ids[:, 50:] = 2
    generator = torch.Generator().manual_seed(0)
    masked, labels = mask_tokens(ids, attention, 0.2, 0, special, random_pool(len(tokenizer), special), generator)
    chosen = labels != IGNORE
    assert not chosen[:, 0].any() and not chosen[:, 50:].any()  # never BOS, never padding
    assert torch.equal(labels[chosen], ids[chosen])
    assert torch.equal(masked[~chosen], ids[~chosen])  # nothing else changes
    fraction = chosen.sum().item() / (200 * 49)
    assert 0.18 < fraction < 0.22
    n = chosen.sum().item()
    to_mask = (masked[chosen] == 0).sum().item() / n
    unchanged = (masked[chosen] == ids[chosen]).sum().item() / n
    assert 0.77 < to_mask < 0.83 and 0.08 < unchanged < 0.13
    assert not torch.isin(masked[chosen & (masked != 0)], torch.tensor(sorted(special))).any()
    # a tiny probability still predicts one token (the loss would otherwise be undefined)
    _, labels = mask_tokens(ids[:1, :5], attention[:1, :5], 1e-9, 0, special, random_pool(len(tokenizer), special))
    assert (labels != IGNORE).sum() == 1


def test_mask_token_choice():
    tokenizer = tiny_tokenizer()
    assert resolve_mask_token(tokenizer) == tokenizer.unk_token_id  # no mask token: the distinct unk token
    assert resolve_mask_token(tokenizer, "</s>") == tokenizer.eos_token_id
    with pytest.raises(ConfigError, match="mntp.mask_token 'no-such-token'"):
        resolve_mask_token(tokenizer, "no-such-token")
    tokenizer.add_special_tokens({"mask_token": "<mask>"})
    assert resolve_mask_token(tokenizer) == tokenizer.convert_tokens_to_ids("<mask>")


def test_untied_head_comes_from_the_base_directory(tmp_path):
    config = AutoConfig.for_model("llama", vocab_size=600, bos_token_id=1, eos_token_id=2, pad_token_id=2,
                                  tie_word_embeddings=False, **TINY_SIZES)
    torch.manual_seed(0)
    decoder = AutoModelForCausalLM.from_config(config)
    decoder.save_pretrained(tmp_path / "decoder")
    tiny_tokenizer().save_pretrained(tmp_path / "decoder")
    model = NVEmbedModel.from_pretrained(tmp_path / "decoder", device="cpu", dtype=torch.float32)
    check_lm_head(tmp_path / "decoder")
    head = lm_head_weight(model, tmp_path / "decoder")
    torch.testing.assert_close(head, decoder.lm_head.weight.detach())
    assert not torch.equal(head, model.embedding_model.embed_tokens.weight)
    model.save_pretrained(tmp_path / "nvembed")  # the NV-Embed layout keeps no LM head
    with pytest.raises(ConfigError, match="mntp needs the base's LM head"):
        lm_head_weight(NVEmbedModel.from_pretrained(tmp_path / "nvembed", device="cpu"), tmp_path / "nvembed")


# ---------------------------------------------------------------------------------------------- SimCSE


def _views(model, seed=None):
    batch = model.tokenize(TEXTS, max_length=32)
    if seed is not None:
        torch.manual_seed(seed)
    first = model(batch.input_ids, batch.attention_mask, batch.pool_mask)
    if seed is not None:
        torch.manual_seed(seed)
    second = model(batch.input_ids, batch.attention_mask, batch.pool_mask)
    return first, second


def test_simcse_views_differ_only_by_dropout(tied):
    tied.train()
    with dropout(tied, attention=0.0, lora=None):
        first, second = _views(tied)
    torch.testing.assert_close(first, second, rtol=0, atol=0)  # no dropout: one view twice
    loss = simcse_loss(first, second, temperature=0.05)
    logits = first @ second.T / 0.05
    hand = torch.stack([torch.logsumexp(logits[i], 0) - logits[i, i] for i in range(len(TEXTS))]).mean()
    torch.testing.assert_close(loss, hand)

    with dropout(tied, attention=0.3, lora=None):
        first, second = _views(tied)
        assert (first - second).abs().max() > 1e-3  # dropout: the views differ
        replay_first, replay_second = _views(tied, seed=7)
        torch.testing.assert_close(replay_first, replay_second, rtol=0, atol=0)  # same dropout masks: identical
        assert all(layer.self_attn.attention_dropout == 0.3 for layer in tied.embedding_model.layers)
    assert all(layer.self_attn.attention_dropout == 0.0 for layer in tied.embedding_model.layers)  # restored


def test_simcse_loss_never_uses_a_copy_of_the_text_as_negative():
    first = F.normalize(torch.randn(3, 8), dim=1)
    second = torch.cat([first[:2], first[:1]])  # text 2 is a copy of text 0
    keys = torch.tensor([5, 6, 5])
    masked = simcse_loss(first, second, 0.05, keys)
    logits = first @ second.T / 0.05
    row0 = torch.logsumexp(logits[0, [0, 1]], 0) - logits[0, 0]
    row1 = torch.logsumexp(logits[1], 0) - logits[1, 1]
    row2 = torch.logsumexp(logits[2, [1, 2]], 0) - logits[2, 2]
    torch.testing.assert_close(masked, torch.stack([row0, row1, row2]).mean())


def test_simcse_lora_dropout_needs_adapters(tied):
    with pytest.raises(ConfigError, match="simcse.lora_dropout"):
        with dropout(tied, attention=0.1, lora=0.2):
            pass


# ---------------------------------------------------------------------------------------------- runs


def _losses(out: Path) -> list[tuple]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [(r["stage"], r["step"], r["loss"]) for r in rows if "loss" in r]


def test_pre_stages_through_the_cli(tied_base, texts_file, data_files, tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "training.two_stage", "--base", str(tied_base), "--device", "cpu",
               "--stages", "mntp,simcse,1", "--mntp-data", str(texts_file), str(data_files["retrieval"]),
               "--simcse-data", str(texts_file), "--stage1-data", str(data_files["retrieval"]),
               "--output-dir", str(out), "--stage1-steps", "2", "--batch-size", "4", "--num-negatives", "1",
               "--max-length", "64", "--no-eval",
               "--set", "mntp.steps=3", "--set", "mntp.batch_size=4", "--set", "mntp.learning_rate=1e-2",
               "--set", "mntp.warmup_steps=1", "--set", "simcse.steps=3", "--set", "simcse.batch_size=4",
               "--set", "simcse.learning_rate=1e-3", "--set", "simcse.warmup_steps=1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "[stage mntp] step 3/3" in done.stdout and "[stage simcse] step 3/3" in done.stdout
    stages = [s for s, _, _ in _losses(out)]
    assert stages == ["mntp"] * 3 + ["simcse"] * 3 + [1] * 2
    assert json.loads((out / "run.json").read_text())["completed"] == ["mntp", "simcse", 1]
    base, mntp, simcse = (dict(iter_tensors(p)) for p in (tied_base, out / "mntp", out / "simcse"))
    q = "embedding_model.layers.0.self_attn.q_proj.weight"
    latent = "latent_attention_model.latents"
    assert not torch.equal(mntp[q], base[q])  # MNTP trains the backbone ...
    assert torch.equal(mntp[latent], base[latent])  # ... and leaves the latent layer alone
    assert not torch.equal(simcse[q], mntp[q]) and not torch.equal(simcse[latent], mntp[latent])
    model = NVEmbedModel.from_pretrained(out / "stage1", device="cpu")
    assert model.config.text_config.attention_dropout == 0.0  # SimCSE's dropout does not leak into the result
    assert model.encode_passages(["the apple"]).shape == (1, 32)


def _pre_config(base, data_files, texts_file, out, **run_settings):
    config = make_config(base, data_files, out, steps=(2, 2), **run_settings)
    config.stages = ["mntp", "simcse", 1]
    for section in (config.mntp, config.simcse):
        section.data = [str(texts_file)]
        section.steps, section.batch_size, section.learning_rate, section.warmup_steps = 4, 4, 1e-3, 1
        section.max_length = 32
    return config


class Stop(Exception):
    pass


@pytest.mark.parametrize("interrupt", [("mntp", 3), ("simcse", 3)])
def test_pre_stages_resume_exactly(tied_base, data_files, texts_file, tmp_path, interrupt):
    reference = tmp_path / "reference"
    run(_pre_config(tied_base, data_files, texts_file, reference, save_every=2))
    out = tmp_path / "run"
    config = _pre_config(tied_base, data_files, texts_file, out, save_every=2)

    def hook(stage, step, loss):
        if (stage, step) == interrupt:
            raise Stop
    with pytest.raises(Stop):
        run(config, hook=hook)
    assert list_checkpoints(out)[-1][:2] == (interrupt[0], 2)
    config.resume = True
    run(config)
    assert _losses(out) == _losses(reference)  # same texts, masks, dropout and updates
    for stage in ("mntp", "simcse", "stage1"):
        expected, got = dict(iter_tensors(reference / stage)), dict(iter_tensors(out / stage))
        for key in expected:
            torch.testing.assert_close(got[key], expected[key], rtol=0, atol=0, msg=key)


def test_untied_nvembed_base_is_refused_before_anything_is_written(tiny_base, data_files, texts_file, tmp_path):
    config = _pre_config(tiny_base, data_files, texts_file, tmp_path / "run")
    with pytest.raises(ConfigError, match="mntp needs the base's LM head"):
        run(config)
    assert not (tmp_path / "run").exists()  # refused before the output directory is made


# ---------------------------------------------------------------------------------------------- config


@pytest.mark.parametrize("args, message", [
    (["--stages", "simcse,mntp,1"], "stages must be"),
    (["--stages", "1,mntp"], "stages must be"),
    (["--stages", "mlm,1"], "stages must be"),
    (["--set", "mntp.mask_probability=0"], "mntp.mask_probability must be in"),
    (["--set", "mntp.mask_probability=1.5"], "mntp.mask_probability must be in"),
    (["--set", "mntp.steps=0"], "mntp.steps must be at least 1"),
    (["--set", "mntp.max_length=4"], "mntp.max_length must be at least 8"),
    (["--set", "mntp.mask_prob=0.2"], "unknown config key 'mntp.mask_prob'"),
    (["--set", "simcse.attention_dropout=1"], "simcse.attention_dropout must be in"),
    (["--set", "simcse.temperature=0"], "simcse.temperature must be positive"),
    (["--set", "simcse.learning_rate=-1"], "simcse.learning_rate must be positive"),
    (["--set", "simcse.attention_dropout=0", "--set", "simcse.lora_dropout=0"], "the two views of a text"),
    (["--set", "simcse.chunk_size=0"], "simcse.chunk_size must be at least 1"),
])
def test_bad_pre_stage_values(data_files, args, message):
    text = str(data_files["retrieval"])
    base = ["--stage1-data", text, "--mntp-data", text, "--simcse-data", text, "--stages", "mntp,simcse,1"]
    with pytest.raises(ConfigError, match=message):
        parse(base + args)


def test_pre_stage_config_and_compatibility(data_files, tmp_path):
    text = str(data_files["retrieval"])
    config = parse(["--stage1-data", text, "--stage2-data", str(data_files["sts"])])
    assert config.stages == [1, 2]  # unchanged default
    with pytest.raises(ConfigError, match="mntp.data is empty"):
        parse(["--stage1-data", text, "--stages", "mntp,1"])
    with pytest.raises(ConfigError, match="simcse.data: file not found"):
        parse(["--stage1-data", text, "--stages", "simcse,1", "--simcse-data", str(tmp_path / "nope.txt")])
    file = tmp_path / "run.yaml"
    file.write_text(f"stages: [mntp, 1]\nmntp: {{data: [{text}], steps: 5, mask_probability: 0.3}}\n"
                    f"stage1: {{data: [{text}]}}\n")
    config = parse(["--config", str(file)])
    assert config.stages == ["mntp", 1] and config.mntp.steps == 5 and config.mntp.mask_probability == 0.3
    assert parse(["--mntp-data", text, "--stages", "mntp"]).stages == ["mntp"]
