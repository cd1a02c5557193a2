"""Weight interpolation: the ends are the inputs, the middle is the average, mismatches are refused."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from encoder import NVEmbedModel
from encoder.testing import tiny_model
from training.interpolate import interpolate_dirs, interpolate_state, main

TEXTS = ["latent attention pools the hidden states", "the wing stalls at a high angle of attack"]


def test_ends_are_the_inputs_and_the_middle_is_the_mean(tiny_base, other_base, tmp_path):
    a, b = load_file(tiny_base / "model.safetensors"), load_file(other_base / "model.safetensors")
    changed = [name for name in a if a[name].is_floating_point() and not torch.equal(a[name], b[name])]
    assert changed, "the two tiny bases must differ for this test to mean anything"
    for weight, expected in ((0.0, a), (1.0, b)):
        out = interpolate_state(a, b, weight)
        assert all(torch.equal(out[name], expected[name]) for name in a)
    half = interpolate_state(a, b, 0.5)
    for name in changed:
        torch.testing.assert_close(half[name], (a[name] + b[name]) / 2)


def test_written_model_loads_and_its_ends_embed_like_the_inputs(tiny_base, other_base, tmp_path):
    ends = {w: interpolate_dirs(tiny_base, other_base, w, tmp_path / f"w{w}") for w in (0.0, 0.5)}
    config = json.loads((ends[0.5] / "config.json").read_text())
    assert config["nvembed_search"]["interpolation"]["weight_of_b"] == 0.5
    models = {w: NVEmbedModel.from_pretrained(str(path)) for w, path in ends.items()}
    source = NVEmbedModel.from_pretrained(str(tiny_base))
    expected = source.encode_passages(TEXTS)
    np.testing.assert_allclose(models[0.0].encode_passages(TEXTS), expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(models[0.5].encode_passages(TEXTS), expected, atol=1e-3)


def test_mismatches_and_bad_arguments_are_refused(tiny_base, tmp_path):
    wider = tmp_path / "wider"
    tiny_model("llama", seed=0, latent_config={"num_latents_value": 8}).save_pretrained(wider)
    with pytest.raises(ValueError, match="latent"):
        interpolate_dirs(tiny_base, wider, 0.5, tmp_path / "out")
    with pytest.raises(ValueError, match="weight must be in"):
        interpolate_state({}, {}, 1.5)
    with pytest.raises(ValueError, match="overwrite"):
        interpolate_dirs(tiny_base, wider, 0.5, tiny_base)
    with pytest.raises(FileNotFoundError, match="no model.safetensors"):
        interpolate_dirs(tmp_path / "missing", tiny_base, 0.5, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_command_line(tiny_base, other_base, tmp_path, capsys):
    main([str(tiny_base), str(other_base), "--weight", "0.25", "--out", str(tmp_path / "cli")])
    assert "x 0.25" in capsys.readouterr().out
    assert (tmp_path / "cli" / "model.safetensors").is_file() and (tmp_path / "cli" / "config.json").is_file()
