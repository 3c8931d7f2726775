"""The TCC coordinator: drives each payout's global transaction to its end, after any crash.

Every step reads the ``global_tx`` row, talks to its participants, and writes their results in
one transaction whose first statement re-checks the fencing ``epoch`` while taking the row lock
(``UPDATE … WHERE gid = $1 AND epoch = $2``). A worker that lost its lease (another instance
reclaimed the row, an operator or an event decided) finds a newer epoch and stops without
writing. Participant calls are idempotent by (gid, branch), so a crash between a call and the
write of its result only repeats the call. The decision (confirm or cancel) is written before
any phase-2 call and a database trigger refuses to change it afterwards.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import structlog

from services.kit.logging import get_logger
from services.payout.adapters import store
from services.payout.adapters.participants import LedgerClient, Reply, RouterClient, Transient
from services.payout.domain import payouts as rules
from services.payout.domain import tcc
from services.payout.settings import Settings

log = get_logger(__name__)

MAX_STEPS = 16  # a drive never loops forever; the recovery loop picks up what is left


class Fenced(Exception):
    """The global transaction's epoch moved on: someone else owns it now."""


@dataclass(frozen=True)
class Outcome:
    """A bank outcome as the router reports it (submission, inquiry or attempt.resolved)."""

    status: str  # succeeded | failed | submitted | unknown
    attempt_id: str | None = None
    channel_id: str | None = None
    failure_class: str | None = None
    failure_code: str | None = None
    failure_message: str | None = None

    @classmethod
    def from_router(cls, body: dict[str, Any]) -> Outcome:
        status = str(body.get("status", "unknown"))
        if status not in ("succeeded", "failed", "submitted", "unknown"):
            status = "unknown"  # an unrecognised status may have executed: treat as unknown
        return cls(
            status=status,
            attempt_id=_opt(body.get("attempt_id")),
            channel_id=_opt(body.get("channel_id")),
            failure_class=_opt(body.get("failure_class")),
            failure_code=_opt(body.get("failure_code")),
            failure_message=_opt(body.get("failure_message")),
        )


def _opt(value: Any) -> str | None:
    return None if value is None else str(value)


def _now() -> datetime:
    return datetime.now(UTC)


