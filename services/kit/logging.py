"""structlog set-up: JSON when not a terminal, pretty in one; ids from context variables.

Account numbers are masked to their last four digits and secrets are dropped by a processor
so a careless ``log.info(..., body=...)`` never leaks them.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

SECRET_KEYS = frozenset(
    {
        "authorization",
        "api_key",
        "secret",
        "secret_key",
        "password",
        "service_token",
        "signing_secret",
        "token",
    }
)
ACCOUNT_KEYS = frozenset({"account_number", "iban", "beneficiary_account"})
_LONG_DIGITS = re.compile(r"\b(\d{4,})(\d{4})\b")


def mask_account(value: str) -> str:
    tail = value[-4:]
    return "*" * max(len(value) - 4, 0) + tail


def _scrub(value: Any, depth: int = 0) -> Any:
    if depth > 6:
        return value
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            lowered = str(key).lower()
            if lowered in SECRET_KEYS:
                out[key] = "[redacted]"
            elif lowered in ACCOUNT_KEYS and isinstance(item, str):
                out[key] = mask_account(item)
            else:
                out[key] = _scrub(item, depth + 1)
        return out
    if isinstance(value, list | tuple):
        return [_scrub(item, depth + 1) for item in value]
    if isinstance(value, str) and len(value) >= 8:
        # Long digit runs (account numbers inside free text) keep only their last 4 digits.
        return _LONG_DIGITS.sub(lambda m: "*" * len(m.group(1)) + m.group(2), value)
    return value


def scrub_processor(
    _logger: Any, _name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    return _scrub(dict(event_dict))


def configure_logging(service: str, *, fmt: str = "auto", level: str = "info") -> None:
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            scrub_processor,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            getattr(logging, level.upper(), logging.INFO)
        ),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)


def get_logger(name: str | None = None) -> Any:
    return structlog.get_logger(name)
