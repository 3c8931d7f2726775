"""Base types for every wire model: msgspec Structs, strict (no type coercion).

msgspec was chosen over pydantic v2 on measured cost for our payloads
(bench/serialization.py, docs/PERFORMANCE.md).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, TypeVar

import msgspec

# ISO 4217 alphabetic code.
Currency = Annotated[str, msgspec.Meta(pattern="^[A-Z]{3}$", description="ISO 4217 code")]
# Integer minor units. The upper bound keeps every sum of 8,190 amounts inside a signed 64-bit
# counter, so no aggregate can overflow a bigint column.
AmountMinor = Annotated[
    int, msgspec.Meta(ge=1, le=1_000_000_000_000_000, description="integer minor units, > 0")
]
NonNegativeMinor = Annotated[int, msgspec.Meta(ge=0, le=9_000_000_000_000_000_000)]
Identifier = Annotated[
    str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:\-]+$")
]


class Model(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Strict request model: unknown fields are an error, types are never coerced."""


class Response(msgspec.Struct, kw_only=True, omit_defaults=False):
    """Response model: lenient on decode so clients survive additive changes."""


class Problem(msgspec.Struct, kw_only=True, omit_defaults=True):
    """RFC 9457 problem details. ``code`` is the stable machine-readable error code."""

    type: str
    title: str
    status: int
    code: str
    detail: str | None = None
    instance: str | None = None
    errors: list[dict[str, Any]] | None = None
    request_id: str | None = None


class Envelope(msgspec.Struct, kw_only=True):
    """The one envelope of every message on the broker (ARCHITECTURE.md §3)."""

    event_id: str
    event_type: str
    schema_version: int
    occurred_at: datetime
    producer: str
    correlation_id: str | None
    causation_id: str | None
    aggregate_id: str
    aggregate_version: int
    data: dict[str, Any]


T = TypeVar("T")

_encoder = msgspec.json.Encoder()


def encode(value: Any) -> bytes:
    return _encoder.encode(value)


def decode(raw: bytes | str, model: type[T]) -> T:
    return msgspec.json.decode(raw, type=model, strict=True)


def to_builtins(value: Any) -> Any:
    return msgspec.to_builtins(value)
