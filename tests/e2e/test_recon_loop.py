"""The reconciliation loop with every part real: payouts go payout → router → bank simulator
(one of them loses its reply and stays unknown), the simulator writes the day's statement with
injected discrepancies into the drop directory, the recon process takes the file, reads our
records from the router's attempts export, and its breaks, alerts and feedback match the
simulator's answer key — the unknown payout ends paid through ``recon.payout_resolved``
consumed by the payout service, a returned one ends returned.

A suite of its own (its own databases and broker names): the statement then holds exactly the
transfers of this test, so the breaks can be compared with the answer key as sets.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import pytest

from tests.support import infra
from tests.support.suite import ADMIN_KEY, FINANCE_KEY, SERVICE_TOKEN, Suite, SuiteSpec
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e

HERE = Path(__file__).parent
BANK = "northbank"
CHANNEL = "ch_recon_north"
# What the alert catalogue (docs/RECONCILIATION.md) says each break raises.
ALERT_SEVERITY = {
    "missing_in_ledger": "critical",
    "missing_at_bank": "high",
    "amount_mismatch": "high",
    "duplicate_at_bank": "high",
    "returned": "medium",
}


@pytest.fixture(scope="module")
def loop_suite(run_id: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    spec = SuiteSpec(
        workdir=tmp_path_factory.mktemp("recon-loop"),
        banks_file=HERE / "banks.yaml",  # no cut-off, no maintenance: the same at any hour
        channels=[{"id": CHANNEL, "bank": BANK, "currency": "EUR", "fee_minor": 10}],
        run_id=run_id,
        name="reconloop",
        with_recon=True,
        env={"DB_POOL_MAX": "4", "LOG_LEVEL": "info"},
        service_env={
            "router": {
                "ROUTER_BANK_TIMEOUT_MS": "1500",
                # Neither the router nor the payout janitor asks the bank about the unknown
                # attempt within the test: reconciliation is what resolves it.
                "ROUTER_INQUIRY_BASE_MS": "600000",
                "ROUTER_INQUIRY_MAX_MS": "600000",
                "ROUTER_RECOVERY_POLL_MS": "200",
            },
            "payout": {
                "PAYOUT_INQUIRY_SCHEDULE_S": "3600",
                "PAYOUT_TX_LEASE_S": "2",
                "PAYOUT_RECOVERY_INTERVAL_MS": "100",
                "PAYOUT_RETRY_BASE_MS": "50",
                "PAYOUT_RETRY_MAX_MS": "500",
                "PAYOUT_SUBMISSION_TIMEOUT_MS": "15000",
            },
        },
    )
    suite = Suite(spec)
    try:
        suite.start(ready_timeout_s=60)
        yield suite
    finally:
        suite.stop()
        suite.cleanup()


class Loop:
    def __init__(self, http: aiohttp.ClientSession, suite: Suite) -> None:
        self.http = http
        self.suite = suite
        self.merchant_key = ""

    async def call(
        self, method: str, url: str, *, json_body: Any = None, headers: dict[str, str]
    ) -> tuple[int, Any]:
        async with self.http.request(method, url, json=json_body, headers=headers) as resp:
            text = await resp.text()
            return resp.status, json.loads(text) if text else None

    async def service(self, method: str, name: str, path: str, body: Any = None) -> Any:
        status, data = await self.call(
            method,
            self.suite.urls[name] + path,
            json_body=body,
            headers={"X-Service-Token": SERVICE_TOKEN},
        )
        assert 200 <= status < 300, (status, data)
        return data

    async def admin(self, method: str, path: str, body: Any = None) -> Any:
        status, data = await self.call(
            method,
            self.suite.urls["payout"] + path,
            json_body=body,
            headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        )
        assert 200 <= status < 300, (status, data)
        return data

    async def finance(self, path: str) -> Any:
        status, data = await self.call(
            "GET",
            self.suite.urls["recon"] + path,
            headers={"Authorization": f"Bearer {FINANCE_KEY}"},
        )
        assert status == 200, (status, data)
        return data

    async def behave(self, mode: str = "normal", **overrides: Any) -> None:
        body: dict[str, Any] = {"mode": mode}
        if overrides:
            body["overrides"] = overrides
        await self.service("PUT", "banksim", f"/admin/banks/{BANK}/behaviour", body)

    async def create(self, amount: int, account: str = "GB29NWBK60161331926819") -> str:
        status, created = await self.call(
            "POST",
            self.suite.urls["payout"] + "/v1/payouts",
            json_body={
                "amount": amount,
                "currency": "EUR",
                "beneficiary": {
                    "name": "Jane Doe",
                    "account_number": account,
                    "bank_code": "NRTHGB2L",
                },
                "reference": f"loop-{uuid.uuid4().hex[:12]}",
            },
            headers={
                "Authorization": f"Bearer {self.merchant_key}",
                "Idempotency-Key": uuid.uuid4().hex,
            },
        )
        assert status == 201, created
        return str(created["id"])

    async def payout(self, payout_id: str) -> dict[str, Any]:
        status, body = await self.call(
            "GET",
            self.suite.urls["payout"] + f"/v1/payouts/{payout_id}",
            headers={"Authorization": f"Bearer {self.merchant_key}"},
        )
        assert status == 200, body
        return dict(body)

    async def status_is(self, payout_id: str, expected: str) -> bool:
        return (await self.payout(payout_id))["status"] == expected


@pytest.fixture
async def loop(loop_suite: Suite) -> AsyncIterator[Loop]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        yield Loop(http, loop_suite)


@pytest.fixture
async def recon_events(loop_suite: Suite) -> AsyncIterator[list[dict[str, Any]]]:
    """Every ``recon.*`` event recon publishes, seen through a queue of the test's own."""
    seen: list[dict[str, Any]] = []
    connection = await aio_pika.connect_robust(infra.amqp_url())
    channel = await connection.channel()
    exchange = await channel.declare_exchange(
        f"{loop_suite.spec.amqp_prefix}.events", aio_pika.ExchangeType.TOPIC, durable=True
    )
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind(exchange, routing_key="recon.#")

    async def collect(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        async with message.process():
            seen.append(json.loads(message.body))

    await queue.consume(collect)
    yield seen
    await connection.close()


async def test_statement_breaks_alerts_and_feedback_match_the_simulators_answer_key(
    loop: Loop, recon_events: list[dict[str, Any]]
) -> None:
    merchant = await loop.admin(
        "POST",
        "/admin/merchants",
        {"name": "Loop", "currencies": ["EUR"], "limits": {}, "fees": {"fixed": 30, "bps": 0}},
    )
    loop.merchant_key = merchant["secret_key"]
    await loop.admin(
        "POST",
        f"/admin/merchants/{merchant['id']}/fundings",
        {"amount": 10_000_000, "currency": "EUR", "reference": "loop-seed"},
    )
    paid_ids = [await loop.create(10_000 + 137 * n) for n in range(7)]
    for payout_id in paid_ids:
        await wait_until(_status(loop, payout_id, "paid"), timeout_s=20, message="paid")
    refused_id = await loop.create(2_000, account="INVALID0000001")
    await wait_until(lambda: loop.status_is(refused_id, "failed"), timeout_s=20, message="failed")
    # The bank executes this one but its reply is lost: the attempt stays unknown.
    await loop.behave("lost_responses", lost_response_rate=1.0)
    unknown_id = await loop.create(5_555)

    async def attempt_unknown() -> bool:
        status, sub = await loop.call(
            "GET",
            loop.suite.urls["router"] + f"/v1/submissions/{unknown_id}",
            headers={"X-Service-Token": SERVICE_TOKEN},
        )
        return status == 200 and sub["status"] == "unknown"

    await wait_until(attempt_unknown, timeout_s=20, message="attempt unknown")
    await loop.behave("normal")
    assert (await loop.payout(unknown_id))["status"] == "processing"

    attempt_of: dict[str, str] = {}
    for payout_id in [*paid_ids, unknown_id]:
        submission = await loop.service("GET", "router", f"/v1/submissions/{payout_id}")
        attempt_of[payout_id] = submission["attempt_id"]
    journal = await loop.service("GET", "banksim", f"/admin/banks/{BANK}/executed?limit=5000")
    executed = {t["reference"]: t for t in journal["transfers"] if t["status"] == "paid"}
    assert set(executed) == set(attempt_of.values())  # the refused one never executed
    # One statement per business day the bank executed on (a run across midnight has two).
    day_of = {ref: t["executed_at"][:10] for ref, t in executed.items()}
    refs = [attempt_of[pid] for pid in paid_ids]
    returned_ref, unknown_ref = refs[4], attempt_of[unknown_id]
    injections: list[dict[str, Any]] = [
        {"kind": "drop_line", "reference": refs[0]},
        {"kind": "amount_changed", "reference": refs[1], "amount_minor": 11},
        {"kind": "duplicate_line", "reference": refs[2]},
        {"kind": "value_date_next_day", "reference": refs[3]},
        {"kind": "returned_payout", "reference": returned_ref},
        {"kind": "unknown_line", "amount_minor": 4_321},
    ]
    days = sorted(set(day_of.values()))
    answers: list[dict[str, Any]] = []
    for day in days:
        mine = [
            i
            for i in injections
            if day_of.get(i.get("reference", ""), days[0]) == day
            and (i["kind"] != "unknown_line" or day == days[0])
        ]
        written = await loop.service(
            "POST",
            "banksim",
            "/admin/statements",
            {"bank": BANK, "business_date": day, "currency": "EUR", "discrepancies": mine},
        )
        (statement,) = written["files"]
        assert Path(statement["path"]).parent.parent == loop.suite.drop_dir / BANK
        key = json.loads(Path(statement["answer_key_path"]).read_text())
        answers.extend(key["discrepancies"])
    assert len(answers) == len(injections)

    async def runs_done() -> list[dict[str, Any]]:
        body = await loop.finance(f"/v1/recon/runs?channel={BANK}")
        current = {r["business_date"]: r for r in body["runs"]}
        return [current[d] for d in days] if all(d in current for d in days) else []

    runs: list[dict[str, Any]] = await wait_until(
        runs_done, timeout_s=60, interval_s=0.2, message="recon runs"
    )
    breaks = [
        brk
        for run in runs
        for brk in (await loop.finance(f"/v1/recon/breaks?run_id={run['run_id']}&limit=500"))[
            "breaks"
        ]
    ]
    got = {(b["code"], b["attempt_id"] or b["amount_minor"]) for b in breaks}
    want = {
        (
            "duplicate_at_bank" if a["expected_break"] == "duplicate" else a["expected_break"],
            a["reference"] if str(a.get("reference", "")).startswith("att_") else a["amount_minor"],
        )
        for a in answers
    }
    assert got == want, {"extra": got - want, "missing": want - got}

    alerts = (await loop.finance("/v1/recon/alerts?status=open&limit=500"))["alerts"]
    severity = {a["code"]: a["severity"] for a in alerts if a.get("channel") == BANK}
    for code, _ in want:
        if code in ALERT_SEVERITY:
            assert severity.get(code) == ALERT_SEVERITY[code], (code, severity)
    assert {code for code, _ in want} <= set(severity), severity

    async def alerts_published() -> bool:
        published = {e["data"]["code"] for e in recon_events if e["event_type"] == "recon.alert"}
        return set(ALERT_SEVERITY) & {code for code, _ in want} <= published

    await wait_until(alerts_published, timeout_s=15, message="recon.alert events")

    # Feedback: the unknown payout is paid through recon.payout_resolved, the return booked.
    await wait_until(
        lambda: loop.status_is(unknown_id, "paid"), timeout_s=30, message="unknown resolved"
    )
    returned_id = paid_ids[4]
    await wait_until(
        lambda: loop.status_is(returned_id, "returned"), timeout_s=30, message="returned"
    )

    # The payout service and this test's queue each get recon's events on their own: the
    # payout may have acted on one before it reached the test.
    async def resolved_published() -> bool:
        resolved = {
            (e["data"]["attempt_id"], e["data"]["outcome"])
            for e in recon_events
            if e["event_type"] == "recon.payout_resolved"
        }
        return {(unknown_ref, "paid"), (returned_ref, "returned")} <= resolved

    await wait_until(resolved_published, timeout_s=15, message="recon.payout_resolved events")
    history = (await loop.payout(unknown_id))["status_history"]
    assert [h["status"] for h in history] == ["processing", "paid"]
    assert history[-1]["reason"] == "reconciliation_paid"
    # The router never learnt the outcome itself: recon was the only source.
    submission = await loop.service("GET", "router", f"/v1/submissions/{unknown_id}")
    assert submission["status"] == "unknown"
    account = await loop.service("GET", "ledger", f"/v1/accounts/{merchant['id']}.EUR")
    assert account["debits_pending"] == 0
    paid_total = sum(10_000 + 137 * n + 30 for n in range(7)) + 5_555 + 30
    assert account["debits_posted"] == paid_total
    assert account["available"] == 10_000_000 - paid_total + (10_000 + 137 * 4)


def _status(loop: Loop, payout_id: str, expected: str) -> Callable[[], Awaitable[bool]]:
    async def probe() -> bool:
        return await loop.status_is(payout_id, expected)

    return probe
