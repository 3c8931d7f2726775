"""Credentials: the internal service token and hashed API keys, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web

from services.kit.errors import ProblemError

SERVICE_TOKEN_HEADER = "X-Service-Token"  # noqa: S105 - a header name


def hash_key(key: str) -> str:
    """Keys are random 32-byte tokens, so a fast keyed-free SHA-256 is enough at rest."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_key(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def constant_time_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def service_token_middleware(
    token: str, public_paths: Iterable[str] = ("/healthz", "/readyz", "/openapi.json", "/metrics")
) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Every route except the public ones requires ``X-Service-Token``."""
    public = frozenset(public_paths)

    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path not in public:
            presented = request.headers.get(SERVICE_TOKEN_HEADER, "")
            if not presented or not constant_time_equal(presented, token):
                raise ProblemError(
                    401,
                    "service_token_invalid",
                    "Unauthorized",
                    f"a valid {SERVICE_TOKEN_HEADER} header is required",
                )
        return await handler(request)

    return middleware


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()
