"""Break search, one break with its audit trail, and resolving a break by hand.

Shared by the finance API and the console pages, so both apply the same filters, the same
validation messages and the same audited transition.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import asyncpg

from services.kit.errors import ProblemError
from services.recon.domain.rules import valid_channel
from services.recon.domain.taxonomy import BREAK_SEVERITY

_ID = re.compile(r"^[A-Za-z0-9_]{1,64}$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_INT = re.compile(r"^-?[0-9]{1,18}$")
STATUSES = ("open", "closed")
BREAK_CODES = tuple(sorted(BREAK_SEVERITY))
COMMENT_MAX = 2000
ACTOR_MAX = 100


def invalid(detail: str) -> ProblemError:
    return ProblemError(400, "invalid_query", "Invalid query", detail)


@dataclass(frozen=True)
class BreakFilter:
    run_id: str | None = None
    channel: str | None = None
    code: str | None = None
    status: str | None = None
    date_from: date | None = None
    date_to: date | None = None
    amount_min_minor: int | None = None
    amount_max_minor: int | None = None
    currency: str | None = None

    @classmethod
    def parse(cls, query: Any) -> BreakFilter:
        """From query parameters; an empty value means "any". Raises ``invalid_query``."""

        def get(name: str) -> str | None:
            value = query.get(name)
            return value.strip() if value is not None and value.strip() != "" else None

        run_id = get("run_id")
        if run_id is not None and not _ID.match(run_id):
            raise invalid("run_id is malformed")
        channel = get("channel")
        if channel is not None and not valid_channel(channel):
            raise invalid("channel must match [a-z0-9][a-z0-9_-]*")
        code = get("code")
        if code is not None and code not in BREAK_CODES:
            raise invalid(f"code (break type) must be one of {', '.join(BREAK_CODES)}")
        status = get("status")
        if status is not None and status not in STATUSES:
            raise invalid("status must be open or closed")
        days: dict[str, date | None] = {}
        for name in ("business_date", "date_from", "date_to"):
            raw = get(name)
            try:
                days[name] = date.fromisoformat(raw) if raw is not None else None
            except ValueError:
                raise invalid(f"{name} must be a date YYYY-MM-DD") from None
        date_from = days["date_from"] or days["business_date"]
        date_to = days["date_to"] or days["business_date"]
        if days["business_date"] is not None and (days["date_from"] or days["date_to"]):
            raise invalid("give business_date or date_from/date_to, not both")
        if date_from and date_to and date_from > date_to:
            raise invalid("date_from must not be after date_to")
        amounts: dict[str, int | None] = {}
        for name in ("amount_min_minor", "amount_max_minor"):
            raw = get(name)
            if raw is not None and not _INT.match(raw):
                raise invalid(f"{name} must be a whole number of minor units")
            amounts[name] = int(raw) if raw is not None else None
        low, high = amounts["amount_min_minor"], amounts["amount_max_minor"]
        if low is not None and high is not None and low > high:
            raise invalid("amount_min_minor must not exceed amount_max_minor")
        currency = get("currency")
        if currency is not None and not _CURRENCY.match(currency):
            raise invalid("currency must be three capital letters (ISO 4217)")
        return cls(run_id, channel, code, status, date_from, date_to, low, high, currency)


def encode_cursor(break_id: str) -> str:
    return base64.urlsafe_b64encode(break_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> str | None:
    if cursor is None or cursor == "":
        return None
    try:
        value = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise invalid("cursor is malformed (pass next_cursor back unchanged)") from None
    if not _ID.match(value):
        raise invalid("cursor is malformed (pass next_cursor back unchanged)")
    return value


def page_limit(raw: str | None, maximum: int, default: int = 100) -> int:
    if raw is None or raw == "":
        return min(default, maximum)
    if not raw.isdigit() or not 1 <= int(raw) <= maximum:
        raise invalid(f"limit must be 1..{maximum}")
    return int(raw)


async def search(
    conn: Any, f: BreakFilter, *, after: str | None, limit: int
) -> tuple[list[asyncpg.Record], str | None]:
    """A page of breaks in break id order and the cursor of the next page (None at the end)."""
    rows = await conn.fetch(
        """SELECT * FROM recon_breaks
           WHERE ($1::text IS NULL OR run_id = $1) AND ($2::text IS NULL OR channel = $2)
             AND ($3::text IS NULL OR code = $3) AND ($4::text IS NULL OR status = $4)
             AND ($5::date IS NULL OR business_date >= $5)
             AND ($6::date IS NULL OR business_date <= $6)
             AND ($7::bigint IS NULL OR amount_minor >= $7)
             AND ($8::bigint IS NULL OR amount_minor <= $8)
             AND ($9::text IS NULL OR currency = $9)
             AND ($10::text IS NULL OR break_id > $10)
           ORDER BY break_id LIMIT $11""",
        f.run_id,
        f.channel,
        f.code,
        f.status,
        f.date_from,
        f.date_to,
        f.amount_min_minor,
        f.amount_max_minor,
        f.currency,
        after,
        limit + 1,
    )
    page = list(rows[:limit])
    return page, encode_cursor(page[-1]["break_id"]) if len(rows) > limit else None


async def get(conn: Any, break_id: str) -> asyncpg.Record | None:
    if not _ID.match(break_id):
        return None
    return await conn.fetchrow("SELECT * FROM recon_breaks WHERE break_id = $1", break_id)


async def audit(conn: Any, break_id: str) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            "SELECT * FROM recon_break_audit WHERE break_id = $1 ORDER BY audit_id", break_id
        )
    )


def check_resolution(comment: str, actor: str) -> tuple[str, str]:
    """The trimmed comment and actor, or a 422 naming what is wrong."""
    comment, actor = comment.strip(), actor.strip()
    errors = []
    if not comment:
        errors.append({"field": "comment", "detail": "a comment is required"})
    elif len(comment) > COMMENT_MAX:
        errors.append({"field": "comment", "detail": f"at most {COMMENT_MAX} characters"})
    if not actor:
        errors.append({"field": "actor", "detail": "your name is required"})
    elif len(actor) > ACTOR_MAX or any(ord(ch) < 32 for ch in actor):
        errors.append({"field": "actor", "detail": f"at most {ACTOR_MAX} printable characters"})
    if errors:
        raise ProblemError(
            422,
            "validation_error",
            "Invalid request",
            "; ".join(f"{e['field']}: {e['detail']}" for e in errors),
            errors=errors,
        )
    return comment, actor


async def resolve(
    pool: asyncpg.Pool,
    break_id: str,
    *,
    comment: str,
    actor: str,
    role: str,
    request_id: str | None,
    now: datetime | None = None,
) -> asyncpg.Record:
    """Close an open break and append who/when/why to its audit trail, in one transaction."""
    comment, actor = check_resolution(comment, actor)
    assert role in ("finance", "operator"), role
    now = now or datetime.now(UTC)
    async with pool.acquire() as conn, conn.transaction():
        row = (
            await conn.fetchrow(
                "SELECT * FROM recon_breaks WHERE break_id = $1 FOR UPDATE", break_id
            )
            if _ID.match(break_id)
            else None
        )
        if row is None:
            raise ProblemError(404, "break_not_found", "Break not found", break_id)
        if row["status"] != "open":
            raise ProblemError(
                409,
                "break_already_closed",
                "Break already closed",
                f"{break_id} was closed ({row['closed_reason']}); nothing was changed",
            )
        await conn.execute(
            """INSERT INTO recon_break_audit (break_id, action, actor, role, comment,
                   request_id, created_at) VALUES ($1, 'resolved', $2, $3, $4, $5, $6)""",
            break_id,
            actor,
            role,
            comment,
            request_id,
            now,
        )
        updated = await conn.fetchrow(
            """UPDATE recon_breaks SET status = 'closed', closed_at = $2,
                   closed_reason = 'resolved by ' || $3
               WHERE break_id = $1 RETURNING *""",
            break_id,
            now,
            actor,
        )
    assert updated is not None
    return updated


def audit_body(row: Any) -> dict[str, Any]:
    return {
        "audit_id": row["audit_id"],
        "break_id": row["break_id"],
        "action": row["action"],
        "actor": row["actor"],
        "role": row["role"],
        "comment": row["comment"],
        "request_id": row["request_id"],
        "created_at": row["created_at"].isoformat(),
    }
