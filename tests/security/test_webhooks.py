"""Webhook signatures carry a timestamp; the merchant-side verification helper refuses a
replay outside the tolerance; endpoints must be https (and public) in production mode."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from contracts import webhooks
from tests.security.conftest import Client, payout_body
from tests.support.processes import ServiceProcess, free_port
from tests.support.suite import CALLBACK_SECRET, Suite
from tests.support.waiting import wait_until

SECRET = "whsec_test_0123456789abcdef"
BODY = b'{"id":"evt_1","type":"payout.paid"}'


def test_a_fresh_signature_verifies_and_returns_its_timestamp() -> None:
    now = 1_800_000_000
    header = webhooks.sign(SECRET, BODY, timestamp=now)
    assert webhooks.verify(SECRET, BODY, header, now=now + 10) == now


@pytest.mark.parametrize("skew_s", [301, 3600, -301])
def test_a_signature_outside_the_tolerance_is_refused_as_a_replay(skew_s: int) -> None:
    signed_at = 1_800_000_000
    header = webhooks.sign(SECRET, BODY, timestamp=signed_at)
    with pytest.raises(webhooks.WebhookSignatureError, match="tolerance"):
        webhooks.verify(SECRET, BODY, header, now=signed_at + skew_s)


def test_a_replay_with_a_fresh_timestamp_but_the_old_signature_is_refused() -> None:
    signed_at = 1_800_000_000
    old = webhooks.sign(SECRET, BODY, timestamp=signed_at)
    signature = old.split("v1=")[1]
    forged = f"t={signed_at + 3600},v1={signature}"
    with pytest.raises(webhooks.WebhookSignatureError, match="no matching"):
        webhooks.verify(SECRET, BODY, forged, now=signed_at + 3600)


@pytest.mark.parametrize(
    ("secret", "body", "header"),
    [
        ("whsec_other_secret_000000", BODY, None),
        (SECRET, BODY + b" ", None),
        (SECRET, BODY, ""),
        (SECRET, BODY, "v1=abc"),
        (SECRET, BODY, "t=notanumber,v1=abc"),
    ],
)
def test_a_wrong_secret_a_changed_body_or_a_broken_header_is_refused(
    secret: str, body: bytes, header: str | None
) -> None:
    now = 1_800_000_000
    presented = header if header is not None else webhooks.sign(SECRET, BODY, timestamp=now)
    with pytest.raises(webhooks.WebhookSignatureError):
        webhooks.verify(secret, body, presented, now=now)


class Receiver:
    def __init__(self) -> None:
        self.requests: list[tuple[bytes, str]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append(
            (await request.read(), request.headers.get(webhooks.SIGNATURE_HEADER, ""))
        )
        return web.Response(status=204)


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/hooks", rec.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    yield rec, f"http://127.0.0.1:{port}/hooks"
    await runner.cleanup()


@pytest.mark.e2e
async def test_a_delivered_webhook_verifies_now_and_is_refused_when_replayed_later(
    client: Client, receiver: tuple[Receiver, str]
) -> None:
    rec, url = receiver
    merchant = await client.merchant()
    status, endpoint, _ = await client.call(
        "POST",
        "payout",
        "/v1/webhook_endpoints",
        json={"url": url, "event_types": ["*"]},
        headers=merchant.headers,
    )
    assert status == 201, endpoint
    status, payout, _ = await client.call(
        "POST",
        "payout",
        "/v1/payouts",
        json=payout_body(),
        headers={**merchant.headers, "Idempotency-Key": f"wh-{time.monotonic_ns()}"},
    )
    assert status in (200, 201, 202), payout

    async def delivered() -> bool:
        return bool(rec.requests)

    await wait_until(delivered, timeout_s=20, message="a webhook delivery")
    body, header = rec.requests[0]
    signed_at = webhooks.verify(endpoint["secret"], body, header)
    assert abs(signed_at - time.time()) < 60
    assert payout["id"] in body.decode()
    with pytest.raises(webhooks.WebhookSignatureError, match="tolerance"):
        webhooks.verify(
            endpoint["secret"],
            body,
            header,
            now=signed_at + webhooks.DEFAULT_TOLERANCE_S + 1,
        )


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://hooks.example.com/payments", True),
        ("http://127.0.0.1:9/hooks", True),
        ("http://localhost:9/hooks", True),
        ("http://hooks.example.com/payments", False),
        ("http://10.0.0.5/hooks", False),
    ],
)
async def test_development_allows_http_for_localhost_only(
    client: Client, url: str, allowed: bool
) -> None:
    merchant = await client.merchant(funds=0)
    status, body, _ = await client.call(
        "POST",
        "payout",
        "/v1/webhook_endpoints",
        json={"url": url, "event_types": ["*"]},
        headers=merchant.headers,
    )
    if allowed:
        assert status == 201, body
    else:
        assert status == 422 and body["code"] == "webhook_url_not_allowed", body


@pytest.fixture
async def production_payout(stack: Suite) -> AsyncIterator[ServiceProcess]:
    """A second payout instance on the same database and broker, in production mode."""
    port = free_port()
    env = {**stack.env["payout"], "PAYOUT_PORT": str(port), "ENVIRONMENT": "production"}
    process = ServiceProcess("sec-payout-production", "services.payout", env, port)
    await asyncio.to_thread(process.start, ready_timeout_s=60)
    try:
        yield process
    finally:
        await asyncio.to_thread(process.stop)


@pytest.mark.e2e
async def test_production_mode_accepts_only_https_endpoints_on_public_hosts(
    client: Client, production_payout: ServiceProcess
) -> None:
    merchant = await client.merchant(funds=0)
    cases = {
        "https://hooks.example.com/payments": 201,
        "http://hooks.example.com/payments": 422,
        "http://127.0.0.1:9/hooks": 422,
        "https://127.0.0.1/hooks": 422,
        "https://localhost/hooks": 422,
        "https://10.1.2.3/hooks": 422,
        "https://169.254.169.254/latest/meta-data": 422,
        "https://[::1]/hooks": 422,
    }
    for url, expected in cases.items():
        async with client.session.post(
            production_payout.url + "/v1/webhook_endpoints",
            json={"url": url, "event_types": ["*"]},
            headers=merchant.headers,
        ) as resp:
            body = await resp.json(content_type=None)
            assert resp.status == expected, (url, resp.status, body)
            if expected == 422:
                assert body["code"] == "webhook_url_not_allowed", body


def _bank_signature(body: bytes, timestamp: int, secret: str = CALLBACK_SECRET) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


@pytest.mark.e2e
async def test_the_router_refuses_bank_callbacks_unsigned_forged_or_replayed(
    client: Client,
) -> None:
    body = json.dumps(
        {
            "reference": "att_never_sent_000000000000",
            "bank_reference": "nb_1",
            "status": "paid",
            "amount_minor": 100,
            "currency": "EUR",
            "fee_minor": 0,
            "bank": "northbank",
        }
    ).encode()
    now = int(time.time())
    refused = {
        "unsigned": None,
        "wrong secret": _bank_signature(body, now, "another-secret-0123456789"),
        "replayed an hour later": _bank_signature(body, now - 3600),
        "signed in the future": _bank_signature(body, now + 3600),
        "other body": _bank_signature(body + b" ", now),
    }
    for case, signature in refused.items():
        headers = {"Content-Type": "application/json"}
        if signature is not None:
            headers["Bank-Signature"] = signature
        status, problem, _ = await client.call(
            "POST", "router", "/v1/bank_callbacks/northbank", data=body, headers=headers
        )
        assert status == 401, (case, status, problem)
        assert problem["code"] == "bank_signature_invalid", (case, problem)
    # The same body, freshly and correctly signed, gets past the signature check.
    status, answer, _ = await client.call(
        "POST",
        "router",
        "/v1/bank_callbacks/northbank",
        data=body,
        headers={"Content-Type": "application/json", "Bank-Signature": _bank_signature(body, now)},
    )
    assert status != 401, answer
