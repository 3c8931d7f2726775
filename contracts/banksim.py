"""Bank simulator wire: the per-bank payout API, status inquiry, callbacks and the admin API.

Bank API (``X-Bank-Key``):
- ``POST /banks/{bank}/transfers`` — idempotent by ``reference`` (a repeat with the same body
  returns the stored transfer; the same reference with another body is ``409 reference_reused``).
  The bank records a transfer when it RECEIVES it (after authentication, validation and the
  refusals before acceptance), as ``status: processing``, before its processing time; it then
  executes it once and moves it to ``paid``/``accepted``/``rejected``. A repeat or an inquiry
  during processing answers ``200`` with ``status: processing`` (the outcome is not known yet:
  a caller must keep asking, never treat it as a failure); a repeat never executes it twice.
  Answers ``TransferResult``: ``200`` for ``paid``/``accepted`` and for ``rejected`` with
  ``rejected``, ``insufficient_liquidity``, ``daily_limit_exceeded`` or ``cutoff_passed``;
  ``422`` for beneficiary errors (``invalid_account``, ``account_closed``, ``name_mismatch``);
  ``503`` when refused before acceptance (``outage``, ``maintenance``). A ``5xx`` problem after
  acceptance (``bank_internal_error``) is ambiguous by design, and a lost response (the
  connection dropped, or the reply delayed past any sane timeout) comes after execution.
- ``GET /banks/{bank}/transfers/{reference}`` — ``404 transfer_not_found`` means the bank never
  received that reference (or refused it before acceptance, which never executes): a received
  transfer is ``processing`` until it has an outcome. ``503 bank_unavailable`` during an outage.
- Restart: transfers still ``processing`` when the simulator stopped are finished after the
  restart with the outcome drawn at receipt (stored with the row), once their processing time
  has passed: deterministic whatever the seed or the chaos mode afterwards.
- Callbacks: for an asynchronous completion (``accepted`` now, ``paid``/``rejected`` later)
  the bank POSTs the inquiry body to ``callback_url`` signed
  ``Bank-Signature: t=<unix>,v1=<hex HMAC-SHA256(BANK_CALLBACK_SECRET, "t.body")>``.

Deterministic beneficiary errors (for tests of every response class without chaos):
an ``account_number`` starting with ``INVALID`` → ``invalid_account``, starting with ``CLOSED``
→ ``account_closed``; a beneficiary ``name`` of ``NAME MISMATCH`` → ``name_mismatch``.

Admin (``X-Service-Token``): ``GET /admin/banks``, ``PUT /admin/banks/{bank}/behaviour``
(each PUT replaces the bank's mode and overrides as a whole; ``{"mode": "normal"}`` resets it;
the behaviour is stored, so it survives a restart),
``GET /admin/banks/{bank}/executed`` (the truth journal: transfers with an outcome; those still
processing only with ``?status=processing``), ``POST /admin/statements``.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

import msgspec

from contracts.openapi import Operation, Param, build
from contracts.wire import AmountMinor, Currency, Identifier, Model, Response

TransferStatus = Literal["processing", "paid", "accepted", "rejected"]
JOURNAL_STATUSES = ("processing", "paid", "accepted", "rejected")
BEHAVIOUR_MODES = ("normal", "outage", "slow", "flaky", "lost_responses", "maintenance")
BehaviourMode = Literal["normal", "outage", "slow", "flaky", "lost_responses", "maintenance"]
DISCREPANCY_KINDS = (
    "drop_line",
    "unknown_line",
    "amount_changed",
    "duplicate_line",
    "value_date_next_day",
    "returned_payout",
    "balance_broken",
)
DiscrepancyKind = Literal[
    "drop_line",
    "unknown_line",
    "amount_changed",
    "duplicate_line",
    "value_date_next_day",
    "returned_payout",
    "balance_broken",
]

# Failure codes, by class. Stable: the router classifies on them.
BENEFICIARY_ERRORS = ("invalid_account", "account_closed", "name_mismatch")
DEFINITE_REFUSALS = (
    "rejected",
    "insufficient_liquidity",
    "maintenance",
    "outage",
    "daily_limit_exceeded",
    "cutoff_passed",
)
FAILURE_CODES = BENEFICIARY_ERRORS + DEFINITE_REFUSALS

Rate = Annotated[float, msgspec.Meta(ge=0.0, le=1.0, description="a probability, 0..1")]
Millis = Annotated[int, msgspec.Meta(ge=0, le=600_000)]
Reference = Annotated[
    str, msgspec.Meta(min_length=1, max_length=35, pattern=r"^[A-Za-z0-9_.:/\-]+$")
]
AccountNumber = Annotated[str, msgspec.Meta(min_length=4, max_length=34, pattern=r"^[A-Za-z0-9]+$")]
BankName = Annotated[str, msgspec.Meta(min_length=1, max_length=70)]
BankCode = Annotated[str, msgspec.Meta(min_length=1, max_length=11, pattern=r"^[A-Za-z0-9]+$")]
HttpUrl = Annotated[str, msgspec.Meta(max_length=2048, pattern=r"^https?://[^\s]+$")]


class Beneficiary(Model):
    name: BankName
    account_number: AccountNumber
    bank_code: BankCode


class TransferRequest(Model):
    reference: Reference
    amount_minor: AmountMinor
    currency: Currency
    beneficiary: Beneficiary
    callback_url: HttpUrl | None = None


class TransferResult(Response):
    """The answer to a transfer, an inquiry and the body of a callback."""

    reference: str
    bank_reference: str | None
    status: TransferStatus
    failure_code: str | None
    fee_minor: int
    executed_at: datetime | None
    amount_minor: int
    currency: str
    bank: str


class BehaviourOverrides(Model):
    """Numeric overrides on top of the bank's configuration (and the mode)."""

    success_rate: Rate | None = None
    refusal_rate: Rate | None = None  # refused before acceptance (503 outage)
    lost_response_rate: Rate | None = None
    ambiguous_error_rate: Rate | None = None
    async_rate: Rate | None = None
    latency_median_ms: Millis | None = None
    latency_p99_ms: Millis | None = None
    lost_response_delay_ms: Millis | None = None
    lost_response_mode: Literal["drop", "delay", "mixed"] | None = None
    async_delay_min_ms: Millis | None = None
    async_delay_max_ms: Millis | None = None
    # Extra time a received transfer stays ``processing`` before it executes (transfers only;
    # inquiries answer at the bank's usual latency).
    processing_delay_ms: Millis | None = None


