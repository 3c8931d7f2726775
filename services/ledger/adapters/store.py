"""asyncpg access to the ledger tables: what a writer batch reads and appends, history,
balances as of a point, and account creation. Every statement is set-based (``ANY``/``unnest``)
so a batch costs a fixed number of round trips however many transfers it carries."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import asyncpg

from services.ledger.domain.chain import GENESIS_HASH
from services.ledger.domain.model import (
    STATUS_CREATED,
    STATUS_REJECTED,
    Account,
    Barrier,
    Outcome,
    Pending,
    Rejection,
    Stored,
    TransferRow,
)

# One writer per ledger database: the writer holds this session lock for its whole life, so
# its in-memory balances, open pendings, barrier rows and chain head are authoritative (no
# other session changes them). A second instance waits as a standby until the lock frees.
WRITER_LOCK_ID = 0x4C454447  # "LEDG"

ACCOUNT_COLUMNS = (
    "id, currency, code, debits_must_not_exceed_credits, credits_must_not_exceed_debits,"
    " debits_pending, debits_posted, credits_pending, credits_posted, created_at"
)
TRANSFER_COLUMNS = (
    "seq, id, kind, debit_account_id, credit_account_id, amount_minor, currency,"
    " pending_delta_minor, posted_delta_minor, pending_id, timeout_s, expires_at, code,"
    " body_hash, created_at, prev_hash, hash"
)


async def try_lock_writer(conn: asyncpg.Connection) -> bool:
    """Take the session-level writer lock (held for the writer's whole life)."""
    return bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", WRITER_LOCK_ID))


async def chain_head(conn: asyncpg.Connection) -> tuple[int, bytes, datetime | None]:
    """The last committed transfer: (seq, hash, created_at)."""
    row = await conn.fetchrow(
        "SELECT seq, hash, created_at FROM transfers ORDER BY seq DESC LIMIT 1"
    )
    if row is None:
        return 0, GENESIS_HASH, None
    return int(row["seq"]), bytes(row["hash"]), row["created_at"]


async def load_stored(conn: asyncpg.Connection, ids: Sequence[str]) -> dict[str, Stored]:
    if not ids:
        return {}
    rows = await conn.fetch(
        """SELECT id, body_hash, seq, NULL::text AS code FROM transfers WHERE id = ANY($1::text[])
           UNION ALL
           SELECT id, body_hash, NULL, code FROM rejections WHERE id = ANY($1::text[])""",
        list(ids),
    )
    out: dict[str, Stored] = {}
    for r in rows:
        if r["code"] is None:
            outcome = Outcome(STATUS_CREATED, None, int(r["seq"]))
        else:
            outcome = Outcome(STATUS_REJECTED, r["code"], None)
        out[r["id"]] = Stored(bytes(r["body_hash"]), outcome)
    return out


async def load_barriers(
    conn: asyncpg.Connection, keys: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], dict[str, Barrier]]:
    unique = sorted(set(keys))
    out: dict[tuple[str, str], dict[str, Barrier]] = {key: {} for key in unique}
    if not unique:
        return out
    rows = await conn.fetch(
        """SELECT b.gid, b.branch_id, b.op, b.status, b.code, b.transfer_ids, b.body_hash
           FROM tcc_barrier b
           JOIN unnest($1::text[], $2::text[]) AS k(gid, branch_id)
             ON b.gid = k.gid AND b.branch_id = k.branch_id""",
        [k[0] for k in unique],
        [k[1] for k in unique],
    )
    for r in rows:
        barrier = Barrier(
            r["gid"],
            r["branch_id"],
            r["op"],
            r["status"],
            r["code"],
            tuple(r["transfer_ids"]),
            bytes(r["body_hash"]) if r["body_hash"] is not None else None,
        )
        out[(barrier.gid, barrier.branch_id)][barrier.op] = barrier
    return out


async def load_pendings(conn: asyncpg.Connection, ids: Iterable[str]) -> dict[str, Pending]:
    unique = sorted(set(ids))
    if not unique:
        return {}
    rows = await conn.fetch(
        """SELECT p.id, p.kind, p.debit_account_id, p.credit_account_id, p.amount_minor,
                  p.currency, r.kind AS resolved_by
           FROM transfers p LEFT JOIN transfers r ON r.pending_id = p.id
           WHERE p.id = ANY($1::text[])""",
        unique,
    )
    return {
        r["id"]: Pending(
            r["id"],
            r["kind"],
            r["debit_account_id"],
            r["credit_account_id"],
            int(r["amount_minor"]),
            r["currency"],
            r["resolved_by"],
        )
        for r in rows
    }


