"""A small HTTP client for the API (standard library only): search, context, embeddings, documents.

The LangChain and LlamaIndex adapters (`app/integrations/`) are built on it; any program can use it too:

    from app.client import NVEmbedClient
    client = NVEmbedClient("http://127.0.0.1:8000", api_key=None)
    for hit in client.search("how do I reset it?", k=5):
        print(hit["citation"], hit["score"])

For embeddings alone the official `openai` client works as well (docs/api.md).
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

API_URL_ENV = "NVEMBED_API_URL"
API_KEY_ENV = "NVEMBED_API_KEY"
#: The fields of a search hit that the framework adapters keep as a document's metadata.
METADATA = ("path", "page", "title", "score", "citation", "chunk_id", "document_id", "ordinal", "kind", "highlighted")


class NVEmbedAPIError(RuntimeError):
    """The server answered with an error (its OpenAI-style message), or could not be reached."""

    def __init__(self, status: int, message: str, code: str | None = None):
        super().__init__(f"{status}: {message}" if status else message)
        self.status, self.message, self.code = status, message, code


@dataclass
class NVEmbedClient:
    base_url: str = "http://127.0.0.1:8000"
    api_key: str | None = None
    timeout: float = 60.0

    @classmethod
    def from_env(cls) -> NVEmbedClient:
        return cls(os.environ.get(API_URL_ENV, cls.base_url), os.environ.get(API_KEY_ENV))

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base_url.rstrip("/") + path, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.api_key:
            req.add_header("Authorization", f"Bearer {self.api_key}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            try:
                err = json.loads(exc.read()).get("error", {})
            except (ValueError, AttributeError):
                err = {}
            raise NVEmbedAPIError(exc.code, err.get("message") or str(exc), err.get("code")) from None
        except urllib.error.URLError as exc:
            raise NVEmbedAPIError(0, f"cannot reach {self.base_url}: {exc.reason}") from None

    def search(self, query: str, k: int = 5, mode: str | None = None, filters: dict[str, Any] | None = None,
               instruction: str | None = None) -> list[dict[str, Any]]:
        body = {"query": query, "k": k, "mode": mode, "filters": filters, "instruction": instruction}
        return self.request("POST", "/v1/search", {k_: v for k_, v in body.items() if v is not None})["data"]

    def context(self, query: str, budget_tokens: int | None = None, k: int = 10, mode: str | None = None,
                filters: dict[str, Any] | None = None) -> dict[str, Any]:
        body = {"query": query, "k": k, "mode": mode, "filters": filters, "budget_tokens": budget_tokens}
        return self.request("POST", "/v1/context", {k_: v for k_, v in body.items() if v is not None})

    def embed(self, texts: list[str], input_type: str = "passage", instruction: str | None = None,
              model: str | None = None) -> list[list[float]]:
        model = model or self.info()["model"]["source"]
        body: dict[str, Any] = {"input": texts, "model": model, "input_type": input_type}
        if instruction is not None:
            body["instruction"] = instruction
        data = self.request("POST", "/v1/embeddings", body)["data"]
        return [row["embedding"] for row in sorted(data, key=lambda r: r["index"])]

    def documents(self) -> list[dict[str, Any]]:
        return self.request("GET", "/v1/documents")["data"]

    def info(self) -> dict[str, Any]:
        return self.request("GET", "/info")
