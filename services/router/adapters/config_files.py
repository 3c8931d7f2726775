"""Channels and merchant rules from YAML files, hot-reloaded when a file's mtime changes.

A file that does not parse or validate is rejected with a logged error and the last good
config stays live; the error is visible in ``GET /v1/config`` until a good file replaces it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from services.kit.logging import get_logger
from services.router.domain.config import (
    Channel,
    ConfigError,
    RuleBook,
    parse_channels,
    parse_rules,
)

log = get_logger(__name__)
FILE_BYTES_MAX = 4 * 1024 * 1024


@dataclass
class LiveConfig:
    """The config every decision reads; swapped whole, never edited in place."""

    channels: tuple[Channel, ...]
    rules: RuleBook
    channels_version: str
    rules_version: str
    loaded_at: datetime
    last_error: str | None = None
    by_id: dict[str, Channel] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.by_id = {c.id: c for c in self.channels}

    def describe(self) -> dict[str, Any]:
        return {
            "channels_version": self.channels_version,
            "rules_version": self.rules_version,
            "channel_count": len(self.channels),
            "rule_count": self.rules.count,
            "loaded_at": self.loaded_at,
            "last_error": self.last_error,
        }


def _read(path: Path) -> tuple[Any, str]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    if len(raw) > FILE_BYTES_MAX:
        raise ConfigError(f"{path}: larger than {FILE_BYTES_MAX} bytes")
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    return data, hashlib.sha256(raw).hexdigest()[:12]


def _signature(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


class ConfigFiles:
    def __init__(self, channels_path: Path, rules_path: Path) -> None:
        self.channels_path = channels_path
        self.rules_path = rules_path
        self._seen: tuple[tuple[int, int] | None, tuple[int, int] | None] | None = None

    def load(self) -> LiveConfig:
        """Parse both files; raises ``ConfigError`` (used at start-up: refuse to start)."""
        self._seen = (_signature(self.channels_path), _signature(self.rules_path))
        channels_raw, channels_version = _read(self.channels_path)
        rules_raw, rules_version = _read(self.rules_path)
        channels = parse_channels(channels_raw)
        rules = parse_rules(rules_raw)
        return LiveConfig(
            channels=channels,
            rules=rules,
            channels_version=channels_version,
            rules_version=rules_version,
            loaded_at=datetime.now(UTC),
        )

    def reload_if_changed(self, current: LiveConfig) -> LiveConfig | None:
        """A new config when a file changed and both parse; otherwise None. A broken file is
        logged once per change and recorded on ``current.last_error``."""
        seen = (_signature(self.channels_path), _signature(self.rules_path))
        if seen == self._seen:
            return None
        try:
            fresh = self.load()
        except ConfigError as exc:
            self._seen = seen
            current.last_error = str(exc)
            log.error("router_config_rejected", error=str(exc))
            return None
        log.info(
            "router_config_reloaded",
            channels_version=fresh.channels_version,
            rules_version=fresh.rules_version,
            channels=len(fresh.channels),
            rules=fresh.rules.count,
        )
        return fresh