def _account(r: asyncpg.Record) -> Account:
    return Account(
        r["id"],
        r["currency"],
        r["code"],
        r["debits_must_not_exceed_credits"],
        r["credits_must_not_exceed_debits"],
        int(r["debits_pending"]),
        int(r["debits_posted"]),
        int(r["credits_pending"]),
        int(r["credits_posted"]),
    )


async def load_accounts(conn: asyncpg.Connection, ids: Iterable[str]) -> dict[str, Account]:
    unique = sorted(set(ids))
    if not unique:
        return {}
    rows = await conn.fetch(
        f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = ANY($1::text[])", unique
    )
    return {r["id"]: _account(r) for r in rows}


_APPEND = f"""
WITH appended AS (
    INSERT INTO transfers ({TRANSFER_COLUMNS})
    SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[],
        $6::bigint[], $7::text[], $8::bigint[], $9::bigint[], $10::text[], $11::int[],
        $12::timestamptz[], $13::int[], $14::bytea[], $15::timestamptz[], $16::bytea[],
        $17::bytea[])
    RETURNING 1),
remembered AS (
    INSERT INTO rejections (id, body_hash, code)
    SELECT * FROM unnest($18::text[], $19::bytea[], $20::text[])
    RETURNING 1),
barriers AS (
    INSERT INTO tcc_barrier (gid, branch_id, op, status, code, transfer_ids, body_hash)
    SELECT g, b, o, s, c, string_to_array(t, ' '), h
    FROM unnest($21::text[], $22::text[], $23::text[], $24::text[], $25::text[], $26::text[],
                $27::bytea[]) AS u(g, b, o, s, c, t, h)
    RETURNING 1),
counters AS (
    UPDATE accounts AS a SET
        debits_pending = a.debits_pending + u.dp,
        debits_posted = a.debits_posted + u.dpo,
        credits_pending = a.credits_pending + u.cp,
        credits_posted = a.credits_posted + u.cpo
    FROM unnest($28::text[], $29::bigint[], $30::bigint[], $31::bigint[], $32::bigint[])
         AS u(id, dp, dpo, cp, cpo)
    WHERE a.id = u.id
    RETURNING 1)
SELECT (SELECT count(*) FROM appended), (SELECT count(*) FROM remembered),
       (SELECT count(*) FROM barriers), (SELECT count(*) FROM counters)
"""


async def append(
    conn: asyncpg.Connection,
    rows: Sequence[TransferRow],
    rejections: Sequence[Rejection],
    barriers: Sequence[Barrier],
    deltas: Sequence[tuple[str, int, int, int, int]],
) -> None:
    """Append a whole batch in ONE statement (one round trip): transfers, remembered
    rejections, barrier rows, and one relative counter update per touched account (a hot
    account is written once per batch). Relative updates keep counters right even when the
    next batch's statement runs before this one's COMMIT and waits on its row locks."""
    columns: list[list[Any]] = (
        [list(c) for c in zip(*rows, strict=True)] if rows else [[] for _ in range(17)]
    )
    ordered = sorted(deltas)
    counts = await conn.fetchrow(
        _APPEND,
        *columns,
        [r.id for r in rejections],
        [r.body_hash for r in rejections],
        [r.code for r in rejections],
        [b.gid for b in barriers],
        [b.branch_id for b in barriers],
        [b.op for b in barriers],
        [b.status for b in barriers],
        [b.code for b in barriers],
        # Ids match ^[A-Za-z0-9_.:-]+$, so a space-joined list round-trips exactly.
        [" ".join(b.transfer_ids) for b in barriers],
        [b.body_hash for b in barriers],
        [d[0] for d in ordered],
        [d[1] for d in ordered],
        [d[2] for d in ordered],
        [d[3] for d in ordered],
        [d[4] for d in ordered],
    )
    assert counts is not None
    assert tuple(counts) == (len(rows), len(rejections), len(barriers), len(ordered)), (
        "the batch was not appended whole"
    )


