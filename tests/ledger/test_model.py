"""Hypothesis drives the real ledger process and a small pure model side by side.

After every step: the service's counters equal the model's; each currency's debits equal its
credits; no flagged account is overdrawn. Replays of earlier transfers return identical
results; a pending is resolved at most once. At the end of each example the service's own
verify must find the chain intact and every counter equal to the fold of its transfers.
"""

from __future__ import annotations

import http.client
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    rule,
)

from tests.ledger.conftest import TOKEN, ledger_env
from tests.support import infra
from tests.support.processes import ServiceProcess, free_port

FLAGS = ("none", "no_overdraft", "no_credit_overrun")


@pytest.fixture(scope="module")
def ledger_process(run_id: str, granted_dsns: list[str], app_role: str) -> Iterator[int]:
    port = free_port()
    env = ledger_env(run_id, prefix=f"{run_id}_model_", LEDGER_PORT=str(port))
    process = ServiceProcess("ledger-model", "services.ledger", env, port).start()
    granted_dsns.append(infra.database_url().rsplit("/", 1)[0] + f"/{run_id}_model_ledger")
    try:
        yield port
    finally:
        process.stop()


class Api:
    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        payload = json.dumps(body).encode() if body is not None else None
        headers = {"X-Service-Token": TOKEN, "Content-Type": "application/json"}
        self.conn.request(method, path, body=payload, headers=headers)
        response = self.conn.getresponse()
        return response.status, json.loads(response.read())


@dataclass
class ModelAccount:
    id: str
    currency: str
    flag: str
    c: list[int] = field(default_factory=lambda: [0, 0, 0, 0])  # dp, dpo, cp, cpo


@dataclass
class ModelPending:
    id: str
    debit: str
    credit: str
    amount: int
    resolved: str | None = None


