"""``payments payout …``: operator commands for the payout service."""

from __future__ import annotations

import asyncio

import aiohttp
import click

from services.payout import demo


@click.group()
def group() -> None:
    """Payouts: demo data."""


@group.command("seed-demo")
def seed_demo() -> None:
    """Create (or reuse) the demo merchant with funds and a webhook endpoint, then print its
    key and a curl command (the services must be running; see `make run`)."""
    config = demo.DemoConfig.from_env()

    async def go() -> str:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session:
            await demo.wait_ready(session, config)
            state = await demo.seed(session, config)
        return demo.banner(config, state)

    try:
        click.echo(asyncio.run(go()))
    except demo.DemoError as exc:
        raise click.ClickException(str(exc)) from None
