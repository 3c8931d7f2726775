"""Reconciliation settings, from the environment only (validated at start-up)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from services.kit.settings import CommonSettings, Env, common_kwargs


@dataclass(frozen=True, kw_only=True)
class Settings(CommonSettings):
    host: str
    port: int
    router_url: str
    # Statement drop directory: <drop_dir>/<channel>/{inbox,processing,archive,quarantine}.
    drop_dir: Path
    # Columnar copies of accepted statements and run reports live here.
    data_dir: Path
    channels_file: Path | None  # YAML rules per channel; None = built-in defaults only
    finance_key: str
    scan_interval_ms: int
    intake_enabled: bool
    upload_max_bytes: int
    # A statement file larger than this is quarantined unread (drop directory and upload).
    statement_max_bytes: int = 1024**3
    export_max_bytes: int  # the router's attempts export for one run
    export_timeout_s: int
    duckdb_threads: int
    duckdb_memory_limit_mb: int
    page_size_max: int
    columnar_csv_min_bytes: int  # CSV files from this size go through the columnar reader
    # The columnar reader's block of lines: its frames (~12x) bound the intake's memory.
    intake_block_bytes: int = 16 * 1024 * 1024
    # A drop-directory file whose intake fails (not a quarantine outcome) is tried this many
    # times, backing off from intake_retry_backoff_ms (doubling, at most 1 h), then
    # quarantined with file_intake_failed.
    intake_attempts_max: int = 5
    intake_retry_backoff_ms: int = 5000
    # Matches files (RECON_DATA_DIR/matches) of runs finished longer ago are deleted, unless a
    # later run may still read them; 0 keeps them forever.
    matches_retention_days: int = 400
    relay_batch_size: int


# Development default so `make run` works; production sets its own (see .env.example).
DEFAULT_CHANNELS_FILE = Path(__file__).parent / "channels.yaml"
DEFAULT_FINANCE_KEY = "dev-finance-key-change-me"


def from_env(environ: Mapping[str, str] | None = None) -> Settings:
    env = Env(environ)
    channels_file = env.string("RECON_CHANNELS_FILE", str(DEFAULT_CHANNELS_FILE))
    return Settings(
        **common_kwargs(env),
        host=env.string("RECON_HOST", "127.0.0.1"),
        port=env.integer("RECON_PORT", 8083, min_value=1, max_value=65535),
        router_url=env.url("ROUTER_URL", "http://127.0.0.1:8082", schemes=("http", "https")),
        drop_dir=Path(env.string("RECON_DROP_DIR", "var/recon/drop")),
        data_dir=Path(env.string("RECON_DATA_DIR", "var/recon/data")),
        channels_file=None if channels_file == "-" else Path(channels_file),
        finance_key=env.secret("RECON_FINANCE_KEY", DEFAULT_FINANCE_KEY),
        scan_interval_ms=env.integer(
            "RECON_SCAN_INTERVAL_MS", 2000, min_value=50, max_value=3_600_000
        ),
        intake_enabled=env.flag("RECON_INTAKE_ENABLED", True),
        upload_max_bytes=env.integer(
            "RECON_UPLOAD_MAX_BYTES", 256 * 1024 * 1024, min_value=1024, max_value=2 * 1024**3
        ),
        statement_max_bytes=env.integer(
            "RECON_STATEMENT_MAX_BYTES", 1024**3, min_value=1024, max_value=16 * 1024**3
        ),
        export_max_bytes=env.integer(
            "RECON_EXPORT_MAX_BYTES", 2 * 1024**3, min_value=1024, max_value=64 * 1024**3
        ),
        export_timeout_s=env.integer("RECON_EXPORT_TIMEOUT_S", 300, min_value=1, max_value=3600),
        duckdb_threads=env.integer("RECON_DUCKDB_THREADS", 2, min_value=1, max_value=64),
        duckdb_memory_limit_mb=env.integer(
            "RECON_DUCKDB_MEMORY_LIMIT_MB", 1024, min_value=64, max_value=65536
        ),
        page_size_max=env.integer("RECON_PAGE_SIZE_MAX", 500, min_value=1, max_value=10_000),
        columnar_csv_min_bytes=env.integer(
            "RECON_COLUMNAR_CSV_MIN_BYTES", 4 * 1024 * 1024, min_value=0, max_value=2**40
        ),
        relay_batch_size=env.integer("RECON_RELAY_BATCH_SIZE", 200, min_value=1, max_value=5000),
        intake_block_bytes=env.integer(
            "RECON_INTAKE_BLOCK_BYTES", 16 * 1024 * 1024, min_value=4096, max_value=1024**3
        ),
        intake_attempts_max=env.integer("RECON_INTAKE_ATTEMPTS_MAX", 5, min_value=1, max_value=100),
        intake_retry_backoff_ms=env.integer(
            "RECON_INTAKE_RETRY_BACKOFF_MS", 5000, min_value=10, max_value=3_600_000
        ),
        matches_retention_days=env.integer(
            "RECON_MATCHES_RETENTION_DAYS", 400, min_value=0, max_value=36500
        ),
    )
