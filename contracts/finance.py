"""Finance API additions served by the recon service (``Authorization: Bearer
<RECON_FINANCE_KEY>``): break search with every filter and an opaque cursor, one break with its
audit trail, resolving a break with a comment, the daily cross-channel summary, and the run
and daily reports (CSV and XLSX, streamed).

``contracts.recon`` includes ``OPERATIONS`` below in its document, so the recon service's
``/openapi.json`` describes them with the rest of the finance API.

Stable error codes (problem+json ``code``) beyond those of ``contracts.recon``:
``invalid_query`` (400, a filter value is malformed; ``detail`` names it), ``break_not_found``
(404), ``break_already_closed`` (409, a resolution of a closed break; the audit trail is
unchanged), ``report_part_invalid`` (404), ``range_too_long`` (400).

Amounts are integer minor units with their ``currency``; reports show them in major units with
the currency's ISO 4217 exponent, computed from the integers (never through a float).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

import msgspec

from contracts.openapi import Operation, Param
from contracts.recon import BreakOut
from contracts.wire import Model, Response

Actor = Annotated[str, msgspec.Meta(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f]+$")]
Comment = Annotated[str, msgspec.Meta(min_length=1, max_length=2000)]


class AuditEntry(Response):
    audit_id: int
    break_id: str
    action: Literal["resolved"]
    actor: str
    role: Literal["finance", "operator"]
    comment: str
    request_id: str | None
    created_at: datetime


class BreakPage(Response):
    breaks: list[BreakOut]
    next_cursor: str | None  # pass as ``cursor`` for the next page; None on the last page


class BreakDetail(BreakOut):
    audit: list[AuditEntry] = []


class ResolveBreak(Model):
    """Close an open break by hand. ``actor`` names the person (the finance key is shared)."""

    comment: Comment
    actor: Actor


class BreakFigures(Response):
    code: str
    currency: str | None
    count: int
    open_count: int
    amount_minor: int


class ChannelDay(Response):
    channel: str
    business_date: date
    run_id: str
    line_count: int
    record_count: int
    matched_lines: int
    match_rate_ppm: int  # matched_lines / line_count in parts per million (1,000,000 = all)
    break_count: int
    open_breaks: int
    breaks: list[BreakFigures]


class DaySummary(Response):
    business_date: date
    channels: list[ChannelDay]
    line_count: int
    matched_lines: int
    match_rate_ppm: int
    break_count: int
    open_breaks: int


class DailySummary(Response):
    days: list[DaySummary]  # oldest first; only days with a current run


_FIN = "financeKey"
_ID = {"type": "string", "maxLength": 64}
_DATE = {"type": "string", "format": "date"}
_RANGE = (
    Param("from", "query", _DATE, description="first business date (default: 30 days ago)"),
    Param("to", "query", _DATE, description="last business date, inclusive (default: today)"),
)

OPERATIONS = [
    Operation(
        "GET",
        "/v1/recon/breaks/search",
        "searchBreaks",
        "Breaks filtered by type, channel, business date, amount range and status (cursor)",
        responses={200: BreakPage},
        params=(
            Param("run_id", "query", _ID),
            Param("channel", "query", {"type": "string"}),
            Param("code", "query", {"type": "string"}, description="break type"),
            Param("status", "query", {"type": "string", "enum": ["open", "closed"]}),
            Param("business_date", "query", _DATE),
            Param("date_from", "query", _DATE),
            Param("date_to", "query", _DATE),
            Param("amount_min_minor", "query", {"type": "integer"}),
            Param("amount_max_minor", "query", {"type": "integer"}),
            Param("currency", "query", {"type": "string", "pattern": "^[A-Z]{3}$"}),
            Param("cursor", "query", {"type": "string"}),
            Param("limit", "query", {"type": "integer", "minimum": 1}),
        ),
        security=_FIN,
        error_codes=(400, 401),
        tags=("reconciliation",),
    ),
    Operation(
        "GET",
        "/v1/recon/breaks/{break_id}",
        "getBreak",
        "One break with its audit trail",
        responses={200: BreakDetail},
        params=(Param("break_id", "path", _ID),),
        security=_FIN,
        error_codes=(401, 404),
        tags=("reconciliation",),
    ),
    Operation(
        "POST",
        "/v1/recon/breaks/{break_id}/resolve",
        "resolveBreak",
        "Resolve an open break with a comment; the resolution is audited (who, when)",
        request=ResolveBreak,
        responses={200: BreakDetail},
        params=(Param("break_id", "path", _ID),),
        security=_FIN,
        error_codes=(400, 401, 404, 409, 415, 422),
        tags=("reconciliation",),
    ),
    Operation(
        "GET",
        "/v1/recon/summary/daily",
        "dailySummary",
        "Per business day and channel: lines, matched, match rate, breaks by type and currency",
        responses={200: DailySummary},
        params=_RANGE,
        security=_FIN,
        error_codes=(400, 401),
        tags=("reports",),
    ),
    Operation(
        "GET",
        "/v1/recon/summary/daily.csv",
        "dailySummaryCsv",
        "The daily cross-channel summary as CSV (amounts in major units)",
        responses={200: None},
        params=_RANGE,
        security=_FIN,
        response_content_type="text/csv",
        error_codes=(400, 401),
        tags=("reports",),
    ),
    Operation(
        "GET",
        "/v1/recon/runs/{run_id}/report.xlsx",
        "runReportXlsx",
        "The run as a workbook: summary, breaks and matched sheets (streamed)",
        responses={200: None},
        params=(Param("run_id", "path", _ID),),
        security=_FIN,
        response_content_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        error_codes=(401, 404),
        tags=("reports",),
    ),
    Operation(
        "GET",
        "/v1/recon/runs/{run_id}/{part}.csv",
        "runReportCsv",
        "One part of the run as CSV: summary, breaks or matched (streamed)",
        responses={200: None},
        params=(
            Param("run_id", "path", _ID),
            Param("part", "path", {"type": "string", "enum": ["summary", "breaks", "matched"]}),
        ),
        security=_FIN,
        response_content_type="text/csv",
        error_codes=(401, 404),
        tags=("reports",),
    ),
]
