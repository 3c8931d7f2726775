"""The payout service's wire: the merchant API (``/v1``), the admin API (``/admin``) and the
events it emits. Merchant-facing names follow the usual payment-API conventions (``amount``
and ``fee`` in integer minor units next to ``currency``); internal calls use ``amount_minor``.

Stable problem codes (``Problem.code``) answered by this service:

- ``unauthorized`` — missing/unknown/revoked merchant key or admin key (401)
- ``validation_error``, ``malformed_json``, ``empty_body``, ``unsupported_media_type`` (4xx)
- ``idempotency_key_missing`` (400), ``idempotency_key_invalid`` (400),
  ``idempotency_key_reused`` (422, same key with another body),
  ``idempotency_in_flight`` (409, the first request with that key is still running)
- ``reference_already_used`` (409), ``currency_not_enabled`` (422)
- ``limit_exceeded`` (422: per payout, per day or per month; ``detail`` says which)
- ``payout_not_found`` / ``batch_not_found`` / ``webhook_endpoint_not_found`` /
  ``merchant_not_found`` / ``delivery_not_found`` / ``key_not_found`` (404)
- ``payout_not_cancelable`` (409), ``payout_not_in_review`` (409)
- ``invalid_query`` (400: bad ``limit``, cursor, filter or date)
- ``batch_too_large`` (413), ``batch_empty`` (422), ``csv_invalid`` (400)
- ``ledger_unavailable`` (503) / ``funding_rejected`` (422)
- ``risk_blocked`` (the ``failure_code`` of a payout refused by risk controls; not an HTTP error)
- ``risk_ruleset_invalid`` (422, with ``errors``), ``risk_ruleset_not_found`` (404),
  ``risk_ruleset_outdated`` (409: a newer version is already published)
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, get_args

import msgspec

from contracts.openapi import Operation, Param, build
from contracts.wire import AmountMinor, Currency, Model, Response

# ---- field types ------------------------------------------------------------------------------

Reference = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_.:/\-]+$",
        description="the merchant's own reference, unique per merchant",
    ),
]
# No control characters in free text: PostgreSQL refuses NUL, and a line break in a name
# would break the bank's payment file.
_TEXT = r"^[^\x00-\x1f\x7f]*$"
BeneficiaryName = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=70,
        pattern=r"^[^\s\x00-\x1f\x7f]([^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f])?$",
    ),
]
AccountNumber = Annotated[
    str,
    msgspec.Meta(
        min_length=4, max_length=34, pattern=r"^[A-Z0-9]+$", description="IBAN or account number"
    ),
]
BankCode = Annotated[str, msgspec.Meta(min_length=1, max_length=11, pattern=r"^[A-Za-z0-9]+$")]
MetadataKey = Annotated[str, msgspec.Meta(min_length=1, max_length=40, pattern=_TEXT)]
MetadataValue = Annotated[str, msgspec.Meta(max_length=500, pattern=_TEXT)]
Metadata = Annotated[dict[MetadataKey, MetadataValue], msgspec.Meta(max_length=20)]
LimitMinor = Annotated[int, msgspec.Meta(ge=1, le=1_000_000_000_000_000)]
Bps = Annotated[int, msgspec.Meta(ge=0, le=10_000, description="basis points (1/100 of 1%)")]
FeeFixed = Annotated[int, msgspec.Meta(ge=0, le=1_000_000_000)]
Note = Annotated[str, msgspec.Meta(min_length=1, max_length=1000)]
WebhookUrl = Annotated[
    str, msgspec.Meta(min_length=10, max_length=2048, pattern=r"^https?://[^\s/$.?#][^\s]*$")
]
MerchantName = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]

PayoutStatus = Literal[
    "pending_review",
    "processing",
    "submitted",
    "paid",
    "failed",
    "canceled",
    "returned",
    "manual_review",
]
EventType = Literal[
    "payout.created",
    "payout.submitted",
    "payout.paid",
    "payout.failed",
    "payout.returned",
    "payout.manual_review",
    "payout.canceled",
]
EVENT_TYPES: tuple[str, ...] = get_args(EventType)
SubscribedEvent = Literal[
    "*",
    "payout.created",
    "payout.submitted",
    "payout.paid",
    "payout.failed",
    "payout.returned",
    "payout.manual_review",
    "payout.canceled",
]

# ---- merchant API requests --------------------------------------------------------------------


class Beneficiary(Model, kw_only=True):
    name: BeneficiaryName
    account_number: AccountNumber
    bank_code: BankCode


class CreatePayout(Model, kw_only=True):
    amount: AmountMinor
    currency: Currency
    beneficiary: Beneficiary
    reference: Reference
    metadata: Metadata | None = None


class CreatePayoutBatch(Model, kw_only=True):
    """JSON form of a batch. The CSV form has the header
    ``amount,currency,reference,beneficiary_name,beneficiary_account_number,beneficiary_bank_code``.
    Items are validated one by one: a bad item is rejected on its own."""

    items: list[Any]


class CreateWebhookEndpoint(Model, kw_only=True):
    url: WebhookUrl
    event_types: Annotated[list[SubscribedEvent], msgspec.Meta(min_length=1, max_length=16)]
    description: Annotated[str, msgspec.Meta(max_length=200)] | None = None


# ---- merchant API responses -------------------------------------------------------------------


class BeneficiaryOut(Response, kw_only=True):
    name: str
    account_number: str  # masked: only the last 4 characters are shown
    bank_code: str


class StatusChange(Response, kw_only=True):
    status: PayoutStatus
    at: datetime
    reason: str | None = None


class Payout(Response, kw_only=True):
    id: str
    object: str = "payout"
    status: PayoutStatus
    amount: int
    fee: int
    currency: str
    beneficiary: BeneficiaryOut
    reference: str
    metadata: dict[str, str] | None
    channel: str | None
    failure_code: str | None
    failure_message: str | None
    batch_id: str | None
    created_at: datetime
    updated_at: datetime
    status_history: list[StatusChange]


class PayoutList(Response, kw_only=True):
    object: str = "list"
    data: list[Payout]
    has_more: bool


class Money(Response, kw_only=True):
    currency: str
    amount: int


class Balance(Response, kw_only=True):
    object: str = "balance"
    available: list[Money]
    pending: list[Money]


class Event(Response, kw_only=True):
    id: str
    object: str = "event"
    type: str
    created_at: datetime
    data: dict[str, Any]  # {"object": <payout>}


class EventList(Response, kw_only=True):
    object: str = "list"
    data: list[Event]
    has_more: bool


class WebhookEndpoint(Response, kw_only=True):
    id: str
    object: str = "webhook_endpoint"
    url: str
    event_types: list[str]
    description: str | None
    created_at: datetime
    secret: str | None = None  # returned once, by the create call only


class WebhookEndpointList(Response, kw_only=True):
    object: str = "list"
    data: list[WebhookEndpoint]
    has_more: bool


class BatchItemError(Response, kw_only=True):
    code: str
    message: str


class BatchItem(Response, kw_only=True):
    line: int  # 1-based position in the JSON list or data line in the CSV
    status: Literal["pending", "created", "rejected"]
    reference: str | None
    payout_id: str | None
    error: BatchItemError | None


class PayoutBatch(Response, kw_only=True):
    id: str
    object: str = "payout_batch"
    status: Literal["processing", "completed"]
    total: int
    pending: int
    created: int
    rejected: int
    created_at: datetime
    completed_at: datetime | None
    items: list[BatchItem] | None = None


# ---- admin API --------------------------------------------------------------------------------


class Limits(Model, kw_only=True):
    """``None`` means no limit. Amounts are minor units of the payout's currency."""

    per_payout_max: LimitMinor | None = None
    daily_max: LimitMinor | None = None
    monthly_max: LimitMinor | None = None
    review_threshold: LimitMinor | None = None