class BehaviourRequest(Model):
    mode: BehaviourMode
    overrides: BehaviourOverrides | None = None


class EffectiveBehaviour(Response):
    mode: str
    success_rate: float
    refusal_rate: float
    lost_response_rate: float
    lost_response_mode: str
    lost_response_delay_ms: int
    ambiguous_error_rate: float
    async_rate: float
    async_delay_min_ms: int
    async_delay_max_ms: int
    latency_median_ms: int
    latency_p99_ms: int
    latency_max_ms: int
    processing_delay_ms: int


class BankSummary(Response):
    bank: str
    display_name: str
    statement_format: str
    currencies: list[str]
    fee_fixed_minor: int
    fee_rate_bp: int
    daily_limit_minor: int
    cutoff: str | None
    after_cutoff: str
    maintenance_windows: list[str]
    behaviour: EffectiveBehaviour
    overrides: dict[str, Any]


class BankList(Response):
    banks: list[BankSummary]


class JournalEntry(Response):
    seq: int
    reference: str
    bank_reference: str
    amount_minor: int
    currency: str
    status: TransferStatus
    failure_code: str | None
    fee_minor: int
    received_at: datetime
    executed_at: datetime | None
    value_date: date | None


class Journal(Response):
    bank: str
    transfers: list[JournalEntry]
    next_after: int | None


class DiscrepancyRequest(Model):
    kind: DiscrepancyKind
    reference: Reference | None = None  # the line to act on; chosen at random when absent
    amount_minor: AmountMinor | None = None  # unknown_line amount / amount_changed delta


class StatementRequest(Model):
    bank: Identifier
    business_date: date
    currency: Currency | None = None  # every currency the bank holds when absent
    discrepancies: Annotated[list[DiscrepancyRequest], msgspec.Meta(max_length=50)] = []


