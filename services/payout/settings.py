"""Payout service settings, from the environment only (``.env.example``, section payout)."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field

from services.kit.auth import hash_key
from services.kit.settings import CommonSettings, Env, SettingsError, common_kwargs

DEFAULT_ADMIN_API_KEY = "dev-admin-key-change-me"  # development default only


def _int_list(env: Env, name: str, default: str, *, min_value: int) -> tuple[int, ...]:
    raw = env.string(name, default)
    try:
        values = tuple(int(part) for part in raw.split(",") if part.strip())
    except ValueError:
        raise SettingsError(f"{name} must be comma-separated integers, got {raw!r}") from None
    if not values or any(v < min_value for v in values):
        raise SettingsError(f"{name} needs at least one value, each >= {min_value}")
    return values


@dataclass(frozen=True, kw_only=True)
class Settings(CommonSettings):
    host: str
    port: int
    ledger_url: str
    router_url: str
    admin_key_hash: str  # ADMIN_API_KEY, hashed: compared in constant time, never kept in clear
    currencies: tuple[str, ...]
    instance_id: str = field(default_factory=lambda: f"payout-{secrets.token_hex(4)}")
    # Idempotency: keys kept at least 24 h; an in-flight first request holds its key this long.
    idempotency_ttl_s: int = 86_400
    idempotency_lease_s: int = 60
    # Coordinator.
    tx_lease_s: int = 30
    try_timeout_s: int = 60
    recovery_interval_ms: int = 1_000
    recovery_batch_max: int = 100
    recovery_concurrency: int = 16
    retry_base_ms: int = 500
    retry_max_ms: int = 60_000
    inquiry_schedule_s: tuple[int, ...] = (30, 120, 600, 3600)
    resolution_window_s: int = 86_400
    # Ledger holds outlive the resolution window so an expiry never undercuts a decision;
    # an operator has until then to resolve a payout in manual_review.
    hold_timeout_s: int = 7 * 86_400
    participant_timeout_ms: int = 10_000
    submission_timeout_ms: int = 60_000
    # Webhooks.
    webhook_retry_base_ms: int = 10_000
    webhook_retry_max_ms: int = 6 * 3600 * 1000
    webhook_retry_window_s: int = 3 * 86_400
    webhook_timeout_ms: int = 5_000
    webhook_concurrency: int = 16
    webhook_batch_max: int = 100
    # Bounds.
    batch_items_max: int = 10_000
    batch_body_max_bytes: int = 16 * 1024 * 1024  # 10,000 payouts as JSON need ~2-4 MiB
    batch_chunk_size: int = 200
    page_limit_max: int = 100
    # Per-merchant (and admin) token bucket on the HTTP API; 0 turns the limiter off.
    rate_limit_per_s: int = 200
    rate_limit_burst: int = 400
    # Defaults for a new merchant (admin can change them per merchant).
    default_per_payout_max_minor: int | None = 100_000_000
    default_daily_max_minor: int | None = 1_000_000_000
    default_monthly_max_minor: int | None = 10_000_000_000
    default_review_threshold_minor: int | None = 10_000_000
    default_fee_fixed_minor: int = 25
    default_fee_bps: int = 10
    relay_batch_size: int = 200


def _optional_limit(env: Env, name: str, default: int) -> int | None:
    value = env.integer(name, default, min_value=0, max_value=10**15)
    return value or None


def from_env(environ: Mapping[str, str] | None = None) -> Settings:
    settings = _from_env(environ)
    if settings.hold_timeout_s <= settings.resolution_window_s:
        raise SettingsError(
            "PAYOUT_HOLD_TIMEOUT_S must be longer than PAYOUT_RESOLUTION_WINDOW_S: a ledger hold"
            " must outlive every payout that may still be resolved"
        )
    return settings


def _from_env(environ: Mapping[str, str] | None) -> Settings:
    env = Env(environ)
    currencies = tuple(c.strip() for c in env.string("PAYOUT_CURRENCIES", "EUR,USD,GBP").split(","))
    if not currencies or any(len(c) != 3 or not c.isalpha() or not c.isupper() for c in currencies):
        raise SettingsError("PAYOUT_CURRENCIES must be ISO 4217 codes like EUR,USD")
    return Settings(
        **common_kwargs(env),
        host=env.string("PAYOUT_HOST", "127.0.0.1"),
        port=env.integer("PAYOUT_PORT", 8080, min_value=1, max_value=65535),
        ledger_url=env.url("LEDGER_URL", "http://127.0.0.1:8081", schemes=("http", "https")),
        router_url=env.url("ROUTER_URL", "http://127.0.0.1:8082", schemes=("http", "https")),
        admin_key_hash=hash_key(env.secret("ADMIN_API_KEY", DEFAULT_ADMIN_API_KEY)),
        currencies=currencies,
        idempotency_ttl_s=env.integer(
            "PAYOUT_IDEMPOTENCY_TTL_S", 86_400, min_value=86_400, max_value=30 * 86_400
        ),
        idempotency_lease_s=env.integer(
            "PAYOUT_IDEMPOTENCY_LEASE_S", 60, min_value=1, max_value=3600
        ),
        tx_lease_s=env.integer("PAYOUT_TX_LEASE_S", 30, min_value=1, max_value=3600),
        try_timeout_s=env.integer("PAYOUT_TRY_TIMEOUT_S", 60, min_value=1, max_value=86_400),
        recovery_interval_ms=env.integer(
            "PAYOUT_RECOVERY_INTERVAL_MS", 1_000, min_value=10, max_value=60_000
        ),
        recovery_batch_max=env.integer(
            "PAYOUT_RECOVERY_BATCH_MAX", 100, min_value=1, max_value=5000
        ),
        recovery_concurrency=env.integer(
            "PAYOUT_RECOVERY_CONCURRENCY", 16, min_value=1, max_value=256
        ),
        retry_base_ms=env.integer("PAYOUT_RETRY_BASE_MS", 500, min_value=1, max_value=600_000),
        retry_max_ms=env.integer("PAYOUT_RETRY_MAX_MS", 60_000, min_value=1, max_value=3_600_000),
        inquiry_schedule_s=_int_list(
            env, "PAYOUT_INQUIRY_SCHEDULE_S", "30,120,600,3600", min_value=1
        ),
        resolution_window_s=env.integer(
            "PAYOUT_RESOLUTION_WINDOW_S", 86_400, min_value=1, max_value=30 * 86_400
        ),
        hold_timeout_s=env.integer(
            "PAYOUT_HOLD_TIMEOUT_S", 7 * 86_400, min_value=60, max_value=30 * 86_400
        ),
        participant_timeout_ms=env.integer(
            "PAYOUT_PARTICIPANT_TIMEOUT_MS", 10_000, min_value=100, max_value=120_000
        ),
        submission_timeout_ms=env.integer(
            "PAYOUT_SUBMISSION_TIMEOUT_MS", 60_000, min_value=100, max_value=600_000
        ),
        webhook_retry_base_ms=env.integer(
            "PAYOUT_WEBHOOK_RETRY_BASE_MS", 10_000, min_value=1, max_value=3_600_000
        ),
        webhook_retry_max_ms=env.integer(
            "PAYOUT_WEBHOOK_RETRY_MAX_MS", 6 * 3600 * 1000, min_value=1, max_value=86_400_000
        ),
        webhook_retry_window_s=env.integer(
            "PAYOUT_WEBHOOK_RETRY_WINDOW_S", 3 * 86_400, min_value=1, max_value=30 * 86_400
        ),
        webhook_timeout_ms=env.integer(
            "PAYOUT_WEBHOOK_TIMEOUT_MS", 5_000, min_value=100, max_value=60_000
        ),
        webhook_concurrency=env.integer(
            "PAYOUT_WEBHOOK_CONCURRENCY", 16, min_value=1, max_value=256
        ),
        batch_body_max_bytes=env.integer(
            "PAYOUT_BATCH_BODY_MAX_BYTES",
            16 * 1024 * 1024,
            min_value=1024,
            max_value=256 * 1024 * 1024,
        ),
        batch_items_max=env.integer(
            "PAYOUT_BATCH_ITEMS_MAX", 10_000, min_value=1, max_value=10_000
        ),
        default_per_payout_max_minor=_optional_limit(
            env, "PAYOUT_DEFAULT_PER_PAYOUT_MAX_MINOR", 100_000_000
        ),
        default_daily_max_minor=_optional_limit(
            env, "PAYOUT_DEFAULT_DAILY_MAX_MINOR", 1_000_000_000
        ),
        default_monthly_max_minor=_optional_limit(
            env, "PAYOUT_DEFAULT_MONTHLY_MAX_MINOR", 10_000_000_000
        ),
        default_review_threshold_minor=_optional_limit(
            env, "PAYOUT_DEFAULT_REVIEW_THRESHOLD_MINOR", 10_000_000
        ),
        default_fee_fixed_minor=env.integer(
            "PAYOUT_DEFAULT_FEE_FIXED_MINOR", 25, min_value=0, max_value=1_000_000_000
        ),
        default_fee_bps=env.integer("PAYOUT_DEFAULT_FEE_BPS", 10, min_value=0, max_value=10_000),
        rate_limit_per_s=env.integer(
            "PAYOUT_RATE_LIMIT_PER_S", 200, min_value=0, max_value=1_000_000
        ),
        rate_limit_burst=env.integer(
            "PAYOUT_RATE_LIMIT_BURST", 400, min_value=1, max_value=1_000_000
        ),
    )
