"""``payments recon …``: ad-hoc reconciliation runs and statement parsing.

``payments recon run --channel C --date D FILE...`` takes the files through the same intake
as the drop directory (hash, parse, file checks, quarantine) and reconciles the day against
the router's attempts export (or ``--records FILE.ndjson``), with a progress bar.
``payments recon parse FILE`` prints a file's canonical lines (the parsers' command).
"""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import date
from pathlib import Path
from typing import Any

import click

from services.kit import db, migrations
from services.kit.logging import configure_logging
from services.recon.settings import from_env


class ReconGroup(click.Group):
    """``parse`` lives with the parsers (services/recon/parsers/cli.py); it is imported only
    when used, like every service group of ``payments``."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), "parse"})

    def get_command(self, ctx: click.Context, cmd_name: str) -> Any:
        if cmd_name == "parse":
            from services.recon.parsers.cli import parse

            return parse
        return super().get_command(ctx, cmd_name)


@click.group(cls=ReconGroup)
def group() -> None:
    """Reconciliation: statement intake, matching runs, breaks and alerts."""


@group.command("run")
@click.option("--channel", required=True, help="statement source (a bank), e.g. bank_a")
@click.option("--date", "day", required=True, help="business day to reconcile, YYYY-MM-DD")
@click.option(
    "--records",
    "records_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="our records as NDJSON instead of the router's export",
)
@click.option("--json", "as_json", is_flag=True, help="print the run summary as JSON")
@click.argument("files", nargs=-1, type=click.Path(exists=True, dir_okay=False, path_type=Path))
def run_command(
    channel: str, day: str, records_file: Path | None, as_json: bool, files: tuple[Path, ...]
) -> None:
    """Take FILES in (as the drop directory would) and reconcile CHANNEL's DATE."""
    try:
        business_date = date.fromisoformat(day)
    except ValueError:
        raise click.BadParameter("must be YYYY-MM-DD", param_hint="--date") from None
    code = asyncio.run(_run(channel, business_date, records_file, as_json, files))
    sys.exit(code)


async def _run(
    channel: str,
    business_date: date,
    records_file: Path | None,
    as_json: bool,
    files: tuple[Path, ...],
) -> int:
    import aiohttp

    from services.kit.errors import ProblemError
    from services.recon.adapters.parsing import default_parser, load_rules_file
    from services.recon.adapters.records import (
        FileRecords,
        RecordsSource,
        RecordsUnavailable,
        RouterExport,
    )
    from services.recon.domain.rules import valid_channel
    from services.recon.handlers import ReconService

    if not valid_channel(channel):
        raise click.BadParameter("must match [a-z0-9][a-z0-9_-]*", param_hint="--channel")
    settings = from_env()
    # Logs go to stderr so --json output on stdout stays machine-readable.
    configure_logging("recon", fmt=settings.log_format, level=settings.log_level)
    await db.ensure_database(settings.database_url, settings.db_name_prefix + "recon")
    dsn = db.service_dsn(settings.database_url, settings.db_name_prefix, "recon")
    await migrations.apply(dsn, Path(__file__).parent / "migrations")
    pool = await db.create_pool(dsn, max_size=2)
    session = aiohttp.ClientSession()
    try:
        records: RecordsSource = (
            FileRecords(records_file)
            if records_file is not None
            else RouterExport(
                session,
                settings.router_url,
                settings.service_token,
                max_bytes=settings.export_max_bytes,
                timeout_s=settings.export_timeout_s,
            )
        )
        service = ReconService(
            pool, settings, load_rules_file(settings.channels_file), records, default_parser()
        )
        failed = 0
        for path in files:
            # The intake reads the file in blocks from disk; it is never held whole in memory.
            with click.progressbar(length=3, label=f"take {path.name}", file=sys.stderr) as bar:
                outcome = await service.receive_file(
                    channel, path.name, path, source="cli", progress=lambda _stage: bar.update(1)
                )
            line = f"{path.name}: {outcome.status}"
            if outcome.reason:
                line += f" ({outcome.reason_code}: {outcome.reason})"
            click.echo(line, err=True)
            failed += outcome.status == "quarantined"
        stages = ("records", "match", "persist")
        try:
            with click.progressbar(length=len(stages), label="reconcile", file=sys.stderr) as bar:
                result = await service.run_day(
                    channel, business_date, progress=lambda _stage: bar.update(1)
                )
        except RecordsUnavailable as exc:
            raise click.ClickException(f"our records are unavailable: {exc}") from None
        except ProblemError as exc:
            raise click.ClickException(exc.detail or exc.title) from None
        summary = {
            "run_id": result.run_id,
            "channel": channel,
            "business_date": business_date.isoformat(),
            "reused": result.reused,
            "rules_version": result.rules_version,
            "report_path": result.report_path,
            **result.summary,
        }
        if as_json:
            click.echo(json.dumps(summary, indent=2, sort_keys=True))
        else:
            _print_summary(summary)
        return 1 if failed else 0
    finally:
        await session.close()
        await pool.close()


def _print_summary(summary: dict[str, Any]) -> None:
    reused = " (same inputs: existing run)" if summary["reused"] else ""
    click.echo(f"run {summary['run_id']}{reused}  {summary['channel']} {summary['business_date']}")
    click.echo(
        f"lines {summary['line_count']}  records {summary['record_count']}"
        f"  matched {summary['matched_lines']}  breaks {summary['break_count']}"
    )
    for name, figures in summary["passes"].items():
        click.echo(
            f"  pass  {name:<16} lines {figures['lines']:>9}  records {figures['records']:>9}"
            f"  amount_minor {figures['amount_minor']}"
        )
    for code, figures in summary["breaks"].items():
        amount = figures["amount_minor"]
        click.echo(f"  break {code:<18} count {figures['count']:>9}  amount_minor {amount}")
    if summary["resolutions"]:
        click.echo(f"  resolutions {summary['resolutions']}")
    click.echo(f"report: {summary['report_path']}")
