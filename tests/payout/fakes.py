"""In-process stand-ins for the ledger and the router, speaking their wire (docs/INTERFACES.md)
with the barrier semantics the coordinator relies on. They let the handler tests script bank
outcomes precisely; the e2e tests run the real services instead."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


def problem(status: int, code: str) -> web.Response:
    return web.json_response(
        {"type": code, "title": code, "status": status, "code": code},
        status=status,
        content_type="application/problem+json",
    )


@dataclass
class Account:
    currency: str
    no_overdraft: bool
    debits_pending: int = 0
    debits_posted: int = 0
    credits_pending: int = 0
    credits_posted: int = 0

    @property
    def available(self) -> int:
        return self.credits_posted - self.debits_posted - self.debits_pending


@dataclass
class FakeLedger:
    accounts: dict[str, Account] = field(default_factory=dict)
    branches: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    transfers: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: Counter[str] = field(default_factory=Counter)
    fail_next: int = 0  # answer 503 to this many TCC calls (a flaky participant)

    def held(self) -> int:
        return sum(a.debits_pending for a in self.accounts.values())

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/accounts", self.create_account)
        app.router.add_get("/v1/accounts/{id}", self.get_account)
        app.router.add_post("/v1/transfers", self.create_transfers)
        app.router.add_post("/v1/tcc/{gid}/{branch}/{action}", self.tcc)
        return app

    async def create_account(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body["id"] in self.accounts:
            return web.json_response({"id": body["id"]}, status=200)
        self.accounts[body["id"]] = Account(
            body["currency"], body["flags"]["debits_must_not_exceed_credits"]
        )
        return web.json_response({"id": body["id"]}, status=201)

    async def get_account(self, request: web.Request) -> web.Response:
        account = self.accounts.get(request.match_info["id"])
        if account is None:
            return problem(404, "account_not_found")
        return web.json_response(
            {
                "id": request.match_info["id"],
                "debits_pending": account.debits_pending,
                "debits_posted": account.debits_posted,
                "credits_pending": account.credits_pending,
                "credits_posted": account.credits_posted,
                "available": account.available,
            }
        )

    async def create_transfers(self, request: web.Request) -> web.Response:
        results = []
        for index, t in enumerate((await request.json())["transfers"]):
            self.calls["transfer"] += 1
            if t["id"] in self.transfers:
                results.append(self.transfers[t["id"]])
                continue
            debit = self.accounts[t["debit_account_id"]]
            credit = self.accounts[t["credit_account_id"]]
            amount = t["amount_minor"]
            if debit.no_overdraft and debit.available < amount:
                result = {
                    "index": index,
                    "id": t["id"],
                    "status": "rejected",
                    "code": "exceeds_credits",
                }
            else:
                debit.debits_posted += amount
                credit.credits_posted += amount
                result = {"index": index, "id": t["id"], "status": "created", "code": None}
            self.transfers[t["id"]] = result
            results.append(result)
        return web.json_response({"results": results})

    async def tcc(self, request: web.Request) -> web.Response:
        gid, branch, action = (request.match_info[k] for k in ("gid", "branch", "action"))
        self.calls[action] += 1
        if self.fail_next > 0:
            self.fail_next -= 1
            return problem(503, "ledger_unavailable")
        key = (gid, branch)
        state = self.branches.get(key)
        answer = {"gid": gid, "branch_id": branch, "transfer_ids": []}
        if action == "try":
            if state is not None:
                if state["status"] == "cancelled":
                    return problem(409, "tcc_branch_cancelled")
                if state["status"] == "rejected":
                    return problem(422, "insufficient_funds")
                return web.json_response({**answer, "status": state["status"]})
            legs = (await request.json())["legs"]
            total: Counter[str] = Counter()
            for leg in legs:
                total[leg["debit_account_id"]] += leg["amount_minor"]
            for account_id, amount in total.items():
                account = self.accounts[account_id]
                if account.no_overdraft and account.available < amount:
                    self.branches[key] = {"status": "rejected", "legs": legs}
                    return problem(422, "insufficient_funds")
            for leg in legs:
                self.accounts[leg["debit_account_id"]].debits_pending += leg["amount_minor"]
                self.accounts[leg["credit_account_id"]].credits_pending += leg["amount_minor"]
            self.branches[key] = {"status": "tried", "legs": legs}
            return web.json_response({**answer, "status": "tried"})
        if action == "confirm":
            if state is None:
                return problem(409, "tcc_branch_not_tried")
            if state["status"] == "rejected":
                return problem(409, "tcc_try_rejected")
            if state["status"] == "cancelled":
                return problem(409, "tcc_branch_cancelled")
            if state["status"] == "tried":
                for leg in state["legs"]:
                    d = self.accounts[leg["debit_account_id"]]
                    c = self.accounts[leg["credit_account_id"]]
                    d.debits_pending -= leg["amount_minor"]
                    d.debits_posted += leg["amount_minor"]
                    c.credits_pending -= leg["amount_minor"]
                    c.credits_posted += leg["amount_minor"]
                state["status"] = "confirmed"
            return web.json_response({**answer, "status": "confirmed"})
        # cancel
        if state is None:
            self.branches[key] = {"status": "cancelled", "legs": []}  # tombstone
        elif state["status"] == "confirmed":
            return problem(409, "tcc_branch_confirmed")
        elif state["status"] == "tried":
            for leg in state["legs"]:
                self.accounts[leg["debit_account_id"]].debits_pending -= leg["amount_minor"]
                self.accounts[leg["credit_account_id"]].credits_pending -= leg["amount_minor"]
            state["status"] = "cancelled"
        else:
            state["status"] = "cancelled"
        return web.json_response({**answer, "status": "cancelled"})


@dataclass
class FakeRouter:
    """Outcomes are scripted by the beneficiary account number's last four digits:
    ``0001`` beneficiary error; ``0002`` unknown until inquired ``inquiries_needed`` times,
    then succeeded; ``0003`` submitted (resolved by an ``attempt.resolved`` event);
    ``0004`` unknown forever; anything else succeeds at once."""

    inquiries_needed: int = 1
    no_channel: bool = False
    submissions: Counter[str] = field(default_factory=Counter)  # payout_id → submit calls
    executions: Counter[str] = field(default_factory=Counter)  # what the "bank" executed
    views: dict[str, dict[str, Any]] = field(default_factory=dict)
    inquiries: Counter[str] = field(default_factory=Counter)
    quota: dict[tuple[str, str], str] = field(default_factory=dict)
    bodies: dict[str, dict[str, Any]] = field(default_factory=dict)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/tcc/{gid}/{branch}/{action}", self.tcc)
        app.router.add_post("/v1/submissions", self.submit)
        app.router.add_post("/v1/submissions/{payout_id}/inquire", self.inquire)
        return app

    async def tcc(self, request: web.Request) -> web.Response:
        gid, branch, action = (request.match_info[k] for k in ("gid", "branch", "action"))
        key = (gid, branch)
        if action == "try":
            if self.quota.get(key) == "cancelled":
                return problem(409, "tcc_branch_cancelled")
            if self.no_channel:
                return problem(422, "no_eligible_channel")
            self.quota[key] = "tried"
            return web.json_response(
                {"gid": gid, "branch_id": branch, "status": "tried", "channel_id": "ch_fake"}
            )
        if action == "confirm":
            self.quota[key] = "confirmed"
        else:
            if self.quota.get(key) == "confirmed":
                return problem(409, "tcc_branch_confirmed")
            self.quota[key] = "cancelled"
        return web.json_response({"gid": gid, "branch_id": branch, "status": self.quota[key]})

    def _view(self, payout_id: str, status: str, **extra: Any) -> dict[str, Any]:
        return {
            "payout_id": payout_id,
            "attempt_id": f"att_{payout_id}",
            "channel_id": "ch_fake",
            "bank": "fakebank",
            "status": status,
            "attempts": [],
            **extra,
        }

    async def submit(self, request: web.Request) -> web.Response:
        body = await request.json()
        payout_id = body["payout_id"]
        self.submissions[payout_id] += 1
        if payout_id in self.views:  # idempotent by payout_id, like the real router
            return web.json_response(self.views[payout_id])
        self.bodies[payout_id] = body
        view = self._decide(payout_id, body)
        self.views[payout_id] = view
        return web.json_response(view)

    def _decide(self, payout_id: str, body: dict[str, Any]) -> dict[str, Any]:
        tail = body["beneficiary"]["account_number"][-4:]
        if tail == "0001":
            return self._view(
                payout_id,
                "failed",
                failure_class="beneficiary_error",
                failure_code="invalid_account",
                failure_message="account does not exist",
            )
        self.executions[payout_id] += 1
        if tail in ("0002", "0004"):
            return self._view(payout_id, "unknown")
        if tail == "0003":
            return self._view(payout_id, "submitted")
        return self._view(payout_id, "succeeded")

    async def inquire(self, request: web.Request) -> web.Response:
        payout_id = request.match_info["payout_id"]
        self.inquiries[payout_id] += 1
        tail = self.bodies[payout_id]["beneficiary"]["account_number"][-4:]
        if tail == "0002" and self.inquiries[payout_id] >= self.inquiries_needed:
            self.views[payout_id] = self._view(payout_id, "succeeded")
        return web.json_response(self.views[payout_id])
