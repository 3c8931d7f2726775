"""Reconciliation's wire: the finance API (``Authorization: Bearer <RECON_FINANCE_KEY>``) and
the events recon produces.

Stable error codes (problem+json ``code``): ``finance_key_invalid`` (401), ``invalid_query``
(400), ``channel_invalid`` (422), ``upload_empty`` (400), ``request_too_large`` (413),
``unsupported_media_type`` (415), ``validation_error`` (422), ``malformed_json`` (400),
``run_not_found`` / ``alert_not_found`` (404), ``statement_not_received`` (404, a run asked
for a day without an accepted statement), ``records_unavailable`` (503, the router's export
failed; the run is retried), ``alert_transition_invalid`` (409).

Events (exchange ``<AMQP_PREFIX>.events``, routing key = event type):
- ``recon.alert`` — ``ReconAlert``, once per newly opened alert (repeats only count);
- ``recon.payout_resolved`` — ``PayoutResolved``, once per (attempt, outcome).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from contracts.openapi import Operation, Param, build
from contracts.wire import Response

Severity = Literal["critical", "high", "medium", "low"]
BreakCode = Literal[
    "missing_at_bank",
    "missing_in_ledger",
    "amount_mismatch",
    "fee_mismatch",
    "duplicate_at_bank",
    "timing",
    "returned",
    "status_mismatch",
    "ambiguous_match",
]


class FileReceived(Response):
    """The answer to an upload: the file was accepted whole, quarantined whole, or is a
    duplicate (same SHA-256) of a file already received."""

    file_id: str
    channel: str
    sha256: str
    status: Literal["accepted", "quarantined", "duplicate"]
    filename: str
    business_date: date | None = None
    line_count: int = 0
    statement_ids: list[str] = []
    reason_code: str | None = None
    reason: str | None = None
    run: RunSummary | None = None


class RunSummary(Response):
    run_id: str
    channel: str
    business_date: date
    rules_version: str
    line_count: int
    record_count: int
    matched_lines: int
    break_count: int
    started_at: datetime
    finished_at: datetime
    superseded_by: str | None = None


class RunDetail(RunSummary):
    # {line_count, record_count, matched_lines, break_count,
    #  passes: {pass: {lines, records, amount_minor}}, breaks: {code: {count, amount_minor}},
    #  resolutions: {outcome: count}, agreed_count}
    inputs: dict[str, Any] = {}
    summary: dict[str, Any] = {}
    report_path: str | None = None


class RunList(Response):
    runs: list[RunSummary]


class BreakOut(Response):
    break_id: str
    run_id: str
    channel: str
    business_date: date
    code: BreakCode
    severity: Severity
    status: Literal["open", "closed"]
    statement_id: str | None
    line_number: int | None
    attempt_id: str | None
    payout_id: str | None
    amount_minor: int | None
    expected_amount_minor: int | None
    currency: str | None
    fee_minor: int | None
    expected_fee_minor: int | None
    value_date: date | None
    record_date: date | None
    detail: str | None
    closed_reason: str | None


class BreakList(Response):
    breaks: list[BreakOut]
    next_after: str | None  # pass as ``after`` for the next page


class AlertOut(Response):
    alert_id: str
    code: str
    severity: Severity
    message: str
    channel: str | None
    business_date: date | None
    status: Literal["open", "acknowledged", "closed"]
    occurrences: int
    context: dict[str, Any]
    first_seen_at: datetime
    last_seen_at: datetime
    acknowledged_at: datetime | None
    closed_at: datetime | None


class AlertList(Response):
    alerts: list[AlertOut]


class ReconAlert(Response):
    """``data`` of ``recon.alert``."""

    alert_id: str
    code: str
    severity: Severity
    message: str
    channel: str | None = None
    business_date: date | None = None


class PayoutResolved(Response):
    """``data`` of ``recon.payout_resolved``: the bank's statement settles a payout whose
    outcome we did not know (paid; failed when absent after T+N) or returns one."""

    payout_id: str
    attempt_id: str
    outcome: Literal["paid", "failed", "returned"]
    amount_minor: int
    currency: str
    statement_id: str | None  # None for ``failed`` (there is no line)
    line_number: int | None
    run_id: str


class RunRequest(Response):
    channel: str
    business_date: date


_FIN = "financeKey"
_ID = {"type": "string", "maxLength": 64}
_LIMIT = Param("limit", "query", {"type": "integer", "minimum": 1})

OPERATIONS = [
    Operation(
        "POST",
        "/v1/recon/files",
        "uploadStatement",
        "Upload a statement file (raw bytes); it is checked whole, then reconciled",
        request=bytes,
        responses={200: FileReceived, 201: FileReceived},
        params=(
            Param("channel", "query", {"type": "string"}, required=True),
            Param("filename", "query", {"type": "string"}),
            Param("run", "query", {"type": "boolean"}, description="reconcile now (default)"),
        ),
        security=_FIN,
        request_content_types=("application/octet-stream", "text/plain", "application/xml"),
        error_codes=(400, 401, 413, 415, 422, 503),
        tags=("reconciliation",),
    ),
    Operation(
        "POST",
        "/v1/recon/runs",
        "runReconciliation",
        "Reconcile one channel's business day now (idempotent for the same inputs)",
        request=RunRequest,
        responses={200: RunDetail},
        security=_FIN,
        error_codes=(400, 401, 404, 422, 503),
        tags=("reconciliation",),
    ),
    Operation(
        "GET",
        "/v1/recon/runs",
        "listRuns",
        "Runs, newest first",
        responses={200: RunList},
        params=(
            Param("channel", "query", {"type": "string"}),
            Param("business_date", "query", {"type": "string", "format": "date"}),
            _LIMIT,
        ),
        security=_FIN,
        error_codes=(400, 401),
        tags=("reconciliation",),
    ),
    Operation(
        "GET",
        "/v1/recon/runs/{run_id}",
        "getRun",
        "One run with its inputs and its counts and amounts per pass and per break code",
        responses={200: RunDetail},
        params=(Param("run_id", "path", _ID),),
        security=_FIN,
        error_codes=(401, 404),
        tags=("reconciliation",),
    ),
    Operation(
        "GET",
        "/v1/recon/breaks",
        "listBreaks",
        "Breaks, filtered, in break id order (keyset pagination with after)",
        responses={200: BreakList},
        params=(
            Param("run_id", "query", {"type": "string"}),
            Param("channel", "query", {"type": "string"}),
            Param("code", "query", {"type": "string"}),
            Param("status", "query", {"type": "string", "enum": ["open", "closed"]}),
            Param("after", "query", {"type": "string"}),
            _LIMIT,
        ),
        security=_FIN,
        error_codes=(400, 401),
        tags=("reconciliation",),
    ),
    Operation(
        "GET",
        "/v1/recon/alerts",
        "listAlerts",
        "Alerts, most recently seen first",
        responses={200: AlertList},
        params=(
            Param(
                "status", "query", {"type": "string", "enum": ["open", "acknowledged", "closed"]}
            ),
            Param("severity", "query", {"type": "string"}),
            Param("code", "query", {"type": "string"}),
            _LIMIT,
        ),
        security=_FIN,
        error_codes=(400, 401),
        tags=("alerts",),
    ),
    Operation(
        "POST",
        "/v1/recon/alerts/{alert_id}/ack",
        "acknowledgeAlert",
        "Acknowledge an open alert (repeats are answered with the alert)",
        responses={200: AlertOut},
        params=(Param("alert_id", "path", _ID),),
        security=_FIN,
        error_codes=(401, 404, 409),
        tags=("alerts",),
    ),
    Operation(
        "POST",
        "/v1/recon/alerts/{alert_id}/close",
        "closeAlert",
        "Close an alert; the next occurrence of its cause opens a new one",
        responses={200: AlertOut},
        params=(Param("alert_id", "path", _ID),),
        security=_FIN,
        error_codes=(401, 404),
        tags=("alerts",),
    ),
]


def document() -> dict[str, Any]:
    from contracts import finance  # imports this module's models, so imported here

    return build("Reconciliation", "1.0.0", OPERATIONS + finance.OPERATIONS)