async def insert_account(
    conn: asyncpg.Connection,
    account_id: str,
    currency: str,
    code: int,
    debits_must_not_exceed_credits: bool,
    credits_must_not_exceed_debits: bool,
) -> tuple[bool, asyncpg.Record]:
    """Create the account if new; (created?, the stored row) either way."""
    row = await conn.fetchrow(
        f"""INSERT INTO accounts (id, currency, code, debits_must_not_exceed_credits,
                                  credits_must_not_exceed_debits)
            VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING
            RETURNING {ACCOUNT_COLUMNS}""",
        account_id,
        currency,
        code,
        debits_must_not_exceed_credits,
        credits_must_not_exceed_debits,
    )
    if row is not None:
        return True, row
    existing = await fetch_account(conn, account_id)
    assert existing is not None, "accounts are never deleted"
    return False, existing


async def fetch_account(conn: asyncpg.Connection, account_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = $1", account_id)


async def fetch_transfer(conn: asyncpg.Connection, transfer_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {TRANSFER_COLUMNS} FROM transfers WHERE id = $1", transfer_id
    )


async def fetch_rejection(conn: asyncpg.Connection, transfer_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT id, code, created_at FROM rejections WHERE id = $1", transfer_id
    )


async def history(
    conn: asyncpg.Connection, account_id: str, after_seq: int, limit: int
) -> list[asyncpg.Record]:
    """An account's transfers in commit order after ``after_seq`` (keyset pagination)."""
    return await conn.fetch(
        f"""SELECT {TRANSFER_COLUMNS} FROM (
                (SELECT * FROM transfers WHERE debit_account_id = $1 AND seq > $2
                 ORDER BY seq LIMIT $3)
                UNION ALL
                (SELECT * FROM transfers WHERE credit_account_id = $1 AND seq > $2
                 ORDER BY seq LIMIT $3)) AS t
            ORDER BY seq LIMIT $3""",
        account_id,
        after_seq,
        limit,
    )


async def seq_at(conn: asyncpg.Connection, moment: datetime) -> int:
    """The last sequence number committed at or before ``moment``: a binary search over the
    primary key, valid because seq has no gaps and created_at never decreases along it."""
    low, high = 0, await head_seq(conn)
    while low < high:
        middle = (low + high + 1) // 2
        created_at = await conn.fetchval("SELECT created_at FROM transfers WHERE seq = $1", middle)
        assert created_at is not None, "seq has no gaps"
        if created_at <= moment:
            low = middle
        else:
            high = middle - 1
    return low


async def head_seq(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT COALESCE(max(seq), 0) FROM transfers"))


async def counters_at(
    conn: asyncpg.Connection, account_id: str, as_of_seq: int
) -> tuple[int, int, int, int]:
    """The four counters folded from the account's transfers up to ``as_of_seq``."""
    row = await conn.fetchrow(
        """SELECT
             (SELECT COALESCE(sum(pending_delta_minor), 0) FROM transfers
               WHERE debit_account_id = $1 AND seq <= $2) AS dp,
             (SELECT COALESCE(sum(posted_delta_minor), 0) FROM transfers
               WHERE debit_account_id = $1 AND seq <= $2) AS dpo,
             (SELECT COALESCE(sum(pending_delta_minor), 0) FROM transfers
               WHERE credit_account_id = $1 AND seq <= $2) AS cp,
             (SELECT COALESCE(sum(posted_delta_minor), 0) FROM transfers
               WHERE credit_account_id = $1 AND seq <= $2) AS cpo""",
        account_id,
        as_of_seq,
    )
    assert row is not None
    return int(row["dp"]), int(row["dpo"]), int(row["cp"]), int(row["cpo"])


async def expired_pendings(
    conn: asyncpg.Connection, now: datetime, after: datetime | None, limit: int
) -> list[asyncpg.Record]:
    """Pendings past their expiry (and after ``after``) that nothing has resolved yet."""
    return await conn.fetch(
        """SELECT p.id, p.expires_at FROM transfers p
           WHERE p.kind = 'pending' AND p.expires_at IS NOT NULL AND p.expires_at <= $1
             AND ($2::timestamptz IS NULL OR p.expires_at >= $2)
             AND NOT EXISTS (SELECT 1 FROM transfers r WHERE r.pending_id = p.id)
           ORDER BY p.expires_at LIMIT $3""",
        now,
        after,
        limit,
    )


def record_dict(row: asyncpg.Record) -> dict[str, Any]:
    return dict(row.items())
