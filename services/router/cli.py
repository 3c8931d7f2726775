"""``payments router …``: channel health at a glance, kill switches, decisions.

Talks to a running router over its internal API (``ROUTER_URL``, ``SERVICE_TOKEN``)."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import aiohttp
import click

from services.kit.auth import SERVICE_TOKEN_HEADER
from services.kit.settings import DEFAULT_SERVICE_TOKEN


def _call(method: str, path: str, body: Any = None) -> Any:
    base = os.environ.get("ROUTER_URL", "http://127.0.0.1:8082").rstrip("/")
    headers = {SERVICE_TOKEN_HEADER: os.environ.get("SERVICE_TOKEN", DEFAULT_SERVICE_TOKEN)}

    async def run() -> Any:
        timeout = aiohttp.ClientTimeout(total=10)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.request(method, base + path, json=body, headers=headers) as resp,
        ):
            payload = await resp.json(content_type=None)
            if resp.status >= 400:
                raise click.ClickException(
                    f"{resp.status} {payload.get('code')}: {payload.get('detail') or ''}"
                )
            return payload

    try:
        return asyncio.run(run())
    except aiohttp.ClientError as exc:
        raise click.ClickException(f"router unreachable at {base}: {exc}") from None


@click.group()
def group() -> None:
    """Channel routing: health, breakers, kill switches, decisions."""


@group.command()
def channels() -> None:
    """One line per channel: breaker, success rate, latency, quota used, fee, kill switches."""
    data = _call("GET", "/v1/channels")
    header = (
        f"{'channel':<24} {'bank':<12} {'cur':<4} {'breaker':<10} {'success':>8} "
        f"{'p95 ms':>8} {'samples':>7} {'quota used':>22} {'fee':>10} {'killed':<10}"
    )
    click.echo(header)
    click.echo("-" * len(header))
    for c in data["channels"]:
        h, q = c["health"], c["quota"]
        used = f"{q['reserved_minor'] + q['consumed_minor']}/{q['daily_quota_minor']}"
        killed = ",".join(op for op, on in c["kill_switches"].items() if on) or "-"
        fee = f"{c['fee_minor']}+{c['fee_bps']}bp"
        p95 = "-" if h["latency_ms_p95"] is None else f"{h['latency_ms_p95']:.0f}"
        click.echo(
            f"{c['id']:<24} {c['bank']:<12} {c['currency']:<4} {h['breaker_state']:<10} "
            f"{h['success_rate_ppm'] / 10_000:>7.2f}% {p95:>8} {h['samples']:>7} "
            f"{used:>22} {fee:>10} {killed:<10}"
        )
    config = data["config"]
    click.echo(
        f"config: channels {config['channels_version']} rules {config['rules_version']}"
        + (f"  LAST RELOAD REJECTED: {config['last_error']}" if config["last_error"] else "")
    )


@group.command()
@click.argument("channel_id")
@click.argument("operation", type=click.Choice(["submit", "inquire"]))
@click.option("--reason", required=True, help="why; kept in the audit trail")
@click.option("--actor", default=lambda: os.environ.get("USER", "operator"), show_default="$USER")
@click.option("--release", is_flag=True, help="release the switch instead of engaging it")
def kill(channel_id: str, operation: str, reason: str, actor: str, release: bool) -> None:
    """Engage (or --release) a channel's kill switch for one operation."""
    row = _call(
        "PUT",
        f"/v1/channels/{channel_id}/kill_switches/{operation}",
        {"engaged": not release, "reason": reason, "actor": actor},
    )
    state = "engaged" if row["engaged"] else "released"
    click.echo(f"{channel_id} {operation}: {state} by {row['actor']} ({row['reason']})")


@group.command()
@click.argument("attempt_id")
def decision(attempt_id: str) -> None:
    """The routing decision behind an attempt: candidates, scores, exclusions, reason."""
    click.echo(json.dumps(_call("GET", f"/v1/decisions/{attempt_id}"), indent=2))
