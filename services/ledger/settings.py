"""Ledger settings from environment variables (documented in .env.example, ``--- ledger ---``)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote, urlsplit, urlunsplit

from services.kit import db
from services.kit.settings import CommonSettings, Env, SettingsError, common_kwargs

SERVICE = "ledger"
_ROLE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


@dataclass(frozen=True, kw_only=True)
class Settings(CommonSettings):
    host: str
    port: int
    app_role: str  # the role the service connects as (no UPDATE/DELETE/TRUNCATE on transfers)
    app_role_password: str  # empty: the server authenticates the role without one (trust/peer)
    writer_linger_us: int  # how long the writer waits for more work before committing a batch
    writer_batch_transfers_max: int  # transfers per committed batch
    writer_queue_max: int  # queued requests before callers get 503 ledger_overloaded
    tcc_hold_timeout_s: int  # default expiry of a TCC hold: long, so a confirm always wins
    tcc_hold_timeout_max_s: int
    expiry_sweep_interval_ms: int
    expiry_sweep_batch_max: int
    history_page_max: int
    verify_interval_s: int  # the scheduled tamper check's period
    verify_full_every: int  # every Nth scheduled check re-hashes the whole chain
    relay_batch_max: int  # outbox events published per relay batch

    @property
    def owner_dsn(self) -> str:
        """The migration role (DATABASE_URL's user): owns the tables."""
        return db.service_dsn(self.database_url, self.db_name_prefix, SERVICE)

    @property
    def app_dsn(self) -> str:
        parts = urlsplit(self.owner_dsn)
        host = parts.hostname or "127.0.0.1"
        port = f":{parts.port}" if parts.port else ""
        secret = f":{quote(self.app_role_password, safe='')}" if self.app_role_password else ""
        return urlunsplit(parts._replace(netloc=f"{self.app_role}{secret}@{host}{port}"))


def from_env(environ: Mapping[str, str] | None = None) -> Settings:
    env = Env(environ)
    common = common_kwargs(env)
    role = env.string("LEDGER_DB_APP_ROLE", f"{common['db_name_prefix']}ledger_app").lower()
    if not _ROLE.match(role):
        raise SettingsError(
            f"LEDGER_DB_APP_ROLE must match {_ROLE.pattern} (a plain role name), got {role!r}"
        )
    hold_max = env.integer("LEDGER_TCC_HOLD_TIMEOUT_MAX_S", 7 * 86_400, min_value=1)
    return Settings(
        **common,
        host=env.string("LEDGER_HOST", "127.0.0.1"),
        port=env.integer("LEDGER_PORT", 8081, min_value=1, max_value=65_535),
        app_role=role,
        app_role_password=env.string("LEDGER_DB_APP_PASSWORD", ""),
        writer_linger_us=env.integer(
            "LEDGER_WRITER_LINGER_US", 1_000, min_value=0, max_value=2_000
        ),
        writer_batch_transfers_max=env.integer(
            "LEDGER_WRITER_BATCH_MAX", 8_190, min_value=1, max_value=65_536
        ),
        writer_queue_max=env.integer("LEDGER_WRITER_QUEUE_MAX", 10_000, min_value=1),
        tcc_hold_timeout_s=env.integer(
            "LEDGER_TCC_HOLD_TIMEOUT_S", 6 * 3_600, min_value=1, max_value=hold_max
        ),
        tcc_hold_timeout_max_s=hold_max,
        expiry_sweep_interval_ms=env.integer(
            "LEDGER_EXPIRY_SWEEP_INTERVAL_MS", 1_000, min_value=10, max_value=3_600_000
        ),
        expiry_sweep_batch_max=env.integer(
            "LEDGER_EXPIRY_SWEEP_BATCH_MAX", 1_000, min_value=1, max_value=8_190
        ),
        history_page_max=env.integer("LEDGER_HISTORY_PAGE_MAX", 1_000, min_value=1),
        verify_interval_s=env.integer(
            "LEDGER_VERIFY_INTERVAL_S", 300, min_value=1, max_value=86_400
        ),
        verify_full_every=env.integer(
            "LEDGER_VERIFY_FULL_EVERY", 12, min_value=1, max_value=10_000
        ),
        relay_batch_max=env.integer("LEDGER_RELAY_BATCH_MAX", 100, min_value=1, max_value=1_000),
    )
