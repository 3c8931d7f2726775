"""Settings from environment variables, validated at start-up.

Every service declares a frozen dataclass and builds it with ``Env``; a bad or missing
variable raises ``SettingsError`` naming the variable, so a process refuses to start with a
message an operator can act on instead of failing later on first use.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


class SettingsError(ValueError):
    """A configuration variable is missing or invalid."""


class Env:
    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = os.environ if environ is None else environ

    def string(self, name: str, default: str | None = None) -> str:
        value = self._environ.get(name)
        if value is None or value == "":
            if default is None:
                raise SettingsError(f"{name} is required but not set")
            return default
        return value

    def integer(
        self, name: str, default: int, *, min_value: int | None = None, max_value: int | None = None
    ) -> int:
        raw = self._environ.get(name)
        if raw is None or raw == "":
            value = default
        else:
            try:
                value = int(raw)
            except ValueError:
                raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
        if min_value is not None and value < min_value:
            raise SettingsError(f"{name} must be >= {min_value}, got {value}")
        if max_value is not None and value > max_value:
            raise SettingsError(f"{name} must be <= {max_value}, got {value}")
        return value

    def flag(self, name: str, default: bool) -> bool:
        raw = self._environ.get(name)
        if raw is None or raw == "":
            return default
        lowered = raw.strip().lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off"}:
            return False
        raise SettingsError(f"{name} must be a boolean (true/false), got {raw!r}")

    def url(self, name: str, default: str | None, *, schemes: tuple[str, ...]) -> str:
        value = self.string(name, default)
        parts = urlsplit(value)
        # A Unix-socket URL names its directory in the query (``?host=/run/pg``) instead.
        has_host = bool(parts.hostname) or "host=" in parts.query
        if parts.scheme not in schemes or not has_host:
            raise SettingsError(
                f"{name} must be a URL with scheme {' or '.join(schemes)} and a host, got {value!r}"
            )
        return value

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.string(name, default)
        if value not in choices:
            raise SettingsError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
        return value

    def secret(self, name: str, default: str | None = None, *, min_length: int = 16) -> str:
        value = self.string(name, default)
        if len(value) < min_length:
            raise SettingsError(f"{name} must be at least {min_length} characters long")
        return value


DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
# Development default; `make run` uses it, production must set its own (see .env.example).
DEFAULT_SERVICE_TOKEN = "dev-service-token-change-me"  # noqa: S105 - dev only


@dataclass(frozen=True, kw_only=True)
class CommonSettings:
    """The variables every service shares. A service's ``Settings`` subclasses this and is
    built as ``Settings(**common_kwargs(env), port=env.integer(...), ...)``."""

    database_url: str
    db_name_prefix: str
    amqp_url: str
    amqp_prefix: str
    amqp_queue_expires_ms: int = 0
    service_token: str
    log_format: str
    log_level: str
    db_pool_max: int
    request_body_max_bytes: int
    # "production" turns on the rules a laptop would find in the way (https-only webhooks).
    environment: str = "development"


def common_kwargs(env: Env) -> dict[str, Any]:
    return {
        "database_url": env.url(
            "DATABASE_URL", DEFAULT_DATABASE_URL, schemes=("postgresql", "postgres")
        ),
        "db_name_prefix": env.string("DB_NAME_PREFIX", "payments_"),
        "amqp_url": env.url("AMQP_URL", DEFAULT_AMQP_URL, schemes=("amqp", "amqps")),
        "amqp_prefix": env.string("AMQP_PREFIX", "payments"),
        "amqp_queue_expires_ms": env.integer(
            "AMQP_QUEUE_EXPIRES_MS", 0, min_value=0, max_value=7 * 24 * 3600 * 1000
        ),
        "service_token": env.secret("SERVICE_TOKEN", DEFAULT_SERVICE_TOKEN),
        "log_format": env.choice("LOG_FORMAT", "auto", ("auto", "json", "console")),
        "log_level": env.choice("LOG_LEVEL", "info", ("debug", "info", "warning", "error")),
        "db_pool_max": env.integer("DB_POOL_MAX", 10, min_value=1, max_value=200),
        "environment": env.choice("ENVIRONMENT", "development", ("development", "production")),
        "request_body_max_bytes": env.integer(
            "REQUEST_BODY_MAX_BYTES", 2 * 1024 * 1024, min_value=1024, max_value=512 * 1024 * 1024
        ),
    }
