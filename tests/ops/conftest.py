"""The whole suite (bank simulator, ledger, router, payout, recon) as real processes for the
operations tests, plus helpers: a merchant with funds and a webhook receiver, payouts, and a
``/metrics`` scraper."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from prometheus_client.parser import text_string_to_metric_families

from contracts.webhooks import SIGNATURE_HEADER, verify
from tests.support.infra import ROOT
from tests.support.suite import ADMIN_KEY, SERVICE_TOKEN, Suite, SuiteSpec
from tests.support.waiting import wait_until

BANKS_FILE = ROOT / "tests" / "e2e" / "banks.yaml"
CHANNELS = [
    {"id": "ch_ops_north", "bank": "northbank", "currency": "EUR", "fee_minor": 10},
    {"id": "ch_ops_atlas", "bank": "atlas", "currency": "EUR", "fee_minor": 40},
]
FAST = {
    "payout": {
        "PAYOUT_WEBHOOK_RETRY_BASE_MS": "100",
        "PAYOUT_WEBHOOK_RETRY_MAX_MS": "400",
        "PAYOUT_RECOVERY_INTERVAL_MS": "100",
        "PAYOUT_RETRY_BASE_MS": "50",
        "PAYOUT_RETRY_MAX_MS": "500",
        "PAYOUT_TX_LEASE_S": "2",
        "PAYOUT_INQUIRY_SCHEDULE_S": "1,2",
        "DB_POOL_MAX": "8",
    },
    "router": {"ROUTER_BANK_TIMEOUT_MS": "1500", "ROUTER_RECOVERY_POLL_MS": "200"},
}


@pytest.fixture(scope="package")
def ops_suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    spec = SuiteSpec(
        workdir=tmp_path_factory.mktemp("ops"),
        banks_file=BANKS_FILE,
        channels=CHANNELS,
        name="ops",
        with_recon=True,
        env={"DB_POOL_MAX": "6"},
        service_env=FAST,
    )
    suite = Suite(spec)
    try:
        suite.start()
        yield suite
    finally:
        suite.stop()
        suite.cleanup()


def cli_env(suite: Suite) -> dict[str, str]:
    """The environment an operator would have: the suite's servers, names and keys."""
    spec = suite.spec
    env = {
        **os.environ,
        "DATABASE_URL": spec.database_url,
        "DB_NAME_PREFIX": spec.db_prefix,
        "AMQP_URL": spec.amqp_url,
        "AMQP_PREFIX": spec.amqp_prefix,
        "SERVICE_TOKEN": SERVICE_TOKEN,
        "ADMIN_API_KEY": ADMIN_KEY,
        "COLUMNS": "200",
    }
    for name, url in suite.urls.items():
        env[f"{name.upper()}_URL"] = url
    return env


def payments(
    suite: Suite, *args: str, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the installed ``payments`` command against the suite."""
    return subprocess.run(
        [str(Path(sys.executable).with_name("payments")), *args],
        env=cli_env(suite),
        cwd=ROOT,
        input=input,
        capture_output=True,
        text=True,
        timeout=60,
    )


@dataclass
class Receiver:
    """A merchant's webhook endpoint: verifies signatures, keeps bodies and headers."""

    secret: str = ""
    received: list[tuple[dict[str, Any], dict[str, str]]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        verify(self.secret, body, request.headers.get(SIGNATURE_HEADER))
        self.received.append((json.loads(body), dict(request.headers)))
        return web.Response(status=200)

    def for_payout(self, payout_id: str, event_type: str) -> list[dict[str, str]]:
        return [
            headers
            for event, headers in self.received
            if event["type"] == event_type and event["data"]["object"]["id"] == payout_id
        ]


@dataclass
class Merchant:
    session: aiohttp.ClientSession
    suite: Suite
    id: str
    key: str
    receiver: Receiver

    async def create(
        self, amount: int = 10_000, *, account: str = "GB29NWBK60161331926819", **headers: str
    ) -> tuple[int, Any, dict[str, str]]:
        body = {
            "amount": amount,
            "currency": "EUR",
            "beneficiary": {"name": "Jane Doe", "account_number": account, "bank_code": "NRTHGB2L"},
            "reference": f"ops-{uuid.uuid4().hex[:12]}",
        }
        return await self.post_payout(body, uuid.uuid4().hex, headers)

    async def post_payout(
        self, body: dict[str, Any], idempotency_key: str, headers: dict[str, str] | None = None
    ) -> tuple[int, Any, dict[str, str]]:
        async with self.session.post(
            self.suite.urls["payout"] + "/v1/payouts",
            json=body,
            headers={
                "Authorization": f"Bearer {self.key}",
                "Idempotency-Key": idempotency_key,
                **(headers or {}),
            },
        ) as resp:
            return resp.status, await resp.json(content_type=None), dict(resp.headers)

    async def payout(self, payout_id: str) -> dict[str, Any]:
        async with self.session.get(
            f"{self.suite.urls['payout']}/v1/payouts/{payout_id}",
            headers={"Authorization": f"Bearer {self.key}"},
        ) as resp:
            assert resp.status == 200, await resp.text()
            return dict(await resp.json())

    async def wait_final(self, payout_id: str, timeout_s: float = 30.0) -> dict[str, Any]:
        async def final() -> dict[str, Any] | None:
            payout = await self.payout(payout_id)
            return payout if payout["status"] in ("paid", "failed") else None

        return await wait_until(final, timeout_s=timeout_s, message=f"{payout_id} final")


async def admin(
    session: aiohttp.ClientSession, suite: Suite, method: str, path: str, body: Any = None
) -> Any:
    async with session.request(
        method,
        suite.urls["payout"] + path,
        json=body,
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
    ) as resp:
        data = await resp.json(content_type=None)
        assert resp.status < 300, (resp.status, data)
        return data


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as s:
        yield s


@pytest.fixture
async def merchant(ops_suite: Suite, session: aiohttp.ClientSession) -> AsyncIterator[Merchant]:
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        created = await admin(
            session,
            ops_suite,
            "POST",
            "/admin/merchants",
            {
                "name": "Ops Merchant",
                "currencies": ["EUR"],
                "limits": {},
                "fees": {"fixed": 30, "bps": 10},
            },
        )
        await admin(
            session,
            ops_suite,
            "POST",
            f"/admin/merchants/{created['id']}/fundings",
            {"amount": 50_000_000, "currency": "EUR", "reference": f"seed-{uuid.uuid4().hex[:8]}"},
        )
        m = Merchant(session, ops_suite, created["id"], created["secret_key"], receiver)
        async with session.post(
            ops_suite.urls["payout"] + "/v1/webhook_endpoints",
            json={"url": str(server.make_url("/hook")), "event_types": ["*"]},
            headers={"Authorization": f"Bearer {m.key}"},
        ) as resp:
            endpoint = await resp.json()
            assert resp.status == 201, endpoint
        receiver.secret = endpoint["secret"]
        yield m
    finally:
        await server.close()


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(session: aiohttp.ClientSession, url: str) -> Samples:
    async with session.get(url + "/metrics") as resp:
        assert resp.status == 200
        text = await resp.text()
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float | None:
    """The sample with exactly these labels (a subset match when several: their sum)."""
    wanted = set(labels.items())
    found = [v for (n, ls), v in samples.items() if n == name and wanted <= ls]
    return sum(found) if found else None
