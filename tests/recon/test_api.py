"""The finance API on the real app (PostgreSQL + RabbitMQ): upload, runs, breaks, alerts."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from contracts.wire import Envelope
from services.kit.amqp import Broker
from services.recon.adapters import columnar
from services.recon.adapters.records import FileRecords
from services.recon.app import create_app
from tests.recon.conftest import make_settings, rules_book
from tests.recon.daygen import CASES, generate, statement_csv
from tests.support import infra
from tests.support.waiting import wait_until

KEY = "finance-key-for-tests-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture
async def api(
    recon_dsn: str, run_id: str, tmp_path: Path, amqp_prefix: str, channel: str, records_path: Path
) -> AsyncIterator[tuple[TestClient, str]]:
    prefix = f"{amqp_prefix}.recon{uuid.uuid4().hex[:6]}"
    settings = make_settings(run_id, tmp_path, prefix, RECON_FINANCE_KEY=KEY)
    app = create_app(
        settings, rules=rules_book(channel), records=FileRecords(records_path), run_intake=False
    )
    async with TestClient(TestServer(app)) as client:
        yield client, prefix
    await infra.delete_broker_names(prefix, [f"{prefix}.finance_watch"])


async def test_finance_api_requires_the_finance_key_and_answers_problem_json(
    api: tuple[TestClient, str], channel: str
) -> None:
    client, _ = api
    resp = await client.get("/v1/recon/runs")
    assert resp.status == 401 and (await resp.json())["code"] == "finance_key_invalid"
    resp = await client.get("/v1/recon/runs", headers={"Authorization": "Bearer wrong"})
    assert resp.status == 401
    assert (await client.get("/readyz")).status == 200
    doc = await (await client.get("/openapi.json")).json()
    assert "/v1/recon/alerts/{alert_id}/ack" in doc["paths"]

    cases = [
        ("POST", f"/v1/recon/files?channel={channel}", b"x", "text/html", 415, None),
        ("POST", f"/v1/recon/files?channel={channel}", b"", "text/csv", 400, "upload_empty"),
        ("POST", "/v1/recon/files?channel=Bad%20Name", b"x", "text/csv", 422, "channel_invalid"),
        ("POST", "/v1/recon/runs", b'{"channel": 1}', "application/json", 422, None),
        ("GET", "/v1/recon/runs?limit=0", b"", "text/plain", 400, "invalid_query"),
        ("GET", "/v1/recon/breaks?status=maybe", b"", "text/plain", 400, "invalid_query"),
        ("GET", "/v1/recon/runs/run_nope", b"", "text/plain", 404, "run_not_found"),
        ("POST", "/v1/recon/alerts/alr_nope/ack", b"", "text/plain", 404, "alert_not_found"),
    ]
    for method, path, body, ctype, status, code in cases:
        resp = await client.request(
            method, path, data=body, headers={**AUTH, "Content-Type": ctype}
        )
        assert resp.status == status, (path, await resp.text())
        assert resp.content_type == "application/problem+json"
        if code:
            assert (await resp.json())["code"] == code
    resp = await client.post(
        "/v1/recon/runs", json={"channel": channel, "business_date": "2026-11-20"}, headers=AUTH
    )
    assert resp.status == 404 and (await resp.json())["code"] == "statement_not_received"


async def test_upload_reconciles_and_breaks_alerts_can_be_listed_acknowledged_and_closed(
    api: tuple[TestClient, str], channel: str, records_path: Path
) -> None:
    client, prefix = api
    seen: list[Envelope] = []
    watcher = Broker(infra.amqp_url(), prefix)
    await watcher.connect()

    async def collect(envelope: Envelope) -> None:
        seen.append(envelope)

    try:
        await watcher.consume("finance_watch", ["recon.#"], collect)
        day = generate({c: 2 for c in CASES}, channel=channel, seed=5)
        columnar.write_records(day.records, records_path)
        data = statement_csv(day.statements[0])
        url = f"/v1/recon/files?channel={channel}&filename=day.csv"
        resp = await client.post(url, data=data, headers={**AUTH, "Content-Type": "text/csv"})
        assert resp.status == 201, await resp.text()
        body = await resp.json()
        assert body["status"] == "accepted" and body["run"]["break_count"] > 0
        run_id = body["run"]["run_id"]
        again = await client.post(url, data=data, headers={**AUTH, "Content-Type": "text/csv"})
        assert again.status == 200 and (await again.json())["status"] == "duplicate"

        runs = await (await client.get(f"/v1/recon/runs?channel={channel}", headers=AUTH)).json()
        assert [r["run_id"] for r in runs["runs"]] == [run_id]
        detail = await (await client.get(f"/v1/recon/runs/{run_id}", headers=AUTH)).json()
        assert detail["summary"]["breaks"]["status_mismatch"]["count"] == 2
        assert detail["inputs"]["files"][0]["sha256"] == body["sha256"]

        # Keyset pages of 5 walk every break exactly once.
        walked: list[str] = []
        after = ""
        while True:
            page = await (
                await client.get(f"/v1/recon/breaks?run_id={run_id}&limit=5{after}", headers=AUTH)
            ).json()
            walked += [b["break_id"] for b in page["breaks"]]
            if page["next_after"] is None:
                break
            after = f"&after={page['next_after']}"
        assert len(walked) == len(set(walked)) == detail["break_count"]
        critical = await (
            await client.get(f"/v1/recon/breaks?run_id={run_id}&code=status_mismatch", headers=AUTH)
        ).json()
        assert {b["severity"] for b in critical["breaks"]} == {"critical"}

        alerts = await (await client.get("/v1/recon/alerts?status=open", headers=AUTH)).json()
        mine = [a for a in alerts["alerts"] if a["channel"] == channel]
        assert {a["code"] for a in mine} >= {"status_mismatch", "missing_in_ledger"}
        alert_id = next(a["alert_id"] for a in mine if a["code"] == "status_mismatch")

        ack = await client.post(f"/v1/recon/alerts/{alert_id}/ack", headers=AUTH)
        assert ack.status == 200 and (await ack.json())["status"] == "acknowledged"
        repeat = await client.post(f"/v1/recon/alerts/{alert_id}/ack", headers=AUTH)
        assert repeat.status == 200
        closed = await client.post(f"/v1/recon/alerts/{alert_id}/close", headers=AUTH)
        assert closed.status == 200 and (await closed.json())["status"] == "closed"
        late_ack = await client.post(f"/v1/recon/alerts/{alert_id}/ack", headers=AUTH)
        assert late_ack.status == 409
        assert (await late_ack.json())["code"] == "alert_transition_invalid"

        # The outbox relay delivered the alerts and the payout resolutions to RabbitMQ.
        async def delivered() -> bool:
            types = {e.event_type for e in seen}
            return {"recon.alert", "recon.payout_resolved"} <= types

        await wait_until(delivered, timeout_s=15, message="recon events on the broker")
        codes = {e.data["code"] for e in seen if e.event_type == "recon.alert"}
        assert "status_mismatch" in codes
        await wait_until(
            lambda: _true(
                {
                    (e.data["attempt_id"], e.data["outcome"])
                    for e in seen
                    if e.event_type == "recon.payout_resolved"
                }
                >= day.resolutions
            ),
            timeout_s=15,
            message="every resolution published",
        )
        resolved = [
            (e.data["attempt_id"], e.data["outcome"])
            for e in seen
            if e.event_type == "recon.payout_resolved"
        ]
        assert sorted(resolved) == sorted(day.resolutions)  # each exactly once, nothing else
    finally:
        await watcher.close()


async def _true(value: bool) -> bool:
    return value
