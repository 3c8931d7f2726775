"""Outgoing HTTP between services: one session per process, explicit timeouts, the service
token and the correlation id on every call."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import structlog

from services.kit.auth import SERVICE_TOKEN_HEADER
from services.kit.web import REQUEST_ID_HEADER


def correlation_headers(service_token: str | None = None) -> dict[str, str]:
    headers: dict[str, str] = {}
    request_id = structlog.contextvars.get_contextvars().get("request_id")
    if request_id:
        headers[REQUEST_ID_HEADER] = str(request_id)
    if service_token:
        headers[SERVICE_TOKEN_HEADER] = service_token
    return headers


async def client_session_context(
    *, total_timeout_s: float = 10.0, connect_timeout_s: float = 2.0, limit: int = 200
) -> AsyncIterator[aiohttp.ClientSession]:
    session = aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=total_timeout_s, connect=connect_timeout_s),
        connector=aiohttp.TCPConnector(limit=limit, keepalive_timeout=30),
    )
    try:
        yield session
    finally:
        await session.close()
