"""Router wire (internal API behind ``X-Service-Token``; bank callbacks signed instead).

- Channel quota TCC participant: ``POST /v1/tcc/{gid}/{branch_id}/try|confirm|cancel``.
- Submissions with safe fallback, idempotent by ``payout_id``; inquiry; attempts export (NDJSON).
- Channels with live health, kill switches (audited), decisions, config status.
- ``POST /v1/bank_callbacks/{bank}`` authenticated by ``Bank-Signature``.

Events (through the outbox): ``attempt.resolved`` and ``channel.health_changed``
(``AttemptResolved`` / ``ChannelHealthChanged`` below are their ``data``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

from contracts.openapi import Operation, Param, build
from contracts.wire import AmountMinor, Currency, Identifier, Model, Response

SubmissionStatus = Literal["succeeded", "submitted", "failed", "unknown"]
FailureClass = Literal["beneficiary_error", "definite_non_execution"]
KillOperation = Literal["submit", "inquire"]
KILL_OPERATIONS = ("submit", "inquire")

BankCode = Annotated[str, msgspec.Meta(min_length=1, max_length=11, pattern=r"^[A-Za-z0-9]+$")]
AccountNumber = Annotated[str, msgspec.Meta(min_length=4, max_length=34, pattern=r"^[A-Za-z0-9]+$")]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=70)]
Text = Annotated[str, msgspec.Meta(min_length=1, max_length=500)]
Actor = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
Reference = Annotated[str, msgspec.Meta(min_length=1, max_length=140)]


class TryRequest(Model):
    payout_id: Identifier
    merchant_id: Identifier
    amount_minor: AmountMinor
    currency: Currency
    beneficiary_bank_code: BankCode


class TccEmpty(Model):
    """Confirm and cancel take no fields (an empty body or ``{}``)."""


class TccAnswer(Response):
    gid: str
    branch_id: str
    status: Literal["tried", "confirmed", "cancelled"]
    channel_id: str | None = None
    decision_id: str | None = None


class Beneficiary(Model):
    name: Name
    account_number: AccountNumber
    bank_code: BankCode


class SubmissionRequest(Model):
    payout_id: Identifier
    gid: Identifier
    merchant_id: Identifier
    amount_minor: AmountMinor
    currency: Currency
    beneficiary: Beneficiary
    reference: Reference  # the merchant's reference, kept for operators; banks see att_…


class AttemptView(Response):
    attempt_id: str
    seq: int
    channel_id: str
    bank: str
    status: Literal["sending", "submitted", "unknown", "succeeded", "failed"]
    decision_id: str
    sent_at: datetime
    failure_class: str | None = None
    failure_code: str | None = None
    failure_message: str | None = None
    bank_reference: str | None = None
    fee_minor: int | None = None
    resolved_at: datetime | None = None
    resolved_by: str | None = None
    inquiries: int = 0


class SubmissionView(Response):
    payout_id: str
    attempt_id: str | None
    channel_id: str | None
    bank: str | None
    status: SubmissionStatus
    failure_class: FailureClass | None = None
    failure_code: str | None = None
    failure_message: str | None = None
    fee_minor: int | None = None
    bank_reference: str | None = None
    attempts: list[AttemptView] = []


class Candidate(Response):
    channel_id: str
    bank: str
    eligible: bool
    excluded_by: str | None
    detail: str | None
    fee_minor: int
    success_rate_ppm: int
    latency_ms: float
    expected_value_minor: int | None
    preferred: bool


class DecisionView(Response):
    decision_id: str
    attempt_id: str | None
    payout_id: str
    purpose: Literal["tcc_try", "submission"]
    chosen: str | None
    reason: str
    facts: dict[str, Any]
    candidates: list[Candidate]
    created_at: datetime


class Health(Response):
    breaker_state: Literal["closed", "open", "half_open"]
    success_rate_ppm: int
    samples: int
    latency_ms_ewma: float | None
    latency_ms_p95: float | None
    counts: dict[str, int]
    probes_in_flight: int


class Quota(Response):
    business_date: str
    daily_quota_minor: int
    reserved_minor: int
    consumed_minor: int


class ChannelView(Response):
    id: str
    bank: str
    currency: str
    amount_min_minor: int
    amount_max_minor: int
    beneficiary_banks: list[str]
    fee_minor: int
    fee_bps: int
    daily_quota_minor: int
    cutoff_utc: str | None
    maintenance_utc: list[dict[str, str]]
    enabled: bool
    health: Health
    quota: Quota
    kill_switches: dict[str, bool]


class ConfigStatus(Response):
    channels_version: str
    rules_version: str
    channel_count: int
    rule_count: int
    loaded_at: datetime
    last_error: str | None


class ChannelList(Response):
    channels: list[ChannelView]
    config: ConfigStatus


class KillSwitchRequest(Model):
    engaged: bool
    reason: Text
    actor: Actor


class KillSwitch(Response):
    channel_id: str
    operation: KillOperation
    engaged: bool
    reason: str
    actor: str
    changed_at: datetime


class KillSwitchAuditEntry(Response):
    channel_id: str
    operation: str
    engaged: bool
    reason: str
    actor: str
    request_id: str | None
    changed_at: datetime


class KillSwitchList(Response):
    switches: list[KillSwitch]
    audit: list[KillSwitchAuditEntry]


class BankCallback(Response):
    """The bank's callback body: the same as its inquiry answer (contracts/banksim.py)."""

    reference: str
    bank_reference: str | None
    status: Literal["paid", "accepted", "rejected"]
    failure_code: str | None = None
    fee_minor: int = 0
    executed_at: datetime | None = None
    amount_minor: int | None = None
    currency: str | None = None
    bank: str | None = None


