"""``/metrics`` of the real processes after an end-to-end flow: every series the runbook
relies on exists with values that follow from what the test did."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import aiohttp
import pytest

from tests.ops.conftest import Merchant, Samples, scrape, value
from tests.support.suite import SERVICE_TOKEN, Suite
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e


async def _scrape_until(
    session: aiohttp.ClientSession, url: str, ok: object, message: str, timeout_s: float = 20
) -> Samples:
    async def probe() -> Samples | None:
        samples = await scrape(session, url)
        return samples if ok(samples) else None  # type: ignore[operator]

    return await wait_until(probe, timeout_s=timeout_s, interval_s=0.2, message=message)


async def test_every_service_exports_its_operational_series_after_a_payout_flow(
    ops_suite: Suite, merchant: Merchant, session: aiohttp.ClientSession
) -> None:
    before = await scrape(session, ops_suite.urls["payout"])
    paid_before = value(before, "payouts", status="paid") or 0
    failed_before = value(before, "payouts", status="failed") or 0
    created = [await merchant.create(5_000 + i) for i in range(3)]
    rejected = await merchant.create(7_000, account="INVALID00001")
    for status, body, _ in [*created, rejected]:
        assert status == 201, body
    ids = [body["id"] for _, body, _ in created]
    finals = await asyncio.gather(*(merchant.wait_final(i) for i in [*ids, rejected[1]["id"]]))
    assert [f["status"] for f in finals] == ["paid", "paid", "paid", "failed"]

    # payout: payouts by status, webhooks delivered, outbox drained, consumers' lag and depth.
    def payout_ok(s: Samples) -> bool:
        return (
            (value(s, "payouts", status="paid") or 0) >= paid_before + 3
            and (value(s, "webhook_deliveries", status="delivered") or 0) >= 4
            and value(s, "outbox_unpublished_events") == 0
            and value(s, "amqp_queue_messages_ready") is not None
        )

    payout = await _scrape_until(session, ops_suite.urls["payout"], payout_ok, "payout series")
    assert (value(payout, "payouts", status="failed") or 0) >= failed_before + 1
    assert value(payout, "webhook_deliveries", status="pending") is not None
    assert value(payout, "webhook_backlog_oldest_seconds") is not None
    assert value(payout, "webhook_failed_attempts") is not None
    assert (value(payout, "outbox_published_events_total") or 0) >= 8  # created+paid/failed
    assert (value(payout, "outbox_oldest_unpublished_age_seconds") or 0) < 5
    prefix = ops_suite.spec.amqp_prefix
    assert value(payout, "amqp_queue_messages_ready", queue=f"{prefix}.payout.webhooks") == 0
    assert value(payout, "amqp_queue_consumers", queue=f"{prefix}.payout.webhooks") == 1
    lag_count = value(payout, "amqp_consume_lag_seconds_count", consumer="payout.webhooks")
    assert lag_count is not None and lag_count >= 4
    acked = value(
        payout, "amqp_messages_consumed_total", consumer="payout.webhooks", outcome="acked"
    )
    assert acked is not None and acked >= 4
    posts = value(payout, "http_requests_total", route="/v1/payouts", method="POST", status="201")
    assert posts is not None and posts >= 4

    # router: attempts by channel and result class, breaker state, quota used.
    router = await scrape(session, ops_suite.urls["router"])
    assert (value(router, "router_attempts", channel="ch_ops_north", result="succeeded") or 0) >= 3
    assert (
        value(router, "router_attempts", channel="ch_ops_north", result="beneficiary_error") or 0
    ) >= 1
    for channel in ("ch_ops_north", "ch_ops_atlas"):
        assert value(router, "router_channel_breaker_state", channel=channel, state="closed") == 1
        assert value(router, "router_channel_breaker_state", channel=channel, state="open") == 0
        assert value(router, "router_channel_quota_limit_minor", channel=channel)
    used = value(router, "router_channel_quota_used_minor", channel="ch_ops_north")
    assert used is not None and used >= 5_000 + 5_001 + 5_002
    assert value(router, "router_channel_success_ratio", channel="ch_ops_north") == 1.0
    assert value(router, "outbox_published_events_total")

    # ledger: the single writer's batches, transfers and commit time.
    ledger = await scrape(session, ops_suite.urls["ledger"])
    batches = value(ledger, "ledger_writer_batches_total") or 0
    transfers = value(ledger, "ledger_writer_transfers_total") or 0
    busy_s = value(ledger, "ledger_writer_busy_seconds_total") or 0
    assert batches >= 1 and transfers >= batches, (batches, transfers)
    assert 0 < busy_s / batches < 1.0, "mean commit time per batch is plausible"
    assert value(ledger, "ledger_writer_queue_depth") == 0

    # recon: a statement with a line the ledger never sent becomes a missing_in_ledger break.
    today = datetime.now(UTC).date().isoformat()
    async with session.post(
        ops_suite.urls["banksim"] + "/admin/statements",
        json={
            "bank": "northbank",
            "business_date": today,
            "currency": "EUR",
            "discrepancies": [{"kind": "unknown_line", "amount_minor": 4321}],
        },
        headers={"X-Service-Token": SERVICE_TOKEN},
    ) as resp:
        assert resp.status == 201, await resp.text()

    def recon_ok(s: Samples) -> bool:
        return (value(s, "recon_breaks", code="missing_in_ledger", status="open") or 0) >= 1

    recon = await _scrape_until(
        session, ops_suite.urls["recon"], recon_ok, "recon break series", timeout_s=40
    )
    assert (value(recon, "recon_files", status="accepted") or 0) >= 1
    assert value(recon, "recon_alerts_open") is not None
    assert value(recon, "outbox_unpublished_events") is not None
    for name, url in ops_suite.urls.items():
        samples = await scrape(session, url)
        assert value(samples, "http_request_duration_seconds_count"), name
        assert value(samples, "metrics_refresh_failures_total") is None, name
