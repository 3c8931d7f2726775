"""Risk controls across the real processes (issue 10): a blocked payout holds nothing and
reaches no bank, its alert lands in recon's one alert list, and a rule set published under
traffic judges every payout whole — never half of one version and half of another."""

from __future__ import annotations

import asyncio
import json
import random
import secrets
import time
from dataclasses import dataclass
from typing import Any

import asyncpg

from tests.risk_e2e.conftest import BANKS, Client, payout_body
from tests.support.processes import ServiceProcess, free_port
from tests.support.suite import Suite
from tests.support.waiting import wait_until

COUNTERS = ("debits_pending", "debits_posted", "credits_pending", "credits_posted")


def _account() -> str:
    return f"GB00RISK{secrets.randbelow(10**10):010d}"


async def _journal(client: Client) -> dict[str, list[dict[str, Any]]]:
    return {bank: await client.executed(bank) for bank in BANKS}


async def test_a_payout_to_a_blocklisted_beneficiary_fails_holds_nothing_reaches_no_bank_and_raises_an_alert_in_recon(  # noqa: E501
    client: Client,
) -> None:
    listed = _account()
    version = await client.publish_rules(
        {
            "format": 1,
            "defaults": [
                {
                    "id": "sanctioned-accounts",
                    "type": "blocklist",
                    "field": "account",
                    "values": [listed],
                    "outcome": "block",
                }
            ],
        }
    )
    merchant = await client.merchant()
    account_id = f"{merchant.id}.EUR"
    before = await client.ledger_account(account_id)
    journal_before = await _journal(client)
    blocked_amount = 20_000 + secrets.randbelow(10_000)

    status, payout = await client.create_payout(
        merchant, payout_body(amount_minor=blocked_amount, account=listed)
    )
    assert status == 201, payout
    assert payout["status"] == "failed" and payout["failure_code"] == "risk_blocked"
    assert (await client.payout(merchant, payout["id"]))["status"] == "failed"

    # A payout of the same merchant that is allowed does move the ledger and reach the bank:
    # the observations below can see a hold and an execution when there is one.
    allowed_amount = blocked_amount + 1
    status, allowed = await client.create_payout(merchant, payout_body(amount_minor=allowed_amount))
    assert status == 201 and allowed["status"] != "failed", allowed

    async def paid() -> bool:
        return (await client.payout(merchant, allowed["id"]))["status"] == "paid"

    await wait_until(paid, timeout_s=30, message="the allowed payout paid")
    after = await client.ledger_account(account_id)
    fee = allowed["fee"]
    assert after["debits_posted"] - before["debits_posted"] == allowed_amount + fee
    assert after["debits_pending"] == before["debits_pending"]
    assert {k: after[k] for k in ("credits_pending", "credits_posted")} == {
        k: before[k] for k in ("credits_pending", "credits_posted")
    }

    journal_after = await _journal(client)
    new = [t for bank in BANKS for t in journal_after[bank][len(journal_before[bank]) :]]
    assert [t["amount_minor"] for t in new] == [allowed_amount], new
    assert not [t for b in BANKS for t in journal_after[b] if t["amount_minor"] == blocked_amount]
    status, _ = await client.call(
        "GET",
        client.url("router", f"/v1/submissions/{payout['id']}"),
        headers=client.service_headers,
    )
    assert status == 404  # the router never heard of it

    async def alert() -> dict[str, Any] | None:
        for a in await client.recon_alerts(code="risk_listed_beneficiary_blocked"):
            if a["context"].get("merchant_id") == merchant.id:
                return a
        return None

    raised = await wait_until(alert, timeout_s=15, message="the block alert in recon")
    assert raised is not None
    assert raised["severity"] == "high" and raised["status"] == "open"
    assert raised["occurrences"] == 1
    assert raised["context"]["payout_id"] == payout["id"]
    assert raised["context"]["details"] == {
        "ruleset_version": version,
        "rule_ids": ["sanctioned-accounts"],
    }
    assert payout["id"] in raised["message"]


@dataclass
class Sent:
    payout_id: str
    instance: str
    started_at: float  # monotonic, before the request
    answered_at: float


def _rules(tag: str, account: str, name: str, outcome: str) -> dict[str, Any]:
    """Two rules that both fire on every payout of the test, with ids naming the version:
    a payout judged by a half-swapped set would show rules of both."""
    return {
        "format": 1,
        "description": f"publish under load, set {tag}",
        "defaults": [
            {
                "id": f"listed-{tag}",
                "type": "blocklist",
                "field": "account",
                "values": [account],
                "outcome": outcome,
            },
            {
                "id": f"watched-{tag}",
                "type": "blocklist",
                "field": "name",
                "values": [name],
                "outcome": "allow",  # fires without effect: a witness of the version
            },
        ],
    }


async def test_a_rule_set_published_under_concurrent_traffic_judges_every_payout_by_one_whole_live_version(  # noqa: E501
    client: Client, stack: Suite, payout_db: asyncpg.Pool
) -> None:
    account, name = _account(), f"Witness {secrets.token_hex(3)}"
    version_a = await client.publish_rules(_rules("a", account, name, "block"))
    # A second payout instance: the new version reaches it by broadcast, not by its own call.
    port = free_port()
    second = ServiceProcess(
        f"{stack.spec.name}-payout-2",
        "services.payout",
        {**stack.env["payout"], "PAYOUT_PORT": str(port)},
        port,
    )
    second.start(ready_timeout_s=60)
    try:
        await _publish_under_load(client, payout_db, second, version_a, account, name)
    finally:
        second.stop()


