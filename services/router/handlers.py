"""Router use cases: the quota TCC participant, submission with safe fallback, inquiry,
bank callbacks, recovery, probing, kill switches. One transaction per state change; every
attempt row is committed *before* the bank is called.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import asyncpg
import msgspec
import structlog

from services.kit import outbox
from services.kit.errors import ProblemError
from services.kit.logging import get_logger
from services.router.adapters import store
from services.router.adapters.config_files import LiveConfig
from services.router.adapters.connectors.banksim import transformers
from services.router.adapters.connectors.banksim.client import Timed
from services.router.domain.attempts import (
    FINAL,
    UNRESOLVED,
    AttemptStatus,
    BankOutcome,
    after_inquiry,
    inquiry_delay_s,
    may_transition,
    status_for,
    wire_status,
)
from services.router.domain.decision import Decision, LiveView, PayoutFacts, decide
from services.router.domain.health import BreakerState, HealthBoard, OutcomeClass, Transition

log = get_logger(__name__)
PRODUCER = "router"
SENDING_LEASE_MARGIN_S = 2.0
PROBES_PER_ROUND_MAX = 16  # the rest wait for the next round (hundreds of channels at start-up)


class BankPort(Protocol):
    async def send(
        self,
        bank: str,
        *,
        reference: str,
        amount_minor: int,
        currency: str,
        beneficiary: dict[str, Any],
        callback_url: str | None,
        request_id: str | None = None,
    ) -> Timed: ...

    async def inquire(self, bank: str, reference: str, request_id: str | None = None) -> Timed: ...


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


@dataclass(frozen=True)
class Tuning:
    """The handler-facing subset of Settings (so tests build a service without env)."""

    instance_id: str
    callback_base_url: str | None
    fallback_attempts_max: int = 3
    bank_timeout_s: float = 5.0
    inquiry_base_s: float = 1.0
    inquiry_max_s: float = 300.0
    inquiry_batch_max: int = 50
    not_found_grace_s: float = 30.0


@dataclass
class KillSwitches:
    submit: frozenset[str] = frozenset()
    inquire: frozenset[str] = frozenset()

    @classmethod
    def from_rows(cls, rows: list[Any]) -> KillSwitches:
        engaged = [(r["channel_id"], r["operation"]) for r in rows if r["engaged"]]
        return cls(
            submit=frozenset(c for c, op in engaged if op == "submit"),
            inquire=frozenset(c for c, op in engaged if op == "inquire"),
        )


@dataclass
class RouterService:
    pool: asyncpg.Pool
    config: LiveConfig
    board: HealthBoard
    bank: BankPort
    tuning: Tuning
    kills: KillSwitches = field(default_factory=KillSwitches)
    monotonic: Callable[[], float] = time.monotonic
    utcnow: Callable[[], datetime] = lambda: datetime.now(UTC)
    rng: random.Random = field(default_factory=random.Random)
    health_wake: asyncio.Event = field(default_factory=asyncio.Event)
    _probing: set[str] = field(default_factory=set)
    _health_version: int = 0

    # ---------------------------------------------------------------- decisions

    def live_views(self, config: LiveConfig | None = None) -> dict[str, LiveView]:
        channels = (config or self.config).channels
        return self.board.live((ch.id for ch in channels), self.monotonic())

    def _decide(
        self,
        facts: PayoutFacts,
        quota_used: dict[str, int],
        *,
        attempted: set[str] | frozenset[str] = frozenset(),
        skip: set[str] | frozenset[str] = frozenset(),
        reserved_channel: str | None = None,
        config: LiveConfig | None = None,
    ) -> Decision:
        config = config or self.config
        live = self.live_views(config)
        for channel_id in skip:  # its breaker filled up between decision and permit
            if channel_id in live:
                live[channel_id] = live[channel_id]._replace(breaker_allows=False)
        decision = decide(
            facts,
            config.channels,
            live,
            quota_used,
            config.rules,
            killed=self.kills.submit,
            attempted=attempted,
            reserved_channel=reserved_channel,
        )
        self.health_wake.set()
        return decision

    # ---------------------------------------------------------------- TCC participant

    async def tcc_try(self, gid: str, branch_id: str, req: Any) -> tuple[int, dict[str, Any]]:
        async with self.pool.acquire() as conn, conn.transaction():
            await store.lock_branch(conn, gid, branch_id)
            stored = await store.barrier(conn, gid, branch_id)
            if "try" in stored:
                return stored["try"]
            if "cancel" in stored:
                answer = _problem(
                    409, "tcc_branch_cancelled", "Branch cancelled", "cancel arrived before try"
                )
                await store.put_barrier(conn, gid, branch_id, "try", 409, answer)
                return 409, answer
            now = self.utcnow()
            today = now.date()
            facts = PayoutFacts(
                req.merchant_id, req.amount_minor, req.currency, req.beneficiary_bank_code, now
            )
            used = await store.quota_used(conn, today)
            decision_id = new_id("dec")
            config = self.config  # one config for the whole use case, even across a reload
            while True:
                decision = self._decide(facts, used, config=config)
                chosen = decision.chosen_id
                if chosen is None:
                    break
                quota = config.by_id[chosen].daily_quota_minor
                if await store.reserve_quota(conn, chosen, today, req.amount_minor, quota):
                    break
                used[chosen] = quota  # lost a race for the last of its quota: decide again
            await store.insert_decision(
                conn,
                decision_id,
                req.payout_id,
                "tcc_try",
                chosen,
                decision.reason,
                _facts(facts),
                [c.to_dict() for c in decision.candidates],
            )
            if chosen is None:
                answer = _problem(
                    422,
                    "no_eligible_channel",
                    "No eligible channel",
                    "every channel was excluded; errors[] says why",
                    errors=decision.exclusions(),
                )
                await store.put_barrier(conn, gid, branch_id, "try", 422, answer)
                return 422, answer
            await store.insert_reservation(
                conn,
                gid=gid,
                branch_id=branch_id,
                payout_id=req.payout_id,
                channel_id=chosen,
                business_date=today,
                amount_minor=req.amount_minor,
                currency=req.currency,
                decision_id=decision_id,
            )
            answer = {
                "gid": gid,
                "branch_id": branch_id,
                "status": "tried",
                "channel_id": chosen,
                "decision_id": decision_id,
            }
            await store.put_barrier(conn, gid, branch_id, "try", 200, answer)
            return 200, answer

    async def tcc_confirm(self, gid: str, branch_id: str) -> tuple[int, dict[str, Any]]:
        async with self.pool.acquire() as conn, conn.transaction():
            await store.lock_branch(conn, gid, branch_id)
            stored = await store.barrier(conn, gid, branch_id)
            if "confirm" in stored:
                return stored["confirm"]
            if "cancel" in stored:
                raise ProblemError(409, "tcc_branch_cancelled", "Branch cancelled")
            if "try" not in stored:
                raise ProblemError(409, "tcc_branch_not_tried", "Branch not tried")
            if stored["try"][0] != 200:
                raise ProblemError(409, "tcc_try_rejected", "Try was rejected")
            res = await store.reservation(conn, gid, branch_id)
            assert res is not None and res["status"] == "tried", (gid, branch_id)
            await store.release_quota(
                conn, res["channel_id"], res["business_date"], res["amount_minor"], consume=True
            )
            await store.set_reservation(conn, gid, branch_id, status="confirmed")
            answer = {
                "gid": gid,
                "branch_id": branch_id,
                "status": "confirmed",
                "channel_id": res["channel_id"],
                "decision_id": res["decision_id"],
            }
            await store.put_barrier(conn, gid, branch_id, "confirm", 200, answer)
            return 200, answer

    async def tcc_cancel(self, gid: str, branch_id: str) -> tuple[int, dict[str, Any]]:
        async with self.pool.acquire() as conn, conn.transaction():
            await store.lock_branch(conn, gid, branch_id)
            stored = await store.barrier(conn, gid, branch_id)
            if "cancel" in stored:
                return stored["cancel"]
            if "confirm" in stored:
                raise ProblemError(409, "tcc_branch_confirmed", "Branch already confirmed")
            answer: dict[str, Any] = {
                "gid": gid,
                "branch_id": branch_id,
                "status": "cancelled",
                "channel_id": None,
                "decision_id": None,
            }
            if "try" in stored and stored["try"][0] == 200:
                res = await store.reservation(conn, gid, branch_id)
                assert res is not None and res["status"] == "tried", (gid, branch_id)
                await store.release_quota(
                    conn,
                    res["channel_id"],
                    res["business_date"],
                    res["amount_minor"],
                    consume=False,
                )
                await store.set_reservation(conn, gid, branch_id, status="cancelled")
                answer["channel_id"] = res["channel_id"]
                answer["decision_id"] = res["decision_id"]
            # Otherwise: empty rollback (or a rejected try): the row is the tombstone.
            await store.put_barrier(conn, gid, branch_id, "cancel", 200, answer)
            return 200, answer

    # ---------------------------------------------------------------- submissions

    async def submit(self, req: Any, request_id: str | None = None) -> dict[str, Any]:
        beneficiary = msgspec.to_builtins(req.beneficiary)
        request_hash = hashlib.sha256(
            msgspec.json.encode(
                [req.gid, req.merchant_id, req.amount_minor, req.currency, beneficiary]
            )
        ).hexdigest()
        async with self.pool.acquire() as conn:
            inserted = await store.insert_submission(
                conn,
                payout_id=req.payout_id,
                gid=req.gid,
                merchant_id=req.merchant_id,
                amount_minor=req.amount_minor,
                currency=req.currency,
                beneficiary=beneficiary,
                reference=req.reference,
                request_hash=request_hash,
            )
            if not inserted:
                existing = await store.submission(conn, req.payout_id)
                assert existing is not None
                if existing["request_hash"] != request_hash:
                    raise ProblemError(
                        422,
                        "submission_mismatch",
                        "Submission differs",
                        "this payout_id was submitted with another body",
                    )
        return await self._drive(req.payout_id, request_id)

    async def _drive(self, payout_id: str, request_id: str | None) -> dict[str, Any]:
        """Route and send until an attempt is live, succeeded or the payout has failed."""
        for _ in range(self.tuning.fallback_attempts_max + 1):
            sub = await store.submission(self.pool, payout_id)
            assert sub is not None
            rows = await store.attempts(self.pool, payout_id)
            if sub["closed_at"] is not None or any(
                r["status"] != AttemptStatus.FAILED
                or r["failure_class"] == OutcomeClass.BENEFICIARY_ERROR
                for r in rows
            ):
                if any(r["status"] == AttemptStatus.SENDING for r in rows):
                    await self._await_in_flight(payout_id)
                return await self.view(payout_id)
            if len(rows) >= self.tuning.fallback_attempts_max:
                last = rows[-1]
                async with self.pool.acquire() as conn:
                    await store.close_submission(
                        conn,
                        payout_id,
                        OutcomeClass.DEFINITE_NON_EXECUTION.value,
                        last["failure_code"] or "attempts_exhausted",
                        f"no channel executed it after {len(rows)} attempts",
                    )
                return await self.view(payout_id)
            try:
                await self._one_attempt(sub, rows, request_id)
            except _LostRace:
                await self._await_in_flight(payout_id)
                return await self.view(payout_id)
        return await self.view(payout_id)

    async def _await_in_flight(self, payout_id: str) -> None:
        """Another request is talking to the bank for this payout: wait for it, bounded."""
        deadline = time.monotonic() + self.tuning.bank_timeout_s + SENDING_LEASE_MARGIN_S
        while time.monotonic() < deadline:
            rows = await store.attempts(self.pool, payout_id)
            if not any(r["status"] == AttemptStatus.SENDING for r in rows):
                return
            await asyncio.sleep(0.05)

    async def _one_attempt(self, sub: Any, rows: list[Any], request_id: str | None) -> None:
        payout_id = sub["payout_id"]
        attempted = {r["channel_id"] for r in rows}
        beneficiary = msgspec.json.decode(sub["beneficiary"].encode())
        now = self.utcnow()
        today = now.date()
        facts = PayoutFacts(
            sub["merchant_id"], sub["amount_minor"], sub["currency"], beneficiary["bank_code"], now
        )
        attempt_id = new_id("att")
        decision_id = new_id("dec")
        config = self.config  # one config for the whole use case, even across a reload
        permit = None
        try:
            async with self.pool.acquire() as conn:
                async with conn.transaction():
                    res = await store.open_reservation_for_gid(conn, sub["gid"])
                    used = await store.quota_used(conn, today)
                    reserved_channel = None
                    if res is not None and res["business_date"] == today:
                        reserved_channel = res["channel_id"]
                        # Our own reservation must not count against us on the reserved channel.
                        used[reserved_channel] = used.get(reserved_channel, 0) - res["amount_minor"]
                    skip: set[str] = set()
                    while True:
                        decision = self._decide(
                            facts,
                            used,
                            attempted=attempted,
                            skip=skip,
                            reserved_channel=reserved_channel,
                            config=config,
                        )
                        chosen = decision.chosen_id
                        if chosen is None:
                            break
                        if res is not None and chosen != res["channel_id"]:
                            quota = config.by_id[chosen].daily_quota_minor
                            await store.lock_quota_rows(
                                conn,
                                [(res["channel_id"], res["business_date"]), (chosen, today)],
                            )
                            if not await store.reserve_quota(
                                conn, chosen, today, res["amount_minor"], quota
                            ):
                                used[chosen] = quota  # lost a race for the last of its quota
                                continue
                        permit = self.board.acquire(chosen, self.monotonic())
                        if permit is None:  # the breaker filled up since the decision
                            skip.add(chosen)
                            continue
                        break
                    await store.insert_decision(
                        conn,
                        decision_id,
                        payout_id,
                        "submission",
                        chosen,
                        decision.reason,
                        {**_facts(facts), "attempted": sorted(attempted)},
                        [c.to_dict() for c in decision.candidates],
                    )
                    if chosen is None:
                        await store.close_submission(
                            conn,
                            payout_id,
                            OutcomeClass.DEFINITE_NON_EXECUTION.value,
                            "no_eligible_channel",
                            "; ".join(
                                f"{e['channel_id']}: {e['excluded_by']}"
                                for e in decision.exclusions()
                            )[:1000],
                        )
                        return
                    assert permit is not None
                    channel = config.by_id[chosen]
                    if res is not None and chosen != res["channel_id"]:
                        await store.release_quota(
                            conn,
                            res["channel_id"],
                            res["business_date"],
                            res["amount_minor"],
                            consume=False,
                        )
                        await store.set_reservation(
                            conn, res["gid"], res["branch_id"], channel_id=chosen
                        )
                    try:
                        await store.insert_attempt(
                            conn,
                            now
                            + timedelta(
                                seconds=self.tuning.bank_timeout_s + SENDING_LEASE_MARGIN_S
                            ),
                            attempt_id=attempt_id,
                            payout_id=payout_id,
                            seq=len(rows) + 1,
                            channel_id=chosen,
                            bank=channel.bank,
                            decision_id=decision_id,
                            amount_minor=sub["amount_minor"],
                            currency=sub["currency"],
                            sent_at=now,
                            request_id=request_id,
                        )
                    except (store.LiveAttemptExists, asyncpg.UniqueViolationError):
                        # A concurrent request for the same payout won; ours never reaches a bank.
                        self.board.release(permit, self.monotonic(), None, None)
                        permit = None
                        raise _LostRace() from None
        except BaseException:
            # Never reached the bank: a probe slot taken above must not stay taken.
            if permit is not None:
                self.board.release(permit, self.monotonic(), None, None)
            raise
        # COMMITTED: from here on a crash leaves a `sending` row that recovery inquires about.
        outcome: BankOutcome | None = None
        latency_ms: float | None = None
        try:
            timed = await self.bank.send(
                channel.bank,
                reference=attempt_id,
                amount_minor=sub["amount_minor"],
                currency=sub["currency"],
                beneficiary=beneficiary,
                callback_url=self._callback_url(channel.bank),
                request_id=request_id,
            )
            outcome, latency_ms = timed.outcome, timed.latency_ms
        finally:
            self.board.release(
                permit,
                self.monotonic(),
                None if outcome is None else outcome.outcome,
                latency_ms,
            )
            self.health_wake.set()
        log.info(
            "bank_answered",
            payout_id=payout_id,
            attempt_id=attempt_id,
            channel_id=chosen,
            outcome=outcome.outcome.value,
            failure_code=outcome.failure_code,
            latency_ms=round(latency_ms or 0.0, 1),
        )
        await self._apply(attempt_id, outcome, by="response", from_response=True)

    def _callback_url(self, bank: str) -> str | None:
        base = self.tuning.callback_base_url
        return None if not base else f"{base.rstrip('/')}/v1/bank_callbacks/{bank}"

    async def _apply(
        self, attempt_id: str, outcome: BankOutcome, *, by: str, from_response: bool = False
    ) -> tuple[bool, str]:
        """Move an attempt by a bank's answer and announce outcomes that decide the payout.
        Returns (applied, status now)."""
        now = self.utcnow()
        async with self.pool.acquire() as conn, conn.transaction():
            row = await store.attempt_for_update(conn, attempt_id)
            assert row is not None, attempt_id
            current = AttemptStatus(row["status"])
            new = status_for(outcome.outcome)
            if not may_transition(current, new) or (
                current is AttemptStatus.UNKNOWN and new is AttemptStatus.UNKNOWN
            ):
                if current in FINAL and new in FINAL and new is not current:
                    log.error(
                        "attempt_outcome_contradiction",
                        attempt_id=attempt_id,
                        recorded=current.value,
                        bank_says=new.value,
                        by=by,
                    )
                return False, current.value
            final = new in (AttemptStatus.SUCCEEDED, AttemptStatus.FAILED)
            failure_class = outcome.outcome.value if new is AttemptStatus.FAILED else None
            if new in UNRESOLVED:
                delay = inquiry_delay_s(
                    row["inquiries"],
                    base_s=self.tuning.inquiry_base_s,
                    max_s=self.tuning.inquiry_max_s,
                    jitter=self.rng.random(),
                )
                next_at: datetime | None = now + timedelta(seconds=delay)
            else:
                next_at = None
            version = await store.update_attempt(
                conn,
                attempt_id,
                status=new.value,
                failure_class=failure_class,
                failure_code=outcome.failure_code if new is not AttemptStatus.SUCCEEDED else None,
                failure_message=outcome.failure_message
                if new is not AttemptStatus.SUCCEEDED
                else None,
                bank_reference=outcome.bank_reference,
                fee_minor=outcome.fee_minor,
                executed_at=outcome.executed_at,
                resolved_at=now if final else None,
                resolved_by=by if final else None,
                next_inquiry_at=next_at,
                inquiries_added=1 if by == "inquiry" else 0,
            )
            # Announce every outcome that decides the payout. A synchronous answer is announced
            # too (the caller may have timed out and only see "unknown" on its repeat); a
            # definite refusal answered synchronously is not, because the submission moves on
            # to the next channel and the payout is not decided by it.
            decisive = new is AttemptStatus.SUCCEEDED or (
                new is AttemptStatus.FAILED
                and (not from_response or failure_class == OutcomeClass.BENEFICIARY_ERROR)
            )
            if new is AttemptStatus.FAILED and not from_response:
                # Resolved after the fact: the submission does not fall back on its own any
                # more (the payout has been told it failed); it ends here.
                assert failure_class is not None
                await store.close_submission(
                    conn,
                    row["payout_id"],
                    failure_class,
                    outcome.failure_code or "failed",
                    outcome.failure_message or "the bank reported a failure",
                )
            if final and decisive:
                await outbox.enqueue(
                    conn,
                    event_type="attempt.resolved",
                    producer=PRODUCER,
                    aggregate_id=row["payout_id"],
                    aggregate_version=version,
                    data={
                        "payout_id": row["payout_id"],
                        "attempt_id": attempt_id,
                        "channel_id": row["channel_id"],
                        "bank": row["bank"],
                        "status": new.value,
                        "failure_class": failure_class,
                        "failure_code": outcome.failure_code if failure_class else None,
                        "failure_message": outcome.failure_message if failure_class else None,
                        "bank_reference": outcome.bank_reference or row["bank_reference"],
                        "fee_minor": outcome.fee_minor
                        if outcome.fee_minor is not None
                        else row["fee_minor"],
                    },
                )
            log.info(
                "attempt_moved",
                attempt_id=attempt_id,
                payout_id=row["payout_id"],
                old=current.value,
                new=new.value,
                by=by,
            )
            return True, new.value

    async def view(self, payout_id: str) -> dict[str, Any]:
        sub = await store.submission(self.pool, payout_id)
        if sub is None:
            raise ProblemError(404, "submission_not_found", "Submission not found")
        rows = await store.attempts(self.pool, payout_id)
        attempts = [_attempt_view(r) for r in rows]
        head = rows[-1] if rows else None
        out: dict[str, Any] = {
            "payout_id": payout_id,
            "attempt_id": None if head is None else head["attempt_id"],
            "channel_id": None if head is None else head["channel_id"],
            "bank": None if head is None else head["bank"],
            "failure_class": None,
            "failure_code": None,
            "failure_message": None,
            "fee_minor": None,
            "bank_reference": None,
            "attempts": attempts,
        }
        live = [r for r in rows if r["status"] != AttemptStatus.FAILED]
        if live:
            assert len(live) == 1, payout_id  # the unique index makes this impossible
            row = live[0]
            out.update(
                attempt_id=row["attempt_id"],
                channel_id=row["channel_id"],
                bank=row["bank"],
                status=wire_status(AttemptStatus(row["status"])),
                fee_minor=row["fee_minor"],
                bank_reference=row["bank_reference"],
            )
        elif head is not None and (
            head["failure_class"] == OutcomeClass.BENEFICIARY_ERROR or sub["closed_at"]
        ):
            out.update(
                status="failed",
                failure_class=head["failure_class"],
                failure_code=head["failure_code"],
                failure_message=head["failure_message"],
            )
            if sub["closed_at"] and sub["final_failure_code"] == "no_eligible_channel":
                out.update(
                    failure_code="no_eligible_channel",
                    failure_message=sub["final_failure_message"],
                )
        elif sub["closed_at"]:
            out.update(
                status="failed",
                failure_class=sub["final_failure_class"],
                failure_code=sub["final_failure_code"],
                failure_message=sub["final_failure_message"],
            )
        else:
            out["status"] = "unknown"  # between a definite failure and the next attempt
        return out

    # ---------------------------------------------------------------- inquiry & recovery

    async def inquire_now(self, payout_id: str) -> dict[str, Any]:
        await self.view(payout_id)  # 404 when unknown
        for row in await store.attempts(self.pool, payout_id):
            if row["status"] in UNRESOLVED:
                await self._inquire(row)
        return await self.view(payout_id)

    async def _inquire(self, row: Any) -> None:
        attempt_id = row["attempt_id"]
        status = AttemptStatus(row["status"])
        if row["channel_id"] in self.kills.inquire:
            await store.reschedule(
                self.pool,
                attempt_id,
                self.utcnow() + timedelta(seconds=self.tuning.inquiry_max_s),
                0,
            )
            return
        timed = await self.bank.inquire(row["bank"], attempt_id, row["request_id"])
        sent_age_s = (self.utcnow() - row["sent_at"]).total_seconds()
        established = after_inquiry(
            status,
            timed.outcome,
            sent_age_s=sent_age_s,
            not_found_grace_s=self.tuning.not_found_grace_s,
        )
        if established is not None:
            applied, _ = await self._apply(attempt_id, established, by="inquiry")
            if applied:
                return
        delay = inquiry_delay_s(
            row["inquiries"],
            base_s=self.tuning.inquiry_base_s,
            max_s=self.tuning.inquiry_max_s,
            jitter=self.rng.random(),
        )
        if status is AttemptStatus.SENDING:
            # The request never got an answer (crash mid-call): from now on it is unknown.
            await self._apply(
                attempt_id,
                BankOutcome(
                    OutcomeClass.UNKNOWN_OUTCOME,
                    failure_code="no_answer_recorded",
                    failure_message="the router stopped before the bank answered",
                ),
                by="inquiry",
            )
        else:
            await store.reschedule(
                self.pool, attempt_id, self.utcnow() + timedelta(seconds=delay), 1
            )

    async def recover_once(self) -> int:
        """Inquire about every unresolved attempt whose time has come; returns how many."""
        now = self.utcnow()
        lease = now + timedelta(seconds=self.tuning.bank_timeout_s + SENDING_LEASE_MARGIN_S)
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await store.claim_due(conn, now, lease, self.tuning.inquiry_batch_max)
        if rows:
            results = await asyncio.gather(
                *(self._inquire_in_background(r) for r in rows), return_exceptions=True
            )
            for row, result in zip(rows, results, strict=True):
                if isinstance(result, Exception):
                    # The lease lapses and the next round retries this attempt.
                    with structlog.contextvars.bound_contextvars(request_id=row["request_id"]):
                        log.warning(
                            "inquiry_failed", attempt_id=row["attempt_id"], error=repr(result)
                        )
                elif isinstance(result, BaseException):
                    raise result
        return len(rows)

    async def _inquire_in_background(self, row: Any) -> None:
        """Outside any request, the submission's request id is what ties this inquiry's log
        lines (and the bank's) to the payout. Each gathered call runs in its own task, so the
        binding stays with this attempt."""
        with structlog.contextvars.bound_contextvars(request_id=row["request_id"]):
            await self._inquire(row)

    # ---------------------------------------------------------------- callbacks

    async def bank_callback(self, bank: str, body: Any) -> dict[str, Any]:
        reference = body.get("reference") if isinstance(body, dict) else None
        if not isinstance(reference, str):
            raise ProblemError(422, "validation_error", "Invalid callback", "no reference")
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(
                "SELECT attempt_id, bank FROM attempt WHERE attempt_id = $1", reference
            )
        if row is None or row["bank"] != bank:
            raise ProblemError(404, "attempt_not_found", "Attempt not found")
        outcome = transformers.from_transfer_body(body, reference=reference)
        applied, status = await self._apply(reference, outcome, by="callback")
        return {"attempt_id": reference, "status": status, "applied": applied}

    # ---------------------------------------------------------------- health

    async def probe_once(self) -> int:
        """Probe idle or half-open channels with an inquiry for a reference that cannot
        exist: a clean 404 proves the bank answers, at no risk of moving money."""
        now_s = self.monotonic()
        ids = [
            c.id
            for c in self.config.channels
            if c.enabled and c.id not in self.kills.inquire and c.id not in self._probing
        ]
        due = self.board.idle_channels(ids, now_s)[:PROBES_PER_ROUND_MAX]
        if due:
            await asyncio.gather(*(self._probe(c) for c in due))
        return len(due)

    async def _probe(self, channel_id: str) -> None:
        channel = self.config.by_id.get(channel_id)
        if channel is None:
            return
        permit = self.board.acquire(channel_id, self.monotonic())
        if permit is None:
            return
        self._probing.add(channel_id)
        outcome: OutcomeClass | None = None
        latency_ms: float | None = None
        try:
            timed = await self.bank.inquire(channel.bank, f"probe_{secrets.token_hex(8)}")
            latency_ms = timed.latency_ms
            outcome = (
                OutcomeClass.SUCCEEDED
                if timed.outcome.not_found or timed.outcome.outcome is OutcomeClass.SUCCEEDED
                else OutcomeClass.UNKNOWN_OUTCOME
            )
        finally:
            self._probing.discard(channel_id)
            self.board.release(permit, self.monotonic(), outcome, latency_ms)
            self.health_wake.set()

    async def publish_health_changes(self) -> int:
        transitions = self.board.drain_transitions()
        if not transitions:
            return 0
        now_s = self.monotonic()
        async with self.pool.acquire() as conn, conn.transaction():
            for t in transitions:
                await self._announce(conn, t, now_s)
        return len(transitions)

    async def _announce(self, conn: asyncpg.Connection, t: Transition, now_s: float) -> None:
        health = self.board.get(t.channel_id)
        self._health_version += 1
        p95 = health.window.latency_p95_ms(now_s)
        log.warning(
            "channel_breaker_changed",
            channel_id=t.channel_id,
            old=t.old.value,
            new=t.new.value,
            reason=t.reason,
        )
        await outbox.enqueue(
            conn,
            event_type="channel.health_changed",
            producer=PRODUCER,
            aggregate_id=t.channel_id,
            aggregate_version=self._health_version,
            data={
                "channel_id": t.channel_id,
                "breaker_state": t.new.value,
                "success_rate_ppm": health.window.success_rate_ppm(now_s),
                "latency_ms_p95": None if p95 is None else round(p95, 1),
                "instance_id": self.tuning.instance_id,
                "reason": t.reason,
            },
        )

    def adopt_peer_health(self, data: dict[str, Any]) -> bool:
        """Follow a breaker state another instance announced; never re-announce it."""
        if data.get("instance_id") == self.tuning.instance_id:
            return False
        channel_id = data.get("channel_id")
        try:
            state = BreakerState(str(data.get("breaker_state")))
        except ValueError:
            return False
        if not isinstance(channel_id, str) or channel_id not in self.config.by_id:
            return False
        transition = self.board.adopt(channel_id, state, self.monotonic())
        if transition is not None:
            log.info("channel_breaker_adopted", channel_id=channel_id, state=state.value)
        return transition is not None

    # ---------------------------------------------------------------- operators

    async def refresh_kill_switches(self) -> None:
        self.kills = KillSwitches.from_rows(await store.kill_switches(self.pool))

    async def set_kill_switch(
        self,
        channel_id: str,
        operation: str,
        engaged: bool,
        reason: str,
        actor: str,
        request_id: str | None,
    ) -> dict[str, Any]:
        if channel_id not in self.config.by_id:
            raise ProblemError(404, "channel_not_found", "Channel not found")
        async with self.pool.acquire() as conn, conn.transaction():
            row = await store.set_kill_switch(
                conn, channel_id, operation, engaged, reason, actor, request_id
            )
        log.warning(
            "kill_switch_changed",
            channel_id=channel_id,
            operation=operation,
            engaged=engaged,
            actor=actor,
            reason=reason,
        )
        await self.refresh_kill_switches()
        return dict(row)

    async def channels(self) -> dict[str, Any]:
        today = self.utcnow().date()
        quota = await store.quota_rows(self.pool, today)
        now_s = self.monotonic()
        out = []
        for ch in self.config.channels:
            reserved, consumed = quota.get(ch.id, (0, 0))
            out.append(
                {
                    **ch.describe(),
                    "health": self.board.get(ch.id).snapshot(now_s),
                    "quota": {
                        "business_date": today.isoformat(),
                        "daily_quota_minor": ch.daily_quota_minor,
                        "reserved_minor": reserved,
                        "consumed_minor": consumed,
                    },
                    "kill_switches": {
                        "submit": ch.id in self.kills.submit,
                        "inquire": ch.id in self.kills.inquire,
                    },
                }
            )
        return {"channels": out, "config": self.config.describe()}


class _LostRace(Exception):
    """Another request for the same payout inserted its attempt first."""


def _problem(
    status: int, code: str, title: str, detail: str, *, errors: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return {"status": status, "code": code, "title": title, "detail": detail, "errors": errors}


def _facts(facts: PayoutFacts) -> dict[str, Any]:
    return {
        "merchant_id": facts.merchant_id,
        "amount_minor": facts.amount_minor,
        "currency": facts.currency,
        "beneficiary_bank": facts.beneficiary_bank,
        "at": facts.now.isoformat(),
    }


def _attempt_view(r: Any) -> dict[str, Any]:
    return {
        "attempt_id": r["attempt_id"],
        "seq": r["seq"],
        "channel_id": r["channel_id"],
        "bank": r["bank"],
        "status": r["status"],
        "failure_class": r["failure_class"],
        "failure_code": r["failure_code"],
        "failure_message": r["failure_message"],
        "bank_reference": r["bank_reference"],
        "fee_minor": r["fee_minor"],
        "decision_id": r["decision_id"],
        "sent_at": r["sent_at"],
        "resolved_at": r["resolved_at"],
        "resolved_by": r["resolved_by"],
        "inquiries": r["inquiries"],
    }
