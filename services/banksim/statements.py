"""Use case: write a bank's statement for a business date (admin API, CLI, end-of-day job).

The lines come from the truth journal (payouts executed with that value date, returns booked
that day); the opening balance is the account's configured opening balance plus everything
booked before the day. Optional discrepancies are applied to the file only (except
``returned_payout``, which books a real return), and the answer key goes to ``answers/``.
"""

from __future__ import annotations

import asyncio
import json
import random
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from contracts.banksim import StatementFile, StatementRequest, StatementResult
from services.banksim.adapters import dropdir
from services.banksim.adapters.repository import Repository
from services.banksim.domain.config import BankConfig
from services.banksim.domain.statements import camt053, csv_format, mt940
from services.banksim.domain.statements.discrepancies import (
    EXPECTED_BREAK,
    DiscrepancyError,
    Injection,
    apply,
)
from services.banksim.domain.statements.model import Movement, Statement, closing_of
from services.kit.errors import ProblemError
from services.kit.logging import get_logger

log = get_logger(__name__)

RENDERERS = {"csv": csv_format.render, "mt940": mt940.render, "camt053": camt053.render}
EXTENSIONS = {"csv": "csv", "mt940": "sta", "camt053": "xml"}
RETURN_REASON = "AC04"  # ISO 20022: account closed


