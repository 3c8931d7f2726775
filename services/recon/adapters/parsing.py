"""The statement parsers (services/recon/parsers) and the channels file, loaded at start-up."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from services.recon.domain.lines import Statement
from services.recon.domain.rules import RulesBook, RulesError, load_rules

_SET_FIELDS = ("debit_values", "credit_values")


def to_csv_mapping(raw: dict[str, Any] | None) -> Any:
    """The channel's ``csv_mapping`` block as the CSV parser's ``CsvMapping``."""
    if raw is None:
        return None
    from services.recon.parsers import CsvMapping

    values: dict[str, Any] = {k: frozenset(v) if k in _SET_FIELDS else v for k, v in raw.items()}
    try:
        return CsvMapping(**values)
    except (TypeError, AssertionError) as exc:
        raise RulesError(f"csv_mapping: {exc}") from None


def default_parser() -> Any:
    from services.recon.parsers import parse

    def parse_statement(
        data: bytes,
        *,
        channel: str,
        format: str = "auto",
        csv_mapping: dict[str, Any] | None = None,
    ) -> list[Statement]:
        return parse(data, channel=channel, format=format, csv_mapping=to_csv_mapping(csv_mapping))

    return parse_statement


def load_rules_file(path: Path | None) -> RulesBook:
    if path is None:
        return load_rules(None)
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise RulesError(f"channels file {path}: {exc}") from None
    book = load_rules(document)
    for rules in [book.defaults, *book.channels.values()]:
        to_csv_mapping(rules.csv_mapping)  # refuse a bad mapping at start-up, not on first file
    return book
