"""Webhook delivery rules: what counts as delivered and when to try again."""

from __future__ import annotations

import ipaddress
import random
from datetime import datetime, timedelta
from urllib.parse import urlsplit


def delivered(status_code: int | None) -> bool:
    return status_code is not None and 200 <= status_code < 300


def next_attempt(
    attempts_done: int,
    now: datetime,
    give_up_at: datetime,
    *,
    base_ms: int,
    max_ms: int,
    rng: random.Random,
) -> datetime | None:
    """Exponential backoff with jitter; ``None`` once the next try would fall past the window
    (the delivery is then dead-lettered)."""
    ceiling_ms = min(base_ms * (2 ** min(attempts_done - 1, 30)), max_ms)
    delay_ms = rng.uniform(ceiling_ms * 0.8, ceiling_ms)
    when = now + timedelta(milliseconds=delay_ms)
    return None if when > give_up_at else when


def _is_local(host: str) -> tuple[bool, bool]:
    """(loopback, private or link-local) for a host name or IP literal."""
    if host == "localhost" or host.endswith(".localhost"):
        return True, False
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False, False
    return ip.is_loopback, ip.is_private or ip.is_link_local or ip.is_unspecified


def endpoint_url_problem(url: str, *, production: bool) -> str | None:
    """Why a merchant may not register ``url`` as a webhook endpoint, or None.

    Production: https only, and never to loopback, private or link-local addresses (events
    are signed, but they must not be aimed at our own network). Development: https, or http
    to localhost so a laptop receiver works.
    """
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if not host:
        return "the URL needs a host"
    loopback, private = _is_local(host)
    if production:
        if parts.scheme != "https":
            return "webhook endpoints must use https"
        if loopback or private:
            return "webhook endpoints must be public addresses"
        return None
    if parts.scheme == "https" or (parts.scheme == "http" and loopback):
        return None
    return "http is allowed for localhost only (in development); use https"
