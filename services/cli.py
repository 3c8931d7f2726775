"""The ``payments`` command line. Each service contributes its own command group from
``services/<service>/cli.py`` (attribute ``group``); they are imported only when used so
``payments --help`` stays fast. A few of their commands are also at the top level
(``payments channels``, ``payments seed-demo``) because operators reach for them first.

Cross-service operator commands live here (``status``, ``payouts stuck``, ``webhooks``,
``dlq``); what they read and how is in ``services/ops.py``. Settings come from the same
environment variables as the services (``DATABASE_URL``, ``DB_NAME_PREFIX``, ``AMQP_URL``,
``AMQP_PREFIX``, ``<SERVICE>_URL``, ``SERVICE_TOKEN``, ``ADMIN_API_KEY``)."""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import click

from services.kit import db, migrations
from services.kit.settings import DEFAULT_DATABASE_URL

SERVICE_GROUPS = {
    "ledger": "services.ledger.cli",
    "router": "services.router.cli",
    "payout": "services.payout.cli",
    "recon": "services.recon.cli",
    "banksim": "services.banksim.cli",
}
DATABASE_SERVICES = ("ledger", "router", "payout", "recon", "banksim")
# Top-level aliases of service commands: name -> (module, attribute).
ALIASES = {
    "channels": ("services.router.cli", "channels"),
    "seed-demo": ("services.payout.cli", "seed_demo"),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *SERVICE_GROUPS, *ALIASES])

    def get_command(self, ctx: click.Context, cmd_name: str) -> Any:
        if cmd_name in SERVICE_GROUPS:
            return importlib.import_module(SERVICE_GROUPS[cmd_name]).group
        if cmd_name in ALIASES:
            module, attribute = ALIASES[cmd_name]
            return getattr(importlib.import_module(module), attribute)
        return super().get_command(ctx, cmd_name)


@click.group(cls=LazyGroup)
def main() -> None:
    """Operate the payments suite: migrations, ledger, routing, reconciliation."""


@main.command()
def migrate() -> None:
    """Create every service's database if missing and apply pending migrations."""
    base = os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL)
    prefix = os.environ.get("DB_NAME_PREFIX", "payments_")
    root = Path(__file__).parent

    async def run() -> None:
        for service in DATABASE_SERVICES:
            folder = root / service / "migrations"
            if not folder.is_dir():
                continue
            await db.ensure_database(base, prefix + service)
            applied = await migrations.apply(db.service_dsn(base, prefix, service), folder)
            click.echo(f"{service}: {len(applied)} migration(s) applied")

    asyncio.run(run())


SERVICE_PORTS = {"payout": 8080, "ledger": 8081, "router": 8082, "recon": 8083, "banksim": 8090}


def service_url(service: str) -> str:
    return os.environ.get(f"{service.upper()}_URL", f"http://127.0.0.1:{SERVICE_PORTS[service]}")


@main.command()
@click.option("--timeout", "timeout_s", default=2.0, show_default=True, help="per probe, seconds")
def status(timeout_s: float) -> None:
    """Readiness of every service, outbox backlog per database, and queue depths."""
    from services.ops import collect_status, render_status

    report = asyncio.run(collect_status(SERVICE_PORTS, service_url, timeout_s=timeout_s))
    click.echo(render_status(report))
    if not report.all_ready:
        raise SystemExit(1)


# ---- payouts --------------------------------------------------------------------------------


@main.group()
def payouts() -> None:
    """Payouts that need an operator."""


@payouts.command()
@click.option(
    "--older-than",
    "older_than_s",
    default=600.0,
    show_default=True,
    help="seconds since a processing/submitted payout last changed",
)
@click.option("--limit", default=200, show_default=True, help="rows at most")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line")
def stuck(older_than_s: float, limit: int, as_json: bool) -> None:
    """Payouts not moving: processing/submitted for longer than --older-than, and every one
    waiting for an operator (manual_review, pending_review). Exit 1 when there are any."""
    from services.ops import render_stuck, service_dsn, stuck_payouts

    rows = asyncio.run(stuck_payouts(service_dsn("payout"), older_than_s=older_than_s, limit=limit))
    if as_json:
        for row in rows:
            click.echo(json.dumps(row, default=str))
    else:
        click.echo(render_stuck(rows))
    if rows:
        raise SystemExit(1)


# ---- webhooks -------------------------------------------------------------------------------