class Fees(Model, kw_only=True):
    fixed: FeeFixed = 0
    bps: Bps = 0


class CreateMerchant(Model, kw_only=True):
    name: MerchantName
    currencies: Annotated[list[Currency], msgspec.Meta(min_length=1, max_length=16)] | None = None
    limits: Limits | None = None
    fees: Fees | None = None


class LimitsOut(Response, kw_only=True):
    per_payout_max: int | None
    daily_max: int | None
    monthly_max: int | None
    review_threshold: int | None


class FeesOut(Response, kw_only=True):
    fixed: int
    bps: int


class ApiKey(Response, kw_only=True):
    id: str
    object: str = "api_key"
    prefix: str  # the first characters of the key, to recognise it
    created_at: datetime
    revoked_at: datetime | None
    secret_key: str | None = None  # shown once, when the key is created


class Merchant(Response, kw_only=True):
    id: str
    object: str = "merchant"
    name: str
    currencies: list[str]
    limits: LimitsOut
    fees: FeesOut
    created_at: datetime
    api_keys: list[ApiKey]
    secret_key: str | None = None  # the first key, shown once by the create call only


class FundMerchant(Model, kw_only=True):
    amount: AmountMinor
    currency: Currency
    reference: Reference


class Funding(Response, kw_only=True):
    id: str
    object: str = "funding"
    merchant_id: str
    amount: int
    currency: str
    reference: str
    transfer_id: str
    created_at: datetime


