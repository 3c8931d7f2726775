"""Risk controls inside the payout service: blocked payouts hold nothing, review waits for an
operator, rule sets are validated, dry-run, published and swapped into every instance."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

import yaml

from tests.payout.conftest import ADMIN_KEY, Harness, payout_body
from tests.support.waiting import wait_until

BLOCKED_ACCOUNT = "GB00BLOCK0000099"
RULES = {
    "format": 1,
    "defaults": [
        {
            "id": "sanctioned",
            "type": "blocklist",
            "field": "account",
            "values": [BLOCKED_ACCOUNT],
            "outcome": "block",
        },
        {
            "id": "watched-names",
            "type": "blocklist",
            "field": "name",
            "values": ["Watched Person"],
            "outcome": "review",
        },
    ],
}


async def _is(awaitable: Awaitable[Any], expected: Any) -> bool:
    return (await awaitable) == expected


async def _post_rules(harness: Harness, path: str, document: Any) -> tuple[int, Any]:
    resp = await harness.client.post(
        path,
        data=yaml.safe_dump(document),
        headers={"Authorization": f"Bearer {ADMIN_KEY}", "Content-Type": "application/yaml"},
    )
    return resp.status, await resp.json()


async def _publish(harness: Harness, document: Any) -> int:
    status, stored = await _post_rules(harness, "/admin/risk/rulesets", document)
    assert status == 201, stored
    status, published = await harness.admin(
        "POST", f"/admin/risk/rulesets/{stored['version']}/publish"
    )
    assert status == 200 and published["published_at"], published
    return int(stored["version"])


async def test_a_blocked_payout_fails_with_risk_blocked_and_holds_or_sends_nothing(
    harness: Harness,
) -> None:
    version = await _publish(harness, RULES)
    merchant = await harness.merchant()
    status, payout, _ = await merchant.post_payout(payout_body(account=BLOCKED_ACCOUNT))
    assert status == 201
    assert payout["status"] == "failed" and payout["failure_code"] == "risk_blocked"
    account = await merchant.account()
    assert account["debits_pending"] == 0 and account["debits_posted"] == 0
    assert (await harness.submission(payout["id"]))[0] == 404  # no bank was asked
    assert await harness.fetchval("SELECT count(*) FROM global_tx") == 0
    assert await harness.fetchval("SELECT risk_version FROM payouts") == version
    alerts = [r["code"] for r in await harness.fetch("SELECT code FROM alerts")]
    assert alerts == ["risk_listed_beneficiary_blocked"]
    _, events = await merchant.get("/v1/events?type=payout.failed")
    assert [e["data"]["object"]["id"] for e in events["data"]] == [payout["id"]]


async def test_a_review_outcome_waits_for_an_operator(harness: Harness) -> None:
    await _publish(harness, RULES)
    merchant = await harness.merchant()
    body = payout_body()
    body["beneficiary"]["name"] = "Watched Person"
    _, payout, _ = await merchant.post_payout(body)
    assert payout["status"] == "pending_review"
    assert await harness.held(merchant) == 0
    await harness.admin("POST", f"/admin/payouts/{payout['id']}/approve", {"note": "checked"})
    await wait_until(lambda: _is(merchant.status_of(payout["id"]), "paid"), message="paid")


async def test_an_invalid_rule_set_is_refused_with_its_problems_and_never_stored(
    harness: Harness,
) -> None:
    broken = {"format": 1, "defaults": [{"id": "x", "type": "velocity", "outcome": "block"}]}
    for path in ("/admin/risk/rulesets/validate", "/admin/risk/rulesets"):
        status, problem = await _post_rules(harness, path, broken)
        assert status == 422 and problem["code"] == "risk_ruleset_invalid", problem
        assert problem["errors"]
    _, listing = await harness.admin("GET", "/admin/risk/rulesets")
    assert [r["version"] for r in listing["data"]] == [1]
    status, valid = await _post_rules(harness, "/admin/risk/rulesets/validate", RULES)
    assert status == 200 and valid["valid"] and valid["rule_count"] == 2


async def test_dry_run_shows_what_a_draft_would_have_changed(harness: Harness) -> None:
    merchant = await harness.merchant()
    for _ in range(3):
        await merchant.post_payout(payout_body(account=BLOCKED_ACCOUNT))
    await merchant.post_payout(payout_body())
    status, stored = await _post_rules(harness, "/admin/risk/rulesets", RULES)
    assert status == 201
    status, report = await harness.admin(
        "POST", f"/admin/risk/rulesets/{stored['version']}/dry-run", {"days": 1}
    )
    assert status == 200, report
    assert report["evaluated"] == 4 and report["changed"] == 3
    assert report["transitions"] == {"allow->allow": 1, "allow->block": 3}
    assert report["fired_by_rule"] == {"sanctioned": 3}
    # A draft judges nothing live.
    _, engine = await harness.admin("GET", "/admin/risk/engine")
    assert engine["version"] == 1


async def test_publishing_swaps_the_rule_set_into_every_instance_within_a_second(
    make_harness: Any,
) -> None:
    first: Harness = await make_harness()
    second: Harness = await make_harness(share_with=first)
    merchant = await first.merchant()
    _, older = await _post_rules(first, "/admin/risk/rulesets", {"format": 1})
    version = await _publish(first, RULES)

    async def second_has_it() -> bool:
        _, engine = await second.admin("GET", "/admin/risk/engine")
        return bool(engine["version"] == version)

    await wait_until(second_has_it, timeout_s=1.0, message="second instance swapped")
    resp = await second.client.post(
        "/v1/payouts",
        json=payout_body(account=BLOCKED_ACCOUNT),
        headers={**merchant.headers, "Idempotency-Key": "on-second"},
    )
    payout = await resp.json()
    assert payout["failure_code"] == "risk_blocked"
    # An older draft can no longer be published over a newer version.
    status, problem = await first.admin("POST", f"/admin/risk/rulesets/{older['version']}/publish")
    assert status == 409 and problem["code"] == "risk_ruleset_outdated"
    _, engine = await first.admin("GET", "/admin/risk/engine")
    assert engine["version"] == version
