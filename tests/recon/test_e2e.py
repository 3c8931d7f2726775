"""The loop with real processes: the bank simulator pays, writes a statement with injected
discrepancies into the drop directory, recon picks it up, and the breaks, alerts and payout
resolutions equal the simulator's answer key.

Our own records come from a small stand-in for the router's attempts export (same path, same
NDJSON fields, service token checked): the records are built from what the simulator really
answered, with the statuses the router would have stored — that keeps this test about the
statement loop rather than the whole payout stack (tests/e2e covers that).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from contracts.wire import Envelope
from services.kit.amqp import Broker
from services.kit.settings import DEFAULT_SERVICE_TOKEN
from tests.support import infra
from tests.support.processes import ServiceProcess, free_port
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e

BANK = "northbank"
FINANCE_KEY = "finance-key-for-e2e-0123456789"
BANK_KEY_DEFAULT = "dev-bank-client-key-change-me"


@pytest.fixture
async def router_stub() -> AsyncIterator[tuple[str, list[dict]]]:
    records: list[dict] = []

    async def export(request: web.Request) -> web.StreamResponse:
        if request.headers.get("X-Service-Token") != DEFAULT_SERVICE_TOKEN:
            raise web.HTTPUnauthorized()
        assert request.query["bank"] == BANK and request.query["from"] < request.query["to"]
        body = "".join(json.dumps(r) + "\n" for r in records)
        body += json.dumps({"end": True, "rows": len(records), "truncated": False}) + "\n"
        return web.Response(text=body, content_type="application/x-ndjson")

    app = web.Application()
    app.router.add_get("/v1/attempts/export", export)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    yield f"http://127.0.0.1:{port}", records
    await runner.cleanup()


async def test_banksim_statement_with_discrepancies_reconciles_to_the_answer_key(
    run_id: str, amqp_prefix: str, tmp_path: Path, router_stub: tuple[str, list[dict]]
) -> None:
    router_url, records = router_stub
    drop = tmp_path / "drop"
    prefix = f"{amqp_prefix}.e2e{uuid.uuid4().hex[:6]}"
    common = {
        "DATABASE_URL": infra.database_url(),
        "DB_NAME_PREFIX": f"{run_id}_e2e_",  # its own database: an outbox of its own
        "AMQP_URL": infra.amqp_url(),
        "AMQP_PREFIX": prefix,
        "RECON_DROP_DIR": str(drop),
    }
    bank_port, recon_port = free_port(), free_port()
    banksim = ServiceProcess(
        "banksim-e2e",
        "services.banksim",
        {
            **common,
            "BANKSIM_PORT": str(bank_port),
            "BANKSIM_EOD_ENABLED": "false",
            "BANKSIM_SEED": "7",
        },
        bank_port,
    )
    channels = tmp_path / "channels.yaml"
    channels.write_text(f"channels:\n  {BANK}:\n    window_days: 0\n    currencies: [EUR]\n")
    recon = ServiceProcess(
        "recon-e2e",
        "services.recon",
        {
            **common,
            "RECON_PORT": str(recon_port),
            "RECON_DATA_DIR": str(tmp_path / "data"),
            "RECON_CHANNELS_FILE": str(channels),
            "RECON_SCAN_INTERVAL_MS": "100",
            "RECON_FINANCE_KEY": FINANCE_KEY,
            "ROUTER_URL": router_url,
        },
        recon_port,
    )
    # Declared like the services declare them (tests/conftest.py sets the expiry), or the
    # broker refuses the second declaration of the same queue.
    watcher = Broker(
        infra.amqp_url(),
        prefix,
        queue_expires_ms=int(os.environ.get("AMQP_QUEUE_EXPIRES_MS", "0")),
    )
    seen: list[Envelope] = []

    async def collect(envelope: Envelope) -> None:
        seen.append(envelope)

    banksim.start()
    try:
        await watcher.connect()
        await watcher.consume("e2e_watch", ["recon.#"], collect)
        admin = {"X-Service-Token": DEFAULT_SERVICE_TOKEN}
        async with aiohttp.ClientSession(base_url=banksim.url) as http:
            resp = await http.put(
                f"/admin/banks/{BANK}/behaviour",
                json={
                    "mode": "normal",
                    "overrides": {
                        "success_rate": 1.0,
                        "refusal_rate": 0.0,
                        "lost_response_rate": 0.0,
                        "ambiguous_error_rate": 0.0,
                        "async_rate": 0.0,
                        "latency_median_ms": 1,
                        "latency_p99_ms": 2,
                    },
                },
                headers=admin,
            )
            assert resp.status == 200, await resp.text()
            answers: dict[str, dict] = {}
            for i in range(12):
                reference = f"att_e2e{uuid.uuid4().hex[:10]}"
                resp = await http.post(
                    f"/banks/{BANK}/transfers",
                    json={
                        "reference": reference,
                        "amount_minor": 10_000 + 137 * i,
                        "currency": "EUR",
                        "beneficiary": {
                            "name": "Ada Lovelace",
                            "account_number": "GB33BUKB20201555555555",
                            "bank_code": "BUKBGB22",
                        },
                    },
                    headers={"X-Bank-Key": BANK_KEY_DEFAULT},
                )
                answer = await resp.json()
                assert answer["status"] == "paid", answer
                answers[reference] = answer | {"amount_minor": 10_000 + 137 * i}
            refs = list(answers)
            statuses = {ref: "succeeded" for ref in refs}
            statuses[refs[0]] = "unknown"  # executed, we never learnt it: recon says paid
            statuses[refs[1]] = "failed"  # we think failed, the bank paid: status_mismatch
            for ref in refs:
                a = answers[ref]
                records.append(
                    {
                        "attempt_id": ref,
                        "payout_id": "po_" + ref[4:],
                        "channel_id": "ch_northbank_eur",
                        "bank": BANK,
                        "amount_minor": a["amount_minor"],
                        "currency": "EUR",
                        "status": statuses[ref],
                        "failure_class": None,
                        "failure_code": None,
                        "bank_reference": a["bank_reference"],
                        "fee_minor": a["fee_minor"],
                        "executed_at": a["executed_at"],
                        "sent_at": a["executed_at"],
                        "resolved_at": None,
                    }
                )
            never_reached = "att_e2e_never_reached"  # unknown, absent after T+N: failed
            sent = (datetime.now(UTC) - timedelta(days=3)).isoformat()
            records.append(
                records[-1]
                | {
                    "attempt_id": never_reached,
                    "payout_id": "po_never_reached",
                    "status": "unknown",
                    "bank_reference": None,
                    "executed_at": None,
                    "sent_at": sent,
                }
            )
            business_date = datetime.fromisoformat(answers[refs[2]]["executed_at"]).date()
            injected = [
                {"kind": "drop_line", "reference": refs[2]},
                {"kind": "amount_changed", "reference": refs[3], "amount_minor": 11},
                {"kind": "duplicate_line", "reference": refs[4]},
                {"kind": "value_date_next_day", "reference": refs[5]},
                {"kind": "returned_payout", "reference": refs[6]},
                {"kind": "unknown_line", "amount_minor": 4321},
            ]
            recon.start()
            resp = await http.post(
                "/admin/statements",
                json={
                    "bank": BANK,
                    "business_date": business_date.isoformat(),
                    "currency": "EUR",
                    "discrepancies": injected,
                },
                headers=admin,
            )
            assert resp.status == 201, await resp.text()
            statement = (await resp.json())["files"][0]
        key = json.loads(Path(statement["answer_key_path"]).read_text())
        expected_answers = key["discrepancies"]

        finance = {"Authorization": f"Bearer {FINANCE_KEY}"}
        async with aiohttp.ClientSession(base_url=recon.url, headers=finance) as api:
            refused: list[tuple[int, dict]] = []

            async def run_done() -> list[dict] | None:
                resp = await api.get(f"/v1/recon/runs?channel={BANK}")
                body = await resp.json()
                if resp.status != 200:
                    refused.append((resp.status, body))
                    return None
                return body["runs"]

            runs = await wait_until(run_done, timeout_s=30, message="recon run of the statement")
            assert runs, refused[-3:]
            run_id_ = runs[0]["run_id"]
            breaks = (await (await api.get(f"/v1/recon/breaks?run_id={run_id_}&limit=500")).json())[
                "breaks"
            ]
            got = {(b["code"], b["attempt_id"] or b["amount_minor"]) for b in breaks}
            want = set()
            for answer in expected_answers:
                code = answer["expected_break"]
                ident = (
                    answer["reference"]
                    if answer["reference"].startswith("att_")
                    else (answer["amount_minor"])
                )
                want.add((code, ident))
            want.add(("status_mismatch", refs[1]))
            assert got == want

            alerts = (await (await api.get("/v1/recon/alerts?status=open")).json())["alerts"]
            by_code = {a["code"]: a["severity"] for a in alerts if a["channel"] == BANK}
            assert by_code["status_mismatch"] == "critical"
            assert {c for c, _ in want} <= set(by_code)

        def resolved() -> set[tuple[str, str]]:
            return {
                (e.data["attempt_id"], e.data["outcome"])
                for e in seen
                if e.event_type == "recon.payout_resolved"
            }

        async def all_resolved() -> bool:
            return resolved() >= {
                (refs[0], "paid"),
                (refs[6], "returned"),
                (never_reached, "failed"),
            }

        await wait_until(all_resolved, timeout_s=15, message="payout resolutions published")
        assert resolved() == {(refs[0], "paid"), (refs[6], "returned"), (never_reached, "failed")}
        archived = list((drop / BANK / "archive").iterdir())
        assert any(p.name.endswith(statement["file_name"]) for p in archived)
    finally:
        recon.stop()
        banksim.stop()
        await watcher.close()
        await infra.delete_broker_names(prefix, [f"{prefix}.e2e_watch"])