class Approve(Model, kw_only=True):
    note: Note | None = None


class MarkPaid(Model, kw_only=True):
    evidence: Note  # e.g. the bank's reference or statement line the operator checked
    note: Note | None = None


class MarkFailed(Model, kw_only=True):
    reason: Note
    failure_code: Annotated[str, msgspec.Meta(pattern=r"^[a-z_]{2,40}$")] = "operator_failed"


class AuditRecord(Response, kw_only=True):
    id: int
    actor: str
    action: str
    payout_id: str | None
    merchant_id: str | None
    detail: dict[str, Any]
    created_at: datetime


class AuditList(Response, kw_only=True):
    object: str = "list"
    data: list[AuditRecord]


class WebhookDelivery(Response, kw_only=True):
    id: str
    object: str = "webhook_delivery"
    endpoint_id: str
    merchant_id: str
    event_id: str
    event_type: str
    status: Literal["pending", "delivered", "dead"]
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: datetime | None
    created_at: datetime
    delivered_at: datetime | None


class WebhookAttempt(Response, kw_only=True):
    attempt_no: int
    attempted_at: datetime
    status_code: int | None
    error: str | None
    duration_ms: int


class WebhookDeliveryDetail(WebhookDelivery, kw_only=True):
    attempt_log: list[WebhookAttempt]


class WebhookDeliveryList(Response, kw_only=True):
    object: str = "list"
    data: list[WebhookDelivery]
    has_more: bool


# ---- risk controls (docs/RISK.md) ---------------------------------------------------------------


class RiskRuleSetBody(Model, kw_only=True):
    """A rule-set document (docs/RISK.md §1), sent as application/yaml or application/json."""

    format: int
    description: str | None = None
    defaults: list[dict[str, Any]] | None = None
    merchants: dict[str, dict[str, Any]] | None = None


class RiskValidation(Response, kw_only=True):
    valid: bool
    digest: str
    rule_count: int


class RiskRuleSetStored(Response, kw_only=True):
    version: int
    digest: str


class RiskRuleSet(Response, kw_only=True):
    version: int
    digest: str
    author: str
    rule_count: int
    created_at: datetime
    published_at: datetime | None
    published_by: str | None
    document: dict[str, Any] | None = None
    source: str | None = None


class RiskRuleSetList(Response, kw_only=True):
    object: str = "list"
    data: list[RiskRuleSet]


class RiskDryRun(Model, kw_only=True):
    days: Annotated[int, msgspec.Meta(ge=1, le=31)] = 7
    changes_max: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 100


class RiskDryRunReport(Response, kw_only=True):
    candidate_version: int
    evaluated: int
    changed: int
    transitions: dict[str, int]
    fired_by_rule: dict[str, int]
    changes: list[dict[str, Any]]
    changes_truncated: bool


class RiskEngineView(Response, kw_only=True):
    version: int
    stats: dict[str, int]


# ---- events (data of payout.* envelopes is the Payout object above) ---------------------------


class AttemptResolved(Response, kw_only=True):
    """``attempt.resolved`` from the router (docs/INTERFACES.md)."""

    payout_id: str
    attempt_id: str
    channel_id: str | None = None
    bank: str | None = None
    status: Literal["succeeded", "failed"]
    failure_class: str | None = None
    failure_code: str | None = None
    failure_message: str | None = None
    bank_reference: str | None = None
    fee_minor: int | None = None


