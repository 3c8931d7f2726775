"""Console sessions: a signed cookie (HttpOnly, SameSite=Strict) holding the role, the person's
name, an expiry and the session's CSRF token. Nothing is stored server-side.

The signature key mixes the console secret with a digest of the key the person signed in
with, so rotating the finance or operator key ends every session opened with the old one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

SESSION_COOKIE = "recon_session"
LOGIN_CSRF_COOKIE = "recon_login_csrf"
ROLES = ("finance", "operator")


@dataclass(frozen=True)
class Session:
    role: str
    actor: str
    expires_at: int  # unix seconds
    csrf: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: str, role_key: str, payload: str) -> str:
    key = hashlib.sha256(secret.encode() + b"\x00" + role_key.encode()).digest()
    return _b64(hmac.new(key, payload.encode(), hashlib.sha256).digest())


def issue(
    secret: str, role_key: str, role: str, actor: str, ttl_s: int, now: float | None = None
) -> tuple[str, Session]:
    assert role in ROLES, role
    session = Session(role, actor, int((now or time.time()) + ttl_s), secrets.token_urlsafe(24))
    payload = _b64(
        json.dumps(
            {"r": session.role, "a": session.actor, "e": session.expires_at, "c": session.csrf},
            separators=(",", ":"),
        ).encode()
    )
    return f"{payload}.{_mac(secret, role_key, payload)}", session


def read(
    cookie: str | None, secret: str, keys: dict[str, str], now: float | None = None
) -> Session | None:
    """The session in ``cookie`` if its signature (under its role's current key) holds and it
    has not expired; None otherwise."""
    if not cookie or cookie.count(".") != 1 or len(cookie) > 4096:
        return None
    payload, mac = cookie.split(".")
    try:
        data: dict[str, Any] = json.loads(_unb64(payload))
    except (ValueError, UnicodeDecodeError):
        return None
    role = data.get("r")
    if role not in keys or not isinstance(data.get("e"), int):
        return None
    if not hmac.compare_digest(mac, _mac(secret, keys[role], payload)):
        return None
    if data["e"] <= (now or time.time()):
        return None
    return Session(role, str(data.get("a", "")), data["e"], str(data.get("c", "")))


def csrf_ok(expected: str, presented: str | None) -> bool:
    return bool(expected) and presented is not None and hmac.compare_digest(expected, presented)
