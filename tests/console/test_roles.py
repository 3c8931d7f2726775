"""Who may do what: keys on the finance API, sessions and CSRF on the console."""

from __future__ import annotations

import re
from typing import Any

import aiohttp
import pytest

from tests.console.conftest import FINANCE_KEY, OPERATOR_KEY, Payouts, Recon

pytestmark = pytest.mark.asyncio(loop_scope="session")

FINANCE_READS = [
    "/v1/recon/runs",
    "/v1/recon/breaks/search",
    "/v1/recon/breaks/brk_x",
    "/v1/recon/summary/daily",
    "/v1/recon/summary/daily.csv",
    "/v1/recon/alerts",
]


async def signed_in(recon: Recon, key: str, name: str = "Tess Tester") -> aiohttp.ClientSession:
    """A cookie-keeping client signed in through the form (with its login CSRF token)."""
    http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    async with http.get(recon.url + "/") as resp:
        token = re.search(r'name="csrf" value="([^"]+)"', await resp.text())
    assert token
    async with http.post(
        recon.url + "/signin",
        data={"csrf": token.group(1), "name": name, "key": key, "next": ""},
        allow_redirects=False,
    ) as resp:
        assert resp.status == 303, await resp.text()
        cookie = resp.headers.getall("Set-Cookie")
    session_cookie = next(c for c in cookie if c.startswith("recon_session="))
    assert "HttpOnly" in session_cookie and "SameSite=Strict" in session_cookie
    return http


async def csrf_of(http: aiohttp.ClientSession, url: str) -> str:
    async with http.get(url) as resp:
        match = re.search(r'name="csrf" value="([^"]+)"', await resp.text())
    assert match, url
    return match.group(1)


async def test_no_key_or_a_merchant_key_cannot_read_finance_data(
    recon: Recon, payouts: Payouts
) -> None:
    run_id = next(iter(recon.runs.values()))
    paths = [
        *FINANCE_READS,
        f"/v1/recon/runs/{run_id}/report.xlsx",
        f"/v1/recon/runs/{run_id}/breaks.csv",
    ]
    for headers in (
        {},
        {"Authorization": f"Bearer {payouts.merchant_key}"},
        {"Authorization": f"Bearer {OPERATOR_KEY}"},
    ):
        for path in paths:
            async with recon.http.get(recon.url + path, headers=headers) as resp:
                assert resp.status == 401, (path, headers)
                assert resp.content_type == "application/problem+json"
                assert (await resp.json())["code"] == "finance_key_invalid"
    # Resolving needs the key too, and nothing changes without it.
    some = (await recon.api("GET", "/v1/recon/breaks/search?status=open&limit=1"))["breaks"][0]
    async with recon.http.post(
        recon.url + f"/v1/recon/breaks/{some['break_id']}/resolve",
        json={"comment": "x", "actor": "y"},
        headers={"Authorization": f"Bearer {payouts.merchant_key}"},
    ) as resp:
        assert resp.status == 401
    assert (await recon.api("GET", f"/v1/recon/breaks/{some['break_id']}"))["status"] == "open"
    # Console pages without a session go to the sign-in form; a forged cookie is no session.
    for cookie in ({}, {"recon_session": "eyJyIjoiZmluYW5jZSJ9.forged"}):
        async with aiohttp.ClientSession(cookies=cookie) as anon:
            for path in (
                "/runs",
                "/breaks",
                "/alerts",
                "/channels",
                "/payouts",
                f"/runs/{run_id}/report.xlsx",
            ):
                async with anon.get(recon.url + path, allow_redirects=False) as resp:
                    assert resp.status == 303 and resp.headers["Location"].startswith("/?next=")


async def test_a_finance_session_cannot_reach_operator_pages_or_actions(
    recon: Recon, payouts: Payouts
) -> None:
    http = await signed_in(recon, FINANCE_KEY)
    try:
        async with http.get(recon.url + "/payouts") as resp:
            assert resp.status == 403
            assert "for the operator role" in await resp.text()
        token = await csrf_of(http, recon.url + "/alerts")  # a valid token of this session
        for action, field in (("mark_paid", "evidence"), ("mark_failed", "reason")):
            async with http.post(
                recon.url + f"/payouts/{payouts.review_ids[1]}/{action}",
                data={"csrf": token, field: "finance tries"},
                allow_redirects=False,
            ) as resp:
                assert resp.status == 403
        async with aiohttp.ClientSession() as admin:  # the payout is untouched
            async with admin.get(
                payouts.url + "/admin/payouts?status=manual_review&limit=100",
                headers={"Authorization": "Bearer console-payout-admin-key-0123456789"},
            ) as resp:
                listed = [p["id"] for p in (await resp.json())["data"]]
        assert payouts.review_ids[1] in listed
        # The finance key itself is not an admin key of the payout service either.
        async with aiohttp.ClientSession() as direct:
            async with direct.get(
                payouts.url + "/admin/payouts",
                headers={"Authorization": f"Bearer {FINANCE_KEY}"},
            ) as resp:
                assert resp.status == 401
    finally:
        await http.close()