class ReconPayoutResolved(Response, kw_only=True):
    """``recon.payout_resolved`` from reconciliation (docs/INTERFACES.md)."""

    payout_id: str
    attempt_id: str | None = None
    outcome: Literal["paid", "failed", "returned"]
    amount_minor: int | None = None
    currency: str | None = None
    statement_id: str | None = None
    line_number: int | None = None


# ---- operations -------------------------------------------------------------------------------

_ID = {"type": "string"}
_IDEMPOTENCY = Param(
    "Idempotency-Key",
    "header",
    {"type": "string", "minLength": 1, "maxLength": 255},
    required=True,
    description="replays the stored response for the same key and body for at least 24 h",
)
_PAGE = (
    Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 100}),
    Param("starting_after", "query", _ID, description="cursor: the last id of the previous page"),
)
M = "merchantKey"
A = "adminKey"

OPERATIONS: list[Operation] = [
    Operation(
        "POST",
        "/v1/payouts",
        "createPayout",
        "Create a payout (funds are held at once; the bank is called asynchronously)",
        request=CreatePayout,
        responses={201: Payout, 200: Payout},
        params=(_IDEMPOTENCY,),
        security=M,
        error_codes=(400, 401, 409, 415, 422),
        tags=("payouts",),
    ),
    Operation(
        "GET",
        "/v1/payouts",
        "listPayouts",
        "List payouts, newest first",
        responses={200: PayoutList},
        params=(
            *_PAGE,
            Param("status", "query", {"type": "string"}),
            Param("reference", "query", {"type": "string"}),
            Param("created_gte", "query", {"type": "string", "format": "date-time"}),
            Param("created_lt", "query", {"type": "string", "format": "date-time"}),
        ),
        security=M,
        error_codes=(400, 401),
        tags=("payouts",),
    ),
    Operation(
        "GET",
        "/v1/payouts/{payout_id}",
        "getPayout",
        "Retrieve a payout",
        responses={200: Payout},
        params=(Param("payout_id", "path", _ID),),
        security=M,
        error_codes=(401, 404),
        tags=("payouts",),
    ),
    Operation(
        "POST",
        "/v1/payouts/{payout_id}/cancel",
        "cancelPayout",
        "Cancel a payout that has not been submitted to a bank",
        responses={200: Payout},
        params=(Param("payout_id", "path", _ID),),
        security=M,
        error_codes=(401, 404, 409),
        tags=("payouts",),
    ),
    Operation(
        "POST",
        "/v1/payout_batches",
        "createPayoutBatch",
        "Submit up to 10,000 payouts as JSON or CSV; processed asynchronously",
        request=CreatePayoutBatch,
        responses={202: PayoutBatch},
        params=(_IDEMPOTENCY,),
        security=M,
        request_content_types=("application/json", "text/csv"),
        error_codes=(400, 401, 409, 413, 415, 422),
        tags=("batches",),
    ),
    Operation(
        "GET",
        "/v1/payout_batches/{batch_id}",
        "getPayoutBatch",
        "A batch with its per-item results",
        responses={200: PayoutBatch},
        params=(Param("batch_id", "path", _ID),),
        security=M,
        error_codes=(401, 404),
        tags=("batches",),
    ),
    Operation(
        "GET",
        "/v1/balance",
        "getBalance",
        "Available and pending (held) funds per currency",
        responses={200: Balance},
        security=M,
        error_codes=(401, 503),
        tags=("balance",),
    ),
    Operation(
        "GET",
        "/v1/events",
        "listEvents",
        "Events about the merchant's payouts, newest first",
        responses={200: EventList},
        params=(*_PAGE, Param("type", "query", {"type": "string"})),
        security=M,
        error_codes=(400, 401),
        tags=("events",),
    ),
    Operation(
        "POST",
        "/v1/webhook_endpoints",
        "createWebhookEndpoint",
        "Subscribe a URL to events; the signing secret is returned once",
        request=CreateWebhookEndpoint,
        responses={201: WebhookEndpoint},
        security=M,
        error_codes=(400, 401, 415, 422),
        tags=("webhooks",),
    ),
    Operation(
        "GET",
        "/v1/webhook_endpoints",
        "listWebhookEndpoints",
        "List webhook endpoints",
        responses={200: WebhookEndpointList},
        security=M,
        error_codes=(401,),
        tags=("webhooks",),
    ),
    Operation(
        "DELETE",
        "/v1/webhook_endpoints/{endpoint_id}",
        "deleteWebhookEndpoint",
        "Stop sending events to an endpoint",
        responses={200: WebhookEndpoint},
        params=(Param("endpoint_id", "path", _ID),),
        security=M,
        error_codes=(401, 404),
        tags=("webhooks",),
    ),
    # ---- admin ----
    Operation(
        "POST",
        "/admin/merchants",
        "adminCreateMerchant",
        "Create a merchant; its first secret key is returned once",
        request=CreateMerchant,
        responses={201: Merchant},
        security=A,
        error_codes=(400, 401, 415, 422, 503),
        tags=("admin",),
    ),
    Operation(
        "GET",
        "/admin/merchants/{merchant_id}",
        "adminGetMerchant",
        "A merchant with its limits, fees and keys (never the secrets)",
        responses={200: Merchant},
        params=(Param("merchant_id", "path", _ID),),
        security=A,
        error_codes=(401, 404),
        tags=("admin",),
    ),
    Operation(
        "POST",
        "/admin/merchants/{merchant_id}/keys",
        "adminCreateKey",
        "Issue another secret key (rotation); returned once",
        responses={201: ApiKey},
        params=(Param("merchant_id", "path", _ID),),
        security=A,
        error_codes=(401, 404),
        tags=("admin",),
    ),
    Operation(
        "DELETE",
        "/admin/merchants/{merchant_id}/keys/{key_id}",
        "adminRevokeKey",
        "Revoke a secret key",
        responses={200: ApiKey},
        params=(Param("merchant_id", "path", _ID), Param("key_id", "path", _ID)),
        security=A,
        error_codes=(401, 404),
        tags=("admin",),
    ),
    Operation(
        "PUT",
        "/admin/merchants/{merchant_id}/limits",
        "adminSetLimits",
        "Set per-payout, daily and monthly limits and the review threshold",
        request=Limits,
        responses={200: Merchant},
        params=(Param("merchant_id", "path", _ID),),
        security=A,
        error_codes=(400, 401, 404, 415, 422),
        tags=("admin",),
    ),
    Operation(
        "PUT",
        "/admin/merchants/{merchant_id}/fees",
        "adminSetFees",
        "Set the merchant's fee: fixed + basis points of the amount",
        request=Fees,
        responses={200: Merchant},
        params=(Param("merchant_id", "path", _ID),),
        security=A,
        error_codes=(400, 401, 404, 415, 422),
        tags=("admin",),
    ),
    Operation(
        "POST",
        "/admin/merchants/{merchant_id}/fundings",
        "adminFundMerchant",
        "Deposit funds (a ledger transfer), idempotent by reference",
        request=FundMerchant,
        responses={201: Funding, 200: Funding},
        params=(Param("merchant_id", "path", _ID),),
        security=A,
        error_codes=(400, 401, 404, 415, 422, 503),
        tags=("admin",),
    ),
    Operation(
        "GET",
        "/admin/payouts",
        "adminListReview",
        "Payouts waiting for an operator (status manual_review or pending_review)",
        responses={200: PayoutList},
        params=(*_PAGE, Param("status", "query", {"type": "string"})),
        security=A,
        error_codes=(400, 401),
        tags=("admin",),
    ),
    Operation(
        "POST",
        "/admin/payouts/{payout_id}/approve",
        "adminApprove",
        "Release a pending_review payout for processing",
        request=Approve,
        responses={200: Payout},
        params=(Param("payout_id", "path", _ID),),
        security=A,
        error_codes=(400, 401, 404, 409, 415, 422),
        tags=("admin",),
    ),
    Operation(
        "POST",
        "/admin/payouts/{payout_id}/mark_paid",
        "adminMarkPaid",
        "Resolve a manual_review payout as paid, with the bank evidence",
        request=MarkPaid,
        responses={200: Payout},
        params=(Param("payout_id", "path", _ID),),
        security=A,
        error_codes=(400, 401, 404, 409, 415, 422),
        tags=("admin",),
    ),
    Operation(
        "POST",
        "/admin/payouts/{payout_id}/mark_failed",
        "adminMarkFailed",
        "Resolve a manual_review or pending_review payout as failed (holds are released)",
        request=MarkFailed,
        responses={200: Payout},
        params=(Param("payout_id", "path", _ID),),
        security=A,
        error_codes=(400, 401, 404, 409, 415, 422),
        tags=("admin",),
    ),
    Operation(
        "GET",
        "/admin/payouts/{payout_id}/audit",
        "adminAudit",
        "The audit records of a payout",
        responses={200: AuditList},
        params=(Param("payout_id", "path", _ID),),
        security=A,
        error_codes=(401, 404),
        tags=("admin",),
    ),
    Operation(
        "GET",
        "/admin/webhook_deliveries",
        "adminListDeliveries",
        "Webhook deliveries; status=dead lists the dead-lettered ones",
        responses={200: WebhookDeliveryList},
        params=(*_PAGE, Param("status", "query", {"type": "string"})),
        security=A,
        error_codes=(400, 401),
        tags=("admin",),
    ),
    Operation(
        "GET",
        "/admin/webhook_deliveries/{delivery_id}",
        "adminGetDelivery",
        "A webhook delivery with every attempt (status code, error, duration)",
        responses={200: WebhookDeliveryDetail},
        params=(Param("delivery_id", "path", _ID),),
        security=A,
        error_codes=(401, 404),
        tags=("admin",),
    ),
    Operation(
        "POST",
        "/admin/webhook_deliveries/{delivery_id}/resend",
        "adminResendDelivery",
        "Send a webhook again (a fresh retry schedule)",
        responses={200: WebhookDelivery},
        params=(Param("delivery_id", "path", _ID),),
        security=A,
        error_codes=(401, 404),
        tags=("admin",),
    ),
]

