"""asyncpg queries for the router's tables. Each function runs on the caller's connection, so
the use case decides the transaction; driver exceptions a caller expects are translated here."""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any

import asyncpg

ATTEMPT_COLUMNS = """attempt_id, payout_id, seq, channel_id, bank, decision_id, amount_minor,
    currency, status, failure_class, failure_code, failure_message, bank_reference, fee_minor,
    executed_at, sent_at, resolved_at, resolved_by, inquiries, next_inquiry_at, version,
    request_id"""


class LiveAttemptExists(Exception):
    """The partial unique index refused a second live attempt for the payout."""


async def lock_branch(conn: asyncpg.Connection, gid: str, branch_id: str) -> None:
    """Serialise try/confirm/cancel of one branch (held until the transaction ends)."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 7))", f"{gid}\x1f{branch_id}"
    )


async def barrier(conn: asyncpg.Connection, gid: str, branch_id: str) -> dict[str, Any]:
    rows = await conn.fetch(
        "SELECT op, status, answer FROM tcc_barrier WHERE gid = $1 AND branch_id = $2",
        gid,
        branch_id,
    )
    return {r["op"]: (r["status"], json.loads(r["answer"])) for r in rows}


async def put_barrier(
    conn: asyncpg.Connection, gid: str, branch_id: str, op: str, status: int, answer: Any
) -> None:
    await conn.execute(
        "INSERT INTO tcc_barrier(gid, branch_id, op, status, answer) VALUES ($1, $2, $3, $4, $5)",
        gid,
        branch_id,
        op,
        status,
        json.dumps(answer, default=str),
    )


async def quota_used(conn: asyncpg.Connection, business_date: date) -> dict[str, int]:
    rows = await conn.fetch(
        "SELECT channel_id, reserved_minor + consumed_minor AS used FROM channel_quota"
        " WHERE business_date = $1",
        business_date,
    )
    return {r["channel_id"]: int(r["used"]) for r in rows}


async def quota_rows(conn: asyncpg.Connection, business_date: date) -> dict[str, tuple[int, int]]:
    rows = await conn.fetch(
        "SELECT channel_id, reserved_minor, consumed_minor FROM channel_quota"
        " WHERE business_date = $1",
        business_date,
    )
    return {r["channel_id"]: (int(r["reserved_minor"]), int(r["consumed_minor"])) for r in rows}


async def reserve_quota(
    conn: asyncpg.Connection, channel_id: str, business_date: date, amount: int, quota: int
) -> bool:
    """Add ``amount`` to the channel's reservations unless that would pass its quota."""
    if amount > quota:
        return False
    row = await conn.fetchval(
        """INSERT INTO channel_quota(channel_id, business_date, reserved_minor)
           VALUES ($1, $2, $3)
           ON CONFLICT (channel_id, business_date) DO UPDATE
              SET reserved_minor = channel_quota.reserved_minor + EXCLUDED.reserved_minor
              WHERE channel_quota.reserved_minor + channel_quota.consumed_minor
                    + EXCLUDED.reserved_minor <= $4
           RETURNING 1""",
        channel_id,
        business_date,
        amount,
        quota,
    )
    return row is not None


async def lock_quota_rows(conn: asyncpg.Connection, keys: list[tuple[str, date]]) -> None:
    """Lock quota rows in one global order, so two payouts falling back across the same two
    channels in opposite directions cannot deadlock."""
    ordered = sorted(set(keys))
    await conn.execute(
        """SELECT 1 FROM channel_quota q
           JOIN unnest($1::text[], $2::date[]) AS k(channel_id, business_date)
             ON q.channel_id = k.channel_id AND q.business_date = k.business_date
           ORDER BY q.channel_id, q.business_date FOR UPDATE OF q""",
        [k[0] for k in ordered],
        [k[1] for k in ordered],
    )


async def release_quota(
    conn: asyncpg.Connection, channel_id: str, business_date: date, amount: int, *, consume: bool
) -> None:
    status = await conn.execute(
        """UPDATE channel_quota SET reserved_minor = reserved_minor - $3,
                  consumed_minor = consumed_minor + CASE WHEN $4 THEN $3 ELSE 0 END
           WHERE channel_id = $1 AND business_date = $2""",
        channel_id,
        business_date,
        amount,
        consume,
    )
    assert status == "UPDATE 1", f"quota row missing for {channel_id} {business_date}"


