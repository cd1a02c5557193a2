"""Every failure as OpenAI-style JSON, `{"error": {"message", "type", "param", "code"}}`, never a traceback.

The index's own errors map to statuses (bad input 400, not found 404, locked 409), request validation to
400 with the offending field, anything unexpected to 500 with a generic message (the traceback goes to the
server log only). Also here: the ASGI middleware that checks API keys and body sizes before a route runs,
so a refused request never reaches the model or the index.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from index.errors import (
    IndexLockedError,
    IndexNotFoundError,
    IndexStoreError,
    InvalidInputError,
    LoadError,
    ModelMismatchError,
)

from ..jobs import BusyError
from ..security import ApiKeys, SecurityError

log = logging.getLogger(__name__)

OPEN_PATHS = ("/health",)  # answered without a key
# An over-limit body up to this many bytes past the limit is read and dropped before the 413 goes out: a
# client still sending when the server answers and closes gets a broken pipe instead of the error. Larger
# bodies are refused at once (the connection closes; a client that sent only headers still reads the 413).
DRAIN_BEYOND_LIMIT = 8_000_000


class ApiError(Exception):
    """An error to send as it is: HTTP status, message, OpenAI error type, param and code."""

    def __init__(self, status: int, message: str, type: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code


class BodyTooLarge(StarletteHTTPException):
    """Raised while the body streams in (no Content-Length); FastAPI passes HTTP exceptions through."""

    def __init__(self, limit: int):
        super().__init__(413, f"request body is over the limit of {limit / 1e6:g} MB")


def error_body(status: int, message: str, type: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def error_response(status: int, message: str, **kw: Any) -> JSONResponse:
    return JSONResponse(error_body(status, message, **kw), status_code=status)


def _status_for(exc: IndexStoreError) -> tuple[int, str, str]:
    if isinstance(exc, IndexNotFoundError):
        return 404, "not_found_error", "not_found"
    if isinstance(exc, IndexLockedError):
        return 409, "conflict_error", "index_locked"
    if isinstance(exc, ModelMismatchError):
        return 409, "conflict_error", "model_mismatch"
    if isinstance(exc, InvalidInputError | LoadError):
        return 400, "invalid_request_error", "invalid_input"
    return 500, "server_error", "index_error"


def _location(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc if p != "body") or "body"


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.message, type=exc.type, param=exc.param, code=exc.code)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": ("body",), "msg": "invalid request"}
        where = _location(tuple(p for p in first.get("loc", ()) if not isinstance(p, int) or first.get("type") != "json_invalid"))
        msg = str(first.get("msg", "invalid value"))
        if first.get("type") == "json_invalid":
            where, msg = "body", f"the request body is not valid JSON ({first.get('ctx', {}).get('error', msg)})"
        return error_response(400, f"{where}: {msg}", param=where, code="invalid_request")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = {404: "not_found_error"}.get(exc.status_code, "invalid_request_error")
        code = {413: "request_too_large", 404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        return error_response(exc.status_code, str(exc.detail), type=kind, code=code)

    @app.exception_handler(IndexStoreError)
    async def _index(_: Request, exc: IndexStoreError) -> JSONResponse:
        status, kind, code = _status_for(exc)
        if status == 500:
            log.error("index error: %s", exc)
        return error_response(status, str(exc), type=kind, code=code)

    @app.exception_handler(SecurityError)
    async def _security(_: Request, exc: SecurityError) -> JSONResponse:
        return error_response(403, str(exc), type="permission_error", code="not_allowed")

    @app.exception_handler(BusyError)
    async def _busy(_: Request, exc: BusyError) -> JSONResponse:
        return error_response(409, str(exc), type="conflict_error", code="busy")

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return error_response(500, f"internal error ({type(exc).__name__}); the details are in the server log",
                              type="server_error", code="internal_error")


async def _send_error(send: Any, status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]] = ()) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": data})


async def _drain(receive: Any, budget: int = DRAIN_BEYOND_LIMIT) -> None:
    """Read and drop the rest of a request body, at most `budget` bytes (then the connection just closes)."""
    while budget > 0:
        message = await receive()
        if message.get("type") != "http.request" or not message.get("more_body", False):
            return
        budget -= len(message.get("body", b""))


class GuardMiddleware:
    """API keys and body size, checked before routing (so MCP at /mcp is covered too).

    Sets `scope["state"]["permission"]` to `read` or `write` (no keys configured: `read`, writes refused).
    """

    def __init__(self, app: Any, keys: ApiKeys, max_body: int, max_upload_body: int, upload_paths: tuple[str, ...]):
        self.app, self.keys = app, keys
        self.max_body, self.max_upload_body, self.upload_paths = max_body, max_upload_body, upload_paths

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        permission = "read"
        if self.keys and path not in OPEN_PATHS:
            auth = headers.get("authorization", "")
            token = auth[7:].strip() if auth.lower().startswith("bearer ") else headers.get("x-api-key")
            permission = self.keys.permission(token)
            if permission is None:
                message = "missing API key: send `Authorization: Bearer KEY`" if not token else "invalid API key"
                await _send_error(send, 401, error_body(401, message, code="invalid_api_key"),
                                  [(b"www-authenticate", b"Bearer")])
                return
        scope.setdefault("state", {})["permission"] = permission
        limit = self.max_upload_body if scope.get("method") == "POST" and path in self.upload_paths else self.max_body
        length = headers.get("content-length")
        if length is not None:
            try:
                too_big = int(length) > limit
            except ValueError:
                too_big = True
            if too_big:
                if length.isdigit() and int(length) <= limit + DRAIN_BEYOND_LIMIT:
                    await _drain(receive, int(length))
                await _send_error(send, 413, error_body(413, f"request body is over the limit of {limit / 1e6:g} MB",
                                                        code="request_too_large"))
                return
        seen = 0

        async def counted() -> dict[str, Any]:
            nonlocal seen
            message = await receive()
            if message.get("type") == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    if message.get("more_body", False):
                        await _drain(receive, limit + DRAIN_BEYOND_LIMIT - seen)
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, counted, send)


def require_write(request: Request, keys: ApiKeys) -> None:
    """Raise 403 unless the request carries a key with write permission."""
    if not keys:
        raise ApiError(403, "writes are disabled: start the server with a write key (--api-key KEY:write) and "
                            "send it as `Authorization: Bearer KEY`", type="permission_error", code="writes_disabled")
    if request.scope.get("state", {}).get("permission") != "write":
        raise ApiError(403, "this API key is read-only; writes need a key with write permission",
                       type="permission_error", code="read_only_key")
