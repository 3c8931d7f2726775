"""The newcomer's demo (a Procfile process): wait for every service, seed a demo merchant with
funds and a webhook endpoint pointing at a small receiver served here, then print the merchant
key, the console URL and a curl command that creates a payout.

Seeding is idempotent: the merchant and its key are kept in ``DEMO_STATE_FILE`` (the key is
only ever shown once by the API), the funding has a fixed reference, and the webhook endpoint is
created once. Deliveries are verified with ``contracts.webhooks.verify`` and logged.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from contracts.webhooks import SIGNATURE_HEADER, WebhookSignatureError, verify
from services.kit.logging import configure_logging, get_logger
from services.payout.settings import DEFAULT_ADMIN_API_KEY

log = get_logger("services.payout.demo")

FUNDING_REFERENCE = "demo-initial-funding"
FUNDING_MINOR = 10_000_000  # 100,000.00 EUR
SERVICES = {
    "ledger": ("LEDGER_URL", "http://127.0.0.1:8081"),
    "router": ("ROUTER_URL", "http://127.0.0.1:8082"),
    "payout": ("PAYOUT_URL", "http://127.0.0.1:8080"),
    "recon": ("RECON_URL", "http://127.0.0.1:8083"),
    "banksim": ("BANKSIM_URL", "http://127.0.0.1:8090"),
}


@dataclass(frozen=True)
class DemoConfig:
    urls: dict[str, str]
    admin_key: str
    receiver_host: str
    receiver_port: int
    state_file: Path
    ready_timeout_s: float

    @classmethod
    def from_env(cls) -> DemoConfig:
        env = os.environ
        return cls(
            urls={
                name: env.get(var, default).rstrip("/") for name, (var, default) in SERVICES.items()
            },
            admin_key=env.get("ADMIN_API_KEY") or DEFAULT_ADMIN_API_KEY,
            receiver_host=env.get("DEMO_RECEIVER_HOST", "127.0.0.1"),
            receiver_port=int(env.get("DEMO_RECEIVER_PORT", "8099")),
            state_file=Path(env.get("DEMO_STATE_FILE", "var/demo/state.json")),
            ready_timeout_s=float(env.get("DEMO_READY_TIMEOUT_S", "180")),
        )

    @property
    def receiver_url(self) -> str:
        return f"http://{self.receiver_host}:{self.receiver_port}/webhooks"


class DemoError(RuntimeError):
    pass


async def wait_ready(session: aiohttp.ClientSession, config: DemoConfig) -> None:
    deadline = time.monotonic() + config.ready_timeout_s
    pending = dict(config.urls)
    while pending:
        for name, url in list(pending.items()):
            try:
                async with session.get(url + "/readyz") as resp:
                    if resp.status == 200:
                        log.info("demo_service_ready", service=name)
                        del pending[name]
            except (aiohttp.ClientError, TimeoutError):
                pass
        if pending and time.monotonic() > deadline:
            raise DemoError(
                f"services not ready after {config.ready_timeout_s}s: {sorted(pending)}"
            )
        if pending:
            await asyncio.sleep(1.0)  # polling other processes' start-up


def _load_state(path: Path) -> dict[str, Any]:
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def _save_state(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    os.chmod(tmp, 0o600)  # it holds a secret key
    tmp.replace(path)


async def _call(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    token: str,
    body: Any = None,
    *,
    expect: tuple[int, ...] = (200, 201),
) -> Any:
    async with session.request(
        method, url, json=body, headers={"Authorization": f"Bearer {token}"}
    ) as resp:
        data = await resp.json(content_type=None)
        if resp.status not in expect:
            raise DemoError(f"{method} {url} answered {resp.status}: {data}")
        return data


async def seed(session: aiohttp.ClientSession, config: DemoConfig) -> dict[str, Any]:
    """Create (or reuse) the demo merchant, its funding and its webhook endpoint."""
    payout = config.urls["payout"]
    state = _load_state(config.state_file)
    key = state.get("secret_key")
    if key:
        async with session.get(
            payout + "/v1/balance", headers={"Authorization": f"Bearer {key}"}
        ) as resp:
            if resp.status != 200:
                state = {}  # a fresh database: start over
    if not state.get("merchant_id"):
        merchant = await _call(
            session,
            "POST",
            payout + "/admin/merchants",
            config.admin_key,
            {
                "name": "Demo Merchant",
                "currencies": ["EUR"],
                "fees": {"fixed": 25, "bps": 10},
            },
        )
        state = {"merchant_id": merchant["id"], "secret_key": merchant["secret_key"]}
        _save_state(config.state_file, state)
        log.info("demo_merchant_created", merchant_id=merchant["id"])
    await _call(
        session,
        "POST",
        f"{payout}/admin/merchants/{state['merchant_id']}/fundings",
        config.admin_key,
        {"amount": FUNDING_MINOR, "currency": "EUR", "reference": FUNDING_REFERENCE},
    )
    endpoints = await _call(session, "GET", payout + "/v1/webhook_endpoints", state["secret_key"])
    ours = [e for e in endpoints["data"] if e["url"] == config.receiver_url]
    if not ours or not state.get("webhook_secret"):
        for endpoint in ours:
            await _call(
                session,
                "DELETE",
                f"{payout}/v1/webhook_endpoints/{endpoint['id']}",
                state["secret_key"],
            )
        endpoint = await _call(
            session,
            "POST",
            payout + "/v1/webhook_endpoints",
            state["secret_key"],
            {"url": config.receiver_url, "event_types": ["*"], "description": "demo receiver"},
        )
        state["webhook_secret"] = endpoint["secret"]
        state["webhook_endpoint_id"] = endpoint["id"]
        _save_state(config.state_file, state)
    return state


def banner(config: DemoConfig, state: dict[str, Any]) -> str:
    body = json.dumps(
        {
            "amount": 12_500,
            "currency": "EUR",
            "beneficiary": {
                "name": "Jane Doe",
                "account_number": "GB29NWBK60161331926819",
                "bank_code": "NRTHGB2L",
            },
            "reference": "REF",
        }
    )
    # A fresh reference and idempotency key per paste, so pasting the command twice makes two
    # payouts instead of a reference_already_used error; no uuidgen needed.
    assert "'" not in body
    data = "'" + body.replace('"REF"', '"\'"$REF"\'"') + "'"
    curl = (
        'REF="demo-$(date +%s%N)"; '
        f"curl -sS -X POST {config.urls['payout']}/v1/payouts \\\n"
        f"  -H 'Authorization: Bearer {state['secret_key']}' \\\n"
        '  -H "Idempotency-Key: $REF" \\\n'
        "  -H 'Content-Type: application/json' \\\n"
        f"  -d {data}"
    )
    return "\n".join(
        [
            "",
            "=" * 72,
            " Payments suite demo is ready",
            f"   merchant id   {state['merchant_id']}",
            f"   merchant key  {state['secret_key']}",
            f"   console       {config.urls['recon']}/",
            f"   webhooks to   {config.receiver_url} (verified, logged here)",
            "",
            " Create a payout:",
            curl,
            "",
            " Then look at it:",
            f"   curl -sS {config.urls['payout']}/v1/payouts -H 'Authorization: Bearer "
            f"{state['secret_key']}'",
            "=" * 72,
            "",
        ]
    )


def receiver_app(secret_holder: dict[str, Any]) -> web.Application:
    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        try:
            verify(
                secret_holder.get("webhook_secret", ""), body, request.headers.get(SIGNATURE_HEADER)
            )
        except WebhookSignatureError as exc:
            log.warning("demo_webhook_rejected", reason=str(exc))
            return web.json_response({"error": str(exc)}, status=400)
        event = json.loads(body)
        obj = event.get("data", {}).get("object", {})
        log.info(
            "demo_webhook_received",
            type=event.get("type"),
            payout_id=obj.get("id"),
            status=obj.get("status"),
            amount=obj.get("amount"),
        )
        return web.Response(status=204)

    app = web.Application(client_max_size=1024 * 1024)
    app.router.add_post("/webhooks", receive)
    return app


async def run(config: DemoConfig) -> None:
    state: dict[str, Any] = {}
    runner = web.AppRunner(receiver_app(state), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, config.receiver_host, config.receiver_port)
    await site.start()
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session:
            await wait_ready(session, config)
            state.update(await seed(session, config))
        print(banner(config, state), flush=True)
        await asyncio.Event().wait()  # serve the receiver until the process is stopped
    finally:
        await runner.cleanup()


def main() -> None:
    configure_logging("demo", fmt=os.environ.get("LOG_FORMAT", "auto"))
    try:
        asyncio.run(run(DemoConfig.from_env()))
    except KeyboardInterrupt:
        pass
    except DemoError as exc:
        raise SystemExit(f"demo: {exc}") from None


if __name__ == "__main__":
    main()