_VERSION = Param("version", "path", {"type": "integer", "minimum": 1})
_RULESET_TYPES = ("application/yaml", "application/json")
OPERATIONS += [
    Operation(
        "POST",
        "/admin/risk/rulesets/validate",
        "adminRiskValidate",
        "Validate a rule set without storing it",
        request=RiskRuleSetBody,
        responses={200: RiskValidation},
        security=A,
        request_content_types=_RULESET_TYPES,
        error_codes=(400, 401, 413, 415, 422),
        tags=("risk",),
    ),
    Operation(
        "POST",
        "/admin/risk/rulesets",
        "adminRiskStore",
        "Store a validated rule set as a new draft version (an invalid one is never stored)",
        request=RiskRuleSetBody,
        responses={201: RiskRuleSetStored},
        security=A,
        request_content_types=_RULESET_TYPES,
        error_codes=(400, 401, 413, 415, 422),
        tags=("risk",),
    ),
    Operation(
        "GET",
        "/admin/risk/rulesets",
        "adminRiskList",
        "Rule-set versions, newest first",
        responses={200: RiskRuleSetList},
        security=A,
        error_codes=(401,),
        tags=("risk",),
    ),
    Operation(
        "GET",
        "/admin/risk/rulesets/{version}",
        "adminRiskGet",
        "One rule-set version with its document",
        responses={200: RiskRuleSet},
        params=(_VERSION,),
        security=A,
        error_codes=(400, 401, 404),
        tags=("risk",),
    ),
    Operation(
        "POST",
        "/admin/risk/rulesets/{version}/dry-run",
        "adminRiskDryRun",
        "Judge the last days of payouts by this version and report what would change",
        request=RiskDryRun,
        responses={200: RiskDryRunReport},
        params=(_VERSION,),
        security=A,
        error_codes=(400, 401, 404, 415, 422),
        tags=("risk",),
    ),
    Operation(
        "POST",
        "/admin/risk/rulesets/{version}/publish",
        "adminRiskPublish",
        "Publish a version: every payout instance swaps it in within a second",
        responses={200: RiskRuleSet},
        params=(_VERSION,),
        security=A,
        error_codes=(400, 401, 404, 409),
        tags=("risk",),
    ),
    Operation(
        "GET",
        "/admin/risk/engine",
        "adminRiskEngine",
        "This instance's live rule-set version and counter sizes",
        responses={200: RiskEngineView},
        security=A,
        error_codes=(401,),
        tags=("risk",),
    ),
]


def document() -> dict[str, Any]:
    return build("Payout API", "1.0.0", OPERATIONS)
