"""Domain errors with stable codes, and the RFC 9457 problem+json middleware.

Handlers raise ``ProblemError`` (or a subclass); the middleware turns it, aiohttp's own HTTP
errors and any unexpected exception into ``application/problem+json`` with a stable ``code``.
The middleware is the one place where a bare ``except Exception`` is allowed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from aiohttp import web

from contracts.wire import Problem, encode
from services.kit.logging import get_logger

log = get_logger(__name__)

PROBLEM_CONTENT_TYPE = "application/problem+json"
# Declared here (not in web.py) so errors.py has no import cycle; web.py re-exports it.
REQUEST_ID_KEY = web.RequestKey("request_id", str)
TYPE_BASE = "https://payments-suite.dev/problems/"


class ProblemError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        title: str,
        detail: str | None = None,
        *,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{code}: {detail or title}")
        self.status = status
        self.code = code
        self.title = title
        self.detail = detail
        self.errors = errors
        self.headers = headers or {}


def problem_response(
    request: web.Request | None,
    status: int,
    code: str,
    title: str,
    detail: str | None = None,
    *,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    body = Problem(
        type=TYPE_BASE + code,
        title=title,
        status=status,
        code=code,
        detail=detail,
        instance=request.path if request is not None else None,
        errors=errors,
        request_id=request.get(REQUEST_ID_KEY) if request is not None else None,
    )
    return web.Response(
        status=status,
        body=encode(body),
        content_type=PROBLEM_CONTENT_TYPE,
        headers=headers,
    )


# Stable codes for aiohttp's own errors (routing, method, body size).
_HTTP_CODES = {
    400: ("bad_request", "Bad request"),
    401: ("unauthorized", "Unauthorized"),
    403: ("forbidden", "Forbidden"),
    404: ("not_found", "Not found"),
    405: ("method_not_allowed", "Method not allowed"),
    406: ("not_acceptable", "Not acceptable"),
    409: ("conflict", "Conflict"),
    411: ("length_required", "Length required"),
    413: ("request_too_large", "Request body too large"),
    415: ("unsupported_media_type", "Unsupported media type"),
    422: ("unprocessable", "Unprocessable request"),
    429: ("rate_limited", "Too many requests"),
}


@web.middleware
async def problem_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except ProblemError as exc:
        return problem_response(
            request,
            exc.status,
            exc.code,
            exc.title,
            exc.detail,
            errors=exc.errors,
            headers=exc.headers,
        )
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code, title = _HTTP_CODES.get(exc.status, ("http_error", exc.reason))
        headers = {k: v for k, v in exc.headers.items() if k.lower() in {"allow", "retry-after"}}
        return problem_response(request, exc.status, code, title, exc.text or None, headers=headers)
    except Exception:
        log.exception("unhandled_error", path=request.path, method=request.method)
        return problem_response(request, 500, "internal_error", "Internal server error")


async def read_json(request: web.Request, model: type[Any]) -> Any:
    """Decode and validate a JSON body into ``model``, or raise a 4xx problem."""
    ctype = request.content_type
    if ctype not in ("application/json", "application/problem+json"):
        raise ProblemError(
            415,
            "unsupported_media_type",
            "Unsupported media type",
            f"expected application/json, got {ctype or 'nothing'}",
        )
    raw = await request.read()
    if not raw:
        raise ProblemError(400, "empty_body", "Empty body", "a JSON body is required")
    return decode_body(raw, model)


def decode_body(raw: bytes, model: type[Any]) -> Any:
    try:
        return msgspec.json.decode(raw, type=model, strict=True)
    except msgspec.ValidationError as exc:
        raise ProblemError(
            422,
            "validation_error",
            "Invalid request",
            str(exc),
            errors=[{"detail": str(exc)}],
        ) from None
    except msgspec.DecodeError as exc:
        raise ProblemError(400, "malformed_json", "Malformed JSON", str(exc)) from None


def json_response(
    value: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status, body=encode(value), content_type="application/json", headers=headers
    )
