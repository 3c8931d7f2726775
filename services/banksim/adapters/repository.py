"""asyncpg access to the bank simulator's tables. Driver exceptions stay in here."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import asyncpg

from services.banksim.domain.statements.model import Movement


@dataclass(frozen=True)
class TransferRow:
    id: int
    bank: str
    reference: str
    bank_reference: str
    amount_minor: int
    currency: str
    beneficiary_name: str
    beneficiary_account: str
    request_hash: str
    status: str
    failure_code: str | None
    fee_minor: int
    received_at: datetime
    executed_at: datetime | None
    value_date: date | None
    callback_url: str | None

    @classmethod
    def of(cls, record: asyncpg.Record) -> TransferRow:
        return cls(
            id=record["id"],
            bank=record["bank"],
            reference=record["reference"],
            bank_reference=record["bank_reference"],
            amount_minor=record["amount_minor"],
            currency=record["currency"],
            beneficiary_name=record["beneficiary_name"],
            beneficiary_account=record["beneficiary_account"],
            request_hash=record["request_hash"],
            status=record["status"],
            failure_code=record["failure_code"],
            fee_minor=record["fee_minor"],
            received_at=record["received_at"],
            executed_at=record["executed_at"],
            value_date=record["value_date"],
            callback_url=record["callback_url"],
        )


@dataclass(frozen=True)
class NewTransfer:
    """A transfer as received: recorded ``processing`` with the outcome drawn for it."""

    bank: str
    reference: str
    bank_reference: str
    amount_minor: int
    currency: str
    beneficiary_name: str
    beneficiary_account: str
    beneficiary_bank_code: str
    request_hash: str
    received_at: datetime
    execute_at: datetime
    plan_status: str  # paid | accepted | rejected
    plan_failure_code: str | None
    plan_fee_minor: int
    complete_at: datetime | None
    final_status: str | None
    final_failure_code: str | None
    callback_url: str | None


class DailyLimitExceeded(Exception):
    """Raised inside the recording transaction so the journal row rolls back with it."""


_COLUMNS = (
    "id, bank, reference, bank_reference, amount_minor, currency, beneficiary_name,"
    " beneficiary_account, request_hash, status, failure_code, fee_minor, received_at,"
    " executed_at, value_date, callback_url"
)


class Repository:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def get(self, bank: str, reference: str) -> TransferRow | None:
        record = await self.pool.fetchrow(
            f"SELECT {_COLUMNS} FROM bank_transfer WHERE bank = $1 AND reference = $2",
            bank,
            reference,
        )
        return None if record is None else TransferRow.of(record)

    async def receive(
        self, new: NewTransfer, *, business_date: date, daily_limit_minor: int
    ) -> TransferRow | None:
        """Record a transfer at receipt, as ``processing`` with its drawn outcome (the plan), and
        count a planned execution against the daily limit, in one transaction.

        Returns the new row, or None when the reference already exists (the caller reads the
        existing row). Raises ``DailyLimitExceeded`` (nothing written) when over the limit.
        """
        async with self.pool.acquire() as conn, conn.transaction():
            record = await conn.fetchrow(
                f"""INSERT INTO bank_transfer (bank, reference, bank_reference, amount_minor,
                        currency, beneficiary_name, beneficiary_account, beneficiary_bank_code,
                        request_hash, status, fee_minor, received_at, complete_at,
                        final_status, final_failure_code, callback_url, plan_status,
                        plan_failure_code, plan_fee_minor, execute_at)
                    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'processing', 0, $10, $11, $12,
                            $13, $14, $15, $16, $17, $18)
                    ON CONFLICT (bank, reference) DO NOTHING
                    RETURNING {_COLUMNS}""",
                new.bank,
                new.reference,
                new.bank_reference,
                new.amount_minor,
                new.currency,
                new.beneficiary_name,
                new.beneficiary_account,
                new.beneficiary_bank_code,
                new.request_hash,
                new.received_at,
                new.complete_at,
                new.final_status,
                new.final_failure_code,
                new.callback_url,
                new.plan_status,
                new.plan_failure_code,
                new.plan_fee_minor,
                new.execute_at,
            )
            if record is None:
                return None
            if new.plan_status in ("paid", "accepted"):
                used = await conn.fetchval(
                    """INSERT INTO bank_daily_usage AS u (bank, currency, business_date, used_minor)
                       SELECT $1::text, $2::text, $3::date, $4::bigint
                       WHERE $4::bigint <= $5::bigint
                       ON CONFLICT (bank, currency, business_date)
                       DO UPDATE SET used_minor = u.used_minor + EXCLUDED.used_minor
                       WHERE u.used_minor + EXCLUDED.used_minor <= $5::bigint
                       RETURNING used_minor""",
                    new.bank,
                    new.currency,
                    business_date,
                    new.amount_minor,
                    daily_limit_minor,
                )
                if used is None:
                    raise DailyLimitExceeded
            return TransferRow.of(record)

    async def finish(self, transfer_id: int, now: datetime, value_date_of: Any) -> TransferRow:
        """End processing: move the row to its planned outcome, once. A row some other path
        already finished is returned as it is (the conditional UPDATE is the guard).

        ``value_date_of(bank, now)`` gives the value date of a payment executed now.
        """
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                """SELECT bank, plan_status FROM bank_transfer
                   WHERE id = $1 AND status = 'processing' FOR UPDATE""",
                transfer_id,
            )
            if row is not None:
                paid = row["plan_status"] == "paid"
                record = await conn.fetchrow(
                    f"""UPDATE bank_transfer SET status = plan_status,
                            failure_code = plan_failure_code,
                            fee_minor = CASE WHEN plan_status = 'rejected' THEN 0
                                             ELSE plan_fee_minor END,
                            executed_at = $2, value_date = $3
                        WHERE id = $1 RETURNING {_COLUMNS}""",
                    transfer_id,
                    now if paid else None,
                    value_date_of(row["bank"], now) if paid else None,
                )
                return TransferRow.of(record)
            record = await conn.fetchrow(
                f"SELECT {_COLUMNS} FROM bank_transfer WHERE id = $1", transfer_id
            )
            assert record is not None, transfer_id
            return TransferRow.of(record)

    async def processing_due(self, now: datetime, limit: int) -> list[int]:
        """Ids of transfers whose processing time has passed but which are still processing
        (their in-process execution was lost, e.g. to a restart)."""
        records = await self.pool.fetch(
            """SELECT id FROM bank_transfer WHERE status = 'processing' AND execute_at <= $1
               ORDER BY execute_at LIMIT $2""",
            now,
            limit,
        )
        return [r["id"] for r in records]

    async def journal(
        self, bank: str, *, after: int, limit: int, status: str | None
    ) -> list[TransferRow]:
        """Recorded transfers oldest first; those still processing only when asked for."""
        records = await self.pool.fetch(
            f"""SELECT {_COLUMNS} FROM bank_transfer
                WHERE bank = $1 AND id > $2
                  AND (($3::text IS NULL AND status <> 'processing') OR status = $3)
                ORDER BY id LIMIT $4""",
            bank,
            after,
            status,
            limit,
        )
        return [TransferRow.of(r) for r in records]

    # --- asynchronous completions and callbacks -------------------------------------------

    async def complete_due(
        self, now: datetime, limit: int, value_date_of: Any
    ) -> list[TransferRow]:
        """Move due ``accepted`` transfers to their drawn outcome; callbacks become pending.

        ``value_date_of(bank, now)`` gives the value date of a payment completed now.
        """
        async with self.pool.acquire() as conn, conn.transaction():
            due = await conn.fetch(
                """SELECT id, bank, currency, amount_minor, received_at, final_status,
                          final_failure_code
                   FROM bank_transfer
                   WHERE status = 'accepted' AND complete_at <= $1
                   ORDER BY complete_at LIMIT $2 FOR UPDATE SKIP LOCKED""",
                now,
                limit,
            )
            done: list[TransferRow] = []
            for row in due:
                paid = row["final_status"] == "paid"
                record = await conn.fetchrow(
                    f"""UPDATE bank_transfer SET status = $2, failure_code = $3,
                            executed_at = $4, value_date = $5,
                            fee_minor = CASE WHEN $2 = 'paid' THEN fee_minor ELSE 0 END,
                            callback_state = CASE WHEN callback_url IS NULL THEN 'none'
                                                  ELSE 'pending' END,
                            callback_next_at = $1
                        WHERE id = $6 RETURNING {_COLUMNS}""",
                    now,
                    row["final_status"],
                    None if paid else row["final_failure_code"],
                    now if paid else None,
                    value_date_of(row["bank"], now) if paid else None,
                    row["id"],
                )
                if not paid:
                    # A failed payment no longer counts against the day it was accepted on.
                    await conn.execute(
                        """UPDATE bank_daily_usage SET used_minor = used_minor - $4
                           WHERE bank = $1 AND currency = $2 AND business_date = $3""",
                        row["bank"],
                        row["currency"],
                        row["received_at"].date(),
                        row["amount_minor"],
                    )
                done.append(TransferRow.of(record))
            return done

    async def claim_callbacks(
        self, now: datetime, limit: int, lease: timedelta
    ) -> list[tuple[TransferRow, int]]:
        """Lease pending callbacks (so a second instance does not send them too)."""
        async with self.pool.acquire() as conn, conn.transaction():
            records = await conn.fetch(
                f"""UPDATE bank_transfer SET callback_next_at = $1::timestamptz + $3::interval
                    WHERE id IN (SELECT id FROM bank_transfer
                                 WHERE callback_state = 'pending' AND callback_next_at <= $1
                                 ORDER BY callback_next_at LIMIT $2 FOR UPDATE SKIP LOCKED)
                    RETURNING {_COLUMNS}, callback_attempts""",
                now,
                limit,
                lease,
            )
            return [(TransferRow.of(r), r["callback_attempts"]) for r in records]

    async def callback_delivered(self, transfer_id: int) -> None:
        await self.pool.execute(
            """UPDATE bank_transfer SET callback_state = 'delivered',
                   callback_attempts = callback_attempts + 1, callback_next_at = NULL
               WHERE id = $1""",
            transfer_id,
        )

    async def callback_failed(self, transfer_id: int, *, retry_at: datetime | None) -> None:
        await self.pool.execute(
            """UPDATE bank_transfer SET callback_attempts = callback_attempts + 1,
                   callback_state = CASE WHEN $2::timestamptz IS NULL THEN 'failed'
                                         ELSE 'pending' END,
                   callback_next_at = $2
               WHERE id = $1""",
            transfer_id,
            retry_at,
        )

    # --- behaviour ------------------------------------------------------------------------

    async def behaviours(self) -> dict[str, tuple[str, dict[str, Any]]]:
        records = await self.pool.fetch("SELECT bank, mode, overrides FROM bank_behaviour")
        return {r["bank"]: (r["mode"], json.loads(r["overrides"])) for r in records}

    async def save_behaviour(self, bank: str, mode: str, overrides: dict[str, Any]) -> None:
        await self.pool.execute(
            """INSERT INTO bank_behaviour (bank, mode, overrides, updated_at)
               VALUES ($1, $2, $3::jsonb, now())
               ON CONFLICT (bank) DO UPDATE SET mode = EXCLUDED.mode,
                   overrides = EXCLUDED.overrides, updated_at = now()""",
            bank,
            mode,
            json.dumps(overrides),
        )

    # --- statements -----------------------------------------------------------------------

    async def movements_before(self, bank: str, currency: str, day: date) -> int:
        """Net effect on the account of everything booked before ``day`` (signed minor)."""
        value = await self.pool.fetchval(
            """SELECT COALESCE((SELECT sum(amount_minor + fee_minor) FROM bank_transfer
                                WHERE bank = $1 AND currency = $2 AND status = 'paid'
                                  AND value_date < $3), 0)
                    - COALESCE((SELECT sum(amount_minor) FROM bank_return
                                WHERE bank = $1 AND currency = $2 AND business_date < $3), 0)""",
            bank,
            currency,
            day,
        )
        return -int(value)

    async def movements_on(self, bank: str, currency: str, day: date) -> list[Movement]:
        paid = await self.pool.fetch(
            """SELECT reference, bank_reference, amount_minor, fee_minor, executed_at, value_date,
                      beneficiary_name
               FROM bank_transfer
               WHERE bank = $1 AND currency = $2 AND status = 'paid' AND value_date = $3
               ORDER BY executed_at, id""",
            bank,
            currency,
            day,
        )
        returns = await self.pool.fetch(
            """SELECT r.reference, t.bank_reference, r.amount_minor, r.reason_code,
                      t.beneficiary_name
               FROM bank_return r JOIN bank_transfer t USING (bank, reference)
               WHERE r.bank = $1 AND r.currency = $2 AND r.business_date = $3 ORDER BY r.id""",
            bank,
            currency,
            day,
        )
        out = [
            Movement(
                kind="payout",
                reference=r["reference"],
                bank_reference=r["bank_reference"],
                amount_minor=r["amount_minor"],
                fee_minor=r["fee_minor"],
                booking_date=day,
                value_date=r["value_date"],
                counterparty=r["beneficiary_name"],
            )
            for r in paid
        ]
        out.extend(
            Movement(
                kind="return",
                reference=r["reference"],
                bank_reference=r["bank_reference"] + "R",
                amount_minor=r["amount_minor"],
                fee_minor=0,
                booking_date=day,
                value_date=day,
                counterparty=r["beneficiary_name"],
                return_reason=r["reason_code"],
            )
            for r in returns
        )
        return out

    async def returnable(
        self, bank: str, currency: str, before: date, reference: str | None
    ) -> asyncpg.Record | None:
        """A paid payout not yet returned, valued on or before ``before``: one from an earlier day
        when there is one, else one from that day."""
        return await self.pool.fetchrow(
            """SELECT t.reference, t.bank_reference, t.amount_minor, t.beneficiary_name
               FROM bank_transfer t
               WHERE t.bank = $1 AND t.currency = $2 AND t.status = 'paid'
                 AND t.value_date <= $3 AND ($4::text IS NULL OR t.reference = $4)
                 AND NOT EXISTS (SELECT 1 FROM bank_return r
                                 WHERE r.bank = t.bank AND r.reference = t.reference)
               ORDER BY (t.value_date = $3), t.value_date DESC, t.id DESC LIMIT 1""",
            bank,
            currency,
            before,
            reference,
        )

    async def book_return(
        self, bank: str, currency: str, reference: str, amount_minor: int, day: date, reason: str
    ) -> None:
        await self.pool.execute(
            """INSERT INTO bank_return (bank, reference, currency, amount_minor, business_date,
                                        reason_code)
               VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (bank, reference) DO NOTHING""",
            bank,
            reference,
            currency,
            amount_minor,
            day,
            reason,
        )

    async def next_statement_generation(
        self,
        bank: str,
        currency: str,
        day: date,
        trigger: str,
        file_name_of: Any,
        answer_key_name: str | None,
    ) -> tuple[int, str]:
        """Reserve the next generation number for (bank, currency, day); returns it and the
        file name ``file_name_of(generation)``. Retries on a concurrent reservation."""
        for _ in range(5):
            generation = await self.pool.fetchval(
                """SELECT COALESCE(max(generation), 0) + 1 FROM bank_statement
                   WHERE bank = $1 AND currency = $2 AND business_date = $3""",
                bank,
                currency,
                day,
            )
            name = file_name_of(generation)
            try:
                await self.pool.execute(
                    """INSERT INTO bank_statement (bank, currency, business_date, generation,
                                                   trigger, file_name, answer_key_name)
                       VALUES ($1, $2, $3, $4, $5, $6, $7)""",
                    bank,
                    currency,
                    day,
                    generation,
                    trigger,
                    name,
                    answer_key_name,
                )
            except asyncpg.UniqueViolationError:
                continue
            return generation, name
        raise RuntimeError("could not reserve a statement generation after 5 tries")

    async def has_eod_statement(self, bank: str, currency: str, day: date) -> bool:
        return bool(
            await self.pool.fetchval(
                """SELECT 1 FROM bank_statement WHERE bank = $1 AND currency = $2
                   AND business_date = $3 AND trigger = 'eod'""",
                bank,
                currency,
                day,
            )
        )
