"""The newcomer demo seeds idempotently and its receiver accepts only signed deliveries."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
from aiohttp.test_utils import TestClient, TestServer

from contracts.webhooks import SIGNATURE_HEADER, sign
from services.payout import demo
from tests.payout.conftest import ADMIN_KEY, Harness


async def test_seeding_twice_reuses_the_merchant_funding_and_endpoint(
    harness: Harness, tmp_path: Path
) -> None:
    config = demo.DemoConfig(
        urls={"payout": str(harness.client.make_url("")).rstrip("/"), "recon": "http://x:8083"},
        admin_key=ADMIN_KEY,
        receiver_host="127.0.0.1",
        receiver_port=8099,
        state_file=tmp_path / "state.json",
        ready_timeout_s=5,
    )
    async with aiohttp.ClientSession() as session:
        first = await demo.seed(session, config)
        second = await demo.seed(session, config)
    assert first == second
    assert await harness.fetchval("SELECT count(*) FROM merchants") == 1
    assert await harness.fetchval("SELECT count(*) FROM fundings") == 1
    assert await harness.fetchval("SELECT count(*) FROM webhook_endpoints") == 1
    account = await harness.ledger_account(f"{first['merchant_id']}.EUR")
    assert account["credits_posted"] == demo.FUNDING_MINOR
    text = demo.banner(config, first)
    assert first["secret_key"] in text and "Idempotency-Key" in text and "http://x:8083/" in text


async def test_demo_receiver_refuses_unsigned_and_accepts_signed_events() -> None:
    holder = {"webhook_secret": "whsec_demo"}
    async with TestClient(TestServer(demo.receiver_app(holder))) as client:
        body = json.dumps({"type": "payout.paid", "data": {"object": {"id": "po_1"}}}).encode()
        resp = await client.post("/webhooks", data=body)
        assert resp.status == 400
        resp = await client.post(
            "/webhooks", data=body, headers={SIGNATURE_HEADER: sign("whsec_other", body)}
        )
        assert resp.status == 400
        resp = await client.post(
            "/webhooks", data=body, headers={SIGNATURE_HEADER: sign("whsec_demo", body)}
        )
        assert resp.status == 204
