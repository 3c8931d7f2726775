"""The ledger's wire (internal API behind ``X-Service-Token``).

Semantics follow TigerBeetle: accounts carry ``debits_pending``, ``debits_posted``,
``credits_pending``, ``credits_posted``; transfers are single-phase, pending (optionally with
``timeout_s``), post (of a pending, full or partial) or void (of a pending). A transfer's ``id``
is its idempotency key: a retry returns the same result (rejections included); the same id with
another body is ``409 transfer_id_conflict``. ``linked: true`` chains a transfer to the next
one in the list: the chain succeeds or fails as one.

Stable error codes (problem+json ``code``):
- request refused whole, nothing applied: ``validation_error``, ``malformed_json``,
  ``batch_too_large``, ``unknown_currency``, ``currency_mismatch``, ``account_not_found``,
  ``accounts_must_be_different``, ``transfer_id_duplicated``, ``reserved_transfer_id``,
  ``transfers_invalid`` (several of these at once; see ``errors``), ``transfer_id_conflict``
  (409), ``account_exists_with_different_body`` (409), ``flags_mutually_exclusive``,
  ``service_token_invalid`` (401), ``ledger_overloaded`` / ``ledger_unavailable`` (503).
- per-transfer rejections (remembered; 200 with ``status: rejected``): ``exceeds_credits``,
  ``exceeds_debits``, ``overflows_debits``, ``overflows_credits``,
  ``pending_transfer_not_found``, ``pending_transfer_not_pending``,
  ``pending_transfer_already_posted``, ``pending_transfer_already_voided``,
  ``pending_transfer_expired``, ``exceeds_pending_transfer_amount``, ``linked_event_failed``,
  ``linked_event_chain_open``.
- TCC: ``tcc_branch_cancelled`` (409, try or confirm after cancel), ``insufficient_funds``
  (422, try rejected and remembered), ``tcc_try_rejected`` (409, confirm after a rejected
  try), ``tcc_branch_not_tried`` (409, confirm before any try), ``tcc_branch_confirmed``
  (409, cancel after confirm), ``tcc_branch_conflict`` (409, try repeated with other legs),
  ``tcc_hold_expired`` (409, confirm after the hold's expiry record).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

from contracts.openapi import Operation, Param, build
from contracts.wire import AmountMinor, Currency, Identifier, Model, Response

TRANSFERS_PER_REQUEST_MAX = 8_190
TCC_LEGS_MAX = 16

TransferKind = Literal["single", "pending", "post", "void"]
Code = Annotated[int, msgspec.Meta(ge=0, le=65_535, description="user-defined reason code")]
TimeoutS = Annotated[int, msgspec.Meta(ge=0, le=30 * 86_400, description="0 = never expires")]


class AccountFlags(Model):
    debits_must_not_exceed_credits: bool = False
    credits_must_not_exceed_debits: bool = False


class AccountCreate(Model):
    id: Identifier
    currency: Currency
    code: Code = 0
    flags: AccountFlags = msgspec.field(default_factory=AccountFlags)


class AccountFlagsOut(Response):
    debits_must_not_exceed_credits: bool
    credits_must_not_exceed_debits: bool


class Account(Response):
    id: str
    currency: str
    code: int
    flags: AccountFlagsOut
    debits_pending: int
    debits_posted: int
    credits_pending: int
    credits_posted: int
    available: int
    created_at: datetime


class TransferIn(Model):
    """single/pending need both accounts, ``amount_minor`` and ``currency``; post/void need
    ``pending_id`` (post may carry a partial ``amount_minor``)."""

    id: Identifier
    kind: TransferKind = "single"
    debit_account_id: Identifier | None = None
    credit_account_id: Identifier | None = None
    amount_minor: AmountMinor | None = None
    currency: Currency | None = None
    pending_id: Identifier | None = None
    timeout_s: TimeoutS = 0
    linked: bool = False
    code: Code = 0


class TransfersRequest(Model):
    transfers: Annotated[
        list[TransferIn],
        msgspec.Meta(min_length=1, description=f"at most {TRANSFERS_PER_REQUEST_MAX:,}"),
    ]


class TransferResult(Response):
    index: int
    id: str
    status: Literal["created", "rejected"]
    code: str | None = None
    seq: int | None = None


class TransfersResponse(Response):
    results: list[TransferResult]


class Transfer(Response):
    seq: int
    id: str
    kind: Literal["single", "pending", "post", "void", "expire"]
    debit_account_id: str
    credit_account_id: str
    amount_minor: int
    currency: str
    pending_id: str | None
    timeout_s: int
    expires_at: datetime | None
    code: int
    created_at: datetime
    hash: str


class TransferPage(Response):
    transfers: list[Transfer]
    next_cursor: str | None


class Balance(Response):
    account_id: str
    currency: str
    as_of_seq: int
    debits_pending: int
    debits_posted: int
    credits_pending: int
    credits_posted: int
    available: int


class TccLeg(Model):
    debit_account_id: Identifier
    credit_account_id: Identifier
    amount_minor: AmountMinor
    currency: Currency


class TccTry(Model):
    legs: Annotated[list[TccLeg], msgspec.Meta(min_length=1, max_length=TCC_LEGS_MAX)]
    timeout_s: Annotated[int, msgspec.Meta(ge=1, le=30 * 86_400)] | None = None


class TccResult(Response):
    gid: str
    branch_id: str
    status: Literal["tried", "confirmed", "cancelled"]
    transfer_ids: list[str]


class VerifyReport(Response):
    ok: bool
    transfers_checked: int
    head_seq: int
    head_hash: str
    first_bad_seq: int | None
    first_bad_id: str | None
    reason: str | None
    counters_ok: bool
    counter_mismatches: list[str]
    conservation_ok: bool
    unbalanced_currencies: list[str]


_ID = {"type": "string", "pattern": "^[A-Za-z0-9_.:\\-]+$", "maxLength": 64}
_SVC = "serviceToken"
_TAGS = ("ledger",)


def _tcc(op: str, summary: str, request: Any) -> Operation:
    return Operation(
        "POST",
        f"/v1/tcc/{{gid}}/{{branch_id}}/{op}",
        f"tcc_{op}",
        summary,
        request=request,
        responses={200: TccResult},
        params=(Param("gid", "path", _ID), Param("branch_id", "path", _ID)),
        security=_SVC,
        error_codes=(400, 401, 409, 422, 503),
        tags=("tcc",),
    )


OPERATIONS = [
    Operation(
        "POST",
        "/v1/accounts",
        "create_account",
        "Create an account (idempotent by id: same body answers 200, another body 409)",
        request=AccountCreate,
        responses={201: Account, 200: Account},
        security=_SVC,
        error_codes=(400, 401, 409, 422),
        tags=_TAGS,
    ),
    Operation(
        "GET",
        "/v1/accounts/{account_id}",
        "get_account",
        "An account with its four counters and available balance",
        responses={200: Account},
        params=(Param("account_id", "path", _ID),),
        security=_SVC,
        error_codes=(401, 404),
        tags=_TAGS,
    ),
    Operation(
        "GET",
        "/v1/accounts/{account_id}/transfers",
        "account_history",
        "An account's transfers in commit order, keyset-paginated by ``cursor``",
        responses={200: TransferPage},
        params=(
            Param("account_id", "path", _ID),
            Param("cursor", "query", {"type": "string"}, description="next_cursor of a page"),
            Param("limit", "query", {"type": "integer", "minimum": 1}),
        ),
        security=_SVC,
        error_codes=(400, 401, 404),
        tags=_TAGS,
    ),
    Operation(
        "GET",
        "/v1/accounts/{account_id}/balance",
        "account_balance",
        "Counters as of a sequence number (as_of_seq) or a time (as_of, RFC 3339); now if neither",
        responses={200: Balance},
        params=(
            Param("account_id", "path", _ID),
            Param("as_of_seq", "query", {"type": "integer", "minimum": 0}),
            Param("as_of", "query", {"type": "string", "format": "date-time"}),
        ),
        security=_SVC,
        error_codes=(400, 401, 404),
        tags=_TAGS,
    ),
    Operation(
        "POST",
        "/v1/transfers",
        "create_transfers",
        "Apply up to 8,190 transfers in order; one result per transfer",
        request=TransfersRequest,
        responses={200: TransfersResponse},
        security=_SVC,
        error_codes=(400, 401, 409, 413, 422, 503),
        tags=_TAGS,
    ),
    Operation(
        "GET",
        "/v1/transfers/{transfer_id}",
        "get_transfer",
        "One committed transfer",
        responses={200: Transfer},
        params=(Param("transfer_id", "path", {"type": "string"}),),
        security=_SVC,
        error_codes=(401, 404),
        tags=_TAGS,
    ),
    Operation(
        "GET",
        "/v1/verify",
        "verify",
        "Recompute the hash chain and check counters and conservation; reports the first bad"
        " transfer",
        responses={200: VerifyReport},
        security=_SVC,
        error_codes=(401,),
        tags=_TAGS,
    ),
    _tcc("try", "Hold funds: every leg becomes a pending transfer, all or none", TccTry),
    _tcc("confirm", "Post the branch's holds", None),
    _tcc("cancel", "Void the branch's holds (a tombstone if there was no try)", None),
]


def document() -> dict[str, Any]:
    return build("Ledger", "1.0.0", OPERATIONS)
