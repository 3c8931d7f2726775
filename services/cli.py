"""The ``payments`` command line. Each service contributes its own command group from
``services/<service>/cli.py`` (attribute ``group``); they are imported only when used so
``payments --help`` stays fast."""

from __future__ import annotations

import asyncio
import importlib
import os
from pathlib import Path
from typing import Any

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


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *SERVICE_GROUPS])

    def get_command(self, ctx: click.Context, cmd_name: str) -> Any:
        if cmd_name in SERVICE_GROUPS:
            return importlib.import_module(SERVICE_GROUPS[cmd_name]).group
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


if __name__ == "__main__":
    main()
