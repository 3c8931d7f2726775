"""Where a load, benchmark or chaos run sends its traffic, and the calls it makes besides the
merchant API: seeding merchants through the admin API, reading every payout back, the banks'
truth journals, the router's attempts export and the ledger's accounts.

A run either starts its own suite (``Target.of_suite``) or aims at a deployed one
(``Target.from_env``: ``LOADTEST_PAYOUT_URL``, ``LOADTEST_BANKSIM_URL``, ``LOADTEST_ROUTER_URL``,
``LOADTEST_LEDGER_URL``, ``LOADTEST_ADMIN_KEY``, ``LOADTEST_SERVICE_TOKEN``; see docs/CHAOS.md).
"""

from __future__ import annotations

import json
import os
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

TERMINAL = frozenset({"paid", "failed", "canceled", "returned"})
EUR = "EUR"


class TargetError(RuntimeError):
    pass


@dataclass(frozen=True)
class Merchant:
    id: str
    key: str
    webhook_secret: str
    funds_minor: int


@dataclass(frozen=True)
class Target:
    payout_url: str
    banksim_url: str
    router_url: str | None
    ledger_url: str | None
    admin_key: str
    service_token: str
    banks: tuple[str, ...]

    @classmethod
    def from_env(cls) -> Target | None:
        env = os.environ
        if not env.get("LOADTEST_PAYOUT_URL"):
            return None
        return cls(
            payout_url=env["LOADTEST_PAYOUT_URL"].rstrip("/"),
            banksim_url=env["LOADTEST_BANKSIM_URL"].rstrip("/"),
            router_url=(env.get("LOADTEST_ROUTER_URL") or "").rstrip("/") or None,
            ledger_url=(env.get("LOADTEST_LEDGER_URL") or "").rstrip("/") or None,
            admin_key=env["LOADTEST_ADMIN_KEY"],
            service_token=env["LOADTEST_SERVICE_TOKEN"],
            banks=tuple(b for b in env.get("LOADTEST_BANKS", "").split(",") if b),
        )

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_key}"}

    @property
    def service(self) -> dict[str, str]:
        return {"X-Service-Token": self.service_token}


async def _json(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    headers: dict[str, str],
    body: Any = None,
    expect: tuple[int, ...] = (200, 201),
) -> Any:
    async with http.request(method, url, json=body, headers=headers) as resp:
        text = await resp.text()
        if resp.status not in expect:
            raise TargetError(f"{method} {url} -> {resp.status}: {text[:500]}")
        return json.loads(text) if text else None


async def discover_banks(http: aiohttp.ClientSession, target: Target) -> tuple[str, ...]:
    if target.banks:
        return target.banks
    page = await _json(http, "GET", f"{target.banksim_url}/admin/banks", target.service)
    return tuple(b["bank"] for b in page["banks"])


async def create_merchant(
    http: aiohttp.ClientSession,
    target: Target,
    receiver_url: str,
    *,
    funds_minor: int,
    name: str = "Load Merchant",
    fees: dict[str, int] | None = None,
) -> Merchant:
    """A merchant with its own key, funds, and a webhook endpoint at ``receiver_url``."""
    merchant = await _json(
        http,
        "POST",
        f"{target.payout_url}/admin/merchants",
        target.admin,
        {
            "name": name,
            "currencies": [EUR],
            # No review threshold and room for any run: a load run measures the flow, not limits.
            "limits": {"per_payout_max": 100_000_000, "daily_max": 10**15, "monthly_max": 10**15},
            "fees": fees or {"fixed": 30, "bps": 10},
        },
        expect=(201,),
    )
    await _json(
        http,
        "POST",
        f"{target.payout_url}/admin/merchants/{merchant['id']}/fundings",
        target.admin,
        {"amount": funds_minor, "currency": EUR, "reference": f"load-{uuid.uuid4().hex[:12]}"},
        expect=(201,),
    )
    key = merchant["secret_key"]
    endpoint = await _json(
        http,
        "POST",
        f"{target.payout_url}/v1/webhook_endpoints",
        {"Authorization": f"Bearer {key}"},
        {"url": f"{receiver_url}/hooks/{merchant['id']}", "event_types": ["*"]},
        expect=(201,),
    )
    return Merchant(merchant["id"], key, endpoint["secret"], funds_minor)


