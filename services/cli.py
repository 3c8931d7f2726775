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


if __name__ == "__main__":
    main()