class CallbackAck(Response):
    attempt_id: str
    status: str
    applied: bool


class ExportedAttempt(Response):
    """One NDJSON line of ``GET /v1/attempts/export``."""

    attempt_id: str
    payout_id: str
    channel_id: str
    bank: str
    amount_minor: int
    currency: str
    status: str
    failure_class: str | None
    failure_code: str | None
    bank_reference: str | None
    fee_minor: int | None
    executed_at: datetime | None
    sent_at: datetime
    resolved_at: datetime | None


class AttemptResolved(Response):
    """``data`` of the ``attempt.resolved`` event."""

    payout_id: str
    attempt_id: str
    channel_id: str
    bank: str
    status: Literal["succeeded", "failed"]
    failure_class: FailureClass | None = None
    failure_code: str | None = None
    failure_message: str | None = None
    bank_reference: str | None = None
    fee_minor: int | None = None


class ChannelHealthChanged(Response):
    """``data`` of the ``channel.health_changed`` event. ``instance_id`` names the router
    instance that observed the change, so it ignores its own announcements."""

    channel_id: str
    breaker_state: Literal["closed", "open", "half_open"]
    success_rate_ppm: int
    latency_ms_p95: float | None
    instance_id: str
    reason: str


ERRORS = {
    "no_eligible_channel": "no channel passes the filters; errors[] names each exclusion (422)",
    "tcc_branch_cancelled": "try after cancel (suspension) or confirm after cancel (409)",
    "tcc_try_rejected": "confirm after a rejected try (409)",
    "tcc_branch_not_tried": "confirm before any try (409)",
    "tcc_branch_confirmed": "cancel after confirm (409)",
    "submission_mismatch": "payout_id reused with a different submission body (422)",
    "submission_not_found": "no submission for that payout_id (404)",
    "decision_not_found": "no decision for that attempt or decision id (404)",
    "channel_not_found": "no channel with that id in the live config (404)",
    "kill_operation_unknown": "kill switch operation is not submit or inquire (404)",
    "bank_signature_invalid": "Bank-Signature missing, malformed, stale or wrong (401)",
    "attempt_not_found": "callback for a reference we never sent to that bank (404)",
    "invalid_query": "a query parameter is malformed (400)",
    "validation_error": "the body does not match the schema (422)",
    "malformed_json": "the body is not JSON (400)",
}

_GID = Param("gid", "path", {"type": "string"})
_BRANCH = Param("branch_id", "path", {"type": "string"})
_PAYOUT = Param("payout_id", "path", {"type": "string"})
_CHANNEL = Param("channel_id", "path", {"type": "string"})
_SVC = "serviceToken"


