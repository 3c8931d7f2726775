"""``payments banksim …``: statements, configuration checks, and chaos switches for a running
simulator (``BANKSIM_URL``, ``SERVICE_TOKEN``)."""

from __future__ import annotations

import asyncio
from datetime import date
from pathlib import Path

import aiohttp
import click
import msgspec

from contracts.banksim import DISCREPANCY_KINDS, DiscrepancyRequest, StatementRequest
from services.banksim.adapters.repository import Repository
from services.banksim.app import MIGRATIONS, dsn, load_config
from services.banksim.domain.config import ConfigError
from services.banksim.settings import from_env
from services.banksim.statements import StatementWriter
from services.kit import db, migrations
from services.kit.auth import SERVICE_TOKEN_HEADER
from services.kit.errors import ProblemError
from services.kit.settings import DEFAULT_SERVICE_TOKEN, Env


@click.group()
def group() -> None:
    """Bank simulator: statements and configuration."""


@group.command("check-config")
@click.argument("path", type=click.Path(path_type=Path), required=False)
def check_config(path: Path | None) -> None:
    """Validate a banks file (default: BANKSIM_CONFIG or the shipped one)."""
    chosen = path or from_env().config_path
    try:
        banks = load_config(chosen)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    for bank in banks.values():
        click.echo(
            f"{bank.name}: {bank.statement_format}, {', '.join(sorted(bank.accounts))},"
            f" success {bank.success_rate:.1%}, lost {bank.lost_response_rate:.1%}"
        )


@group.command("statement")
@click.option("--bank", required=True, help="bank name from the configuration")
@click.option("--date", "business_date", required=True, help="business date YYYY-MM-DD")
@click.option("--currency", default=None, help="one account's currency (default: all)")
@click.option(
    "--discrepancy",
    "discrepancies",
    multiple=True,
    type=click.Choice(DISCREPANCY_KINDS),
    help="inject a discrepancy (repeatable); the answer key goes to answers/",
)
def statement(
    bank: str, business_date: str, currency: str | None, discrepancies: tuple[str, ...]
) -> None:
    """Write BANK's statement for DATE into RECON_DROP_DIR/<bank>/inbox/."""
    settings = from_env()
    try:
        banks = load_config(settings.config_path)
        request = msgspec.convert(
            {
                "bank": bank,
                "business_date": date.fromisoformat(business_date).isoformat(),
                "currency": currency,
                "discrepancies": [
                    msgspec.to_builtins(DiscrepancyRequest(kind=k))  # type: ignore[arg-type]
                    for k in discrepancies
                ],
            },
            StatementRequest,
        )
    except (ConfigError, ValueError, msgspec.ValidationError) as exc:
        raise click.ClickException(str(exc)) from None

    async def run() -> None:
        await db.ensure_database(settings.database_url, db.database_name(dsn(settings)))
        await migrations.apply(dsn(settings), MIGRATIONS)
        pool = await db.create_pool(dsn(settings), max_size=2)
        try:
            writer = StatementWriter(
                Repository(pool), banks, drop_dir=settings.recon_drop_dir, seed=settings.seed
            )
            result = await writer.write(request, trigger="cli")
        finally:
            await pool.close()
        for f in result.files:
            click.echo(f"{f.path} ({f.line_count} lines, closing {f.closing_minor})")
            if f.answer_key_path:
                click.echo(f"  answer key: {f.answer_key_path}")

    try:
        asyncio.run(run())
    except ProblemError as exc:
        raise click.ClickException(f"{exc.code}: {exc.detail or exc.title}") from None


@group.command("behave")
@click.option("--bank", required=True, help="bank name")
@click.option(
    "--mode",
    required=True,
    type=click.Choice(("normal", "outage", "slow", "flaky", "lost_responses", "maintenance")),
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="NAME=VALUE",
    help="numeric override, e.g. --set lost_response_rate=0.3 (repeatable)",
)
def behave(bank: str, mode: str, overrides: tuple[str, ...]) -> None:
    """Switch a running simulator's bank to MODE at once (the admin API)."""
    env = Env()
    url = env.url("BANKSIM_URL", "http://127.0.0.1:8090", schemes=("http", "https"))
    token = env.secret("SERVICE_TOKEN", DEFAULT_SERVICE_TOKEN)
    body: dict[str, object] = {"mode": mode}
    parsed: dict[str, object] = {}
    for item in overrides:
        name, sep, raw = item.partition("=")
        if not sep:
            raise click.BadParameter(f"{item!r} is not NAME=VALUE", param_hint="--set")
        try:
            parsed[name] = int(raw) if raw.isdigit() else float(raw)
        except ValueError:
            parsed[name] = raw  # e.g. lost_response_mode=drop
    if parsed:
        body["overrides"] = parsed

    async def run() -> tuple[int, dict[str, object]]:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
            session.put(
                f"{url.rstrip('/')}/admin/banks/{bank}/behaviour",
                json=body,
                headers={SERVICE_TOKEN_HEADER: token},
            ) as resp,
        ):
            return resp.status, await resp.json(content_type=None)

    try:
        status, answer = asyncio.run(run())
    except aiohttp.ClientError as exc:
        raise click.ClickException(f"cannot reach the simulator at {url}: {exc}") from None
    if status != 200:
        raise click.ClickException(f"{answer.get('code')}: {answer.get('detail')}")
    click.echo(msgspec.json.encode(answer.get("behaviour")).decode())