class Coordinator:
    def __init__(
        self,
        pool: asyncpg.Pool,
        ledger: LedgerClient,
        router: RouterClient,
        settings: Settings,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.pool = pool
        self.ledger = ledger
        self.router = router
        self.settings = settings
        self.rng = rng or random.Random()
        self.wake = asyncio.Event()
        self.owner = settings.instance_id

    # ---- leases and fencing -------------------------------------------------------------------

    @asynccontextmanager
    async def _fenced(
        self, gid: str, epoch: int, *, extra_lease_s: float = 0
    ) -> AsyncIterator[asyncpg.Connection]:
        async with self.pool.acquire() as conn, conn.transaction():
            # One round trip: the UPDATE takes the row lock and, under READ COMMITTED, re-checks
            # the epoch against the latest committed row once it has it. No row: fenced out.
            # The lock is held until commit, so every write in the block runs under this epoch.
            owned = await conn.fetchval(
                "UPDATE global_tx SET lease_until = now() + make_interval(secs => $3),"
                " updated_at = now() WHERE gid = $1 AND epoch = $2 RETURNING true",
                gid,
                epoch,
                float(self.settings.tx_lease_s + extra_lease_s),
            )
            if not owned:
                raise Fenced(gid)
            yield conn

    async def _release(
        self, gid: str, epoch: int, *, at: datetime, error: str | None = None, failed: bool = False
    ) -> None:
        async with self._fenced(gid, epoch) as conn:
            await conn.execute(
                """UPDATE global_tx SET lease_owner = NULL, lease_until = NULL,
                       next_attempt_at = $2, last_error = COALESCE($3, last_error),
                       attempts = CASE WHEN $4 THEN attempts + 1 ELSE 0 END
                   WHERE gid = $1""",
                gid,
                at,
                error,
                failed,
            )

    async def _backoff(self, gid: str, epoch: int, attempts: int, error: str) -> None:
        delay_s = tcc.retry_delay_s(
            attempts, self.settings.retry_base_ms, self.settings.retry_max_ms, self.rng
        )
        log.warning("tcc_step_retry", gid=gid, error=error, retry_in_s=round(delay_s, 3))
        await self._release(
            gid, epoch, at=_now() + timedelta(seconds=delay_s), error=error, failed=True
        )

    async def claim_due(self, limit: int) -> list[tuple[str, int]]:
        """Claim due, unleased (or lease-expired) transactions; each claim bumps the epoch."""
        rows = await self.pool.fetch(
            """UPDATE global_tx g SET lease_owner = $1,
                      lease_until = now() + make_interval(secs => $2), epoch = g.epoch + 1
               WHERE g.gid IN (
                   SELECT gid FROM global_tx
                   WHERE state NOT IN ('confirmed', 'cancelled', 'parked')
                     AND next_attempt_at <= now()
                     AND (lease_until IS NULL OR lease_until < now())
                   ORDER BY next_attempt_at LIMIT $3
                   FOR UPDATE SKIP LOCKED)
               RETURNING g.gid, g.epoch""",
            self.owner,
            float(self.settings.tx_lease_s),
            limit,
        )
        return [(r["gid"], r["epoch"]) for r in rows]

    # ---- the driver -----------------------------------------------------------------------------

    async def drive(self, gid: str, epoch: int, *, stop_before_submit: bool = False) -> None:
        """Advance one global transaction as far as it can go now, then release it."""
        try:
            for _ in range(MAX_STEPS):
                tx = await self.pool.fetchrow(
                    """SELECT g.*, p.merchant_id, p.amount_minor, p.fee_minor, p.currency,
                              p.beneficiary_name, p.beneficiary_account, p.beneficiary_bank_code,
                              p.reference, p.status AS payout_status
                       FROM global_tx g JOIN payouts p ON p.id = g.payout_id WHERE g.gid = $1""",
                    gid,
                )
                assert tx is not None, gid
                if tx["correlation_id"]:
                    # Outside the request (recovery loop) this is what carries the merchant's
                    # request id to the router, the bank, the events and the log lines.
                    structlog.contextvars.bind_contextvars(request_id=tx["correlation_id"])
                if tx["epoch"] != epoch or tx["lease_owner"] is None:
                    return  # fenced out, or a step already released it with its next time
                state = tx["state"]
                if state in tcc.FINAL or state == tcc.PARKED:
                    await self._release(gid, epoch, at=_now())
                    return
                if state == tcc.TRIED and stop_before_submit:
                    # The request path holds the tries; the worker does the slow bank part.
                    await self._release(gid, epoch, at=_now())
                    self.wake.set()
                    return
                if state == tcc.TRYING and stop_before_submit:
                    # The tries' results and the hand-over to the worker in one transaction.
                    if await self._step_try(tx, epoch, release_when_tried=True):
                        continue  # decided (cancel): carry on with phase 2 here
                    self.wake.set()
                    return
                more = await self._step(tx, epoch)
                if not more:
                    return
            await self._release(gid, epoch, at=_now())
        except Fenced:
            log.info("tcc_fenced", gid=gid, epoch=epoch)

    async def _step(self, tx: asyncpg.Record, epoch: int) -> bool:
        """One step; True to continue at once, False when the row is released/rescheduled."""
        state = tx["state"]
        if state == tcc.TRYING:
            return await self._step_try(tx, epoch)
        if state == tcc.TRIED:
            # Durable BEFORE the router is called: from here a bank may execute the payout,
            # so only a known outcome (or an operator) can cancel it. The same transaction
            # extends the lease for the submission, then the submission follows at once.
            async with self._fenced(tx["gid"], epoch, extra_lease_s=self._submit_lease_s()) as conn:
                await conn.execute(
                    "UPDATE global_tx SET state = 'submitting' WHERE gid = $1", tx["gid"]
                )
            return await self._step_submit(tx, epoch, lease_extended=True)
        if state == tcc.SUBMITTING:
            return await self._step_submit(tx, epoch)
        if state == tcc.AWAITING:
            return await self._step_inquire(tx, epoch)
        if state == tcc.CONFIRMING:
            return await self._step_phase2(tx, epoch, "confirm")
        if state == tcc.CANCELLING:
            return await self._step_phase2(tx, epoch, "cancel")
        raise AssertionError(f"unexpected global_tx state {state}")

    async def _branches(self, gid: str) -> list[asyncpg.Record]:
        return await self.pool.fetch(
            "SELECT * FROM branches WHERE gid = $1 ORDER BY branch_id", gid
        )

    def _try_body(self, tx: asyncpg.Record, participant: str) -> dict[str, Any]:
        currency = tx["currency"]
        if participant == "ledger":
            merchant_account = store.ledger_merchant_account(tx["merchant_id"], currency)
            legs = [
                {
                    "debit_account_id": merchant_account,
                    "credit_account_id": store.ledger_system_account("settlement", currency),
                    "amount_minor": tx["amount_minor"],
                    "currency": currency,
                }
            ]
            if tx["fee_minor"] > 0:
                legs.append(
                    {
                        "debit_account_id": merchant_account,
                        "credit_account_id": store.ledger_system_account("fee_revenue", currency),
                        "amount_minor": tx["fee_minor"],
                        "currency": currency,
                    }
                )
            return {"legs": legs, "timeout_s": self.settings.hold_timeout_s}
        return {
            "payout_id": tx["payout_id"],
            "merchant_id": tx["merchant_id"],
            "amount_minor": tx["amount_minor"],
            "currency": currency,
            "beneficiary_bank_code": tx["beneficiary_bank_code"],
        }

    def _client(self, participant: str) -> LedgerClient | RouterClient:
        return self.ledger if participant == "ledger" else self.router

    async def _step_try(
        self, tx: asyncpg.Record, epoch: int, *, release_when_tried: bool = False
    ) -> bool:
        """True to continue at once. With ``release_when_tried``, a fully tried transaction is
        also handed back to the recovery loop (due now) and False is returned."""
        gid = tx["gid"]
        if _now() - tx["created_at"] > timedelta(seconds=self.settings.try_timeout_s):
            async with self._fenced(gid, epoch) as conn:
                await self._decide(
                    conn,
                    gid,
                    tcc.CANCEL,
                    reason="try_timeout",
                    failure_code="try_timeout",
                    failure_message="the funds hold or channel reservation did not finish in time",
                )
            return True
        branches = await self._branches(gid)
        tried: list[tuple[asyncpg.Record, Reply]] = []  # answered ok, not yet written
        for branch in branches:
            if branch["status"] != "pending":
                continue
            participant = branch["participant"]
            try:
                reply = await self._client(participant).tcc(
                    "try", gid, branch["branch_id"], self._try_body(tx, participant)
                )
            except Transient as exc:
                if tried:
                    async with self._fenced(gid, epoch) as conn:
                        await self._write_tried(conn, gid, tried)
                await self._backoff(gid, epoch, tx["attempts"], str(exc))
                return False
            if not reply.ok:
                async with self._fenced(gid, epoch) as conn:
                    await self._write_tried(conn, gid, tried)
                    await conn.execute(
                        "UPDATE branches SET status = 'rejected', detail = $3, updated_at = now()"
                        " WHERE gid = $1 AND branch_id = $2",
                        gid,
                        branch["branch_id"],
                        _detail(reply),
                    )
                    await self._decide(
                        conn,
                        gid,
                        tcc.CANCEL,
                        reason=f"{participant}_try_rejected",
                        failure_code=reply.code or f"{participant}_rejected",
                        failure_message=reply.message,
                    )
                return True
            tried.append((branch, reply))
        # Every branch is tried: the ones read as tried plus the ones answered now.
        tried_ids = {b["branch_id"] for b, _ in tried}
        assert all(b["status"] == "tried" or b["branch_id"] in tried_ids for b in branches), gid
        async with self._fenced(gid, epoch) as conn:
            await self._write_tried(conn, gid, tried)
            if release_when_tried:
                await conn.execute(
                    """UPDATE global_tx SET state = 'tried', lease_owner = NULL,
                           lease_until = NULL, next_attempt_at = now(), attempts = 0
                       WHERE gid = $1""",
                    gid,
                )
                return False
            await conn.execute("UPDATE global_tx SET state = 'tried' WHERE gid = $1", gid)
        return True

    async def _write_tried(
        self, conn: asyncpg.Connection, gid: str, tried: list[tuple[asyncpg.Record, Reply]]
    ) -> None:
        """Record the tries answered ok (in the caller's fenced transaction)."""
        if not tried:
            return
        await conn.executemany(
            "UPDATE branches SET status = 'tried', detail = $3, updated_at = now()"
            " WHERE gid = $1 AND branch_id = $2 AND status = 'pending'",
            [(gid, branch["branch_id"], _detail(reply)) for branch, reply in tried],
        )
        for branch, reply in tried:
            if branch["participant"] == "router" and reply.body.get("channel_id"):
                await conn.execute(
                    "UPDATE global_tx SET channel_id = $2 WHERE gid = $1",
                    gid,
                    str(reply.body["channel_id"]),
                )

    def _submission_body(self, tx: asyncpg.Record) -> dict[str, Any]:
        return {
            "payout_id": tx["payout_id"],
            "gid": tx["gid"],
            "merchant_id": tx["merchant_id"],
            "amount_minor": tx["amount_minor"],
            "currency": tx["currency"],
            "beneficiary": {
                "name": tx["beneficiary_name"],
                "account_number": tx["beneficiary_account"],
                "bank_code": tx["beneficiary_bank_code"],
            },
            "reference": tx["reference"],
        }

    def _submit_lease_s(self) -> float:
        return self.settings.submission_timeout_ms / 1000

    async def _step_submit(
        self, tx: asyncpg.Record, epoch: int, *, lease_extended: bool = False
    ) -> bool:
        gid = tx["gid"]
        if not lease_extended:
            # Keep the lease for as long as the router may take (banks, fallbacks).
            async with self._fenced(gid, epoch, extra_lease_s=self._submit_lease_s()):
                pass
        try:
            reply = await self.router.submit(self._submission_body(tx))
        except Transient as exc:
            # The bank may have executed: never cancel here, resubmit (idempotent by payout_id).
            await self._backoff(gid, epoch, tx["attempts"], str(exc))
            return False
        if not reply.ok:
            if reply.status == 422:
                # Refused before any bank call: definitely not executed.
                async with self._fenced(gid, epoch) as conn:
                    await self._decide(
                        conn,
                        gid,
                        tcc.CANCEL,
                        reason="submission_refused",
                        failure_code=reply.code or "submission_refused",
                        failure_message=reply.message,
                    )
                return True
            log.error("submission_unexpected_answer", gid=gid, status=reply.status, code=reply.code)
            await self._backoff(gid, epoch, tx["attempts"], f"router answered {reply.status}")
            return False
        async with self._fenced(gid, epoch) as conn:
            await self.apply_outcome(conn, tx["gid"], Outcome.from_router(reply.body), _now())
        return True

    async def _step_inquire(self, tx: asyncpg.Record, epoch: int) -> bool:
        gid = tx["gid"]
        now = _now()
        if tx["resolve_by"] is not None and now >= tx["resolve_by"]:
            async with self._fenced(gid, epoch) as conn:
                await self._park(conn, tx, now)
            return True
        outcome: Outcome | None = None
        try:
            reply = await self.router.inquire(tx["payout_id"])
            if reply.ok:
                outcome = Outcome.from_router(reply.body)
            else:
                log.warning("inquiry_refused", gid=gid, status=reply.status, code=reply.code)
        except Transient as exc:
            log.warning("inquiry_failed", gid=gid, error=str(exc))
        async with self._fenced(gid, epoch) as conn:
            await conn.execute("UPDATE global_tx SET inquiries = inquiries + 1 WHERE gid = $1", gid)
            if outcome is not None and outcome.status in ("succeeded", "failed"):
                await self.apply_outcome(conn, gid, outcome, _now())
                return True
            if outcome is not None:
                await self.apply_outcome(conn, gid, outcome, _now())
            else:
                resolve_by = tx["resolve_by"] or now + timedelta(
                    seconds=self.settings.resolution_window_s
                )
                at = tcc.next_inquiry_at(
                    tx["inquiries"] + 1, self.settings.inquiry_schedule_s, now, resolve_by
                )
                await conn.execute(
                    "UPDATE global_tx SET next_attempt_at = $2, lease_owner = NULL,"
                    " lease_until = NULL WHERE gid = $1",
                    gid,
                    at,
                )
        return outcome is not None and outcome.status in ("succeeded", "failed")

    async def _park(self, conn: asyncpg.Connection, tx: asyncpg.Record, now: datetime) -> None:
        """The resolution window ended without an outcome: an operator must decide. The holds
        stay in place — the money may have left."""
        await conn.execute(
            "UPDATE global_tx SET state = 'parked', lease_owner = NULL, lease_until = NULL"
            " WHERE gid = $1",
            tx["gid"],
        )
        await store.change_status(
            conn, tx["payout_id"], rules.MANUAL_REVIEW, now=now, reason="resolution_window_ended"
        )
        await store.raise_alert(
            conn,
            code="payout_outcome_unresolved",
            severity="high",
            message=f"payout {tx['payout_id']} has no bank outcome after the resolution window",
            payout_id=tx["payout_id"],
            now=now,
        )

    async def _step_phase2(self, tx: asyncpg.Record, epoch: int, action: str) -> bool:
        gid = tx["gid"]
        done_status = "confirmed" if action == "confirm" else "cancelled"
        done: list[str] = []  # branch ids answered done, not yet written
        for branch in await self._branches(gid):
            if branch["status"] == done_status:
                continue
            if action == "confirm":
                assert branch["status"] == "tried", (gid, branch["branch_id"], branch["status"])
            try:
                reply = await self._client(branch["participant"]).tcc(
                    action, gid, branch["branch_id"], {}
                )
            except Transient as exc:
                await self._write_done(gid, epoch, done, done_status)
                await self._backoff(gid, epoch, tx["attempts"], str(exc))
                return False
            if not _phase2_done(action, reply):
                # A participant refusing phase 2 breaks the protocol; keep retrying, loudly.
                log.error(
                    "tcc_phase2_refused",
                    gid=gid,
                    branch_id=branch["branch_id"],
                    action=action,
                    status=reply.status,
                    code=reply.code,
                )
                await self._write_done(gid, epoch, done, done_status)
                async with self._fenced(gid, epoch) as conn:
                    # One alert per transaction: an operator must look (e.g. an expired hold).
                    if not await conn.fetchval(
                        "SELECT 1 FROM alerts WHERE payout_id = $1 AND code = 'tcc_phase2_refused'",
                        tx["payout_id"],
                    ):
                        await store.raise_alert(
                            conn,
                            code="tcc_phase2_refused",
                            severity="critical",
                            message=f"{branch['participant']} refused {action} of {gid}/"
                            f"{branch['branch_id']}: {reply.status} {reply.code}",
                            payout_id=tx["payout_id"],
                            now=_now(),
                        )
                await self._backoff(gid, epoch, tx["attempts"], f"{action} refused: {reply.code}")
                return False
            done.append(branch["branch_id"])
        if action == "confirm" and tx["return_requested"]:
            reply_or_error = await self._post_return(tx)
            if reply_or_error is not None:
                await self._write_done(gid, epoch, done, done_status)
                await self._backoff(gid, epoch, tx["attempts"], reply_or_error)
                return False
        async with self._fenced(gid, epoch) as conn:
            now = _now()
            await self._mark_done(conn, gid, done, done_status)
            await conn.execute(
                "UPDATE global_tx SET state = $2, lease_owner = NULL, lease_until = NULL"
                " WHERE gid = $1",
                gid,
                done_status,
            )
            await self._finish_payout(conn, tx, action, now)
        return False

    async def _write_done(self, gid: str, epoch: int, done: list[str], done_status: str) -> None:
        """Record the branches already through phase 2 before giving the row back."""
        if done:
            async with self._fenced(gid, epoch) as conn:
                await self._mark_done(conn, gid, done, done_status)

    @staticmethod
    async def _mark_done(
        conn: asyncpg.Connection, gid: str, done: list[str], done_status: str
    ) -> None:
        if done:
            await conn.execute(
                "UPDATE branches SET status = $3, updated_at = now()"
                " WHERE gid = $1 AND branch_id = ANY($2::text[])",
                gid,
                done,
                done_status,
            )

    async def _finish_payout(
        self, conn: asyncpg.Connection, tx: asyncpg.Record, action: str, now: datetime
    ) -> None:
        payout_id = tx["payout_id"]
        current = await conn.fetchval("SELECT status FROM payouts WHERE id = $1", payout_id)
        if action == "confirm":
            if current != rules.PAID:
                await store.change_status(
                    conn,
                    payout_id,
                    rules.PAID,
                    now=now,
                    reason=tx["decision_reason"],
                    channel=tx["channel_id"],
                    attempt_id=tx["attempt_id"],
                )
            if tx["return_requested"]:
                await store.change_status(
                    conn, payout_id, rules.RETURNED, now=now, reason="returned_by_bank"
                )
            return
        target = rules.CANCELED if tx["decision_reason"] == "merchant_canceled" else rules.FAILED
        if current == target:
            return
        await store.change_status(
            conn,
            payout_id,
            target,
            now=now,
            reason=tx["decision_reason"],
            failure_code=tx["failure_code"] if target == rules.FAILED else None,
            failure_message=tx["failure_message"] if target == rules.FAILED else None,
            channel=tx["channel_id"],
            attempt_id=tx["attempt_id"],
        )

    async def _post_return(self, tx: asyncpg.Record) -> str | None:
        """A returned payout: a new reversing transfer, settlement → merchant (the fee stays)."""
        return await post_return_transfer(self.ledger, tx["payout_id"], tx["merchant_id"], tx)

    # ---- decisions ------------------------------------------------------------------------------

    async def _decide(
        self,
        conn: asyncpg.Connection,
        gid: str,
        decision: str,
        *,
        reason: str,
        failure_code: str | None = None,
        failure_message: str | None = None,
    ) -> None:
        state = tcc.CONFIRMING if decision == tcc.CONFIRM else tcc.CANCELLING
        await conn.execute(
            """UPDATE global_tx SET decision = $2, state = $3, decision_reason = $4,
                   decided_at = now(), failure_code = $5, failure_message = $6,
                   next_attempt_at = now(), attempts = 0
               WHERE gid = $1""",
            gid,
            decision,
            state,
            reason,
            failure_code,
            failure_message,
        )
        log.info(
            "tcc_decided", gid=gid, decision=decision, reason=reason, failure_code=failure_code
        )

    async def apply_outcome(
        self, conn: asyncpg.Connection, gid: str, outcome: Outcome, now: datetime
    ) -> None:
        """Record a router outcome for a transaction in submitting/awaiting/parked state (the
        caller holds the row lock)."""
        tx = await conn.fetchrow("SELECT * FROM global_tx WHERE gid = $1", gid)
        assert tx is not None
        if tx["decision"] is not None:
            return
        await conn.execute(
            "UPDATE global_tx SET attempt_id = COALESCE($2, attempt_id),"
            " channel_id = COALESCE($3, channel_id) WHERE gid = $1",
            gid,
            outcome.attempt_id,
            outcome.channel_id,
        )
        if outcome.status == "succeeded":
            await self._decide(conn, gid, tcc.CONFIRM, reason="bank_succeeded")
            return
        if outcome.status == "failed":
            await self._decide(
                conn,
                gid,
                tcc.CANCEL,
                reason=outcome.failure_class or "bank_failed",
                failure_code=outcome.failure_code or "bank_failed",
                failure_message=outcome.failure_message,
            )
            return
        if tx["state"] == tcc.PARKED:
            return  # still unknown: the operator owns it now
        resolve_by = tx["resolve_by"] or now + timedelta(seconds=self.settings.resolution_window_s)
        at = tcc.next_inquiry_at(tx["inquiries"], self.settings.inquiry_schedule_s, now, resolve_by)
        await conn.execute(
            """UPDATE global_tx SET state = 'awaiting', resolve_by = $2, next_attempt_at = $3,
                   lease_owner = NULL, lease_until = NULL WHERE gid = $1""",
            gid,
            resolve_by,
            at,
        )
        payout_status = await conn.fetchval(
            "SELECT status FROM payouts WHERE id = $1", tx["payout_id"]
        )
        if outcome.status == "submitted" and payout_status == rules.PROCESSING:
            await store.change_status(
                conn,
                tx["payout_id"],
                rules.SUBMITTED,
                now=now,
                reason="bank_accepted",
                channel=outcome.channel_id,
                attempt_id=outcome.attempt_id,
            )
        elif outcome.channel_id or outcome.attempt_id:
            await conn.execute(
                "UPDATE payouts SET channel = COALESCE($2, channel),"
                " attempt_id = COALESCE($3, attempt_id) WHERE id = $1",
                tx["payout_id"],
                outcome.channel_id,
                outcome.attempt_id,
            )

    async def decide_from_outside(
        self,
        conn: asyncpg.Connection,
        payout_id: str,
        decision: str,
        *,
        reason: str,
        allowed_states: frozenset[str],
        failure_code: str | None = None,
        failure_message: str | None = None,
        return_requested: bool = False,
    ) -> str:
        """An event, an operator or the merchant decides. Bumps the epoch (fencing out any
        worker mid-step) and hands the transaction back to the recovery loop.

        Returns ``decided``, ``same`` (already decided the same way), ``conflict`` (decided the
        other way — never flipped) or ``not_allowed`` (state does not accept this decision).
        """
        tx = await conn.fetchrow(
            "SELECT * FROM global_tx WHERE payout_id = $1 FOR UPDATE", payout_id
        )
        if tx is None:
            return "not_allowed"
        if tx["decision"] is not None:
            if return_requested and tx["decision"] == tcc.CONFIRM and tx["state"] != tcc.CONFIRMED:
                await conn.execute(
                    "UPDATE global_tx SET return_requested = true WHERE gid = $1", tx["gid"]
                )
            return "same" if tx["decision"] == decision else "conflict"
        if tx["state"] not in allowed_states:
            return "not_allowed"
        await conn.execute(
            """UPDATE global_tx SET epoch = epoch + 1, lease_owner = NULL, lease_until = NULL,
                   return_requested = return_requested OR $2 WHERE gid = $1""",
            tx["gid"],
            return_requested,
        )
        await self._decide(
            conn,
            tx["gid"],
            decision,
            reason=reason,
            failure_code=failure_code,
            failure_message=failure_message,
        )
        self.wake.set()
        return "decided"

    # ---- the recovery loop ----------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Claim due transactions (``FOR UPDATE SKIP LOCKED``), drive them concurrently."""
        running: set[asyncio.Task[None]] = set()
        interval_s = self.settings.recovery_interval_ms / 1000
        try:
            while not stop.is_set():
                room = self.settings.recovery_concurrency - len(running)
                claimed: list[tuple[str, int]] = []
                if room > 0:
                    try:
                        claimed = await self.claim_due(min(room, self.settings.recovery_batch_max))
                    except Exception:  # worker loop boundary: log, never die silently
                        log.exception("recovery_claim_failed")
                for gid, epoch in claimed:
                    task = asyncio.create_task(self._drive_logged(gid, epoch))
                    running.add(task)
                    task.add_done_callback(running.discard)
                if claimed and len(claimed) == room:
                    await asyncio.sleep(0)
                    continue
                self.wake.clear()
                waiters = [asyncio.ensure_future(self.wake.wait())]
                try:
                    await asyncio.wait(waiters, timeout=interval_s)
                finally:
                    for waiter in waiters:
                        waiter.cancel()
        finally:
            if running:
                await asyncio.wait(running, timeout=10)
                for task in running:
                    task.cancel()

    async def _drive_logged(self, gid: str, epoch: int) -> None:
        try:
            await self.drive(gid, epoch)
        except asyncio.CancelledError:
            raise
        except Exception:  # loop boundary: the lease expires and another claim retries
            log.exception("tcc_drive_failed", gid=gid)


def _detail(reply: Reply) -> str:
    import json

    return json.dumps({"status": reply.status, "body": reply.body})


def _phase2_done(action: str, reply: Reply) -> bool:
    if reply.ok:
        return True
    if action == "cancel":
        # Cancel after a rejected try or after an earlier cancel: nothing is (or stays) held.
        return reply.code in ("tcc_try_rejected", "tcc_branch_cancelled")
    return False


async def post_return_transfer(
    ledger: LedgerClient, payout_id: str, merchant_id: str, tx: asyncpg.Record
) -> str | None:
    """None when the reversing transfer exists (it is idempotent by id); else an error text."""
    currency = tx["currency"]
    try:
        reply = await ledger.transfer(
            f"ret_{payout_id}",
            store.ledger_system_account("settlement", currency),
            store.ledger_merchant_account(merchant_id, currency),
            tx["amount_minor"],
            currency,
        )
    except Transient as exc:
        return str(exc)
    if not transfer_accepted(reply):
        return f"return transfer refused: {reply.status} {reply.body}"
    return None


def transfer_accepted(reply: Reply) -> bool:
    """The ledger answers one result per transfer; an idempotent repeat counts as accepted."""
    if not reply.ok:
        return False
    results = reply.body.get("results")
    if isinstance(results, list) and results:
        first = results[0]
        if isinstance(first, dict):
            status = str(first.get("status", "")).lower()
            if first.get("error") or first.get("code"):
                code = str(first.get("code") or first.get("error"))
                return code in ("exists", "already_exists", "duplicate")
            return status not in ("rejected", "failed", "error")
    return True
