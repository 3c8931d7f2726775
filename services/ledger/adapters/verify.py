"""Recompute the chain over every transfer in commit order and check the derived state:
counters equal the fold of transfers, and every currency's debits equal its credits."""

from __future__ import annotations

from dataclasses import dataclass, field

import asyncpg

from services.ledger.adapters.store import TRANSFER_COLUMNS
from services.ledger.domain.chain import GENESIS_HASH, transfer_hash

CHUNK_ROWS = 5_000
MISMATCHES_MAX = 20


@dataclass
class VerifyReport:
    ok: bool = True
    transfers_checked: int = 0
    head_seq: int = 0
    head_hash: str = GENESIS_HASH.hex()
    first_bad_seq: int | None = None
    first_bad_id: str | None = None
    reason: str | None = None
    counters_ok: bool = True
    counter_mismatches: list[str] = field(default_factory=list)
    conservation_ok: bool = True
    unbalanced_currencies: list[str] = field(default_factory=list)


_FOLD_MISMATCHES = """
WITH legs AS (
    SELECT debit_account_id AS id, pending_delta_minor AS dp, posted_delta_minor AS dpo,
           0::bigint AS cp, 0::bigint AS cpo FROM transfers
    UNION ALL
    SELECT credit_account_id, 0, 0, pending_delta_minor, posted_delta_minor FROM transfers),
fold AS (SELECT id, sum(dp) AS dp, sum(dpo) AS dpo, sum(cp) AS cp, sum(cpo) AS cpo
         FROM legs GROUP BY id)
SELECT a.id FROM accounts a LEFT JOIN fold f ON f.id = a.id
WHERE (a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted)
      IS DISTINCT FROM (COALESCE(f.dp, 0), COALESCE(f.dpo, 0), COALESCE(f.cp, 0),
                        COALESCE(f.cpo, 0))
ORDER BY a.id LIMIT $1
"""

_UNBALANCED = """
SELECT currency FROM accounts GROUP BY currency
HAVING sum(debits_posted) <> sum(credits_posted) OR sum(debits_pending) <> sum(credits_pending)
ORDER BY currency
"""


async def verify(
    conn: asyncpg.Connection,
    *,
    chunk_rows: int = CHUNK_ROWS,
    since: tuple[int, bytes] | None = None,
) -> VerifyReport:
    """One consistent snapshot (repeatable read) for the chain and the counters.

    ``since`` = (seq, hash) of a transfer an earlier run verified: the chain is then checked
    from there on only (``transfers_checked`` counts the new ones), after making sure that
    transfer still carries the hash it had. Counters and conservation are always checked
    over the whole table. An edit to an older transfer that leaves its hash and the fold
    unchanged is found by the next full run (``since=None``)."""
    report = VerifyReport()
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        prev_hash, last_seq = GENESIS_HASH, 0
        if since is not None and since[0] > 0:
            last_seq, prev_hash = since
            anchor = await conn.fetchrow("SELECT id, hash FROM transfers WHERE seq = $1", last_seq)
            if anchor is None or bytes(anchor["hash"]) != prev_hash:
                report.ok = False
                report.first_bad_seq = last_seq
                report.first_bad_id = anchor["id"] if anchor is not None else None
                report.reason = (
                    "the last verified transfer is gone"
                    if anchor is None
                    else "the last verified transfer's hash changed"
                )
        while report.first_bad_seq is None:
            rows = await conn.fetch(
                f"SELECT {TRANSFER_COLUMNS} FROM transfers WHERE seq > $1 ORDER BY seq LIMIT $2",
                last_seq,
                chunk_rows,
            )
            if not rows:
                break
            for r in rows:
                reason = _check(r, prev_hash, last_seq)
                if reason is not None:
                    report.ok = False
                    report.first_bad_seq, report.first_bad_id = r["seq"], r["id"]
                    report.reason = reason
                    break
                prev_hash, last_seq = bytes(r["hash"]), r["seq"]
                report.transfers_checked += 1
        report.head_seq, report.head_hash = last_seq, prev_hash.hex()
        mismatches = await conn.fetch(_FOLD_MISMATCHES, MISMATCHES_MAX)
        report.counter_mismatches = [m["id"] for m in mismatches]
        report.counters_ok = not mismatches
        report.unbalanced_currencies = [r["currency"] for r in await conn.fetch(_UNBALANCED)]
        report.conservation_ok = not report.unbalanced_currencies
    report.ok = report.ok and report.counters_ok and report.conservation_ok
    return report


def _check(r: asyncpg.Record, prev_hash: bytes, last_seq: int) -> str | None:
    if r["seq"] != last_seq + 1:
        return f"sequence gap: expected {last_seq + 1}, found {r['seq']} (a transfer is missing)"
    if bytes(r["prev_hash"]) != prev_hash:
        return "prev_hash does not match the predecessor's hash"
    expected = transfer_hash(
        prev_hash,
        seq=r["seq"],
        id=r["id"],
        kind=r["kind"],
        debit_account_id=r["debit_account_id"],
        credit_account_id=r["credit_account_id"],
        amount_minor=r["amount_minor"],
        currency=r["currency"],
        pending_delta_minor=r["pending_delta_minor"],
        posted_delta_minor=r["posted_delta_minor"],
        pending_id=r["pending_id"],
        timeout_s=r["timeout_s"],
        expires_at=r["expires_at"],
        code=r["code"],
        body_hash=bytes(r["body_hash"]),
        created_at=r["created_at"],
    )
    if expected != bytes(r["hash"]):
        return "hash does not match the transfer's contents"
    return None