async def reservation(conn: asyncpg.Connection, gid: str, branch_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT * FROM quota_reservation WHERE gid = $1 AND branch_id = $2 FOR UPDATE",
        gid,
        branch_id,
    )


async def open_reservation_for_gid(conn: asyncpg.Connection, gid: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT * FROM quota_reservation WHERE gid = $1 AND status = 'tried'"
        " ORDER BY created_at LIMIT 1 FOR UPDATE",
        gid,
    )


async def insert_reservation(conn: asyncpg.Connection, **values: Any) -> None:
    await conn.execute(
        """INSERT INTO quota_reservation(gid, branch_id, payout_id, channel_id, business_date,
               amount_minor, currency, status, decision_id)
           VALUES ($1, $2, $3, $4, $5, $6, $7, 'tried', $8)""",
        values["gid"],
        values["branch_id"],
        values["payout_id"],
        values["channel_id"],
        values["business_date"],
        values["amount_minor"],
        values["currency"],
        values["decision_id"],
    )


async def set_reservation(
    conn: asyncpg.Connection,
    gid: str,
    branch_id: str,
    *,
    status: str | None = None,
    channel_id: str | None = None,
) -> None:
    await conn.execute(
        """UPDATE quota_reservation SET status = COALESCE($3, status),
               channel_id = COALESCE($4, channel_id), updated_at = now()
           WHERE gid = $1 AND branch_id = $2""",
        gid,
        branch_id,
        status,
        channel_id,
    )


async def insert_decision(
    conn: asyncpg.Connection,
    decision_id: str,
    payout_id: str,
    purpose: str,
    chosen: str | None,
    reason: str,
    facts: dict[str, Any],
    candidates: list[dict[str, Any]],
) -> None:
    await conn.execute(
        """INSERT INTO decision(decision_id, payout_id, purpose, chosen, reason, facts, candidates)
           VALUES ($1, $2, $3, $4, $5, $6, $7)""",
        decision_id,
        payout_id,
        purpose,
        chosen,
        reason,
        json.dumps(facts, default=str),
        json.dumps(candidates),
    )


async def decision(conn: asyncpg.Connection | asyncpg.Pool, key: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """SELECT d.*, a.attempt_id FROM decision d
           LEFT JOIN attempt a ON a.decision_id = d.decision_id
           WHERE a.attempt_id = $1 OR d.decision_id = $1 LIMIT 1""",
        key,
    )


async def insert_submission(conn: asyncpg.Connection, **v: Any) -> bool:
    inserted = await conn.fetchval(
        """INSERT INTO submission(payout_id, gid, merchant_id, amount_minor, currency,
               beneficiary, reference, request_hash)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
           ON CONFLICT (payout_id) DO NOTHING RETURNING 1""",
        v["payout_id"],
        v["gid"],
        v["merchant_id"],
        v["amount_minor"],
        v["currency"],
        json.dumps(v["beneficiary"]),
        v["reference"],
        v["request_hash"],
    )
    return inserted is not None


async def submission(
    conn: asyncpg.Connection | asyncpg.Pool, payout_id: str
) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM submission WHERE payout_id = $1", payout_id)


async def close_submission(
    conn: asyncpg.Connection, payout_id: str, failure_class: str, code: str, message: str
) -> None:
    await conn.execute(
        """UPDATE submission SET final_failure_class = $2, final_failure_code = $3,
               final_failure_message = $4, closed_at = now()
           WHERE payout_id = $1 AND closed_at IS NULL""",
        payout_id,
        failure_class,
        code,
        message,
    )


async def attempts(conn: asyncpg.Connection | asyncpg.Pool, payout_id: str) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            f"SELECT {ATTEMPT_COLUMNS} FROM attempt WHERE payout_id = $1 ORDER BY seq", payout_id
        )
    )


async def attempt_for_update(conn: asyncpg.Connection, attempt_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {ATTEMPT_COLUMNS} FROM attempt WHERE attempt_id = $1 FOR UPDATE", attempt_id
    )


