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
# A key with one of these words in it (``webhook_secret``, ``X-Service-Token``,
# ``bank_key``) is a secret too.
_SECRET_KEY_WORDS = re.compile(
    r"(^|[_\-])(secret|password|token|authorization|cookie|api_key|bank_key|bank-key)($|[_\-])"
)
ACCOUNT_KEYS = frozenset({"account_number", "iban", "beneficiary_account"})
_LONG_DIGITS = re.compile(r"\b(\d{4,})(\d{4})\b")
# IBANs inside free text (country, check digits, 10-30 letters/digits): last 4 kept.
_IBAN = re.compile(r"\b([A-Z]{2}\d{2}[A-Z0-9]{6,26})([A-Z0-9]{4})\b")
# Our own credential shapes inside free text: merchant keys, webhook secrets, bearer values.
_CREDENTIAL = re.compile(r"\b(sk|whsec)_[A-Za-z0-9_\-]{8,}|(?i:bearer)\s+[A-Za-z0-9._~+/=\-]+")


def _is_secret_key(lowered: str) -> bool:
    return lowered in SECRET_KEYS or _SECRET_KEY_WORDS.search(lowered) is not None


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
            if _is_secret_key(lowered):
                out[key] = "[redacted]"
            elif lowered in ACCOUNT_KEYS and isinstance(item, str):
                out[key] = mask_account(item)
            else:
                out[key] = _scrub(item, depth + 1)
        return out
    if isinstance(value, list | tuple):
        return [_scrub(item, depth + 1) for item in value]
    if isinstance(value, str) and len(value) >= 8:
        # Account numbers inside free text keep only their last 4 characters; credentials go.
        value = _CREDENTIAL.sub("[redacted]", value)
        value = _IBAN.sub(lambda m: "*" * len(m.group(1)) + m.group(2), value)
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
