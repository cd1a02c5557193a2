"""Search, context, documents, passages, info, metrics and keys against a real server process."""

from __future__ import annotations

from .conftest import READ_KEY, WRITE_KEY, call


def test_health_is_open_and_everything_else_needs_a_key(keyed):
    assert call(keyed + "/health") == (200, {"status": "ok"})
    status, body = call(keyed + "/info")
    assert status == 401 and body["error"]["code"] == "invalid_api_key" and "Authorization: Bearer" in body["error"]["message"]
    status, body = call(keyed + "/info", key="not-a-key-at-all")
    assert status == 401 and body["error"]["message"] == "invalid API key"
    assert call(keyed + "/info", key=READ_KEY)[0] == 200
    assert call(keyed + "/info", key=WRITE_KEY)[0] == 200
    assert call(keyed + "/v1/documents", headers={"X-API-Key": READ_KEY})[0] == 200


def test_info_names_model_dimension_fingerprint_and_size(keyed, tiny):
    status, info = call(keyed + "/info", key=READ_KEY)
    assert status == 200
    assert info["model"] == {"name": tiny.name, "source": "tiny", "fingerprint": tiny.fingerprint,
                             "dimension": tiny.dimension, "max_tokens": tiny.max_length}
    assert info["index"]["documents"] >= 3 and info["index"]["model_fingerprint"] == tiny.fingerprint


def test_search_returns_cited_highlighted_passages(keyed):
    status, body = call(keyed + "/v1/search", "POST", {"query": "violet lantern harbor", "k": 2}, key=READ_KEY)
    assert status == 200
    top = body["data"][0]
    assert top["path"].endswith("harbor.html") and top["citation"] == top["path"]
    assert "**violet**" in top["highlighted"] and top["score"] > 0 and top["mode"] == "hybrid"
    assert {"page", "text", "chunk_id", "document_id", "passage"} <= set(top)


def test_search_modes_and_filters(keyed):
    for mode in ("dense", "keyword", "hybrid"):
        status, body = call(keyed + "/v1/search", "POST", {"query": "banana bread oven", "k": 3, "mode": mode},
                            key=READ_KEY)
        assert status == 200 and body["data"] and all(r["mode"] == mode for r in body["data"])
    status, body = call(keyed + "/v1/search", "POST",
                        {"query": "banana bread oven", "k": 3, "filters": {"types": ["md"]}}, key=READ_KEY)
    assert status == 200 and body["data"] and all(r["path"].endswith(".md") for r in body["data"])


def test_context_block_within_budget(keyed, tiny):
    status, body = call(keyed + "/v1/context", "POST", {"query": "wing lift airflow", "budget_tokens": 120, "k": 3},
                        key=READ_KEY)
    assert status == 200
    assert body["context"].startswith("[1] ") and body["tokens"] <= 120
    assert body["tokens"] == tiny.count_tokens([body["context"]])[0]
    assert body["citations"][0]["number"] == 1 and body["citations"][0]["path"] == body["results"][0]["path"]


def test_documents_and_a_passage_with_neighbours(keyed):
    status, body = call(keyed + "/v1/documents?type=md", key=READ_KEY)
    assert status == 200 and [d["path"].rsplit("/", 1)[1] for d in body["data"]] == ["wings.md"]
    hit = call(keyed + "/v1/search", "POST", {"query": "boundary layer", "k": 1, "mode": "keyword"}, key=READ_KEY)[1]
    chunk = hit["data"][0]["chunk_id"]
    status, passage = call(keyed + f"/v1/passages/{chunk}", key=READ_KEY)
    assert status == 200 and passage["chunk_id"] == chunk and "boundary layer" in passage["text"]
    assert passage["total"] >= 1 and "previous" in passage and "next" in passage
    status, body = call(keyed + "/v1/passages/987654", key=READ_KEY)
    assert status == 404 and body["error"]["type"] == "not_found_error"


def test_models_list_in_openai_shape(keyed, tiny):
    status, body = call(keyed + "/v1/models", key=READ_KEY)
    assert status == 200 and body["object"] == "list"
    assert {"tiny", tiny.name, tiny.fingerprint} == {m["id"] for m in body["data"]}


def test_metrics_count_requests_latencies_and_batches(keyed):
    call(keyed + "/v1/embeddings", "POST", {"input": ["one", "two"], "model": "tiny"}, key=READ_KEY)
    call(keyed + "/v1/search", "POST", {"query": "bread", "k": 1}, key=READ_KEY)
    status, body = call(keyed + "/metrics", key=READ_KEY)
    text = body["text"]
    assert status == 200
    assert 'nvembed_http_requests_total{method="POST",route="/v1/embeddings",status="200"}' in text
    assert 'nvembed_http_request_seconds_bucket{le="0.001",route="/v1/search"}' in text
    assert "nvembed_embed_batch_requests_count" in text and "nvembed_embed_batch_texts_sum" in text
    assert 'nvembed_embedding_inputs_total{input_type="passage"}' in text
    assert call(keyed + "/metrics")[0] == 401