async def _publish_under_load(
    client: Client,
    payout_db: asyncpg.Pool,
    second: ServiceProcess,
    version_a: int,
    account: str,
    name: str,
) -> None:
    instances = {"first": client.suite.urls["payout"], "second": second.url}
    assert await client.engine_version(second.url) == version_a
    merchant = await client.merchant(funds_minor=0)  # review and block hold nothing
    sent: list[Sent] = []
    failures: list[Any] = []
    stop = asyncio.Event()
    rng = random.Random(7)

    async def worker() -> None:
        while not stop.is_set():
            instance = rng.choice(list(instances))
            started = time.monotonic()
            status, body = await client.create_payout(
                merchant,
                payout_body(amount_minor=1_000, account=account, name=name),
                payout_url=instances[instance],
            )
            if status != 201:
                failures.append((status, body))
                continue
            sent.append(Sent(body["id"], instance, started, time.monotonic()))

    workers = [asyncio.create_task(worker()) for _ in range(8)]
    try:
        await wait_until(lambda: _at_least(sent, 40), timeout_s=30, message="traffic on set a")
        publish_called = time.monotonic()
        version_b = await client.publish_rules(_rules("b", account, name, "review"))
        publish_returned = time.monotonic()

        async def second_swapped() -> bool:
            return await client.engine_version(second.url) == version_b

        await wait_until(second_swapped, timeout_s=5, message="the second instance on set b")
        second_swapped_at = time.monotonic()
        await wait_until(
            lambda: _at_least([s for s in sent if s.started_at > second_swapped_at], 40),
            timeout_s=30,
            message="traffic on set b",
        )
    finally:
        stop.set()
        await asyncio.gather(*workers)
    assert not failures, failures[:3]

    rows = {
        r["id"]: r
        for r in await payout_db.fetch(
            "SELECT id, status, failure_code, risk_version, risk_outcome, risk_decision"
            " FROM payouts WHERE merchant_id = $1",
            merchant.id,
        )
    }
    assert len(rows) == len(sent)
    expected = {
        version_a: ("block", "failed", "risk_blocked", {"listed-a", "watched-a"}),
        version_b: ("review", "pending_review", None, {"listed-b", "watched-b"}),
    }
    judged_by = {version_a: 0, version_b: 0}
    for s in sent:
        row = rows[s.payout_id]
        version = row["risk_version"]
        assert version in expected, (s, version)  # only versions that were live
        outcome, status, failure_code, fired = expected[version]
        decision = row["risk_decision"]
        decision = json.loads(decision) if isinstance(decision, str) else decision
        assert decision["ruleset_version"] == version
        assert {f["rule_id"] for f in decision["fired"]} == fired, (s, decision)
        assert (row["risk_outcome"], row["status"], row["failure_code"]) == (
            outcome,
            status,
            failure_code,
        ), s
        judged_by[version] += 1
        if s.answered_at < publish_called:
            assert version == version_a, s  # set b did not exist yet
        if s.instance == "first" and s.started_at > publish_returned:
            assert version == version_b, s  # the publishing instance swapped before answering
        if s.started_at > second_swapped_at:
            assert version == version_b, s
    assert judged_by[version_a] >= 40 and judged_by[version_b] >= 40, judged_by


async def _at_least(items: list[Any], count: int) -> bool:
    return len(items) >= count


async def test_a_burst_of_reviews_for_one_merchant_raises_one_alert_in_recon(
    client: Client, payout_db: asyncpg.Pool
) -> None:
    name = f"Watched {secrets.token_hex(3)}"
    await client.publish_rules(
        {
            "format": 1,
            "defaults": [
                {
                    "id": "watched-names",
                    "type": "blocklist",
                    "field": "name",
                    "values": [name],
                    "outcome": "review",
                }
            ],
        }
    )
    merchant = await client.merchant(funds_minor=0)
    ids: list[str] = []
    # The payout service's policy: 20 reviews of one merchant within 300 s is a burst.
    for _ in range(25):
        status, payout = await client.create_payout(merchant, payout_body(name=name))
        assert status == 201 and payout["status"] == "pending_review", payout
        ids.append(payout["id"])
    raised = await payout_db.fetch(
        "SELECT payout_id FROM alerts WHERE code = 'risk_review_burst' AND payout_id = ANY($1)",
        ids,
    )
    assert [r["payout_id"] for r in raised] == [ids[19]]  # the 20th, once per window

    async def alert() -> dict[str, Any] | None:
        for a in await client.recon_alerts(code="risk_review_burst"):
            if a["context"].get("merchant_id") == merchant.id:
                return a
        return None

    burst = await wait_until(alert, timeout_s=15, message="the burst alert in recon")
    assert burst is not None
    assert burst["severity"] == "medium" and burst["occurrences"] == 1
    assert burst["context"]["payout_id"] == ids[19]
    assert merchant.id in burst["message"]
