"""Router settings from the environment (documented in .env.example, section "router")."""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from services.kit.settings import CommonSettings, Env, SettingsError, common_kwargs

CONFIG_DIR = Path(__file__).parent / "config"
DEFAULT_BANK_CALLBACK_SECRET = "dev-bank-callback-secret-change-me"  # noqa: S105 - dev only
DEFAULT_BANKSIM_CLIENT_KEY = "dev-bank-client-key-change-me"  # dev only


@dataclass(frozen=True, kw_only=True)
class Settings(CommonSettings):
    host: str
    port: int
    instance_id: str
    banksim_url: str
    banksim_client_key: str
    bank_callback_secret: str
    callback_base_url: str  # how banks reach us: <base>/v1/bank_callbacks/<bank>
    channels_file: Path
    rules_file: Path
    config_poll_ms: int
    bank_timeout_ms: int
    bank_connect_timeout_ms: int
    fallback_attempts_max: int
    inquiry_base_s: float
    inquiry_max_s: float
    inquiry_batch_max: int
    recovery_poll_ms: int
    not_found_grace_s: float
    callback_tolerance_s: int
    health_window_size_max: int
    health_window_age_s: int
    breaker_failure_rate_ppm: int
    breaker_min_samples: int
    breaker_consecutive_faults: int
    breaker_open_ms: int
    breaker_probes_max: int
    breaker_probe_successes: int
    idle_probe_after_s: int
    probe_poll_ms: int
    health_queue_expiry_ms: int
    kill_switch_refresh_ms: int
    export_rows_max: int


def from_env(environ: Mapping[str, str] | None = None) -> Settings:
    settings = _read(Env(environ))
    if settings.not_found_grace_s * 1000 < settings.bank_timeout_ms:
        # A "not found" inquiry while our request may still be on its way proves nothing. The
        # bank records a transfer at receipt (a received one answers `processing`, never 404),
        # so the grace only has to cover the request's way to the bank: >= our own timeout.
        raise SettingsError(
            "ROUTER_NOT_FOUND_GRACE_MS must be >= ROUTER_BANK_TIMEOUT_MS"
            f" ({settings.not_found_grace_s * 1000:.0f} < {settings.bank_timeout_ms})"
        )
    return settings


def _read(env: Env) -> Settings:
    port = env.integer("ROUTER_PORT", 8082, min_value=1, max_value=65535)
    default_instance = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
    return Settings(
        **common_kwargs(env),
        host=env.string("ROUTER_HOST", "127.0.0.1"),
        port=port,
        instance_id=env.string("ROUTER_INSTANCE_ID", default_instance),
        banksim_url=env.url("BANKSIM_URL", "http://127.0.0.1:8090", schemes=("http", "https")),
        banksim_client_key=env.secret("BANKSIM_CLIENT_KEY", DEFAULT_BANKSIM_CLIENT_KEY),
        bank_callback_secret=env.secret("BANK_CALLBACK_SECRET", DEFAULT_BANK_CALLBACK_SECRET),
        callback_base_url=env.url(
            "ROUTER_CALLBACK_BASE_URL", f"http://127.0.0.1:{port}", schemes=("http", "https")
        ),
        channels_file=Path(env.string("ROUTER_CHANNELS_FILE", str(CONFIG_DIR / "channels.yaml"))),
        rules_file=Path(env.string("ROUTER_RULES_FILE", str(CONFIG_DIR / "merchant_rules.yaml"))),
        config_poll_ms=env.integer("ROUTER_CONFIG_POLL_MS", 1000, min_value=50, max_value=60_000),
        bank_timeout_ms=env.integer(
            "ROUTER_BANK_TIMEOUT_MS", 5000, min_value=50, max_value=120_000
        ),
        bank_connect_timeout_ms=env.integer(
            "ROUTER_BANK_CONNECT_TIMEOUT_MS", 1000, min_value=10, max_value=30_000
        ),
        fallback_attempts_max=env.integer(
            "ROUTER_FALLBACK_ATTEMPTS_MAX", 3, min_value=1, max_value=10
        ),
        inquiry_base_s=env.integer(
            "ROUTER_INQUIRY_BASE_MS", 1000, min_value=10, max_value=3_600_000
        )
        / 1000,
        inquiry_max_s=env.integer(
            "ROUTER_INQUIRY_MAX_MS", 300_000, min_value=10, max_value=86_400_000
        )
        / 1000,
        inquiry_batch_max=env.integer("ROUTER_INQUIRY_BATCH_MAX", 50, min_value=1, max_value=1000),
        recovery_poll_ms=env.integer(
            "ROUTER_RECOVERY_POLL_MS", 500, min_value=20, max_value=60_000
        ),
        not_found_grace_s=env.integer(
            "ROUTER_NOT_FOUND_GRACE_MS", 30_000, min_value=0, max_value=86_400_000
        )
        / 1000,
        callback_tolerance_s=env.integer(
            "ROUTER_CALLBACK_TOLERANCE_S", 300, min_value=1, max_value=86_400
        ),
        health_window_size_max=env.integer(
            "ROUTER_HEALTH_WINDOW_SIZE", 100, min_value=1, max_value=100_000
        ),
        health_window_age_s=env.integer(
            "ROUTER_HEALTH_WINDOW_S", 60, min_value=1, max_value=86_400
        ),
        breaker_failure_rate_ppm=env.integer(
            "ROUTER_BREAKER_FAILURE_RATE_PPM", 500_000, min_value=1, max_value=1_000_000
        ),
        breaker_min_samples=env.integer(
            "ROUTER_BREAKER_MIN_SAMPLES", 10, min_value=1, max_value=10_000
        ),
        breaker_consecutive_faults=env.integer(
            "ROUTER_BREAKER_CONSECUTIVE_FAULTS", 5, min_value=1, max_value=10_000
        ),
        breaker_open_ms=env.integer(
            "ROUTER_BREAKER_OPEN_MS", 5000, min_value=10, max_value=3_600_000
        ),
        breaker_probes_max=env.integer("ROUTER_BREAKER_PROBES_MAX", 2, min_value=1, max_value=100),
        breaker_probe_successes=env.integer(
            "ROUTER_BREAKER_PROBE_SUCCESSES", 2, min_value=1, max_value=100
        ),
        idle_probe_after_s=env.integer(
            "ROUTER_IDLE_PROBE_AFTER_S", 30, min_value=1, max_value=86_400
        ),
        probe_poll_ms=env.integer("ROUTER_PROBE_POLL_MS", 500, min_value=20, max_value=60_000),
        health_queue_expiry_ms=env.integer(
            "ROUTER_HEALTH_QUEUE_EXPIRY_MS", 60_000, min_value=1000, max_value=86_400_000
        ),
        kill_switch_refresh_ms=env.integer(
            "ROUTER_KILL_SWITCH_REFRESH_MS", 1000, min_value=50, max_value=60_000
        ),
        export_rows_max=env.integer(
            "ROUTER_EXPORT_ROWS_MAX", 100_000, min_value=1, max_value=10_000_000
        ),
    )
