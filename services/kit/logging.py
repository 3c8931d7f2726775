"""structlog set-up: JSON when not a terminal, pretty in one; ids from context variables.

Account numbers are masked to their last four digits and secrets are dropped by a processor
so a careless ``log.info(..., body=...)`` never leaks them.
"""

from __future__ import annotations

import functools
import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import msgspec
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
# Matches wherever any of the three patterns above could match (a superset), so a string it
# does not match is returned untouched without running them: most logged strings are ids.
_SUSPECT = re.compile(r"\d{8}|[A-Z]{2}\d{2}[A-Z0-9]{10}|(?:sk|whsec)_|(?i:bearer)\s")

_PLAIN, _SECRET, _ACCOUNT = 0, 1, 2


@functools.lru_cache(maxsize=4096)
def _key_kind(key: str) -> int:
    lowered = key.lower()
    if lowered in SECRET_KEYS or _SECRET_KEY_WORDS.search(lowered) is not None:
        return _SECRET
    return _ACCOUNT if lowered in ACCOUNT_KEYS else _PLAIN


def _is_secret_key(lowered: str) -> bool:
    return _key_kind(lowered) == _SECRET


def mask_account(value: str) -> str:
    tail = value[-4:]
    return "*" * max(len(value) - 4, 0) + tail


_UNTOUCHED = (int, float, bool, type(None))


def _scrub_text(value: str) -> str:
    if len(value) < 8 or _SUSPECT.search(value) is None:
        return value
    # Account numbers inside free text keep only their last 4 characters; credentials go.
    value = _CREDENTIAL.sub("[redacted]", value)
    value = _IBAN.sub(lambda m: "*" * len(m.group(1)) + m.group(2), value)
    return _LONG_DIGITS.sub(lambda m: "*" * len(m.group(1)) + m.group(2), value)


def _scrub(value: Any, depth: int = 0) -> Any:
    if depth > 6:
        return value
    if isinstance(value, str):
        return _scrub_text(value)
    if isinstance(value, _UNTOUCHED):
        return value
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            kind = _key_kind(str(key))
            if kind == _SECRET:
                out[key] = "[redacted]"
            elif kind == _ACCOUNT and isinstance(item, str):
                out[key] = mask_account(item)
            elif isinstance(item, str):
                out[key] = _scrub_text(item)
            elif isinstance(item, _UNTOUCHED):
                out[key] = item
            else:
                out[key] = _scrub(item, depth + 1)
        return out
    if isinstance(value, list | tuple):
        return [_scrub(item, depth + 1) for item in value]
    return value


def scrub_processor(
    _logger: Any, _name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    return _scrub(dict(event_dict))


_json = msgspec.json.Encoder(enc_hook=repr)


def _render_json(value: Any, **_kwargs: Any) -> bytes:
    # msgspec writes the line in C: a few times cheaper than the stdlib encoder, and this runs
    # once per log line on every request path. Anything it cannot encode is logged as repr().
    return _json.encode(value)


def _render_json_text(value: Any, **_kwargs: Any) -> str:
    return _json.encode(value).decode()


def configure_logging(service: str, *, fmt: str = "auto", level: str = "info") -> None:
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    # Bytes straight to the stream's buffer when it has one (a replaced stderr may not).
    raw = getattr(sys.stderr, "buffer", None) if use_json else None
    renderer: Any = (
        structlog.processors.JSONRenderer(
            serializer=_render_json if raw is not None else _render_json_text
        )
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
        logger_factory=(
            structlog.BytesLoggerFactory(file=raw)
            if raw is not None
            else structlog.PrintLoggerFactory(file=sys.stderr)
        ),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)


def get_logger(name: str | None = None) -> Any:
    return structlog.get_logger(name)
