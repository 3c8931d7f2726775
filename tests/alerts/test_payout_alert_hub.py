"""Recon is the one alert list: ``payout.alert`` events from the broker are stored with recon's
own alerts, once per event (the inbox is written with the alert), one open alert per cause."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from contracts.wire import Envelope
from services.recon.entrypoints.consumers import PAYOUT_ALERTS_CONSUMER, store_payout_alert
from tests.alerts.conftest import AUTH, Hub, new_payout_id, payout_alert
from tests.support.waiting import wait_until


async def _one(hub: Hub, **query: str) -> dict[str, Any] | None:
    found = await hub.alerts(**query)
    return found[0] if len(found) == 1 else None


async def test_a_payout_alert_lands_once_in_recons_alerts_and_a_redelivery_does_not_double_it(
    hub: Hub, pool: asyncpg.Pool
) -> None:
    payout_id = new_payout_id()
    event = payout_alert(
        "payout_outcome_unresolved",
        severity="high",
        payout_id=payout_id,
        message=f"payout {payout_id} has no bank outcome after the resolution window",
    )
    await hub.publish(event)
    landed = await wait_until(
        lambda: _one(hub, code="payout_outcome_unresolved"), message="the alert in recon"
    )
    assert landed is not None
    assert landed["severity"] == "high" and landed["status"] == "open"
    assert landed["occurrences"] == 1 and payout_id in landed["message"]
    assert landed["context"]["payout_id"] == payout_id
    assert landed["context"]["source"] == "payout"
    assert landed["alert_id"].startswith("alr_")

    # The relay republishes after a crash between publish and commit: same event id.
    await hub.publish(event)
    sentinel = payout_alert("outcome_conflict", severity="critical", payout_id=new_payout_id())
    await hub.publish(sentinel)

    async def sentinel_landed() -> bool:
        return bool(await hub.alerts(code="outcome_conflict"))

    await hub.drain(sentinel_landed)  # every message acknowledged, the app stopped
    rows = await pool.fetch(
        "SELECT occurrences FROM recon_alerts WHERE cause = $1",
        f"payout_outcome_unresolved:payout:{payout_id}",
    )
    assert [r["occurrences"] for r in rows] == [1]
    inbox = await pool.fetchval(
        "SELECT count(*) FROM inbox WHERE consumer = $1 AND event_id = $2",
        PAYOUT_ALERTS_CONSUMER,
        uuid.UUID(event.event_id),
    )
    assert inbox == 1


async def test_a_handler_run_twice_on_one_event_stores_it_once(pool: asyncpg.Pool) -> None:
    event = payout_alert("tcc_phase2_refused", severity="critical", payout_id=new_payout_id())
    first = await store_payout_alert(pool, event)
    assert first is not None
    assert await store_payout_alert(pool, event) is None
    row = await pool.fetchrow("SELECT * FROM recon_alerts WHERE alert_id = $1", first)
    assert row["occurrences"] == 1 and row["severity"] == "critical"


async def test_a_worse_repeat_raises_the_open_alerts_severity_and_a_milder_one_does_not_lower_it(
    pool: asyncpg.Pool,
) -> None:
    payout_id = new_payout_id()
    first = await store_payout_alert(
        pool, payout_alert("recon_outcome_conflict", severity="high", payout_id=payout_id)
    )
    worse = await store_payout_alert(
        pool, payout_alert("recon_outcome_conflict", severity="critical", payout_id=payout_id)
    )
    milder = await store_payout_alert(
        pool, payout_alert("recon_outcome_conflict", severity="high", payout_id=payout_id)
    )
    assert first is not None and first == worse == milder
    row = await pool.fetchrow("SELECT * FROM recon_alerts WHERE alert_id = $1", first)
    assert (row["severity"], row["occurrences"]) == ("critical", 3)


async def test_repeats_of_one_cause_count_on_the_open_alert_and_after_a_close_open_a_new_one(
    hub: Hub,
) -> None:
    merchant = f"mer_{uuid.uuid4().hex[:12]}"
    details = {"ruleset_version": 7, "rule_ids": ["sanctioned"]}

    def blocked() -> Envelope:
        return payout_alert(
            "risk_listed_beneficiary_blocked",
            severity="high",
            payout_id=new_payout_id(),
            merchant_id=merchant,
            details=details,
        )

    await hub.publish(blocked())
    await hub.publish(blocked())

    async def counted_twice() -> dict[str, Any] | None:
        one = await _one(hub, code="risk_listed_beneficiary_blocked")
        return one if one is not None and one["occurrences"] == 2 else None

    alert = await wait_until(counted_twice, message="two blocks counted on one alert")
    assert alert is not None
    assert alert["severity"] == "high"
    assert alert["context"]["merchant_id"] == merchant
    assert alert["context"]["details"] == details

    assert hub.client is not None
    resp = await hub.client.post(f"/v1/recon/alerts/{alert['alert_id']}/close", headers=AUTH)
    assert resp.status == 200 and (await resp.json())["status"] == "closed"
    await hub.publish(blocked())

    async def reopened() -> bool:
        found = await hub.alerts(code="risk_listed_beneficiary_blocked", status="open")
        return len(found) == 1 and found[0]["alert_id"] != alert["alert_id"]

    await wait_until(reopened, message="a new alert after the close")


async def test_an_unknown_code_is_stored_with_the_default_severity_and_a_malformed_one_is_not(
    hub: Hub, pool: asyncpg.Pool
) -> None:
    broken = payout_alert("payout_outcome_unresolved", payout_id=new_payout_id())
    broken.data.pop("code")  # not an alert at all: acknowledged, logged, no effect
    await hub.publish(broken)
    unknown = payout_alert("ledger_drift_detected", severity="low", payout_id=new_payout_id())
    await hub.publish(unknown)

    async def stored() -> bool:
        return bool(await hub.alerts(code="ledger_drift_detected"))

    await hub.drain(stored)
    row = await pool.fetchrow("SELECT * FROM recon_alerts WHERE code = 'ledger_drift_detected'")
    assert row["severity"] == "high"  # the default for a code the catalogue does not know
    assert row["message"] == unknown.data["message"]
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM inbox WHERE event_id = $1", uuid.UUID(broken.event_id)
        )
        == 0
    )
    assert await hub.ready_messages() == 0  # the malformed event did not stay in the queue
