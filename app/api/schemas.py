"""Request bodies of the API (pydantic), with the limits that make a bad request a 400 rather than work.

Field names follow OpenAI's embeddings API where one exists (`input`, `model`, `encoding_format`,
`dimensions`, `user`); `input_type` and `instruction` are NV-Embed's query/passage distinction.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Mode = Literal["dense", "keyword", "hybrid"]
# OpenRouter's and Cohere's names are accepted too, so their clients' `input_type` works unchanged.
INPUT_TYPES = {"query": "query", "passage": "passage", "search_query": "query", "search_document": "passage",
               "document": "passage"}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EmbeddingRequest(Strict):
    input: Any = Field(description="a string or a list of strings")
    model: str
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None
    user: str | None = None
    input_type: Literal["query", "passage", "search_query", "search_document", "document"] = "passage"
    instruction: str | None = Field(default=None, description="a task name (encoder.instructions) or free text")


class Filters(Strict):
    paths: list[str] | str | None = None
    globs: list[str] | str | None = None
    types: list[str] | str | None = None
    modified_after: str | float | None = None
    modified_before: str | float | None = None

    def to_spec(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class SearchRequest(Strict):
    query: str = Field(min_length=1, max_length=8000)
    k: int = Field(default=10, ge=1, le=100)
    mode: Mode | None = None
    filters: Filters | None = None
    instruction: str | None = None


class ContextRequest(SearchRequest):
    budget_tokens: int | None = Field(default=None, ge=16, le=200_000)


class IngestRequest(Strict):
    folder: str = Field(min_length=1)
    wait: bool = True


class DeleteRequest(Strict):
    paths: list[str] = Field(min_length=1, max_length=10_000)