async def payouts(
    http: aiohttp.ClientSession, target: Target, merchant: Merchant, *, page_max: int = 10_000
) -> list[dict[str, Any]]:
    """Every payout of the merchant, read back through the merchant API."""
    out: list[dict[str, Any]] = []
    after: str | None = None
    for _ in range(page_max):
        url = f"{target.payout_url}/v1/payouts?limit=100"
        if after:
            url += f"&starting_after={after}"
        page = await _json(http, "GET", url, {"Authorization": f"Bearer {merchant.key}"})
        out.extend(page["data"])
        if not page["has_more"] or not page["data"]:
            return out
        after = page["data"][-1]["id"]
    raise TargetError(f"more than {page_max} pages of payouts for {merchant.id}")


async def open_statuses(
    http: aiohttp.ClientSession, target: Target, merchants: list[Merchant]
) -> Counter[str]:
    """How many payouts are not yet terminal, by status (one page per merchant and status)."""
    counts: Counter[str] = Counter()
    for m in merchants:
        for status in ("processing", "submitted", "pending_review"):
            page = await _json(
                http,
                "GET",
                f"{target.payout_url}/v1/payouts?limit=100&status={status}",
                {"Authorization": f"Bearer {m.key}"},
            )
            counts[status] += len(page["data"])
    return counts


async def journal(http: aiohttp.ClientSession, target: Target, bank: str) -> list[dict[str, Any]]:
    """The bank's truth journal: everything it recorded, paged to the end."""
    entries: list[dict[str, Any]] = []
    after = 0
    for _ in range(10_000):
        page = await _json(
            http,
            "GET",
            f"{target.banksim_url}/admin/banks/{bank}/executed?limit=1000&after={after}",
            target.service,
        )
        entries.extend(page["transfers"])
        if page["next_after"] is None or not page["transfers"]:
            return entries
        after = page["next_after"]
    raise TargetError(f"journal of {bank} did not end")


async def attempts(
    http: aiohttp.ClientSession, target: Target, bank: str
) -> dict[str, dict[str, Any]]:
    """attempt id -> the router's attempt (payout id, status, bank) from the attempts export."""
    if target.router_url is None:
        return {}
    now = datetime.now(UTC)
    url = (
        f"{target.router_url}/v1/attempts/export?bank={bank}"
        f"&from={(now - timedelta(days=2)).date().isoformat()}"
        f"&to={(now + timedelta(days=2)).date().isoformat()}"
    )
    async with http.get(url, headers=target.service) as resp:
        if resp.status != 200:
            raise TargetError(f"GET {url} -> {resp.status}: {(await resp.text())[:300]}")
        text = await resp.text()
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    return {r["attempt_id"]: r for r in rows}


async def behave(
    http: aiohttp.ClientSession, target: Target, bank: str, mode: str, **overrides: Any
) -> None:
    body: dict[str, Any] = {"mode": mode}
    if overrides:
        body["overrides"] = overrides
    await _json(
        http, "PUT", f"{target.banksim_url}/admin/banks/{bank}/behaviour", target.service, body
    )


async def ledger_account(
    http: aiohttp.ClientSession, target: Target, account_id: str
) -> dict[str, Any]:
    assert target.ledger_url is not None
    result: dict[str, Any] = await _json(
        http, "GET", f"{target.ledger_url}/v1/accounts/{account_id}", target.service
    )
    return result


def executions_by_payout(
    journals: dict[str, list[dict[str, Any]]], attempt_rows: dict[str, dict[str, Any]]
) -> tuple[dict[str, list[tuple[str, str]]], list[str]]:
    """payout id -> [(bank, reference)] of executed (not rejected) journal entries, and the
    references a bank executed more than once."""
    per_payout: dict[str, list[tuple[str, str]]] = {}
    doubles: list[str] = []
    for bank, entries in journals.items():
        seen: Counter[str] = Counter(e["reference"] for e in entries if e["status"] != "rejected")
        doubles.extend(f"{bank}:{ref}" for ref, n in seen.items() if n > 1)
        for ref in seen:
            row = attempt_rows.get(ref)
            payout_id = row["payout_id"] if row else f"?{ref}"
            per_payout.setdefault(payout_id, []).append((bank, ref))
    return per_payout, doubles
