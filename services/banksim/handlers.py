"""Use cases of the bank simulator: execute, inquire, change behaviour, complete, call back."""

from __future__ import annotations

import asyncio
import hashlib
import random
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from contracts.banksim import (
    BankSummary,
    EffectiveBehaviour,
    Journal,
    JournalEntry,
    TransferRequest,
    TransferResult,
)
from services.banksim.adapters.repository import (
    DailyLimitExceeded,
    NewTransfer,
    Repository,
    TransferRow,
)
from services.banksim.domain import behaviour as rules
from services.banksim.domain.config import BankConfig
from services.kit.errors import ProblemError
from services.kit.logging import get_logger

log = get_logger(__name__)

Clock = Callable[[], datetime]
# How long past its processing time a transfer must still be ``processing`` before the worker
# finishes it (normally its own in-process execution does, on time).
STUCK_MARGIN = timedelta(seconds=1)


def utc_now() -> datetime:
    return datetime.now(UTC)


def request_hash(req: TransferRequest) -> str:
    """What must match for a repeat to be the same transfer (the callback URL may differ)."""
    b = req.beneficiary
    canonical = "\x1f".join(
        (str(req.amount_minor), req.currency, b.name, b.account_number, b.bank_code)
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def result_of(row: TransferRow) -> TransferResult:
    return TransferResult(
        reference=row.reference,
        bank_reference=row.bank_reference,
        status=row.status,  # type: ignore[arg-type]
        failure_code=row.failure_code,
        fee_minor=row.fee_minor,
        executed_at=row.executed_at,
        amount_minor=row.amount_minor,
        currency=row.currency,
        bank=row.bank,
    )


def http_status_of(status: str, failure_code: str | None) -> int:
    """``processing`` answers 200 like ``accepted``: received, outcome not known yet."""
    if status != "rejected":
        return 200
    if failure_code in rules.BENEFICIARY_ERRORS:
        return 422
    if failure_code in ("outage", "maintenance"):
        return 503
    return 200


@dataclass(frozen=True)
class Outcome:
    """A transfer's answer and how to deliver it (``reply``: normal|drop|delay|ambiguous)."""

    result: TransferResult
    http_status: int
    reply: str
    reply_delay_ms: int = 0
    ambiguous_status: int = 0


class Simulator:
    """The banks' live state: configuration, chaos behaviour, and the journal behind them."""

    def __init__(
        self,
        repo: Repository,
        banks: dict[str, BankConfig],
        *,
        seed: int,
        clock: Clock = utc_now,
    ) -> None:
        self.repo = repo
        self.banks = banks
        self.seed = seed
        self.clock = clock
        self._modes: dict[str, tuple[str, dict[str, Any]]] = {}
        self._inquiry_rng = random.Random(seed)
        self._processing: set[asyncio.Task[TransferRow]] = set()

    async def load(self) -> None:
        stored = await self.repo.behaviours()
        self._modes = {bank: v for bank, v in stored.items() if bank in self.banks}

    def bank(self, name: str) -> BankConfig:
        bank = self.banks.get(name)
        if bank is None:
            raise ProblemError(404, "bank_not_found", "Bank not found", f"no bank named {name!r}")
        return bank

    def behaviour(self, name: str) -> rules.Behaviour:
        mode, overrides = self._modes.get(name, ("normal", {}))
        return rules.effective(self.bank(name), mode, overrides)

    # --- bank API -------------------------------------------------------------------------

    async def submit(self, bank_name: str, req: TransferRequest) -> Outcome:
        bank = self.bank(bank_name)
        if req.currency not in bank.accounts:
            raise ProblemError(
                422,
                "currency_not_supported",
                "Currency not supported",
                f"{bank_name} holds no {req.currency} account"
                f" (it holds {', '.join(sorted(bank.accounts))})",
            )
        digest = request_hash(req)
        existing = await self.repo.get(bank_name, req.reference)
        if existing is not None:
            return self._repeat(existing, digest)

        now = self.clock()
        b = self.behaviour(bank_name)
        decision = rules.decide(
            bank,
            b,
            amount_minor=req.amount_minor,
            beneficiary=rules.Beneficiary(
                req.beneficiary.name, req.beneficiary.account_number, req.beneficiary.bank_code
            ),
            now=now,
            rng=rules.rng_for(self.seed, bank_name, req.reference),
        )
        if not decision.recorded:
            # Refused before acceptance: nothing is recorded and nothing will ever execute, so
            # an inquiry's 404 stays true. The refusal still takes the bank's time to arrive.
            if decision.latency_ms:
                await asyncio.sleep(decision.latency_ms / 1000)
            return self._refused(bank_name, req, decision.failure_code or "rejected")

        processing_ms = decision.latency_ms + b.processing_delay_ms
        execute_at = now + timedelta(milliseconds=processing_ms)
        new = NewTransfer(
            bank=bank_name,
            reference=req.reference,
            bank_reference=f"{bank.bic[:4]}{secrets.token_hex(6).upper()}",
            amount_minor=req.amount_minor,
            currency=req.currency,
            beneficiary_name=req.beneficiary.name,
            beneficiary_account=req.beneficiary.account_number,
            beneficiary_bank_code=req.beneficiary.bank_code,
            request_hash=digest,
            received_at=now,
            execute_at=execute_at,
            plan_status=decision.status,
            plan_failure_code=decision.failure_code,
            plan_fee_minor=decision.fee_minor,
            complete_at=(
                execute_at + timedelta(milliseconds=decision.complete_after_ms)
                if decision.complete_after_ms is not None
                else None
            ),
            final_status=decision.final_status,
            final_failure_code=decision.final_failure_code,
            callback_url=req.callback_url,
        )
        try:
            # Recorded at RECEIPT, before the processing time: from this commit on, an inquiry
            # answers `processing` (never 404) and a repeat never executes it again. Shielded:
            # a caller hanging up must not interrupt the commit.
            received = await asyncio.shield(
                self.repo.receive(
                    new, business_date=now.date(), daily_limit_minor=bank.daily_limit_minor
                )
            )
        except DailyLimitExceeded:
            return self._refused(bank_name, req, "daily_limit_exceeded")
        if received is None:  # a concurrent repeat recorded it first
            winner = await self.repo.get(bank_name, req.reference)
            assert winner is not None, "a conflicting insert means the row exists"
            return self._repeat(winner, digest)
        log.info(
            "bank_transfer_received",
            bank=bank_name,
            reference=received.reference,
            plan=decision.status,
            processing_ms=processing_ms,
        )
        # Processing runs in its own task: the caller hanging up (the lost-response case) does
        # not stop the bank from executing what it received.
        row = await asyncio.shield(self._spawn_finish(received.id, execute_at))
        log.info(
            "bank_transfer_recorded",
            bank=bank_name,
            reference=row.reference,
            status=row.status,
            failure_code=row.failure_code,
            reply=decision.reply,
        )
        return Outcome(
            result=result_of(row),
            http_status=http_status_of(row.status, row.failure_code),
            reply=decision.reply,
            reply_delay_ms=b.lost_response_delay_ms,
            ambiguous_status=decision.ambiguous_status,
        )

    def _spawn_finish(self, transfer_id: int, execute_at: datetime) -> asyncio.Task[TransferRow]:
        task = asyncio.create_task(self._finish_at(transfer_id, execute_at))
        self._processing.add(task)
        task.add_done_callback(self._processing.discard)
        return task

    async def _finish_at(self, transfer_id: int, execute_at: datetime) -> TransferRow:
        wait_s = (execute_at - self.clock()).total_seconds()
        if wait_s > 0:
            await asyncio.sleep(wait_s)
        return await self.repo.finish(transfer_id, self.clock(), self._value_date_of)

    def _value_date_of(self, name: str, at: datetime) -> date:
        bank = self.banks.get(name)  # a bank dropped from the config still completes
        return rules.value_date_for(bank, at) if bank is not None else at.date()

    async def stop_processing(self) -> None:
        """On shutdown: stop the in-process executions. Their rows stay ``processing`` and are
        finished from their stored plan by ``finish_stuck`` after the restart."""
        tasks = list(self._processing)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def finish_stuck(self, batch_max: int) -> list[TransferRow]:
        """Finish transfers still ``processing`` after their processing time (plus a margin,
        so a live in-process execution normally gets there first): after a restart, or when an
        execution task failed. The outcome is the one stored at receipt."""
        ids = await self.repo.processing_due(self.clock() - STUCK_MARGIN, batch_max)
        done = []
        for transfer_id in ids:
            row = await self.repo.finish(transfer_id, self.clock(), self._value_date_of)
            log.info(
                "bank_transfer_finished_late",
                bank=row.bank,
                reference=row.reference,
                status=row.status,
                failure_code=row.failure_code,
            )
            done.append(row)
        return done

    def _repeat(self, row: TransferRow, digest: str) -> Outcome:
        if row.request_hash != digest:
            raise ProblemError(
                409,
                "reference_reused",
                "Reference reused",
                f"reference {row.reference!r} was already used for a different transfer",
            )
        return Outcome(
            result=result_of(row),
            http_status=http_status_of(row.status, row.failure_code),
            reply="normal",
        )

    def _refused(self, bank: str, req: TransferRequest, code: str) -> Outcome:
        log.info("bank_transfer_refused", bank=bank, reference=req.reference, failure_code=code)
        return Outcome(
            result=TransferResult(
                reference=req.reference,
                bank_reference=None,
                status="rejected",
                failure_code=code,
                fee_minor=0,
                executed_at=None,
                amount_minor=req.amount_minor,
                currency=req.currency,
                bank=bank,
            ),
            http_status=http_status_of("rejected", code),
            reply="normal",
        )

    async def inquire(self, bank_name: str, reference: str) -> TransferResult:
        self.bank(bank_name)
        b = self.behaviour(bank_name)
        if b.mode == "outage":
            raise ProblemError(
                503,
                "bank_unavailable",
                "Bank unavailable",
                f"{bank_name} is in an outage; try again later",
                headers={"Retry-After": "1"},
            )
        # An inquiry is served by the same slow (or fast) bank as a transfer.
        delay_ms = rules.latency_ms(b, self._inquiry_rng)
        if delay_ms:
            await asyncio.sleep(delay_ms / 1000)
        row = await self.repo.get(bank_name, reference)
        if row is None:
            raise ProblemError(
                404,
                "transfer_not_found",
                "Transfer not found",
                f"{bank_name} never received reference {reference!r}"
                " (or refused it before acceptance: it will never execute)",
            )
        return result_of(row)

    # --- admin API ------------------------------------------------------------------------

    async def set_behaviour(self, bank_name: str, mode: str, overrides: dict[str, Any]) -> None:
        self.bank(bank_name)
        await self.repo.save_behaviour(bank_name, mode, overrides)
        self._modes[bank_name] = (mode, overrides)
        log.info("bank_behaviour_changed", bank=bank_name, mode=mode, overrides=overrides)

    def summary(self, bank_name: str) -> BankSummary:
        bank = self.bank(bank_name)
        _mode, overrides = self._modes.get(bank_name, ("normal", {}))
        return BankSummary(
            bank=bank.name,
            display_name=bank.display_name,
            statement_format=bank.statement_format,
            currencies=sorted(bank.accounts),
            fee_fixed_minor=bank.fee_fixed_minor,
            fee_rate_bp=bank.fee_rate_bp,
            daily_limit_minor=bank.daily_limit_minor,
            cutoff=bank.cutoff,
            after_cutoff=bank.after_cutoff,
            maintenance_windows=[str(w) for w in bank.maintenance_windows],
            behaviour=EffectiveBehaviour(**self.behaviour(bank_name).public()),
            overrides=overrides,
        )

    async def journal(
        self, bank_name: str, *, after: int, limit: int, status: str | None
    ) -> Journal:
        self.bank(bank_name)
        rows = await self.repo.journal(bank_name, after=after, limit=limit, status=status)
        return Journal(
            bank=bank_name,
            transfers=[
                JournalEntry(
                    seq=r.id,
                    reference=r.reference,
                    bank_reference=r.bank_reference,
                    amount_minor=r.amount_minor,
                    currency=r.currency,
                    status=r.status,  # type: ignore[arg-type]
                    failure_code=r.failure_code,
                    fee_minor=r.fee_minor,
                    received_at=r.received_at,
                    executed_at=r.executed_at,
                    value_date=r.value_date,
                )
                for r in rows
            ],
            next_after=rows[-1].id if len(rows) == limit else None,
        )

    # --- background work ------------------------------------------------------------------

    async def complete_due(self, batch_max: int) -> list[TransferRow]:
        done = await self.repo.complete_due(self.clock(), batch_max, self._value_date_of)
        for row in done:
            log.info(
                "bank_transfer_completed",
                bank=row.bank,
                reference=row.reference,
                status=row.status,
                failure_code=row.failure_code,
            )
        return done