class StatementWriter:
    def __init__(
        self, repo: Repository, banks: dict[str, BankConfig], *, drop_dir: Path, seed: int
    ) -> None:
        self.repo = repo
        self.banks = banks
        self.drop_dir = drop_dir
        self.seed = seed
        self._lock = asyncio.Lock()  # one writer at a time keeps generations in order

    async def write(
        self, req: StatementRequest, *, trigger: str, now: datetime | None = None
    ) -> StatementResult:
        now = now or datetime.now(UTC)
        bank = self.banks.get(req.bank)
        if bank is None:
            raise ProblemError(404, "bank_not_found", "Bank not found", f"no bank {req.bank!r}")
        if req.currency is not None and req.currency not in bank.accounts:
            raise ProblemError(
                422,
                "currency_not_supported",
                "Currency not supported",
                f"{bank.name} holds no {req.currency} account",
            )
        if req.business_date < bank.statement_epoch or req.business_date > now.date():
            raise ProblemError(
                422,
                "business_date_out_of_range",
                "Business date out of range",
                f"business_date must be between {bank.statement_epoch} and today",
            )
        currencies = [req.currency] if req.currency else list(bank.accounts)
        injections = [Injection(d.kind, d.reference, d.amount_minor) for d in req.discrepancies]
        files = []
        async with self._lock:
            for index, currency in enumerate(currencies):
                # Discrepancies go to the requested currency's file (else the first account's).
                files.append(
                    await self._one(
                        bank,
                        currency,
                        req.business_date,
                        injections if index == 0 else [],
                        trigger,
                        now,
                    )
                )
        return StatementResult(files=files)

    async def end_of_day(self, day: date) -> list[StatementFile]:
        written = []
        for bank in self.banks.values():
            if day < bank.statement_epoch:
                continue
            for currency in bank.accounts:
                if await self.repo.has_eod_statement(bank.name, currency, day):
                    continue
                async with self._lock:
                    written.append(
                        await self._one(bank, currency, day, [], "eod", datetime.now(UTC))
                    )
        log.info("bank_eod_checked", business_date=day.isoformat(), written=len(written))
        return written

    async def _one(
        self,
        bank: BankConfig,
        currency: str,
        day: date,
        injections: list[Injection],
        trigger: str,
        now: datetime,
    ) -> StatementFile:
        rng = random.Random(f"{self.seed}:{bank.name}:{currency}:{day}:{now.isoformat()}")
        account = bank.accounts[currency]
        movements = await self.repo.movements_on(bank.name, currency, day)
        answers: list[dict[str, Any]] = []
        returns: list[Movement] = []
        for inj in (i for i in injections if i.kind == "returned_payout"):
            original = await self.repo.returnable(bank.name, currency, day, inj.reference)
            if original is None:
                which = f" {inj.reference!r}" if inj.reference else ""
                raise ProblemError(
                    422,
                    "no_line_for_discrepancy",
                    "Nothing to act on",
                    f"returned_payout: no earlier unreturned payout{which} at {bank.name}",
                )
            returns.append(
                Movement(
                    kind="return",
                    reference=original["reference"],
                    bank_reference=original["bank_reference"][:15] + "R",
                    amount_minor=original["amount_minor"],
                    fee_minor=0,
                    booking_date=day,
                    value_date=day,
                    counterparty=original["beneficiary_name"],
                    return_reason=RETURN_REASON,
                )
            )
            answers.append(
                {
                    "kind": "returned_payout",
                    "expected_break": EXPECTED_BREAK["returned_payout"],
                    "reference": original["reference"],
                    "amount_minor": original["amount_minor"],
                    "reason_code": RETURN_REASON,
                }
            )
        try:
            injected = apply(
                movements,
                [i for i in injections if i.kind != "returned_payout"],
                rng,
                day,
                exclude=frozenset(r.reference for r in returns),
            )
        except DiscrepancyError as exc:
            raise ProblemError(
                422, "no_line_for_discrepancy", "Nothing to act on", str(exc)
            ) from None
        answers = injected.answers + answers
        for r in returns:  # validated: now the returns become real bookings
            await self.repo.book_return(
                bank.name, currency, r.reference, r.amount_minor, day, RETURN_REASON
            )
        lines = injected.movements + returns
        opening = account.opening_balance_minor + await self.repo.movements_before(
            bank.name, currency, day
        )
        consistent_closing = closing_of(opening, lines)
        closing = consistent_closing + injected.closing_delta_minor

        fmt = bank.statement_format
        stem_of = lambda g: f"{bank.name}_{currency}_{day:%Y%m%d}_{g:03d}"  # noqa: E731
        generation, file_name = await self.repo.next_statement_generation(
            bank.name,
            currency,
            day,
            trigger,
            lambda g: f"{stem_of(g)}.{EXTENSIONS[fmt]}",
            "answers" if injections else None,
        )
        statement = Statement(
            bank=bank.name,
            bank_display_name=bank.display_name,
            bic=bank.bic,
            iban=account.iban,
            currency=currency,
            business_date=day,
            statement_number=(day - bank.statement_epoch).days + 1,
            generation=generation,
            created_at=now,
            opening_minor=opening,
            closing_minor=closing,
            movements=tuple(lines),
        )
        content = RENDERERS[fmt](statement)
        answer_path: Path | None = None
        if injections:
            key = {
                "statement_file": file_name,
                "bank": bank.name,
                "currency": currency,
                "business_date": day.isoformat(),
                "format": fmt,
                "statement_number": statement.statement_number,
                "opening_minor": opening,
                "closing_minor": closing,
                "balance_consistent": closing == consistent_closing,
                "discrepancies": answers,
            }
            answer_path = dropdir.write_atomically(
                dropdir.answers(self.drop_dir, bank.name),
                f"{stem_of(generation)}.answers.json",
                (json.dumps(key, indent=2, sort_keys=True) + "\n").encode(),
            )
        path = dropdir.write_atomically(dropdir.inbox(self.drop_dir, bank.name), file_name, content)
        log.info(
            "bank_statement_written",
            bank=bank.name,
            currency=currency,
            business_date=day.isoformat(),
            file=file_name,
            lines=len(lines),
            discrepancies=len(answers),
            trigger=trigger,
        )
        return StatementFile(
            bank=bank.name,
            currency=currency,
            business_date=day,
            format=fmt,
            file_name=file_name,
            path=str(path),
            answer_key_path=str(answer_path) if answer_path else None,
            statement_number=statement.statement_number,
            line_count=len(lines),
            opening_minor=opening,
            closing_minor=closing,
        )
