"""The ledger's types: accounts with TigerBeetle's four counters, transfer requests, the rows
the writer appends, outcomes, and the TCC barrier."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

INT64_MAX = 2**63 - 1
BATCH_TRANSFERS_MAX = 8_190  # TigerBeetle's batch size; also bounds one request
TCC_LEGS_MAX = 16
RESERVED_ID_PREFIXES = ("tcc:", "expire:")  # ids the ledger derives itself

KIND_SINGLE = "single"
KIND_PENDING = "pending"
KIND_POST = "post"
KIND_VOID = "void"
KIND_EXPIRE = "expire"
RESOLVING_KINDS = (KIND_POST, KIND_VOID, KIND_EXPIRE)

STATUS_CREATED = "created"
STATUS_REJECTED = "rejected"


class Refusal(Exception):
    """A request refused whole: nothing is applied and nothing is remembered."""

    def __init__(
        self,
        status: int,
        code: str,
        title: str,
        detail: str | None = None,
        errors: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(f"{code}: {detail or title}")
        self.status = status
        self.code = code
        self.title = title
        self.detail = detail
        self.errors = errors


@dataclass(slots=True)
class Account:
    id: str
    currency: str
    code: int
    debits_must_not_exceed_credits: bool
    credits_must_not_exceed_debits: bool
    debits_pending: int = 0
    debits_posted: int = 0
    credits_pending: int = 0
    credits_posted: int = 0

    def counters(self) -> tuple[int, int, int, int]:
        return (self.debits_pending, self.debits_posted, self.credits_pending, self.credits_posted)

    def restore(self, counters: tuple[int, int, int, int]) -> None:
        (self.debits_pending, self.debits_posted, self.credits_pending, self.credits_posted) = (
            counters
        )

    @property
    def available(self) -> int:
        return available(
            self.debits_must_not_exceed_credits,
            self.credits_must_not_exceed_debits,
            self.debits_pending,
            self.debits_posted,
            self.credits_pending,
            self.credits_posted,
        )


def available(
    debits_must_not_exceed_credits: bool,
    credits_must_not_exceed_debits: bool,
    debits_pending: int,
    debits_posted: int,
    credits_pending: int,
    credits_posted: int,
) -> int:
    """What can still be moved out: for a credit-normal account (the default, and every
    account that must not be overdrawn) posted credits minus posted and pending debits; for a
    debit-normal account the mirror image."""
    if credits_must_not_exceed_debits and not debits_must_not_exceed_credits:
        return debits_posted - credits_posted - credits_pending
    return credits_posted - debits_posted - debits_pending


@dataclass(frozen=True, slots=True)
class TransferRequest:
    id: str
    kind: str
    debit_account_id: str | None
    credit_account_id: str | None
    amount_minor: int | None
    currency: str | None
    pending_id: str | None
    timeout_s: int
    linked: bool
    code: int
    body_hash: bytes


def body_hash(*fields: object) -> bytes:
    """Fingerprint of a request body, to tell a replay from a conflicting reuse of an id."""
    return hashlib.sha256("\x1f".join(map(repr, fields)).encode()).digest()[:16]


def request_hash(
    kind: str,
    debit_account_id: str | None,
    credit_account_id: str | None,
    amount_minor: int | None,
    currency: str | None,
    pending_id: str | None,
    timeout_s: int,
    linked: bool,
    code: int,
) -> bytes:
    return body_hash(
        kind,
        debit_account_id,
        credit_account_id,
        amount_minor,
        currency,
        pending_id,
        timeout_s,
        linked,
        code,
    )


@dataclass(slots=True)
class Pending:
    """A transfer that a post/void refers to, with how (if at all) it was resolved."""

    id: str
    kind: str
    debit_account_id: str
    credit_account_id: str
    amount_minor: int
    currency: str
    resolved_by: str | None


@dataclass(frozen=True, slots=True)
class Outcome:
    status: str  # created | rejected
    code: str | None = None
    seq: int | None = None


@dataclass(frozen=True, slots=True)
class Stored:
    body_hash: bytes
    outcome: Outcome


class TransferRow(NamedTuple):
    """A row to append; a tuple so the columns unzip straight into the INSERT."""

    seq: int
    id: str
    kind: str
    debit_account_id: str
    credit_account_id: str
    amount_minor: int
    currency: str
    pending_delta_minor: int
    posted_delta_minor: int
    pending_id: str | None
    timeout_s: int
    expires_at: datetime | None
    code: int
    body_hash: bytes
    created_at: datetime
    prev_hash: bytes
    hash: bytes


@dataclass(frozen=True, slots=True)
class Rejection:
    id: str
    body_hash: bytes
    code: str


@dataclass(frozen=True, slots=True)
class Barrier:
    gid: str
    branch_id: str
    op: str  # try | confirm | cancel
    status: str  # tried | rejected | confirmed | cancelled
    code: str | None
    transfer_ids: tuple[str, ...]
    body_hash: bytes | None


@dataclass(frozen=True, slots=True)
class TccLeg:
    debit_account_id: str
    credit_account_id: str
    amount_minor: int
    currency: str


@dataclass(frozen=True, slots=True)
class TccAnswer:
    status: str  # tried | confirmed | cancelled
    transfer_ids: tuple[str, ...]


def tcc_transfer_id(gid: str, branch_id: str, op: str, leg: int) -> str:
    return f"tcc:{gid}:{branch_id}:{op}:{leg}"


def expire_transfer_id(pending_id: str) -> str:
    return f"expire:{pending_id}"
