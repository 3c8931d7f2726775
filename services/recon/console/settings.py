"""Console settings, from the environment only (validated at start-up with the service's).

The finance key, router URL and service token are the recon service's own settings; these are
the console's additions.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass

from services.kit.settings import Env

# Development defaults so `make run` works; production sets its own (docs/CONSOLE.md).
DEFAULT_OPERATOR_KEY = "dev-operator-key-change-me"
DEFAULT_ADMIN_API_KEY = "dev-admin-key-change-me"  # the payout service's ADMIN_API_KEY default


@dataclass(frozen=True, kw_only=True)
class ConsoleSettings:
    operator_key: str  # RECON_OPERATOR_KEY: signs operators in (channels, payouts in review)
    # Signs session cookies. Unset: a random one per process (sessions end on restart; set it
    # when several instances serve the console behind one address).
    session_secret: str
    session_ttl_s: int
    cookie_secure: bool  # Secure flag on cookies; true behind HTTPS
    payout_url: str
    payout_admin_key: str  # the payout service's ADMIN_API_KEY, for /admin/payouts
    upstream_timeout_s: float
    page_rows_max: int


def from_env(environ: Mapping[str, str] | None = None) -> ConsoleSettings:
    env = Env(environ)
    secret = env.string("RECON_CONSOLE_SECRET", "")
    if secret and len(secret) < 32:
        from services.kit.settings import SettingsError

        raise SettingsError("RECON_CONSOLE_SECRET must be at least 32 characters long")
    return ConsoleSettings(
        operator_key=env.secret("RECON_OPERATOR_KEY", DEFAULT_OPERATOR_KEY),
        session_secret=secret or secrets.token_urlsafe(32),
        session_ttl_s=env.integer("RECON_SESSION_TTL_S", 8 * 3600, min_value=60, max_value=86400),
        cookie_secure=env.flag("RECON_COOKIE_SECURE", False),
        payout_url=env.url("PAYOUT_URL", "http://127.0.0.1:8080", schemes=("http", "https")),
        payout_admin_key=env.secret("ADMIN_API_KEY", DEFAULT_ADMIN_API_KEY),
        upstream_timeout_s=float(
            env.integer("RECON_UPSTREAM_TIMEOUT_MS", 5000, min_value=100, max_value=60000) / 1000
        ),
        page_rows_max=env.integer("RECON_CONSOLE_ROWS_MAX", 100, min_value=10, max_value=1000),
    )
