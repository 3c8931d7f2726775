"""``payments ledger …``: operator commands for the ledger."""

from __future__ import annotations

import asyncio
import json
import sys

import asyncpg
import click

from services.ledger.adapters.verify import verify as verify_chain
from services.ledger.settings import from_env


@click.group()
def group() -> None:
    """The append-only ledger."""


@group.command()
@click.option("--dsn", default=None, help="ledger database (default: from the environment)")
def verify(dsn: str | None) -> None:
    """Recompute the hash chain, counters and conservation; exit 1 at the first bad transfer."""

    async def run() -> dict[str, object]:
        conn = await asyncpg.connect(dsn or from_env().owner_dsn)
        try:
            return (await verify_chain(conn)).__dict__
        finally:
            await conn.close()

    try:
        report = asyncio.run(run())
    except (OSError, asyncpg.PostgresError) as exc:
        raise click.ClickException(f"cannot read the ledger database: {exc}") from None
    click.echo(json.dumps(report, indent=2))
    if not report["ok"]:
        if report["first_bad_seq"] is not None:
            click.echo(
                f"first bad transfer: seq {report['first_bad_seq']} id {report['first_bad_id']}"
                f" ({report['reason']})",
                err=True,
            )
        sys.exit(1)
