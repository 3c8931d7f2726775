"""Schemathesis against every service's served ``/openapi.json``, on the real processes.

With valid credentials: no 5xx, status codes, content types and bodies conform to the
document, invalid input is rejected, and every error is problem+json with a stable ``code``.
Without credentials: every protected operation answers 401 problem+json, whatever the input.
Examples are bounded and derandomized so a CI run is repeatable and quick.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis import checks as st_checks

from contracts.openapi import checked_in_path
from tests.security.conftest import Client
from tests.support.suite import ADMIN_KEY, BANK_KEY, FINANCE_KEY, SERVICE_TOKEN, Suite

pytestmark = pytest.mark.e2e

CODE = re.compile(r"^[a-z][a-z0-9_]{1,63}$")
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/openapi.json", "/metrics"})
MAX_EXAMPLES = 6
FUZZ_SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: a failure reports its first case
    suppress_health_check=list(HealthCheck),
    database=None,
)
CHECKS = [
    st_checks.not_a_server_error,
    st_checks.status_code_conformance,
    st_checks.content_type_conformance,
    st_checks.response_schema_conformance,
]


@schemathesis.check
def errors_are_problems_with_stable_code(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every 4xx/5xx is ``application/problem+json`` carrying a snake_case ``code``."""
    if response.status_code < 400:
        return None
    content_type = response.headers.get("content-type", [""])
    if isinstance(content_type, list):
        content_type = content_type[0] if content_type else ""
    assert content_type.split(";")[0].strip() == "application/problem+json", (
        f"{response.status_code} with content type {content_type!r}"
    )
    body = response.json()
    assert isinstance(body, dict) and CODE.match(str(body.get("code", ""))), body
    assert body.get("status") == response.status_code, body
    return None


def credentials(service: str, path: str, *, merchant_key: str) -> dict[str, str]:
    """The header each operation needs, as its own client would send it."""
    if service == "payout":
        key = ADMIN_KEY if path.startswith("/admin") else merchant_key
        return {"Authorization": f"Bearer {key}"}
    if service == "recon":
        return {"Authorization": f"Bearer {FINANCE_KEY}"}
    if service == "banksim" and path.startswith("/banks/"):
        return {"X-Bank-Key": BANK_KEY}
    return {"X-Service-Token": SERVICE_TOKEN}


@pytest.fixture(scope="package")
def fuzz_merchant_key(stack: Suite) -> str:
    import asyncio

    import aiohttp

    async def make() -> str:
        async with aiohttp.ClientSession() as session:
            return (await Client(session, stack).merchant()).key

    return asyncio.run(make())


def _schema(service: str) -> Any:
    """The checked-in document; ``test_every_service_serves_the_checked_in_document`` proves
    it is the one each process serves, so the fuzzing aims at what clients really read."""
    return schemathesis.openapi.from_path(checked_in_path(service))


ledger = _schema("ledger")
router = _schema("router")
payout = _schema("payout")
recon = _schema("recon")
banksim = _schema("banksim")


@pytest.mark.parametrize("service", ["ledger", "router", "payout", "recon", "banksim"])
async def test_every_service_serves_the_checked_in_document(client: Client, service: str) -> None:
    status, served, _ = await client.call("GET", service, "/openapi.json")
    assert status == 200
    assert served == json.loads(checked_in_path(service).read_text())


def _with_credentials(stack: Suite, service: str, case: Any, merchant_key: str) -> None:
    headers = credentials(service, case.operation.path, merchant_key=merchant_key)
    case.call_and_validate(
        base_url=stack.urls[service],
        headers=headers,
        checks=CHECKS,
        additional_checks=[errors_are_problems_with_stable_code],
        timeout=30,
    )


def _without_credentials(stack: Suite, service: str, case: Any) -> None:
    """No credential at all, or one with the wrong value: 401 problem+json."""
    if case.operation.path in PUBLIC_PATHS or not case.operation.definition.raw.get("security"):
        return
    if case.headers:
        for name in ("Authorization", "X-Service-Token", "X-Bank-Key"):
            case.headers.pop(name, None)
    response = case.call(base_url=stack.urls[service], timeout=30)
    assert response.status_code == 401, (case.operation.label, response.status_code)
    assert response.headers["content-type"][0].startswith("application/problem+json")
    assert CODE.match(response.json()["code"])
    forged = case.call(
        base_url=stack.urls[service],
        headers={
            "Authorization": "Bearer sk_forged_0000000000000000000000000000",
            "X-Service-Token": "forged-token-0000000000000000",
            "X-Bank-Key": "forged-bank-key-000000000000000",
        },
        timeout=30,
    )
    assert forged.status_code == 401, (case.operation.label, forged.status_code)


@ledger.parametrize()
@FUZZ_SETTINGS
def test_ledger_api_survives_fuzzing_with_credentials(
    case: Any, stack: Suite, fuzz_merchant_key: str
) -> None:
    _with_credentials(stack, "ledger", case, fuzz_merchant_key)


@router.parametrize()
@FUZZ_SETTINGS
def test_router_api_survives_fuzzing_with_credentials(
    case: Any, stack: Suite, fuzz_merchant_key: str
) -> None:
    _with_credentials(stack, "router", case, fuzz_merchant_key)


@payout.parametrize()
@FUZZ_SETTINGS
def test_payout_api_survives_fuzzing_with_credentials(
    case: Any, stack: Suite, fuzz_merchant_key: str
) -> None:
    _with_credentials(stack, "payout", case, fuzz_merchant_key)


@recon.parametrize()
@FUZZ_SETTINGS
def test_recon_api_survives_fuzzing_with_credentials(
    case: Any, stack: Suite, fuzz_merchant_key: str
) -> None:
    _with_credentials(stack, "recon", case, fuzz_merchant_key)


@banksim.parametrize()
@FUZZ_SETTINGS
def test_banksim_api_survives_fuzzing_with_credentials(
    case: Any, stack: Suite, fuzz_merchant_key: str
) -> None:
    _with_credentials(stack, "banksim", case, fuzz_merchant_key)


NO_AUTH_SETTINGS = settings(FUZZ_SETTINGS, max_examples=2)


@ledger.parametrize()
@NO_AUTH_SETTINGS
def test_ledger_api_refuses_every_call_without_the_service_token(case: Any, stack: Suite) -> None:
    _without_credentials(stack, "ledger", case)


@router.parametrize()
@NO_AUTH_SETTINGS
def test_router_api_refuses_every_call_without_the_service_token(case: Any, stack: Suite) -> None:
    _without_credentials(stack, "router", case)


@payout.parametrize()
@NO_AUTH_SETTINGS
def test_payout_api_refuses_every_call_without_a_key(case: Any, stack: Suite) -> None:
    _without_credentials(stack, "payout", case)


@recon.parametrize()
@NO_AUTH_SETTINGS
def test_recon_api_refuses_every_call_without_the_finance_key(case: Any, stack: Suite) -> None:
    _without_credentials(stack, "recon", case)


@banksim.parametrize()
@NO_AUTH_SETTINGS
def test_banksim_api_refuses_every_call_without_its_key(case: Any, stack: Suite) -> None:
    _without_credentials(stack, "banksim", case)
