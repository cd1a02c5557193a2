"""The FastAPI application: routes over a `Service`, guarded by keys and limits, measured, with MCP at /mcp.

    POST /v1/embeddings         OpenAI embeddings (float or base64), plus input_type / instruction
    GET  /v1/models             the served model, OpenAI shape
    POST /v1/search             passages with path, page, score, text, highlights, citation
    POST /v1/context            the prompt-ready block within a token budget, with its citations
    GET  /v1/documents          stored documents (filters as query parameters)
    GET  /v1/passages/{id}      one passage and its neighbours
    POST /v1/documents          upload files (multipart), write key     -> ingest job
    POST /v1/ingest             ingest a folder under the allowed roots, write key -> ingest job
    POST /v1/documents/delete   delete documents by path, write key (also DELETE /v1/documents)
    GET  /v1/jobs/{id}          an ingest job's progress and per-file outcome
    GET  /health, /info, /metrics
    POST /mcp                   MCP, streamable HTTP (read-only tools, see app/mcp.py)

docs/api.md describes every field and error.
"""

from __future__ import annotations

import base64
import logging
from contextlib import asynccontextmanager
from typing import Annotated, Any

import anyio
import numpy as np
from fastapi import FastAPI, File, Query, Request, UploadFile
from fastapi.responses import JSONResponse, Response

from ..batching import QUERY
from ..service import Service, job_dict, wait
from .config import ApiConfig
from .errors import ApiError, GuardMiddleware, install_handlers, require_write
from .metrics import Metrics, MetricsMiddleware
from .schemas import (
    INPUT_TYPES,
    ContextRequest,
    DeleteRequest,
    EmbeddingRequest,
    IngestRequest,
    SearchRequest,
)

log = logging.getLogger(__name__)

UPLOAD_PATHS = ("/v1/documents",)
JOB_WAIT_S = 600.0


