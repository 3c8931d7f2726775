"""End to end: the payout process signs its webhooks and redelivers after failures."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from contracts.webhooks import SIGNATURE_HEADER, verify
from tests.e2e.conftest import Api, payout_body
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e


async def test_webhook_is_verified_by_the_helper_after_three_failed_deliveries(api: Api) -> None:
    received: list[tuple[bytes, str | None]] = []
    verified: list[dict[str, Any]] = []
    secret: dict[str, str] = {}

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        received.append((body, request.headers.get(SIGNATURE_HEADER)))
        if len(received) <= 3:
            return web.Response(status=503)  # the merchant's endpoint is down three times
        verify(secret["value"], body, request.headers.get(SIGNATURE_HEADER))
        verified.append(json.loads(body))
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/hook", hook)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        merchant = await api.merchant()
        status, endpoint = await merchant.post(
            "/v1/webhook_endpoints",
            {"url": str(server.make_url("/hook")), "event_types": ["payout.paid"]},
        )
        assert status == 201
        secret["value"] = endpoint["secret"]
        _, created, _ = await merchant.create(payout_body(amount=4_200))

        async def delivered() -> bool:
            return len(verified) == 1

        await wait_until(delivered, timeout_s=30, message="webhook delivered")
        assert len(received) == 4
        assert verified[0]["type"] == "payout.paid"
        assert verified[0]["data"]["object"]["id"] == created["id"]
        # The three failed attempts carried valid signatures too (same body, same secret).
        for body, header in received[:3]:
            verify(secret["value"], body, header)

        # The sender records the delivery after the receiver has answered: wait for that write.
        async def recorded() -> list[dict[str, Any]]:
            _, page = await api.admin("GET", "/admin/webhook_deliveries?status=delivered&limit=100")
            return [d for d in page["data"] if d["endpoint_id"] == endpoint["id"]]

        mine = await wait_until(recorded, timeout_s=10, message="the delivery recorded")
        assert len(mine) == 1 and mine[0]["attempts"] == 4
    finally:
        await server.close()
