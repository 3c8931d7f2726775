"""One writer batch: requests applied in arrival order against the balances loaded at its
start, producing the rows to append and the per-account counter deltas to write.

TigerBeetle's semantics: single-phase, pending (with timeout), post (full or partial) and void
of a pending; a chain of ``linked`` transfers succeeds or fails as one; a pending is resolved
at most once; a transfer id is an idempotency key whose outcome (rejections included) is
remembered; an id reused with a different body is a conflict.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from services.ledger.domain.chain import transfer_hash
from services.ledger.domain.currencies import is_known_currency
from services.ledger.domain.model import (
    INT64_MAX,
    KIND_EXPIRE,
    KIND_PENDING,
    KIND_POST,
    KIND_SINGLE,
    KIND_VOID,
    STATUS_CREATED,
    STATUS_REJECTED,
    Account,
    Barrier,
    Outcome,
    Pending,
    Refusal,
    Rejection,
    Stored,
    TccAnswer,
    TccLeg,
    TransferRequest,
    TransferRow,
    body_hash,
    expire_transfer_id,
    request_hash,
    tcc_transfer_id,
)

_ALREADY = {
    KIND_POST: "pending_transfer_already_posted",
    KIND_VOID: "pending_transfer_already_voided",
    KIND_EXPIRE: "pending_transfer_expired",
}
_INSUFFICIENT = {"exceeds_credits", "exceeds_debits"}

_Undo = list[tuple[Account, tuple[int, int, int, int]] | tuple[Pending, str | None] | str]


class Batch:
    def __init__(
        self,
        *,
        accounts: dict[str, Account],
        pendings: dict[str, Pending],
        stored: dict[str, Stored],
        barriers: dict[tuple[str, str], dict[str, Barrier]],
        head_seq: int,
        head_hash: bytes,
        now: datetime,
    ) -> None:
        self.accounts = accounts
        self.pendings = pendings
        self.stored = stored
        self.barriers = barriers
        self.head_seq = head_seq
        self.head_hash = head_hash
        self.now = now
        self.rows: list[TransferRow] = []
        self.rejections: list[Rejection] = []
        self.new_barriers: list[Barrier] = []
        self.touched: dict[str, tuple[int, int, int, int]] = {}  # id -> counters at start

    # ----------------------------------------------------------------- transfers API

    def apply_transfers(self, requests: Sequence[TransferRequest]) -> list[Outcome]:
        """Apply one request (a list of transfers); raise ``Refusal`` before any effect when
        the request is invalid as a whole (unknown account, currency, conflicting id)."""
        self._check_request(requests)
        outcomes: list[Outcome | None] = [None] * len(requests)
        start = 0
        while start < len(requests):
            end = start
            while end < len(requests) - 1 and requests[end].linked:
                end += 1
            chain = range(start, end + 1)
            start = end + 1
            known = [i for i in chain if requests[i].id in self.stored]
            if known and len(known) == len(chain):
                for i in chain:
                    outcomes[i] = self.stored[requests[i].id].outcome
                continue
            if requests[chain[-1]].linked:  # the request ended inside a chain
                self._reject_chain(requests, chain, outcomes, None, "linked_event_chain_open")
                continue
            if known:  # a chain mixing new and already-used ids cannot be applied atomically
                for i in known:
                    outcomes[i] = self.stored[requests[i].id].outcome
                self._reject_chain(
                    requests, [i for i in chain if i not in known], outcomes, None,
                    "linked_event_failed",
                )  # fmt: skip
                continue
            undo: _Undo = []
            failed_at, failed_code = None, None
            for i in chain:
                code = self._apply_one(requests[i], undo)
                if code is not None:
                    failed_at, failed_code = i, code
                    break
            if failed_code is not None:
                self._rollback(undo)
                self._reject_chain(requests, chain, outcomes, failed_at, failed_code)
                continue
            for i in chain:
                outcomes[i] = self._append(requests[i])
        assert all(o is not None for o in outcomes)
        return [o for o in outcomes if o is not None]

    def _check_request(self, requests: Sequence[TransferRequest]) -> None:
        errors: list[dict[str, object]] = []
        seen: dict[str, bytes] = {}
        status, code = 422, ""
        for index, req in enumerate(requests):
            previous = self.stored.get(req.id)
            if req.id in seen:
                errors.append({"index": index, "id": req.id, "code": "transfer_id_duplicated"})
                if status != 409:
                    code = (
                        "transfer_id_duplicated"
                        if code in ("", "transfer_id_duplicated")
                        else "transfers_invalid"
                    )
                continue
            seen[req.id] = req.body_hash
            if previous is not None and previous.body_hash != req.body_hash:
                errors.append({"index": index, "id": req.id, "code": "transfer_id_conflict"})
                status, code = 409, "transfer_id_conflict"
                continue
            if previous is not None or req.kind in (KIND_POST, KIND_VOID):
                continue  # a replay, or refers to a pending whose state decides the outcome
            problem = self._check_legs(
                req.debit_account_id, req.credit_account_id, req.currency, req.amount_minor
            )
            if problem is not None:
                errors.append({"index": index, "id": req.id, "code": problem})
                if status != 409:
                    code = problem if code in ("", problem) else "transfers_invalid"
        if errors:
            if status == 409:
                raise Refusal(
                    409,
                    "transfer_id_conflict",
                    "Transfer id reused with a different body",
                    "a transfer id is an idempotency key; retry with the identical body",
                    errors,
                )
            raise Refusal(422, code, "Invalid transfers", "no transfer was applied", errors)

    def _check_legs(
        self, debit_id: str | None, credit_id: str | None, currency: str | None, amount: int | None
    ) -> str | None:
        if debit_id is None or credit_id is None or currency is None or amount is None:
            return "validation_error"
        if not is_known_currency(currency):
            return "unknown_currency"
        if debit_id == credit_id:
            return "accounts_must_be_different"
        debit = self.accounts.get(debit_id)
        credit = self.accounts.get(credit_id)
        if debit is None or credit is None:
            return "account_not_found"
        if debit.currency != currency or credit.currency != currency:
            return "currency_mismatch"
        return None

    def _touch(self, account: Account, undo: _Undo) -> None:
        counters = account.counters()
        self.touched.setdefault(account.id, counters)
        undo.append((account, counters))

    def _apply_one(self, req: TransferRequest, undo: _Undo) -> str | None:
        if req.kind in (KIND_SINGLE, KIND_PENDING):
            assert req.debit_account_id is not None and req.credit_account_id is not None
            assert req.amount_minor is not None and req.amount_minor > 0
            debit = self.accounts[req.debit_account_id]
            credit = self.accounts[req.credit_account_id]
            is_pending = req.kind == KIND_PENDING
            code = self._move(debit, credit, req.amount_minor, is_pending, undo)
            if code is None and is_pending:
                # Visible at once so a later transfer of the same chain or batch can post it.
                assert req.currency is not None
                self.pendings[req.id] = Pending(
                    req.id, KIND_PENDING, debit.id, credit.id, req.amount_minor, req.currency, None
                )
                undo.append(req.id)
            return code
        return self._resolve(req.pending_id, req.kind, req.amount_minor, undo)

    def _move(
        self, debit: Account, credit: Account, amount: int, pending: bool, undo: _Undo
    ) -> str | None:
        if debit.debits_pending + debit.debits_posted + amount > INT64_MAX:
            return "overflows_debits"
        if credit.credits_pending + credit.credits_posted + amount > INT64_MAX:
            return "overflows_credits"
        if debit.debits_must_not_exceed_credits and (
            debit.debits_pending + debit.debits_posted + amount > debit.credits_posted
        ):
            return "exceeds_credits"
        if credit.credits_must_not_exceed_debits and (
            credit.credits_pending + credit.credits_posted + amount > credit.debits_posted
        ):
            return "exceeds_debits"
        self._touch(debit, undo)
        self._touch(credit, undo)
        if pending:
            debit.debits_pending += amount
            credit.credits_pending += amount
        else:
            debit.debits_posted += amount
            credit.credits_posted += amount
        return None

    def _resolve(
        self, pending_id: str | None, kind: str, amount: int | None, undo: _Undo
    ) -> str | None:
        assert pending_id is not None
        pending = self.pendings.get(pending_id)
        if pending is None:
            return "pending_transfer_not_found"
        if pending.kind != KIND_PENDING:
            return "pending_transfer_not_pending"
        if pending.resolved_by is not None:
            return _ALREADY[pending.resolved_by]
        if amount is not None and amount > pending.amount_minor:
            return "exceeds_pending_transfer_amount"
        debit = self.accounts[pending.debit_account_id]
        credit = self.accounts[pending.credit_account_id]
        self._touch(debit, undo)
        self._touch(credit, undo)
        undo.append((pending, None))
        debit.debits_pending -= pending.amount_minor
        credit.credits_pending -= pending.amount_minor
        if kind == KIND_POST:
            posted = pending.amount_minor if amount is None else amount
            debit.debits_posted += posted
            credit.credits_posted += posted
        assert debit.debits_pending >= 0 and credit.credits_pending >= 0
        pending.resolved_by = kind
        return None

    def _rollback(self, undo: _Undo) -> None:
        for entry in reversed(undo):
            if isinstance(entry, str):
                del self.pendings[entry]
                continue
            target, saved = entry
            if isinstance(target, Account):
                assert isinstance(saved, tuple)
                target.restore(saved)
            else:
                assert not isinstance(saved, tuple)
                target.resolved_by = saved

    def _reject_chain(
        self,
        requests: Sequence[TransferRequest],
        chain: Iterable[int],
        outcomes: list[Outcome | None],
        failed_at: int | None,
        failed_code: str,
    ) -> None:
        for i in chain:
            code = failed_code if failed_at is None or i == failed_at else "linked_event_failed"
            req = requests[i]
            outcome = Outcome(STATUS_REJECTED, code)
            outcomes[i] = outcome
            self.stored[req.id] = Stored(req.body_hash, outcome)
            self.rejections.append(Rejection(req.id, req.body_hash, code))

    def _append(self, req: TransferRequest) -> Outcome:
        if req.kind in (KIND_SINGLE, KIND_PENDING):
            assert req.debit_account_id is not None and req.credit_account_id is not None
            assert req.amount_minor is not None and req.currency is not None
            debit_id, credit_id = req.debit_account_id, req.credit_account_id
            amount, currency = req.amount_minor, req.currency
            pending_delta = amount if req.kind == KIND_PENDING else 0
            posted_delta = amount if req.kind == KIND_SINGLE else 0
        else:
            assert req.pending_id is not None
            pending = self.pendings[req.pending_id]
            debit_id, credit_id = pending.debit_account_id, pending.credit_account_id
            currency = pending.currency
            pending_delta = -pending.amount_minor
            if req.kind == KIND_POST:
                amount = pending.amount_minor if req.amount_minor is None else req.amount_minor
                posted_delta = amount
            else:
                amount, posted_delta = pending.amount_minor, 0
        row = self._row(
            req.id, req.kind, debit_id, credit_id, amount, currency, pending_delta, posted_delta,
            req.pending_id, req.timeout_s, req.code, req.body_hash,
        )  # fmt: skip
        outcome = Outcome(STATUS_CREATED, None, row.seq)
        self.stored[req.id] = Stored(req.body_hash, outcome)
        return outcome

    def _row(
        self,
        id_: str,
        kind: str,
        debit_id: str,
        credit_id: str,
        amount: int,
        currency: str,
        pending_delta: int,
        posted_delta: int,
        pending_id: str | None,
        timeout_s: int,
        code: int,
        fingerprint: bytes,
    ) -> TransferRow:
        seq = self.head_seq + 1
        expires_at = self.now + timedelta(seconds=timeout_s) if timeout_s > 0 else None
        digest = transfer_hash(
            self.head_hash,
            seq=seq,
            id=id_,
            kind=kind,
            debit_account_id=debit_id,
            credit_account_id=credit_id,
            amount_minor=amount,
            currency=currency,
            pending_delta_minor=pending_delta,
            posted_delta_minor=posted_delta,
            pending_id=pending_id,
            timeout_s=timeout_s,
            expires_at=expires_at,
            code=code,
            body_hash=fingerprint,
            created_at=self.now,
        )
        row = TransferRow(
            seq, id_, kind, debit_id, credit_id, amount, currency, pending_delta, posted_delta,
            pending_id, timeout_s, expires_at, code, fingerprint, self.now, self.head_hash, digest,
        )  # fmt: skip
        self.rows.append(row)
        self.head_seq, self.head_hash = seq, digest
        return row

    # ----------------------------------------------------------------- expiry

    def expire(self, pending_ids: Iterable[str]) -> list[str]:
        """Append an ``expire`` record for each pending still unresolved. A pending that was
        posted (a confirmed TCC hold) is resolved, so expiry can never undo a confirm."""
        expired = []
        for pending_id in pending_ids:
            pending = self.pendings.get(pending_id)
            if pending is None or pending.kind != KIND_PENDING or pending.resolved_by is not None:
                continue
            undo: _Undo = []
            assert self._resolve(pending_id, KIND_EXPIRE, None, undo) is None
            fingerprint = body_hash(KIND_EXPIRE, pending_id)
            self._row(
                expire_transfer_id(pending_id), KIND_EXPIRE, pending.debit_account_id,
                pending.credit_account_id, pending.amount_minor, pending.currency,
                -pending.amount_minor, 0, pending_id, 0, 0, fingerprint,
            )  # fmt: skip
            expired.append(pending_id)
        return expired

    # ----------------------------------------------------------------- TCC participant

    def _barrier(self, gid: str, branch_id: str) -> dict[str, Barrier]:
        return self.barriers.setdefault((gid, branch_id), {})

    def _record(self, barrier: Barrier) -> None:
        ops = self._barrier(barrier.gid, barrier.branch_id)
        assert barrier.op not in ops, "one effect per (gid, branch, op)"
        ops[barrier.op] = barrier
        self.new_barriers.append(barrier)

    def tcc_try(
        self, gid: str, branch_id: str, legs: Sequence[TccLeg], timeout_s: int
    ) -> TccAnswer:
        fingerprint = body_hash(
            "try", timeout_s, *[(x.debit_account_id, x.credit_account_id, x.amount_minor,
                                 x.currency) for x in legs],
        )  # fmt: skip
        ops = self._barrier(gid, branch_id)
        if "cancel" in ops:
            raise Refusal(
                409,
                "tcc_branch_cancelled",
                "Branch already cancelled",
                "a try that arrives after its cancel has no effect",
            )
        done = ops.get("try")
        if done is not None:
            if done.body_hash != fingerprint:
                raise Refusal(409, "tcc_branch_conflict", "Try repeated with different legs")
            return _answer_or_refuse(done)
        errors = []
        for index, leg in enumerate(legs):
            problem = self._check_legs(
                leg.debit_account_id, leg.credit_account_id, leg.currency, leg.amount_minor
            )
            if problem is not None:
                errors.append({"index": index, "code": problem})
        if errors:
            codes = {e["code"] for e in errors}
            code = codes.pop() if len(codes) == 1 else "legs_invalid"
            raise Refusal(422, str(code), "Invalid legs", "nothing was held", errors)
        requests = [
            TransferRequest(
                tcc_transfer_id(gid, branch_id, "try", i), KIND_PENDING, leg.debit_account_id,
                leg.credit_account_id, leg.amount_minor, leg.currency, None, timeout_s,
                i < len(legs) - 1, 0,
                request_hash(KIND_PENDING, leg.debit_account_id, leg.credit_account_id,
                             leg.amount_minor, leg.currency, None, timeout_s, False, 0),
            )
            for i, leg in enumerate(legs)
        ]  # fmt: skip
        code = self._apply_chain(requests)
        if code is None:
            barrier = Barrier(
                gid, branch_id, "try", "tried", None, tuple(r.id for r in requests), fingerprint
            )
        else:
            code = "insufficient_funds" if code in _INSUFFICIENT else code
            barrier = Barrier(gid, branch_id, "try", "rejected", code, (), fingerprint)
        self._record(barrier)
        return _answer_or_refuse(barrier)

    def tcc_confirm(self, gid: str, branch_id: str) -> TccAnswer:
        ops = self._barrier(gid, branch_id)
        if "confirm" in ops:
            return _answer_or_refuse(ops["confirm"])
        if "cancel" in ops:
            raise Refusal(409, "tcc_branch_cancelled", "Branch already cancelled")
        tried = ops.get("try")
        if tried is None:
            raise Refusal(409, "tcc_branch_not_tried", "Confirm before any try")
        if tried.status == "rejected":
            raise Refusal(
                409,
                "tcc_try_rejected",
                "The try was rejected; there is nothing to confirm",
                f"the try was rejected with {tried.code}",
            )
        requests = [
            TransferRequest(
                tcc_transfer_id(gid, branch_id, "confirm", i), KIND_POST, None, None, None, None,
                pending_id, 0, i < len(tried.transfer_ids) - 1, 0,
                request_hash(KIND_POST, None, None, None, None, pending_id, 0, False, 0),
            )
            for i, pending_id in enumerate(tried.transfer_ids)
        ]  # fmt: skip
        code = self._apply_chain(requests)
        if code is not None:
            # Only an appended expiry can get here; the default hold timeout is hours so that
            # a coordinator's confirm always arrives first. Nothing is recorded.
            raise Refusal(409, "tcc_hold_expired", "The hold is no longer pending", code)
        barrier = Barrier(
            gid, branch_id, "confirm", "confirmed", None, tuple(r.id for r in requests), None
        )
        self._record(barrier)
        return _answer_or_refuse(barrier)

    def tcc_cancel(self, gid: str, branch_id: str) -> TccAnswer:
        ops = self._barrier(gid, branch_id)
        if "cancel" in ops:
            return _answer_or_refuse(ops["cancel"])
        if "confirm" in ops:
            raise Refusal(409, "tcc_branch_confirmed", "Branch already confirmed")
        tried = ops.get("try")
        void_ids: list[str] = []
        if tried is not None and tried.status == "tried":
            for i, pending_id in enumerate(tried.transfer_ids):
                pending = self.pendings.get(pending_id)
                assert pending is not None, "a tried branch's holds are loaded"
                if pending.resolved_by is not None:  # expired meanwhile: nothing left to void
                    continue
                req = TransferRequest(
                    tcc_transfer_id(gid, branch_id, "cancel", i), KIND_VOID, None, None, None,
                    None, pending_id, 0, False, 0,
                    request_hash(KIND_VOID, None, None, None, None, pending_id, 0, False, 0),
                )  # fmt: skip
                assert self._apply_chain([req]) is None
                void_ids.append(req.id)
        # No try (empty rollback) or a rejected try: a tombstone with no transfer.
        barrier = Barrier(gid, branch_id, "cancel", "cancelled", None, tuple(void_ids), None)
        self._record(barrier)
        return _answer_or_refuse(barrier)

    def _apply_chain(self, requests: Sequence[TransferRequest]) -> str | None:
        undo: _Undo = []
        for req in requests:
            code = self._apply_one(req, undo)
            if code is not None:
                self._rollback(undo)
                return code
        for req in requests:
            self._append(req)
        return None

    # ----------------------------------------------------------------- results

    def deltas(self) -> list[tuple[str, int, int, int, int]]:
        """One (id, Δdebits_pending, Δdebits_posted, Δcredits_pending, Δcredits_posted) per
        account this batch changed."""
        out = []
        for account_id, before in self.touched.items():
            after = self.accounts[account_id].counters()
            delta = tuple(a - b for a, b in zip(after, before, strict=True))
            if any(delta):
                out.append((account_id, delta[0], delta[1], delta[2], delta[3]))
        return out


def _answer_or_refuse(barrier: Barrier) -> TccAnswer:
    if barrier.status == "rejected":
        assert barrier.code is not None
        raise Refusal(
            422,
            barrier.code,
            "Hold rejected",
            "the try was rejected and this outcome is remembered",
        )
    return TccAnswer(barrier.status, barrier.transfer_ids)
