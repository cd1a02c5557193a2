"""The official `openai` client against /v1/embeddings: float and base64 vectors equal encode_passages /
encode_queries of the same model in this process; usage counts the model's tokens."""

from __future__ import annotations

import base64

import numpy as np
import openai
import pytest

from encoder.instructions import get_instruction

from .conftest import READ_KEY

TEXTS = ["The violet lantern at the harbor.", "Banana bread", "a wing produces lift because the airflow is deflected"]


@pytest.fixture(scope="module")
def client(keyed):
    return openai.OpenAI(base_url=keyed + "/v1", api_key=READ_KEY, max_retries=0)


def vectors(resp) -> np.ndarray:
    """The response's vectors; base64 strings (left alone by the client when the caller asked for base64)
    decoded as little-endian float32, as the client does when it chose base64 itself."""
    rows = [d.embedding for d in sorted(resp.data, key=lambda d: d.index)]
    rows = [np.frombuffer(base64.b64decode(r), dtype="<f4") if isinstance(r, str) else r for r in rows]
    return np.asarray(rows, dtype=np.float32)


def test_base64_by_default_equals_encode_passages(client, tiny):
    resp = client.embeddings.create(model="tiny", input=TEXTS)  # the client asks for base64 when not told
    expected = tiny.encode_passages(TEXTS)
    got = vectors(resp)
    assert got.shape == expected.shape == (3, tiny.dimension)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert resp.model == "tiny"
    assert resp.usage.prompt_tokens == resp.usage.total_tokens == sum(tiny.count_tokens(TEXTS))


def test_float_format_equals_base64(client, tiny):
    f = vectors(client.embeddings.create(model="tiny", input=TEXTS, encoding_format="float"))
    raw = client.embeddings.create(model="tiny", input=TEXTS, encoding_format="base64")
    assert all(isinstance(d.embedding, str) for d in raw.data)
    b = vectors(raw)
    np.testing.assert_array_equal(f, b)
    np.testing.assert_allclose(f, tiny.encode_passages(TEXTS), atol=1e-5)


def test_a_single_string_input(client, tiny):
    resp = client.embeddings.create(model="tiny", input="Banana bread", encoding_format="float")
    assert len(resp.data) == 1
    np.testing.assert_allclose(vectors(resp)[0], tiny.encode_passages(["Banana bread"])[0], atol=1e-5)


def test_queries_carry_the_instruction(client, tiny):
    default = vectors(client.embeddings.create(model="tiny", input=TEXTS, extra_body={"input_type": "query"}))
    np.testing.assert_allclose(default, tiny.encode_queries(TEXTS), atol=1e-5)
    named = vectors(client.embeddings.create(model="tiny", input=TEXTS,
                                             extra_body={"input_type": "query", "instruction": "SciFact"}))
    np.testing.assert_allclose(named, tiny.encode_queries(TEXTS, instruction=get_instruction("SciFact")), atol=1e-5)
    free = vectors(client.embeddings.create(model="tiny", input=TEXTS,
                                            extra_body={"input_type": "search_query", "instruction": "Find recipes"}))
    np.testing.assert_allclose(free, tiny.encode_queries(TEXTS, instruction="Find recipes"), atol=1e-5)
    assert not np.allclose(default, vectors(client.embeddings.create(model="tiny", input=TEXTS)), atol=1e-3)


def test_openai_errors_reach_the_client(client):
    with pytest.raises(openai.NotFoundError) as err:
        client.embeddings.create(model="text-embedding-3-small", input="x")
    assert "not served here" in err.value.message
    with pytest.raises(openai.BadRequestError) as err:
        client.embeddings.create(model="tiny", input=["x"] * 9)
    assert "limit is 8" in err.value.message
    bad_key = openai.OpenAI(base_url=client.base_url, api_key="wrong-key-123456", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad_key.embeddings.create(model="tiny", input="x")