def operations() -> list[Operation]:
    tcc = [
        Operation(
            "POST",
            f"/v1/tcc/{{gid}}/{{branch_id}}/{op}",
            f"tcc{op.capitalize()}",
            summary,
            request=req,
            responses={200: TccAnswer},
            params=(_GID, _BRANCH),
            security=_SVC,
            error_codes=(400, 401, 409, 415, 422),
            tags=("tcc",),
        )
        for op, req, summary in (
            ("try", TryRequest, "Pick a channel and reserve the amount on its daily quota"),
            ("confirm", TccEmpty, "Consume the reservation on the channel that executed"),
            ("cancel", TccEmpty, "Release the reservation (a tombstone when nothing was tried)"),
        )
    ]
    return [
        *tcc,
        Operation(
            "POST",
            "/v1/submissions",
            "submit",
            "Route and submit a payout with safe fallback; idempotent by payout_id",
            request=SubmissionRequest,
            responses={200: SubmissionView},
            security=_SVC,
            error_codes=(400, 401, 413, 415, 422),
            tags=("submissions",),
        ),
        Operation(
            "GET",
            "/v1/submissions/{payout_id}",
            "getSubmission",
            "A submission with all its attempts",
            responses={200: SubmissionView},
            params=(_PAYOUT,),
            security=_SVC,
            error_codes=(401, 404),
            tags=("submissions",),
        ),
        Operation(
            "POST",
            "/v1/submissions/{payout_id}/inquire",
            "inquireSubmission",
            "Ask the bank now about the payout's unresolved attempt",
            responses={200: SubmissionView},
            params=(_PAYOUT,),
            security=_SVC,
            error_codes=(401, 404),
            tags=("submissions",),
        ),
        Operation(
            "GET",
            "/v1/attempts/export",
            "exportAttempts",
            "Attempts as NDJSON (one ExportedAttempt per line) for reconciliation",
            responses={200: ExportedAttempt},
            params=(
                Param("bank", "query", {"type": "string"}),
                Param(
                    "from",
                    "query",
                    {"type": "string", "format": "date-time"},
                    description="sent_at >= from (ISO date or date-time, UTC)",
                ),
                Param(
                    "to",
                    "query",
                    {"type": "string", "format": "date-time"},
                    description="sent_at < to (ISO date or date-time, UTC)",
                ),
            ),
            security=_SVC,
            response_content_type="application/x-ndjson",
            error_codes=(400, 401),
            tags=("reconciliation",),
        ),
        Operation(
            "GET",
            "/v1/channels",
            "listChannels",
            "Channels with live health, breaker state, quota used, fees and kill switches",
            responses={200: ChannelList},
            security=_SVC,
            error_codes=(401,),
            tags=("channels",),
        ),
        Operation(
            "GET",
            "/v1/config",
            "getConfig",
            "Versions of the live channel and rule files, and the last rejected reload",
            responses={200: ConfigStatus},
            security=_SVC,
            error_codes=(401,),
            tags=("channels",),
        ),
        Operation(
            "GET",
            "/v1/channels/{channel_id}/kill_switches",
            "listKillSwitches",
            "A channel's kill switches and their audit trail",
            responses={200: KillSwitchList},
            params=(_CHANNEL,),
            security=_SVC,
            error_codes=(401, 404),
            tags=("channels",),
        ),
        Operation(
            "PUT",
            "/v1/channels/{channel_id}/kill_switches/{operation}",
            "setKillSwitch",
            "Engage or release a channel's kill switch for one operation (audited)",
            request=KillSwitchRequest,
            responses={200: KillSwitch},
            params=(
                _CHANNEL,
                Param("operation", "path", {"type": "string", "enum": list(KILL_OPERATIONS)}),
            ),
            security=_SVC,
            error_codes=(400, 401, 404, 415, 422),
            tags=("channels",),
        ),
        Operation(
            "GET",
            "/v1/decisions/{attempt_id}",
            "getDecision",
            "The routing decision behind an attempt (or a TCC try's decision id)",
            responses={200: DecisionView},
            params=(Param("attempt_id", "path", {"type": "string"}),),
            security=_SVC,
            error_codes=(401, 404),
            tags=("decisions",),
        ),
        Operation(
            "POST",
            "/v1/bank_callbacks/{bank}",
            "bankCallback",
            "A bank's asynchronous result, authenticated by Bank-Signature",
            request=BankCallback,
            responses={200: CallbackAck},
            params=(
                Param("bank", "path", {"type": "string"}),
                Param(
                    "Bank-Signature",
                    "header",
                    {"type": "string"},
                    required=True,
                    description="t=<unix>,v1=<hex HMAC-SHA256(secret, 't.body')>",
                ),
            ),
            error_codes=(400, 401, 404, 415, 422),
            tags=("banks",),
        ),
    ]


def document() -> dict[str, Any]:
    return build("Router", "1.0.0", operations())
