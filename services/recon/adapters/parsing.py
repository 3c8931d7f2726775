"""The statement parsers (services/recon/parsers) and the channels file, loaded at start-up."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from services.recon.domain.rules import RulesBook, RulesError, load_rules


def default_parser() -> Any:
    from services.recon.parsers import parse

    return parse


def load_rules_file(path: Path | None) -> RulesBook:
    if path is None:
        return load_rules(None)
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise RulesError(f"channels file {path}: {exc}") from None
    return load_rules(document)