class LedgerModel(RuleBasedStateMachine):
    port: int = 0
    accounts = Bundle("accounts")
    pendings = Bundle("pendings")
    done = Bundle("done")

    def __init__(self) -> None:
        super().__init__()
        self.api = Api(self.port)
        self.tag = uuid.uuid4().hex[:8]
        self.n = 0
        self.model: dict[str, ModelAccount] = {}
        self.pending: dict[str, ModelPending] = {}

    def next_id(self) -> str:
        self.n += 1
        return f"{self.tag}-{self.n}"

    # ------------------------------------------------------------------ model rules

    def _move(
        self, debit: ModelAccount, credit: ModelAccount, amount: int, pending: bool
    ) -> str | None:
        if debit.flag == "no_overdraft" and debit.c[0] + debit.c[1] + amount > debit.c[3]:
            return "exceeds_credits"
        if credit.flag == "no_credit_overrun" and credit.c[2] + credit.c[3] + amount > credit.c[1]:
            return "exceeds_debits"
        slot = 0 if pending else 1
        debit.c[slot] += amount
        credit.c[slot + 2] += amount
        return None

    def _apply(self, t: dict[str, Any]) -> str | None:
        if t["kind"] in ("single", "pending"):
            return self._move(
                self.model[t["debit_account_id"]],
                self.model[t["credit_account_id"]],
                t["amount_minor"],
                t["kind"] == "pending",
            )
        p = self.pending[t["pending_id"]]
        if p.resolved:
            return {
                "post": "pending_transfer_already_posted",
                "void": "pending_transfer_already_voided",
            }[p.resolved]
        amount = t.get("amount_minor") or p.amount
        if amount > p.amount:
            return "exceeds_pending_transfer_amount"
        debit, credit = self.model[p.debit], self.model[p.credit]
        debit.c[0] -= p.amount
        credit.c[2] -= p.amount
        if t["kind"] == "post":
            debit.c[1] += amount
            credit.c[3] += amount
        p.resolved = t["kind"]
        return None

    def _submit(self, *items: dict[str, Any]) -> list[dict[str, Any]]:
        status, body = self.api.call("POST", "/v1/transfers", {"transfers": list(items)})
        assert status == 200, body
        snapshot = {k: list(v.c) for k, v in self.model.items()}
        resolved = {k: v.resolved for k, v in self.pending.items()}
        codes = []
        for t in items:
            code = self._apply(t)
            codes.append(code)
            if code is not None:
                break
        if any(c is not None for c in codes):  # a chain fails whole (items are one chain)
            for k, v in snapshot.items():
                self.model[k].c = v
            for k, r in resolved.items():
                self.pending[k].resolved = r
            failed = len(codes) - 1
            codes = [
                codes[failed] if i == failed else "linked_event_failed" for i in range(len(items))
            ]
        else:
            codes = [None] * len(items)
        got = [(r["status"], r["code"]) for r in body["results"]]
        want = [("created", None) if c is None else ("rejected", c) for c in codes]
        assert got == want, (items, got, want)
        for t, code in zip(items, codes, strict=True):
            if code is None and t["kind"] == "pending":
                self.pending[t["id"]] = ModelPending(
                    t["id"], t["debit_account_id"], t["credit_account_id"], t["amount_minor"]
                )
        return body["results"]

    # ------------------------------------------------------------------ rules

    @initialize(target=accounts)
    def opening_accounts(self) -> Any:
        """A funding account and one account per flag, each with some money to move."""
        ids = [self.open_account("EUR", flag) for flag in FLAGS]
        for account_id in ids[1:]:
            debit, credit = ids[0], account_id
            if self.model[account_id].flag == "no_credit_overrun":
                debit, credit = account_id, ids[0]
            self._submit(
                {"id": self.next_id(), "kind": "single", "debit_account_id": debit,
                 "credit_account_id": credit, "amount_minor": 600, "currency": "EUR"}
            )  # fmt: skip
        return multiple(*ids)

    @rule(
        target=accounts,
        currency=st.sampled_from(["EUR"] * 5 + ["USD"]),
        flag=st.sampled_from(FLAGS),
    )
    def open_account(self, currency: str, flag: str) -> str:
        account_id = self.next_id()
        status, body = self.api.call(
            "POST",
            "/v1/accounts",
            {
                "id": account_id,
                "currency": currency,
                "flags": {
                    "debits_must_not_exceed_credits": flag == "no_overdraft",
                    "credits_must_not_exceed_debits": flag == "no_credit_overrun",
                },
            },
        )
        assert status == 201, body
        self.model[account_id] = ModelAccount(account_id, currency, flag)
        return account_id

    @rule(
        target=done,
        debit=accounts,
        credit=accounts,
        amount=st.integers(1, 500),
        pending=st.booleans(),
    )
    def transfer(self, debit: str, credit: str, amount: int, pending: bool) -> Any:
        d, c = self.model[debit], self.model[credit]
        t = {
            "id": self.next_id(),
            "kind": "pending" if pending else "single",
            "debit_account_id": debit,
            "credit_account_id": credit,
            "amount_minor": amount,
            "currency": d.currency,
        }
        if debit == credit or d.currency != c.currency:
            before = self._all_counters()
            status, body = self.api.call("POST", "/v1/transfers", {"transfers": [t]})
            expected = "accounts_must_be_different" if debit == credit else "currency_mismatch"
            assert (status, body["code"]) == (422, expected)
            assert self._all_counters() == before
            return ({"transfers": [t]}, None)
        results = self._submit(t)
        return ({"transfers": [t]}, results)

    @rule(
        target=done, debit=accounts, credit=accounts, a=st.integers(1, 300), b=st.integers(1, 300)
    )
    def linked_pair(self, debit: str, credit: str, a: int, b: int) -> Any:
        d, c = self.model[debit], self.model[credit]
        if debit == credit or d.currency != c.currency:
            return ({"transfers": []}, None)
        legs = {"debit_account_id": debit, "credit_account_id": credit, "currency": d.currency}
        first = {"id": self.next_id(), "kind": "single", "amount_minor": a, "linked": True, **legs}
        second = {"id": self.next_id(), "kind": "single", "amount_minor": b, **legs}
        return ({"transfers": [first, second]}, self._submit(first, second))

    @rule(target=pendings, debit=accounts, credit=accounts, amount=st.integers(1, 400))
    def hold(self, debit: str, credit: str, amount: int) -> Any:
        d, c = self.model[debit], self.model[credit]
        if debit == credit or d.currency != c.currency:
            return multiple()
        legs = {"debit_account_id": debit, "credit_account_id": credit, "currency": d.currency}
        t = {"id": self.next_id(), "kind": "pending", "amount_minor": amount, **legs}
        [result] = self._submit(t)
        return t["id"] if result["status"] == "created" else multiple()

    @rule(
        target=done,
        pending=pendings,
        partial=st.one_of(st.none(), st.integers(1, 500)),
        post=st.booleans(),
    )
    def resolve(self, pending: str, partial: int | None, post: bool) -> Any:
        t: dict[str, Any] = {
            "id": self.next_id(),
            "kind": "post" if post else "void",
            "pending_id": pending,
        }
        if post and partial is not None:
            t["amount_minor"] = partial
        return ({"transfers": [t]}, self._submit(t))

    @rule(made=done)
    def replay_is_identical(self, made: Any) -> None:
        body, results = made
        if not results:
            return
        status, again = self.api.call("POST", "/v1/transfers", body)
        assert status == 200 and again["results"] == results

    # ------------------------------------------------------------------ invariants

    def _all_counters(self) -> dict[str, tuple[int, ...]]:
        out = {}
        for account_id in self.model:
            status, body = self.api.call("GET", f"/v1/accounts/{account_id}")
            assert status == 200
            out[account_id] = (
                body["debits_pending"], body["debits_posted"],
                body["credits_pending"], body["credits_posted"],
            )  # fmt: skip
        return out

    @invariant()
    def service_matches_model_and_money_is_conserved(self) -> None:
        real = self._all_counters()
        assert real == {k: tuple(v.c) for k, v in self.model.items()}
        for currency in ("EUR", "USD"):
            rows = [real[k] for k, v in self.model.items() if v.currency == currency]
            assert sum(r[1] for r in rows) == sum(r[3] for r in rows), "posted not conserved"
            assert sum(r[0] for r in rows) == sum(r[2] for r in rows), "pending not conserved"
        for k, v in self.model.items():
            dp, dpo, cp, cpo = real[k]
            if v.flag == "no_overdraft":
                assert dp + dpo <= cpo
            if v.flag == "no_credit_overrun":
                assert cp + cpo <= dpo

    def teardown(self) -> None:
        status, report = self.api.call("GET", "/v1/verify")
        assert status == 200 and report["ok"], report
        self.api.conn.close()


def test_ledger_behaves_like_the_model(ledger_process: int) -> None:
    LedgerModel.port = ledger_process
    runner = LedgerModel.TestCase
    runner.settings = settings(
        max_examples=10,
        stateful_step_count=30,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    runner().runTest()