async def insert_attempt(conn: asyncpg.Connection, next_inquiry_at: datetime, **v: Any) -> None:
    try:
        await conn.execute(
            """INSERT INTO attempt(attempt_id, payout_id, seq, channel_id, bank, decision_id,
                   amount_minor, currency, status, sent_at, next_inquiry_at, request_id)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'sending', $9, $10, $11)""",
            v["attempt_id"],
            v["payout_id"],
            v["seq"],
            v["channel_id"],
            v["bank"],
            v["decision_id"],
            v["amount_minor"],
            v["currency"],
            v["sent_at"],
            next_inquiry_at,
            v.get("request_id"),
        )
    except asyncpg.UniqueViolationError as exc:
        raise LiveAttemptExists(str(exc)) from None


async def update_attempt(
    conn: asyncpg.Connection,
    attempt_id: str,
    *,
    status: str,
    failure_class: str | None,
    failure_code: str | None,
    failure_message: str | None,
    bank_reference: str | None,
    fee_minor: int | None,
    executed_at: datetime | None,
    resolved_at: datetime | None,
    resolved_by: str | None,
    next_inquiry_at: datetime | None,
    inquiries_added: int,
) -> int:
    version = await conn.fetchval(
        """UPDATE attempt SET status = $2, failure_class = $3, failure_code = $4,
               failure_message = $5, bank_reference = COALESCE($6, bank_reference),
               fee_minor = COALESCE($7, fee_minor), executed_at = COALESCE($8, executed_at),
               resolved_at = $9, resolved_by = $10, next_inquiry_at = $11,
               inquiries = inquiries + $12, version = version + 1, updated_at = now()
           WHERE attempt_id = $1 RETURNING version""",
        attempt_id,
        status,
        failure_class,
        failure_code,
        failure_message,
        bank_reference,
        fee_minor,
        executed_at,
        resolved_at,
        resolved_by,
        next_inquiry_at,
        inquiries_added,
    )
    assert version is not None, attempt_id
    return int(version)


async def reschedule(
    conn: asyncpg.Connection | asyncpg.Pool, attempt_id: str, at: datetime, inquiries_added: int
) -> None:
    await conn.execute(
        "UPDATE attempt SET next_inquiry_at = $2, inquiries = inquiries + $3, updated_at = now()"
        " WHERE attempt_id = $1 AND status IN ('sending', 'submitted', 'unknown')",
        attempt_id,
        at,
        inquiries_added,
    )


async def claim_due(
    conn: asyncpg.Connection, now: datetime, lease_until: datetime, limit: int
) -> list[asyncpg.Record]:
    """Unresolved attempts whose next inquiry is due, leased so other instances skip them."""
    return list(
        await conn.fetch(
            f"""UPDATE attempt SET next_inquiry_at = $2
                WHERE attempt_id IN (
                    SELECT attempt_id FROM attempt
                    WHERE status IN ('sending', 'submitted', 'unknown') AND next_inquiry_at <= $1
                    ORDER BY next_inquiry_at LIMIT $3 FOR UPDATE SKIP LOCKED)
                RETURNING {ATTEMPT_COLUMNS}""",
            now,
            lease_until,
            limit,
        )
    )


async def kill_switches(conn: asyncpg.Connection | asyncpg.Pool) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            "SELECT channel_id, operation, engaged, reason, actor, changed_at FROM kill_switch"
        )
    )


async def set_kill_switch(
    conn: asyncpg.Connection,
    channel_id: str,
    operation: str,
    engaged: bool,
    reason: str,
    actor: str,
    request_id: str | None,
) -> asyncpg.Record:
    row = await conn.fetchrow(
        """INSERT INTO kill_switch(channel_id, operation, engaged, reason, actor)
           VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (channel_id, operation) DO UPDATE SET engaged = EXCLUDED.engaged,
               reason = EXCLUDED.reason, actor = EXCLUDED.actor, changed_at = now()
           RETURNING channel_id, operation, engaged, reason, actor, changed_at""",
        channel_id,
        operation,
        engaged,
        reason,
        actor,
    )
    await conn.execute(
        """INSERT INTO kill_switch_audit(channel_id, operation, engaged, reason, actor, request_id)
           VALUES ($1, $2, $3, $4, $5, $6)""",
        channel_id,
        operation,
        engaged,
        reason,
        actor,
        request_id,
    )
    assert row is not None
    return row


async def kill_switch_audit(
    conn: asyncpg.Connection | asyncpg.Pool, channel_id: str, limit: int = 100
) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            """SELECT channel_id, operation, engaged, reason, actor, request_id, changed_at
               FROM kill_switch_audit WHERE channel_id = $1 ORDER BY id DESC LIMIT $2""",
            channel_id,
            limit,
        )
    )
