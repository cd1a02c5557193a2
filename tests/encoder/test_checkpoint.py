"""Loading: the released NV-Embed layout (strictly), plain decoders, and our own save/load round trip.
Embeddings of a loaded checkpoint are compared with a re-statement of the reference code's `encode`."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from encoder import NVEmbedModel
from encoder.checkpoint import CheckpointError
from encoder.instructions import query_prefix
from encoder.testing import tiny_backbone

TEXTS = ["are judo throws allowed in wrestling?", "how to become a radiology technician in michigan?"]


def write_released_layout(model: NVEmbedModel, path, shards: int = 2) -> dict:
    """Write a checkpoint the way nvidia/NV-Embed-v2 is laid out, independently of save_pretrained."""
    path.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    keys = sorted(state)
    weight_map = {}
    for i in range(shards):
        name = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        part = {k: state[k] for k in keys[i::shards]}
        save_file(part, str(path / name))
        weight_map.update(dict.fromkeys(part, name))
    (path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    text = model.embedding_model.config.to_dict()
    text.update({"model_type": "bidir_mistral", "architectures": ["MistralModel"], "_name_or_path": "nvidia/NV-Embed-v2"})
    latent = model.config.latent
    config = {
        "model_type": "nvembed",
        "architectures": ["NVEmbedModel"],
        "text_config": text,
        "latent_attention_config": {
            "model_type": "latent_attention",
            "num_latents_value": latent.num_latents_value,
            "num_cross_heads": latent.num_cross_heads,
            "hidden_dim": latent.hidden_dim,
            "latent_dim": latent.latent_dim,
            "cross_dim_head": latent.cross_dim_head,
        },
        "padding_side": "right",
        "add_pad_token": True,
        "is_mask_instruction": True,
        "add_eos": True,
        "mask_type": "b",
    }
    (path / "config.json").write_text(json.dumps(config))
    model.tokenizer.save_pretrained(str(path))
    return state


def reference_encode(model: NVEmbedModel, prompts, instruction: str, max_length: int = 4096) -> torch.Tensor:
    """The released `NVEmbedModel.encode`: instruction + text + eos, padded right, first
    len(tokenize(instruction)) positions out of the pool mask."""
    tok = model.tokenizer
    batch = tok([instruction + p + tok.eos_token for p in prompts], max_length=max_length, padding=True,
                truncation=True, return_token_type_ids=False, return_tensors="pt")
    pool_mask = batch["attention_mask"].clone()
    if instruction:
        pool_mask[:, : len(tok.tokenize(instruction))] = 0
    with torch.no_grad():
        hidden = model.embedding_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        return model.latent_attention_model(hidden, pool_mask)


@pytest.fixture
def mistral():
    backbone, tokenizer = tiny_backbone("mistral", seed=3, sliding_window=4)
    return NVEmbedModel.from_backbone(backbone, tokenizer, {"num_latents_value": 16, "num_cross_heads": 2}, seed=3)


def test_released_layout_loads_and_matches_the_reference(mistral, tmp_path):
    write_released_layout(mistral, tmp_path / "nv")
    loaded = NVEmbedModel.from_pretrained(tmp_path / "nv", device="cpu")
    assert loaded.embedding_model.config.is_causal is False and loaded.embedding_model.config.sliding_window is None
    prefix = query_prefix("NQ")
    expected_q = reference_encode(loaded, TEXTS, prefix).numpy()
    expected_p = reference_encode(loaded, TEXTS, "").numpy()
    assert np.abs(loaded.encode_queries(TEXTS, "NQ") - expected_q).max() <= 1e-5
    assert np.abs(loaded.encode_passages(TEXTS) - expected_p).max() <= 1e-5
    assert np.abs(loaded.encode_passages(TEXTS) - mistral.encode_passages(TEXTS)).max() <= 1e-5


def test_latent_sizes_default_to_the_reference(mistral, tmp_path):
    write_released_layout(mistral, tmp_path / "nv")
    config = json.loads((tmp_path / "nv/config.json").read_text())
    config["latent_attention_config"] = {"model_type": "latent_attention"}  # as in the real checkpoint
    (tmp_path / "nv/config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="latent layer width 4096 differs from the decoder's hidden size 32"):
        NVEmbedModel.from_pretrained(tmp_path / "nv", device="cpu")


@pytest.mark.parametrize("damage,error,match", [
    ("drop", CheckpointError, "missing key 'latent_attention_model.latents'"),
    ("extra", CheckpointError, "unexpected key 'latent_attention_model.bonus'"),
    ("shape", CheckpointError, "shape mismatch for 'latent_attention_model.latents'"),
])
def test_strict_loading_names_the_key(mistral, tmp_path, damage, error, match):
    state = write_released_layout(mistral, tmp_path / "nv", shards=1)
    if damage == "drop":
        del state["latent_attention_model.latents"]
    elif damage == "extra":
        state["latent_attention_model.bonus"] = torch.zeros(2)
    else:
        state["latent_attention_model.latents"] = torch.zeros(3, 32)
    (tmp_path / "nv/model.safetensors.index.json").unlink()
    for f in (tmp_path / "nv").glob("model-*.safetensors"):
        f.unlink()
    save_file(state, str(tmp_path / "nv/model.safetensors"))
    with pytest.raises(error, match=match):
        NVEmbedModel.from_pretrained(tmp_path / "nv", device="cpu")


def test_save_pretrained_round_trip_is_exact(model, tmp_path):
    model.save_pretrained(tmp_path / "ours")
    loaded = NVEmbedModel.from_pretrained(tmp_path / "ours", device="cpu")
    original = model.state_dict()
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, original[key]), key
    assert np.array_equal(loaded.encode_queries(TEXTS, "NQ"), model.encode_queries(TEXTS, "NQ"))
    assert loaded.fingerprint == model.fingerprint and loaded.name == model.name
    assert json.loads((tmp_path / "ours/config.json").read_text())["text_config"]["model_type"].startswith("bidir_")


def test_sharded_save_reloads(llama, tmp_path):
    from encoder.checkpoint import save_checkpoint

    save_checkpoint(llama.state_dict(), llama.config, tmp_path / "sharded", max_shard_bytes=20_000)
    llama.tokenizer.save_pretrained(str(tmp_path / "sharded"))
    assert (tmp_path / "sharded/model.safetensors.index.json").is_file()
    loaded = NVEmbedModel.from_pretrained(tmp_path / "sharded", device="cpu")
    assert np.array_equal(loaded.encode_passages(TEXTS), llama.encode_passages(TEXTS))


def test_plain_decoder_gets_a_fresh_latent_layer(tmp_path):
    backbone, tokenizer = tiny_backbone("qwen2", seed=5)
    backbone.save_pretrained(str(tmp_path / "qwen"))
    tokenizer.save_pretrained(str(tmp_path / "qwen"))
    model = NVEmbedModel.from_pretrained(tmp_path / "qwen", device="cpu", latent_config={"num_latents_value": 8})
    assert model.config.latent.cross_dim_head == 32 and model.config.latent.num_latents_value == 8
    assert model.embedding_model.config.is_causal is False and not model.trained
    again = NVEmbedModel.from_pretrained(tmp_path / "qwen", device="cpu", latent_config={"num_latents_value": 8})
    assert np.array_equal(model.encode_passages(TEXTS), again.encode_passages(TEXTS))  # seeded init


def test_unsupported_decoder_and_missing_paths_are_clear_errors(tmp_path):
    from transformers import AutoConfig, AutoModel

    gpt2 = AutoModel.from_config(AutoConfig.for_model("gpt2", n_layer=1, n_embd=16, n_head=2, vocab_size=50))
    gpt2.save_pretrained(str(tmp_path / "gpt2"))
    with pytest.raises(ValueError, match="'gpt2' is not supported"):
        NVEmbedModel.from_pretrained(tmp_path / "gpt2", device="cpu")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        NVEmbedModel.from_pretrained(tmp_path / "empty", device="cpu")