class StatementFile(Response):
    bank: str
    currency: str
    business_date: date
    format: str
    file_name: str
    path: str
    answer_key_path: str | None
    statement_number: int
    line_count: int
    opening_minor: int
    closing_minor: int


class StatementResult(Response):
    files: list[StatementFile]


ERRORS = {
    "bank_not_found": "no bank with that name in the configuration (404)",
    "transfer_not_found": "the bank never received that reference, or refused it before"
    " acceptance: it will never execute (404)",
    "reference_reused": "the reference was already used with a different body (409)",
    "currency_not_supported": "the bank holds no account in that currency (422)",
    "bank_unavailable": "the bank is in an outage (503, inquiry)",
    "bank_internal_error": "a 5xx after acceptance: the outcome is unknown (500/502/504)",
    "bank_key_invalid": "X-Bank-Key missing or wrong (401)",
    "no_line_for_discrepancy": "the statement has no line a discrepancy could act on (422)",
    "invalid_query": "a query parameter is malformed (400)",
}

_BANK = Param("bank", "path", {"type": "string"}, description="bank name from the config")


def operations() -> list[Operation]:
    ref = Param("reference", "path", {"type": "string"}, description="the caller's reference")
    return [
        Operation(
            "POST",
            "/banks/{bank}/transfers",
            "createTransfer",
            "Execute a payout, idempotent by reference",
            request=TransferRequest,
            responses={200: TransferResult, 422: TransferResult, 503: TransferResult},
            params=(_BANK,),
            # bankKey is not a shared scheme in contracts.openapi; document() adds it.
            error_codes=(400, 401, 404, 409, 413, 415, 500, 502, 504),
            tags=("bank",),
        ),
        Operation(
            "GET",
            "/banks/{bank}/transfers/{reference}",
            "getTransfer",
            "Status inquiry by the caller's reference",
            responses={200: TransferResult},
            params=(_BANK, ref),
            # bankKey is not a shared scheme in contracts.openapi; document() adds it.
            error_codes=(401, 404, 503),
            tags=("bank",),
        ),
        Operation(
            "GET",
            "/admin/banks",
            "listBanks",
            "Banks with configuration and live behaviour",
            responses={200: BankList},
            security="serviceToken",
            error_codes=(401,),
            tags=("admin",),
        ),
        Operation(
            "PUT",
            "/admin/banks/{bank}/behaviour",
            "setBehaviour",
            "Switch a bank's chaos mode; takes effect at once",
            request=BehaviourRequest,
            responses={200: BankSummary},
            params=(_BANK,),
            security="serviceToken",
            tags=("admin",),
        ),
        Operation(
            "GET",
            "/admin/banks/{bank}/executed",
            "getJournal",
            "The truth journal: what the bank recorded, oldest first (processing: on request)",
            responses={200: Journal},
            params=(
                _BANK,
                Param("after", "query", {"type": "integer", "minimum": 0}),
                Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 5000}),
                Param("status", "query", {"type": "string", "enum": list(JOURNAL_STATUSES)}),
            ),
            security="serviceToken",
            error_codes=(400, 401, 404),
            tags=("admin",),
        ),
        Operation(
            "POST",
            "/admin/statements",
            "writeStatement",
            "Write a bank's statement file(s) for a business date into the recon drop directory",
            request=StatementRequest,
            responses={201: StatementResult},
            security="serviceToken",
            tags=("admin",),
        ),
    ]


def document() -> dict[str, Any]:
    doc = build("Bank simulator", "1.0.0", operations())
    problem = {"schema": {"$ref": "#/components/schemas/Problem"}}
    for path, item in doc["paths"].items():
        if path.startswith("/banks/"):
            for op in item.values():
                op["security"] = [{"bankKey": []}]
    # A refusal answers 422/503 with a TransferResult; bad input with the same statuses
    # (validation_error, bank_unavailable) answers problem+json, so both are documented.
    for status in ("422", "503"):
        doc["paths"]["/banks/{bank}/transfers"]["post"]["responses"][status]["content"][
            "application/problem+json"
        ] = problem
    doc["components"].setdefault("securitySchemes", {})["bankKey"] = {
        "type": "apiKey",
        "in": "header",
        "name": "X-Bank-Key",
        "description": "The bank client key (BANKSIM_CLIENT_KEY).",
    }
    return doc