def _texts(value: Any, max_inputs: int) -> list[str]:
    """`input` as a list of non-empty strings, or a 400 naming the problem."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise ApiError(400, "input must be a non-empty string or a non-empty list of strings", param="input")
    if all(isinstance(v, int) for v in value) or all(isinstance(v, list) for v in value):
        raise ApiError(400, "token arrays are not supported: send the text itself", param="input",
                       code="unsupported_input")
    for i, v in enumerate(value):
        if not isinstance(v, str):
            raise ApiError(400, f"input[{i}] must be a string, got {type(v).__name__}", param=f"input.{i}")
        if not v.strip():
            raise ApiError(400, f"input[{i}] is empty", param=f"input.{i}")
    if len(value) > max_inputs:
        raise ApiError(400, f"{len(value)} inputs in one request; the limit is {max_inputs}", param="input",
                       code="too_many_inputs")
    return value


def create_app(service: Service, config: ApiConfig) -> FastAPI:
    """The ASGI app serving `service`; closes nothing (the caller owns the service)."""
    metrics = Metrics()
    service.on_batch = metrics.batch
    limits = config.limits
    max_tokens = limits.max_input_tokens or int(service.raw_encoder.max_length)
    mcp_server = None
    if config.mcp:
        from ..mcp import build_server

        mcp_server = build_server(service)
        mcp_app = mcp_server.streamable_http_app(streamable_http_path="/mcp", host=config.host,
                                                 stateless_http=True, json_response=True)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        if mcp_server is None:
            yield
        else:
            async with mcp_server.session_manager.run():
                yield

    app = FastAPI(title="NV-Embed search API", version="1", lifespan=lifespan, docs_url="/docs", redoc_url=None)
    install_handlers(app)
    app.state.service = service
    app.state.metrics = metrics

    # ---------------------------------------------------------------------------- embeddings ----
    @app.post("/v1/embeddings")
    async def embeddings(body: EmbeddingRequest) -> dict[str, Any]:
        if body.model not in service.model_names:
            raise ApiError(404, f"the model {body.model!r} is not served here; use one of "
                                f"{', '.join(sorted(service.model_names))}", param="model", code="model_not_found")
        dim = int(service.raw_encoder.dimension)
        if body.dimensions is not None and body.dimensions != dim:
            raise ApiError(400, f"dimensions={body.dimensions} is not available: this model gives {dim}-dimensional "
                                "vectors (leave `dimensions` out)", param="dimensions")
        texts = _texts(body.input, limits.max_inputs)
        kind = INPUT_TYPES[body.input_type]
        if body.instruction is not None and kind != QUERY:
            raise ApiError(400, "instruction applies to queries: send input_type='query' with it", param="instruction")
        instruction = None
        if kind == QUERY and body.instruction is not None:
            from ..service import resolve_instruction

            instruction = resolve_instruction(body.instruction)
        counts = await anyio.to_thread.run_sync(service.count_tokens, texts, kind, instruction)
        for i, n in enumerate(counts):
            if n > max_tokens:
                raise ApiError(400, f"input[{i}] has {n} tokens; the limit is {max_tokens}", param=f"input.{i}",
                               code="input_too_long")
        vectors = await service.batcher.aembed(texts, kind, instruction)
        metrics.inputs.labels(kind).inc(len(texts))
        metrics.tokens.inc(sum(counts))
        data = []
        for i, v in enumerate(vectors):
            v = np.ascontiguousarray(v, dtype="<f4")
            emb: Any = base64.b64encode(v.tobytes()).decode() if body.encoding_format == "base64" else v.tolist()
            data.append({"object": "embedding", "embedding": emb, "index": i})
        total = int(sum(counts))
        return {"object": "list", "data": data, "model": body.model,
                "usage": {"prompt_tokens": total, "total_tokens": total}}

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        names = sorted(service.model_names)
        return {"object": "list", "data": [{"id": n, "object": "model", "created": int(service.started),
                                            "owned_by": "nvembed-search"} for n in names]}

    # ------------------------------------------------------------------------------ reading ----
    @app.post("/v1/search")
    def search(body: SearchRequest) -> dict[str, Any]:
        results = service.search(body.query, body.k, body.mode, body.filters.to_spec() if body.filters else None,
                                 body.instruction)
        metrics.searches.labels(results[0]["mode"] if results else (body.mode or "default")).inc()
        return {"object": "list", "query": body.query, "data": results}

    @app.post("/v1/context")
    def context(body: ContextRequest) -> dict[str, Any]:
        return service.context(body.query, body.budget_tokens, body.k, body.mode,
                               body.filters.to_spec() if body.filters else None, body.instruction)

    @app.get("/v1/documents")
    def documents(path: Annotated[list[str] | None, Query()] = None, glob: Annotated[list[str] | None, Query()] = None,
                  type: Annotated[list[str] | None, Query()] = None) -> dict[str, Any]:  # noqa: A002
        spec = {k: v for k, v in {"paths": path, "globs": glob, "types": type}.items() if v}
        docs = service.documents(spec or None)
        return {"object": "list", "data": docs, "total": len(docs)}

    @app.get("/v1/passages/{chunk_id}")
    def passage(chunk_id: int) -> dict[str, Any]:
        return service.passage(chunk_id)

    # ------------------------------------------------------------------------------ writing ----
    @app.post("/v1/documents", status_code=201)
    def upload(request: Request, files: Annotated[list[UploadFile], File()],
               wait_s: Annotated[float, Query(alias="wait", ge=0, le=3600)] = JOB_WAIT_S) -> JSONResponse:
        require_write(request, config.keys)
        if len(files) > limits.max_upload_files:
            raise ApiError(400, f"{len(files)} files in one upload; the limit is {limits.max_upload_files}",
                           param="files")
        payload = [(f.filename or "upload", f.file.read()) for f in files]
        job = wait(service.upload(payload), wait_s)
        return JSONResponse(job_dict(job), status_code=202 if job.running else 201)

    @app.post("/v1/ingest")
    def ingest(request: Request, body: IngestRequest) -> JSONResponse:
        require_write(request, config.keys)
        job = service.ingest_folder(body.folder)
        if body.wait:
            wait(job, JOB_WAIT_S)
        return JSONResponse(job_dict(job), status_code=202 if job.running else 200)

    @app.post("/v1/documents/delete")
    def delete(request: Request, body: DeleteRequest) -> dict[str, Any]:
        require_write(request, config.keys)
        return service.delete(body.paths)

    @app.delete("/v1/documents")
    def delete_documents(request: Request, body: DeleteRequest) -> dict[str, Any]:
        require_write(request, config.keys)
        return service.delete(body.paths)

    @app.get("/v1/jobs/{job_id}")
    def job(job_id: int) -> dict[str, Any]:
        found = service.job(job_id)
        if found is None:
            raise ApiError(404, f"no job {job_id} (the server keeps the last 20)", type="not_found_error")
        return job_dict(found)

    # ---------------------------------------------------------------------------- operations ----
    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok"}

    @app.get("/info")
    def info() -> dict[str, Any]:
        return service.info()

    @app.get("/metrics")
    def prometheus() -> Response:
        return Response(metrics.render(), media_type=metrics.content_type)

    if mcp_server is not None:
        app.router.routes.extend(mcp_app.routes)

    upload_body = int(limits.max_upload_mb * 1e6 + 1e6)  # one upload request: the file limit plus form overhead
    app.add_middleware(GuardMiddleware, keys=config.keys, max_body=int(limits.max_body_mb * 1e6),
                       max_upload_body=upload_body, upload_paths=UPLOAD_PATHS)
    app.add_middleware(MetricsMiddleware, metrics=metrics)  # outermost: refused requests are counted too
    return app
