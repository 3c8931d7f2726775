"""Ledger use cases. Anything that moves money goes through the single writer (one batch, one
transaction); reads use the pool directly."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from contracts import ledger as wire
from services.kit.errors import ProblemError
from services.ledger.adapters import store
from services.ledger.adapters.verify import verify as verify_chain
from services.ledger.domain.currencies import is_known_currency
from services.ledger.domain.model import (
    BATCH_TRANSFERS_MAX,
    KIND_POST,
    KIND_VOID,
    RESERVED_ID_PREFIXES,
    Outcome,
    Refusal,
    TccAnswer,
    TccLeg,
    TransferRequest,
    available,
    request_hash,
)
from services.ledger.writer import ExpireJob, TccJob, TransfersJob, Writer, WriterUnavailable


def problem(refusal: Refusal) -> ProblemError:
    return ProblemError(
        refusal.status, refusal.code, refusal.title, refusal.detail, errors=refusal.errors
    )


async def _submit(writer: Writer, job: TransfersJob | TccJob | ExpireJob) -> Any:
    try:
        return await writer.submit(job)
    except Refusal as refusal:
        raise problem(refusal) from None
    except WriterUnavailable as exc:
        raise ProblemError(
            503, exc.code, "Ledger unavailable", exc.detail, headers={"Retry-After": "1"}
        ) from None


# ------------------------------------------------------------------ accounts


def account_out(row: asyncpg.Record) -> wire.Account:
    dnec = row["debits_must_not_exceed_credits"]
    cned = row["credits_must_not_exceed_debits"]
    counters = (
        int(row["debits_pending"]),
        int(row["debits_posted"]),
        int(row["credits_pending"]),
        int(row["credits_posted"]),
    )
    return wire.Account(
        id=row["id"],
        currency=row["currency"],
        code=row["code"],
        flags=wire.AccountFlagsOut(
            debits_must_not_exceed_credits=dnec, credits_must_not_exceed_debits=cned
        ),
        debits_pending=counters[0],
        debits_posted=counters[1],
        credits_pending=counters[2],
        credits_posted=counters[3],
        available=available(dnec, cned, *counters),
        created_at=row["created_at"],
    )


async def create_account(pool: asyncpg.Pool, body: wire.AccountCreate) -> tuple[bool, wire.Account]:
    if not is_known_currency(body.currency):
        raise ProblemError(
            422, "unknown_currency", "Unknown currency", f"{body.currency} is not ISO 4217"
        )
    flags = body.flags
    if flags.debits_must_not_exceed_credits and flags.credits_must_not_exceed_debits:
        raise ProblemError(
            422, "flags_mutually_exclusive", "Flags are mutually exclusive", "choose one limit"
        )
    async with pool.acquire() as conn:
        created, row = await store.insert_account(
            conn,
            body.id,
            body.currency,
            body.code,
            flags.debits_must_not_exceed_credits,
            flags.credits_must_not_exceed_debits,
        )
    if not created and (
        row["currency"] != body.currency
        or row["code"] != body.code
        or row["debits_must_not_exceed_credits"] != flags.debits_must_not_exceed_credits
        or row["credits_must_not_exceed_debits"] != flags.credits_must_not_exceed_debits
    ):
        raise ProblemError(
            409,
            "account_exists_with_different_body",
            "Account id already used",
            f"account {body.id} exists with another currency, code or flags",
        )
    return created, account_out(row)


async def get_account(pool: asyncpg.Pool, account_id: str) -> wire.Account:
    async with pool.acquire() as conn:
        row = await store.fetch_account(conn, account_id)
    if row is None:
        raise ProblemError(404, "account_not_found", "Account not found", account_id)
    return account_out(row)


# ------------------------------------------------------------------ transfers


def to_request(index: int, t: wire.TransferIn) -> TransferRequest:
    """Shape checks that need no state; violations refuse the whole request."""

    def bad(detail: str, code: str = "validation_error") -> ProblemError:
        return ProblemError(
            422,
            code,
            "Invalid transfer",
            f"transfers[{index}]: {detail}",
            errors=[{"index": index, "id": t.id, "code": code, "detail": detail}],
        )

    if t.id.startswith(RESERVED_ID_PREFIXES):
        raise bad(f"ids starting with {RESERVED_ID_PREFIXES} are reserved", "reserved_transfer_id")
    if t.kind in (KIND_POST, KIND_VOID):
        if t.pending_id is None:
            raise bad(f"a {t.kind} needs pending_id")
        if t.debit_account_id or t.credit_account_id or t.currency or t.timeout_s:
            raise bad(f"a {t.kind} takes only pending_id (and amount_minor for a partial post)")
        if t.kind == KIND_VOID and t.amount_minor is not None:
            raise bad("a void takes no amount_minor")
    else:
        if t.pending_id is not None:
            raise bad(f"a {t.kind} transfer takes no pending_id")
        if (
            t.debit_account_id is None
            or t.credit_account_id is None
            or t.amount_minor is None
            or t.currency is None
        ):
            raise bad("debit_account_id, credit_account_id, amount_minor and currency are required")
        if not is_known_currency(t.currency):
            raise bad(f"{t.currency} is not ISO 4217", "unknown_currency")
        if t.kind == "single" and t.timeout_s:
            raise bad("only a pending transfer takes timeout_s")
    return TransferRequest(
        t.id,
        t.kind,
        t.debit_account_id,
        t.credit_account_id,
        t.amount_minor,
        t.currency,
        t.pending_id,
        t.timeout_s,
        t.linked,
        t.code,
        request_hash(
            t.kind,
            t.debit_account_id,
            t.credit_account_id,
            t.amount_minor,
            t.currency,
            t.pending_id,
            t.timeout_s,
            t.linked,
            t.code,
        ),
    )


async def create_transfers(writer: Writer, body: wire.TransfersRequest) -> wire.TransfersResponse:
    if len(body.transfers) > BATCH_TRANSFERS_MAX:
        raise ProblemError(
            422,
            "batch_too_large",
            "Too many transfers",
            f"at most {BATCH_TRANSFERS_MAX:,} transfers per request, got {len(body.transfers):,}",
        )
    requests = [to_request(i, t) for i, t in enumerate(body.transfers)]
    outcomes: list[Outcome] = await _submit(writer, TransfersJob(requests))
    return wire.TransfersResponse(
        results=[
            wire.TransferResult(
                index=i,
                id=req.id,
                status=o.status,  # type: ignore[arg-type]
                code=o.code,
                seq=o.seq,
            )
            for i, (req, o) in enumerate(zip(requests, outcomes, strict=True))
        ]
    )


def transfer_out(row: asyncpg.Record) -> wire.Transfer:
    return wire.Transfer(
        seq=row["seq"],
        id=row["id"],
        kind=row["kind"],
        debit_account_id=row["debit_account_id"],
        credit_account_id=row["credit_account_id"],
        amount_minor=int(row["amount_minor"]),
        currency=row["currency"],
        pending_id=row["pending_id"],
        timeout_s=row["timeout_s"],
        expires_at=row["expires_at"],
        code=row["code"],
        created_at=row["created_at"],
        hash=bytes(row["hash"]).hex(),
    )


async def get_transfer(pool: asyncpg.Pool, transfer_id: str) -> wire.Transfer:
    async with pool.acquire() as conn:
        row = await store.fetch_transfer(conn, transfer_id)
    if row is None:
        raise ProblemError(404, "transfer_not_found", "Transfer not found", transfer_id)
    return transfer_out(row)


async def history(
    pool: asyncpg.Pool, account_id: str, cursor: str | None, limit: int
) -> wire.TransferPage:
    after_seq = 0
    if cursor:
        if not cursor.isdigit() or len(cursor) > 19:
            raise ProblemError(400, "invalid_cursor", "Invalid cursor", "use a next_cursor value")
        after_seq = int(cursor)
    async with pool.acquire() as conn:
        if await store.fetch_account(conn, account_id) is None:
            raise ProblemError(404, "account_not_found", "Account not found", account_id)
        rows = await store.history(conn, account_id, after_seq, limit)
    page = [transfer_out(r) for r in rows]
    next_cursor = str(page[-1].seq) if len(page) == limit else None
    return wire.TransferPage(transfers=page, next_cursor=next_cursor)


async def balance(
    pool: asyncpg.Pool, account_id: str, as_of_seq: int | None, as_of: datetime | None
) -> wire.Balance:
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        row = await store.fetch_account(conn, account_id)
        if row is None:
            raise ProblemError(404, "account_not_found", "Account not found", account_id)
        if as_of_seq is None:
            as_of_seq = (
                await store.seq_at(conn, as_of) if as_of is not None else await store.head_seq(conn)
            )
        counters = await store.counters_at(conn, account_id, as_of_seq)
    dnec = row["debits_must_not_exceed_credits"]
    cned = row["credits_must_not_exceed_debits"]
    return wire.Balance(
        account_id=account_id,
        currency=row["currency"],
        as_of_seq=as_of_seq,
        debits_pending=counters[0],
        debits_posted=counters[1],
        credits_pending=counters[2],
        credits_posted=counters[3],
        available=available(dnec, cned, *counters),
    )


async def verify(pool: asyncpg.Pool) -> wire.VerifyReport:
    async with pool.acquire() as conn:
        report = await verify_chain(conn)
    return wire.VerifyReport(**report.__dict__)


# ------------------------------------------------------------------ TCC participant


async def tcc_try(
    writer: Writer, gid: str, branch_id: str, body: wire.TccTry, default_timeout_s: int
) -> wire.TccResult:
    legs = [
        TccLeg(x.debit_account_id, x.credit_account_id, x.amount_minor, x.currency)
        for x in body.legs
    ]
    timeout_s = body.timeout_s if body.timeout_s is not None else default_timeout_s
    answer: TccAnswer = await _submit(writer, TccJob("try", gid, branch_id, legs, timeout_s))
    return _tcc_result(gid, branch_id, answer)


async def tcc_confirm(writer: Writer, gid: str, branch_id: str) -> wire.TccResult:
    answer: TccAnswer = await _submit(writer, TccJob("confirm", gid, branch_id))
    return _tcc_result(gid, branch_id, answer)


async def tcc_cancel(writer: Writer, gid: str, branch_id: str) -> wire.TccResult:
    answer: TccAnswer = await _submit(writer, TccJob("cancel", gid, branch_id))
    return _tcc_result(gid, branch_id, answer)


def _tcc_result(gid: str, branch_id: str, answer: TccAnswer) -> wire.TccResult:
    return wire.TccResult(
        gid=gid,
        branch_id=branch_id,
        status=answer.status,  # type: ignore[arg-type]
        transfer_ids=list(answer.transfer_ids),
    )
