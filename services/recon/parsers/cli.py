"""``payments recon parse FILE``: a statement file's canonical lines, as JSON or a table.

Mounted in the ``payments recon`` group by services/recon/cli.py. Exit status 0 when the file
parses, 1 when it is rejected (the reason and line go to stderr), 2 for a usage error.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from services.recon.domain.lines import Balance, Statement, StatementFormatError, StatementLine
from services.recon.parsers import parse as parse_statements
from services.recon.parsers.amounts import from_minor

FORMAT_CHOICES = ("auto", "csv", "mt940", "camt053", "camt054", "bai2")


def balance_json(balance: Balance | None) -> dict[str, Any] | None:
    if balance is None:
        return None
    return {
        "amount_minor": balance.amount_minor,
        "currency": balance.currency,
        "date": balance.date.isoformat(),
    }


def line_json(line: StatementLine) -> dict[str, Any]:
    return {
        "channel": line.channel,
        "statement_id": line.statement_id,
        "line_number": line.line_number,
        "booking_date": line.booking_date.isoformat(),
        "value_date": line.value_date.isoformat(),
        "direction": line.direction.value,
        "amount_minor": line.amount_minor,
        "currency": line.currency,
        "fee_minor": line.fee_minor,
        "our_reference": line.our_reference,
        "bank_reference": line.bank_reference,
        "end_to_end_id": line.end_to_end_id,
        "counterparty": line.counterparty,
        "raw": line.raw,
    }


def statement_json(statement: Statement) -> dict[str, Any]:
    return {
        "channel": statement.channel,
        "statement_id": statement.statement_id,
        "account": statement.account,
        "currency": statement.currency,
        "format": statement.format,
        "sequence_number": statement.sequence_number,
        "opening": balance_json(statement.opening),
        "closing": balance_json(statement.closing),
        "control_total_minor": statement.control_total_minor,
        "control_count": statement.control_count,
        "lines": [line_json(line) for line in statement.lines],
    }


def _table(statements: list[Statement]) -> str:
    out: list[str] = []
    for st in statements:
        opening = _money(st.opening)
        closing = _money(st.closing)
        out.append(
            f"{st.format} statement {st.statement_id} account {st.account} {st.currency} "
            f"seq {st.sequence_number} opening {opening} closing {closing} "
            f"({len(st.lines)} lines)"
        )
        for ln in st.lines:
            sign = "-" if ln.direction.value == "debit" else "+"
            out.append(
                f"  {ln.line_number:>7} {ln.booking_date} {ln.value_date} "
                f"{sign + from_minor(ln.amount_minor, ln.currency):>15} {ln.currency} "
                f"ours={ln.our_reference or '-'} bank={ln.bank_reference or '-'} "
                f"e2e={ln.end_to_end_id or '-'} fee={ln.fee_minor} {ln.counterparty or ''}"
            )
    return "\n".join(out)


def _money(balance: Balance | None) -> str:
    if balance is None:
        return "-"
    return f"{from_minor(balance.amount_minor, balance.currency)} {balance.currency} {balance.date}"


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--format",
    "format_",
    type=click.Choice(FORMAT_CHOICES),
    default="auto",
    show_default=True,
    help="statement format; auto detects it from the first bytes",
)
@click.option("--channel", default="cli", show_default=True, help="channel the lines belong to")
@click.option("--json", "as_json", is_flag=True, help="print the statements and lines as JSON")
def parse(file: Path, format_: str, channel: str, as_json: bool) -> None:
    """Parse a statement FILE and print its canonical lines."""
    data = file.read_bytes()
    try:
        statements = parse_statements(data, channel=channel, format=format_)
    except StatementFormatError as e:
        click.echo(f"rejected: {file}: {e}", err=True)
        sys.exit(1)
    if as_json:
        click.echo(json.dumps([statement_json(st) for st in statements], indent=2))
    else:
        click.echo(_table(statements))
