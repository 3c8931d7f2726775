"""The aiohttp furniture every service shares: request ids, problem+json, health, OpenAPI.

``base_app`` builds an application with the common middlewares and routes; the service's
``create_app(settings)`` adds its own routes and cleanup contexts on top.
"""

from __future__ import annotations

import asyncio
import re
import signal
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import structlog
from aiohttp import web

from services.kit.errors import (
    REQUEST_ID_KEY,
    json_response,
    problem_middleware,
    problem_response,
)
from services.kit.logging import get_logger
from services.kit.metrics import metrics_middleware, metrics_view, refreshers_key

log = get_logger(__name__)

REQUEST_ID_HEADER = "Request-Id"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9_.:\-]{1,128}$")

ReadinessCheck = Callable[[web.Application], Awaitable[None]]
readiness_checks_key = web.AppKey("readiness_checks", list)
request_id_key = REQUEST_ID_KEY
openapi_key = web.AppKey("openapi_document", dict)


@web.middleware
async def request_id_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Take the caller's correlation id (or make one), bind it to every log line, echo it."""
    incoming = request.headers.get(REQUEST_ID_HEADER) or request.headers.get("X-Request-Id")
    request_id = incoming if incoming and _REQUEST_ID.match(incoming) else f"req_{uuid.uuid4().hex}"
    request[request_id_key] = request_id
    structlog.contextvars.bind_contextvars(request_id=request_id)
    try:
        response = await handler(request)
    finally:
        structlog.contextvars.unbind_contextvars("request_id")
    response.headers[REQUEST_ID_HEADER] = request_id
    return response


async def healthz(_request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    failures: dict[str, str] = {}
    for check in request.app[readiness_checks_key]:
        name = getattr(check, "__name__", "check")
        try:
            await asyncio.wait_for(check(request.app), timeout=2.0)
        except Exception as exc:  # noqa: BLE001 - readiness reports every failure; it never raises
            failures[name] = f"{type(exc).__name__}: {exc}"
    if failures:
        return problem_response(
            request,
            503,
            "not_ready",
            "Service not ready",
            "; ".join(f"{k}: {v}" for k, v in failures.items()),
        )
    return json_response({"status": "ready"})


async def openapi(request: web.Request) -> web.Response:
    return json_response(request.app[openapi_key])


def base_app(
    *,
    openapi_document: dict[str, Any],
    client_max_size: int,
    middlewares: Iterable[Any] = (),
    readiness: Iterable[ReadinessCheck] = (),
) -> web.Application:
    app = web.Application(
        client_max_size=client_max_size,
        middlewares=[request_id_middleware, metrics_middleware, problem_middleware, *middlewares],
    )
    app[readiness_checks_key] = list(readiness)
    app[openapi_key] = openapi_document
    app[refreshers_key] = []
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/openapi.json", openapi)
    app.router.add_get("/metrics", metrics_view)
    return app


def serve(app: web.Application, *, host: str, port: int, shutdown_timeout_s: float = 10.0) -> None:
    """Run until SIGTERM/SIGINT; aiohttp stops intake, drains requests, then runs cleanups."""
    log.info("service_starting", host=host, port=port)
    web.run_app(
        app,
        host=host,
        port=port,
        shutdown_timeout=shutdown_timeout_s,
        access_log=None,
        print=None,
        handle_signals=True,
    )


def ignore_sigpipe() -> None:
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
