"""Bank simulator settings, from the environment only (see .env.example)."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from services.kit.settings import CommonSettings, Env, common_kwargs

DEFAULT_CONFIG = Path(__file__).parent / "banks.yaml"
# Development defaults; production sets its own (.env.example).
DEFAULT_CLIENT_KEY = "dev-bank-client-key-change-me"
DEFAULT_CALLBACK_SECRET = "dev-bank-callback-secret-change-me"  # noqa: S105 - dev only


@dataclass(frozen=True, kw_only=True)
class Settings(CommonSettings):
    host: str
    port: int
    client_key: str
    callback_secret: str
    config_path: Path
    seed: int
    recon_drop_dir: Path
    eod_enabled: bool
    eod_minute: int  # minutes after midnight UTC when yesterday's statements are written
    worker_poll_ms: int
    completion_batch_max: int
    callback_timeout_ms: int
    callback_attempts_max: int
    shutdown_timeout_s: int


def from_env(environ: Mapping[str, str] | None = None) -> Settings:
    env = Env(environ)
    seed_raw = env.string("BANKSIM_SEED", "random")
    if seed_raw == "random":
        seed = secrets.randbits(63)
    else:
        seed = env.integer("BANKSIM_SEED", 0, min_value=0, max_value=2**63 - 1)
    return Settings(
        **common_kwargs(env),
        host=env.string("BANKSIM_HOST", "127.0.0.1"),
        port=env.integer("BANKSIM_PORT", 8090, min_value=1, max_value=65535),
        client_key=env.secret("BANKSIM_CLIENT_KEY", DEFAULT_CLIENT_KEY),
        callback_secret=env.secret("BANK_CALLBACK_SECRET", DEFAULT_CALLBACK_SECRET),
        config_path=Path(env.string("BANKSIM_CONFIG", str(DEFAULT_CONFIG))),
        seed=seed,
        recon_drop_dir=Path(env.string("RECON_DROP_DIR", "var/recon/drop")),
        eod_enabled=env.flag("BANKSIM_EOD_ENABLED", True),
        eod_minute=env.integer("BANKSIM_EOD_MINUTE", 15, min_value=0, max_value=1439),
        worker_poll_ms=env.integer("BANKSIM_WORKER_POLL_MS", 100, min_value=10, max_value=60_000),
        completion_batch_max=env.integer(
            "BANKSIM_COMPLETION_BATCH_MAX", 200, min_value=1, max_value=10_000
        ),
        callback_timeout_ms=env.integer(
            "BANKSIM_CALLBACK_TIMEOUT_MS", 5_000, min_value=100, max_value=60_000
        ),
        callback_attempts_max=env.integer(
            "BANKSIM_CALLBACK_ATTEMPTS_MAX", 10, min_value=1, max_value=100
        ),
        shutdown_timeout_s=env.integer("BANKSIM_SHUTDOWN_TIMEOUT_S", 5, min_value=1, max_value=120),
    )
