"""A merchant's webhook endpoint for load, benchmark and chaos runs: verifies every
``Payments-Signature`` with the merchant's own secret (``contracts.webhooks.verify``, the file a
merchant copies), and counts verified events per payout.

One URL per merchant (``/hooks/<merchant_id>``) so a signature made with another merchant's
secret is caught. A delivery with a bad signature is answered 400 and counted; it never counts
as delivered.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field

from aiohttp import web

from contracts.webhooks import SIGNATURE_HEADER, WebhookSignatureError, verify


@dataclass
class Delivery:
    event_id: str
    event_type: str
    payout_id: str
    status: str
    received_at: float  # time.monotonic()


@dataclass
class Receiver:
    secrets: dict[str, str] = field(default_factory=dict)  # merchant id -> endpoint secret
    # (event type, payout id) -> first verified delivery
    first: dict[tuple[str, str], Delivery] = field(default_factory=dict)
    verified: int = 0
    duplicates: int = 0  # the same event id delivered again (allowed: at-least-once)
    bad_signatures: int = 0
    event_ids: set[str] = field(default_factory=set)
    by_type: Counter[str] = field(default_factory=Counter)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=1 << 20)
        app.router.add_post("/hooks/{merchant_id}", self._hook)
        return app

    async def _hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        secret = self.secrets.get(request.match_info["merchant_id"])
        if secret is None:
            self.bad_signatures += 1
            return web.Response(status=404)
        try:
            verify(secret, body, request.headers.get(SIGNATURE_HEADER))
        except WebhookSignatureError:
            self.bad_signatures += 1
            return web.Response(status=400)
        event = json.loads(body)
        obj = event["data"]["object"]
        self.verified += 1
        if event["id"] in self.event_ids:
            self.duplicates += 1
            return web.Response(status=200)
        self.event_ids.add(event["id"])
        self.by_type[event["type"]] += 1
        key = (event["type"], obj["id"])
        if key not in self.first:
            self.first[key] = Delivery(
                event["id"], event["type"], obj["id"], obj["status"], time.monotonic()
            )
        return web.Response(status=200)

    def delivered(self, event_type: str) -> dict[str, Delivery]:
        """Payout id -> first verified delivery of ``event_type``."""
        return {pid: d for (t, pid), d in self.first.items() if t == event_type}


async def serve(receiver: Receiver, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(receiver.app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