def _admin_run(work: Callable[[Any], Awaitable[Any]]) -> Any:
    from services.ops import AdminApi, AdminApiError

    async def go() -> Any:
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            key = os.environ.get("ADMIN_API_KEY", "dev-admin-key-change-me")
            return await work(AdminApi(session, service_url("payout"), key))

    try:
        return asyncio.run(go())
    except AdminApiError as exc:
        raise click.ClickException(str(exc)) from None
    except aiohttp.ClientError as exc:
        raise click.ClickException(
            f"payout unreachable at {service_url('payout')}: {exc}"
        ) from None


@main.group()
def webhooks() -> None:
    """Webhook deliveries: list them, send them again."""


@webhooks.command("list")
@click.option(
    "--status", type=click.Choice(["pending", "delivered", "dead"]), default=None, help="filter"
)
@click.option("--limit", default=50, show_default=True)
def webhooks_list(status: str | None, limit: int) -> None:
    """Most recent deliveries first."""
    from services.ops import render_deliveries

    rows = _admin_run(lambda api: api.deliveries(status, limit))
    click.echo(render_deliveries(rows))


@webhooks.command("resend")
@click.argument("delivery_ids", nargs=-1)
@click.option("--dead", "all_dead", is_flag=True, help="every dead delivery (up to --limit)")
@click.option("--limit", default=1000, show_default=True)
def webhooks_resend(delivery_ids: tuple[str, ...], all_dead: bool, limit: int) -> None:
    """Send deliveries again (by id, or --dead for every dead one): each goes back to
    pending with a fresh retry window; the admin API audits it."""
    if not delivery_ids and not all_dead:
        raise click.UsageError("give delivery ids or --dead")

    async def work(api: Any) -> list[dict[str, Any]]:
        ids = list(delivery_ids)
        if all_dead:
            ids += [d["id"] for d in await api.deliveries("dead", limit)]
        done: list[dict[str, Any]] = []
        with click.progressbar(length=len(ids), label="resending", file=sys.stderr) as bar:
            for delivery_id in ids:
                done.append(await api.resend(delivery_id))
                bar.update(1)
        return done

    from services.ops import render_deliveries

    rows = _admin_run(work)
    click.echo(render_deliveries(rows))
    click.echo(f"{len(rows)} delivery(ies) back to pending")


# ---- dead letters ---------------------------------------------------------------------------


@main.group()
def dlq() -> None:
    """Messages the broker dead-lettered (undecodable, or over the delivery limit)."""


@dlq.command("list")
@click.option("--limit", default=100, show_default=True)
def dlq_list(limit: int) -> None:
    """What is in the dead-letter queue, where each message died and why (nothing is
    removed)."""
    from services.ops import amqp_prefix, amqp_url, dlq_list, render_dead_letters

    letters = asyncio.run(dlq_list(amqp_url(), amqp_prefix(), limit=limit))
    click.echo(render_dead_letters(letters))


@dlq.command("replay")
@click.argument("message_ids", nargs=-1)
@click.option("--queue", default=None, help="only messages that died in this consumer queue")
@click.option("--limit", default=1000, show_default=True)
@click.option("--yes", is_flag=True, help="do not ask for confirmation")
def dlq_replay(message_ids: tuple[str, ...], queue: str | None, limit: int, yes: bool) -> None:
    """Move dead letters (all, those of --queue, or the given message ids) back to the queue
    each died in; consumers dedupe by event id, so a replay never applies an effect twice."""
    from services.ops import amqp_prefix, amqp_url, dlq_list, dlq_replay, render_dead_letters

    url, prefix = amqp_url(), amqp_prefix()
    waiting = asyncio.run(dlq_list(url, prefix, limit=limit))
    if not waiting:
        click.echo("dead-letter queue is empty")
        return
    if not yes:
        click.confirm(f"replay up to {len(waiting)} message(s)?", abort=True)
    with click.progressbar(length=len(waiting), label="replaying", file=sys.stderr) as bar:
        report = asyncio.run(
            dlq_replay(
                url,
                prefix,
                limit=limit,
                queue=queue,
                message_ids=message_ids,
                progress=bar.update,
            )
        )
    click.echo(render_dead_letters(report.replayed))
    click.echo(f"{len(report.replayed)} replayed, {len(report.skipped)} left in place")


if __name__ == "__main__":
    main()