async def test_an_operator_session_cannot_read_or_change_finance_data(recon: Recon) -> None:
    http = await signed_in(recon, OPERATOR_KEY)
    try:
        for path in ("/runs", "/breaks", "/alerts", "/summary/daily.csv"):
            async with http.get(recon.url + path) as resp:
                assert resp.status == 403, path
        some = (await recon.api("GET", "/v1/recon/breaks/search?status=open&limit=1"))["breaks"][0]
        token = await csrf_of(http, recon.url + "/channels")
        async with http.post(
            recon.url + f"/breaks/{some['break_id']}/resolve",
            data={"csrf": token, "comment": "operator tries"},
        ) as resp:
            assert resp.status == 403
        assert (await recon.api("GET", f"/v1/recon/breaks/{some['break_id']}"))["status"] == "open"
    finally:
        await http.close()


async def test_forms_without_this_sessions_csrf_token_are_refused(recon: Recon) -> None:
    http = await signed_in(recon, FINANCE_KEY)
    other = await signed_in(recon, FINANCE_KEY, "Someone Else")
    try:
        some = (await recon.api("GET", "/v1/recon/breaks/search?status=open&limit=1"))["breaks"][0]
        foreign = await csrf_of(other, recon.url + "/alerts")
        for data in ({"comment": "no token"}, {"comment": "wrong", "csrf": foreign}):
            async with http.post(recon.url + f"/breaks/{some['break_id']}/resolve", data=data) as r:
                assert r.status == 403
                assert "CSRF check failed" in await r.text()
        assert (await recon.api("GET", f"/v1/recon/breaks/{some['break_id']}"))["status"] == "open"
        # The sign-in form has its own token: a cross-site post cannot sign anyone in.
        async with aiohttp.ClientSession() as fresh:
            async with fresh.post(
                recon.url + "/signin", data={"name": "x", "key": FINANCE_KEY, "csrf": "guess"}
            ) as r:
                assert r.status == 403 and "recon_session" not in r.cookies
        # Signing out ends the session in this browser.
        token = await csrf_of(http, recon.url + "/alerts")
        async with http.post(recon.url + "/signout", data={"csrf": token}) as r:
            assert r.status == 200 and "form" in await r.text()
        async with http.get(recon.url + "/runs", allow_redirects=False) as r:
            assert r.status == 303
    finally:
        await http.close()
        await other.close()


async def test_pages_carry_a_strict_content_security_policy_and_no_external_asset(
    recon: Recon,
) -> None:
    http = await signed_in(recon, FINANCE_KEY)
    try:
        run_id = next(iter(recon.runs.values()))
        for path in ("/runs", f"/runs/{run_id}", "/breaks", "/alerts", "/channels"):
            async with http.get(recon.url + path) as resp:
                assert resp.status == 200, path
                csp = resp.headers["Content-Security-Policy"]
                assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
                page: Any = await resp.text()
            assert not re.search(r'(src|href)="(https?:)?//', page), path
    finally:
        await http.close()


async def test_bad_form_input_is_answered_with_a_visible_message_on_the_page(
    recon: Recon, payouts: Payouts
) -> None:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as fresh:
        async with fresh.get(recon.url + "/") as resp:
            token = re.search(r'name="csrf" value="([^"]+)"', await resp.text())
        assert token
        for name, key, status, message in (
            ("", FINANCE_KEY, 422, "Enter your name"),
            ("x" * 101, FINANCE_KEY, 422, "Enter your name"),
            ("Eve", "", 401, "not a finance or operator key"),
            ("Eve", FINANCE_KEY + "x", 401, "not a finance or operator key"),
        ):
            async with fresh.post(
                recon.url + "/signin", data={"csrf": token.group(1), "name": name, "key": key}
            ) as resp:
                assert resp.status == status
                assert message in await resp.text()
    operator = await signed_in(recon, OPERATOR_KEY)
    finance = await signed_in(recon, FINANCE_KEY)
    try:
        token = await csrf_of(operator, recon.url + "/payouts")
        for action, field, label in (
            ("mark_paid", "evidence", "bank evidence"),
            ("mark_failed", "reason", "reason"),
        ):
            for value in ("", "   ", "x" * 1001):
                async with operator.post(
                    recon.url + f"/payouts/{payouts.review_ids[2]}/{action}",
                    data={"csrf": token, field: value},
                ) as resp:
                    assert resp.status == 422
                    assert f"Enter the {label} (1 to 1000 characters)." in await resp.text()
        async with operator.post(
            recon.url + "/payouts/po%20bad/mark_paid", data={"csrf": token, "evidence": "e"}
        ) as resp:
            assert resp.status == 404 and "No payout po bad" in await resp.text()
        # Acknowledging an alert that was closed meanwhile says why nothing happened.
        alert = (await recon.api("GET", "/v1/recon/alerts?status=open&limit=1"))["alerts"][0]
        await recon.api("POST", f"/v1/recon/alerts/{alert['alert_id']}/close")
        token = await csrf_of(finance, recon.url + "/alerts")
        async with finance.post(
            recon.url + f"/alerts/{alert['alert_id']}/ack", data={"csrf": token}
        ) as resp:
            assert resp.status == 409
            assert "alert is closed; cannot become acknowledged" in await resp.text()
        async with finance.post(recon.url + "/alerts/alr_nope/close", data={"csrf": token}) as r:
            assert r.status == 404 and "alr_nope" in await r.text()
        long_comment = "c" * 2001
        some = (await recon.api("GET", "/v1/recon/breaks/search?status=open&limit=1"))["breaks"][0]
        async with finance.post(
            recon.url + f"/breaks/{some['break_id']}/resolve",
            data={"csrf": token, "comment": long_comment},
        ) as resp:
            assert resp.status == 422 and "at most 2000 characters" in await resp.text()
    finally:
        await operator.close()
        await finance.close()
