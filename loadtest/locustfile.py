"""Merchant traffic against the payout API, for ``make loadtest`` (``loadtest/run.py`` seeds the
merchants and starts locust headless) or by hand:

    LOADTEST_MERCHANTS_FILE=merchants.json locust -f loadtest/locustfile.py --host <payout url>

- ``Merchant`` users: each one is one merchant with its own key. They create payouts with an
  ``Idempotency-Key`` (a share of them deliberately sent twice with the same key and body: the
  second answer must be the same payout), read payouts back, list them and check the balance.
- ``BankOperator`` (one, only when ``LOADTEST_OUTAGE_BANK`` is set): switches that bank to
  ``outage`` through the simulator's admin API mid-run and back to ``normal`` later.
- ``LoadShape``: ``LOADTEST_SHAPE`` = ``steady`` | ``ramp`` | ``spike`` over
  ``LOADTEST_DURATION_S`` with up to ``LOADTEST_USERS`` users.

Any 5xx is a failure and is counted; at the end the counters go to ``LOADTEST_SUMMARY_FILE``.
"""

from __future__ import annotations

import json
import os
import random
import time
import uuid
from collections import Counter
from itertools import count
from pathlib import Path
from typing import Any

import gevent
from locust import LoadTestShape, User, between, events, task
from locust.contrib.fasthttp import FastHttpUser

MERCHANTS: list[dict[str, Any]] = (
    json.loads(Path(os.environ["LOADTEST_MERCHANTS_FILE"]).read_text())
    if os.environ.get("LOADTEST_MERCHANTS_FILE")
    else []
)
RETRY_SHARE = float(os.environ.get("LOADTEST_RETRY_SHARE", "0.1"))
AMOUNT_MIN, AMOUNT_MAX = 100, 50_000
BANKSIM_URL = os.environ.get("LOADTEST_BANKSIM_URL", "")
SERVICE_TOKEN = os.environ.get("LOADTEST_SERVICE_TOKEN", "")
OUTAGE_BANK = os.environ.get("LOADTEST_OUTAGE_BANK", "")
OUTAGE_AT_S = float(os.environ.get("LOADTEST_OUTAGE_AT_S", "10"))
OUTAGE_FOR_S = float(os.environ.get("LOADTEST_OUTAGE_FOR_S", "10"))
SHAPE = os.environ.get("LOADTEST_SHAPE", "steady")
USERS = int(os.environ.get("LOADTEST_USERS", "20"))
DURATION_S = float(os.environ.get("LOADTEST_DURATION_S", "60"))
SUMMARY_FILE = os.environ.get("LOADTEST_SUMMARY_FILE", "")

counters: Counter[str] = Counter()
_merchant_seq = count()


def _fail_on_5xx(response: Any, expected: tuple[int, ...]) -> bool:
    if response.status_code >= 500 or response.status_code == 0:
        counters["http_5xx" if response.status_code >= 500 else "connection_errors"] += 1
        response.failure(f"HTTP {response.status_code}")
        return False
    if response.status_code not in expected:
        counters["unexpected_status"] += 1
        response.failure(f"unexpected HTTP {response.status_code}: {response.text[:200]}")
        return False
    response.success()
    return True


class Merchant(FastHttpUser):
    wait_time = between(0.05, 0.3)
    weight = 100

    def on_start(self) -> None:
        assert MERCHANTS, "LOADTEST_MERCHANTS_FILE lists no merchants"
        merchant = MERCHANTS[next(_merchant_seq) % len(MERCHANTS)]
        self.merchant_id = merchant["id"]
        self.auth = {"Authorization": f"Bearer {merchant['key']}"}
        self.created: list[str] = []

    def _body(self) -> dict[str, Any]:
        return {
            "amount": random.randint(AMOUNT_MIN, AMOUNT_MAX),
            "currency": "EUR",
            "beneficiary": {
                "name": "Load Beneficiary",
                "account_number": "GB29NWBK60161331926819",
                "bank_code": "NRTHGB2L",
            },
            "reference": f"load-{uuid.uuid4().hex[:20]}",
        }

    @task(6)
    def create_payout(self) -> None:
        key = uuid.uuid4().hex
        body = self._body()
        headers = {**self.auth, "Idempotency-Key": key}
        with self.client.post(
            "/v1/payouts", json=body, headers=headers, name="POST /v1/payouts", catch_response=True
        ) as resp:
            if not _fail_on_5xx(resp, (201,)):
                return
            payout_id = resp.json()["id"]
        counters["payouts_accepted"] += 1
        self.created.append(payout_id)
        del self.created[:-50]
        if random.random() < RETRY_SHARE:
            self._retry(body, headers, payout_id)

    def _retry(self, body: dict[str, Any], headers: dict[str, str], payout_id: str) -> None:
        """The merchant did not see the answer and sends the same request again."""
        for _ in range(20):
            with self.client.post(
                "/v1/payouts",
                json=body,
                headers=headers,
                name="POST /v1/payouts (same key)",
                catch_response=True,
            ) as resp:
                if resp.status_code == 409:  # the first is still in flight: back off
                    resp.success()
                    gevent.sleep(0.05)
                    continue
                if not _fail_on_5xx(resp, (200, 201)):
                    return
                if resp.json()["id"] != payout_id:
                    counters["idempotency_violations"] += 1
                    resp.failure(f"same key answered {resp.json()['id']} after {payout_id}")
                    return
                counters["idempotent_replays"] += 1
                return

    @task(3)
    def read_payout(self) -> None:
        if not self.created:
            return
        payout_id = random.choice(self.created)
        with self.client.get(
            f"/v1/payouts/{payout_id}",
            headers=self.auth,
            name="GET /v1/payouts/{id}",
            catch_response=True,
        ) as resp:
            _fail_on_5xx(resp, (200,))

    @task(1)
    def list_payouts(self) -> None:
        with self.client.get(
            "/v1/payouts?limit=20", headers=self.auth, name="GET /v1/payouts", catch_response=True
        ) as resp:
            _fail_on_5xx(resp, (200,))

    @task(1)
    def balance(self) -> None:
        with self.client.get(
            "/v1/balance", headers=self.auth, name="GET /v1/balance", catch_response=True
        ) as resp:
            if _fail_on_5xx(resp, (200,)):
                available = {m["currency"]: m["amount"] for m in resp.json()["available"]}
                if available.get("EUR", 0) < 0:
                    counters["negative_balances"] += 1
                    resp.failure(f"negative available balance {available}")


if OUTAGE_BANK:

    class BankOperator(User):
        """Takes one bank down mid-run and brings it back (the simulator's admin API)."""

        fixed_count = 1
        wait_time = between(1, 1)

        def on_start(self) -> None:
            self.started = time.monotonic()
            self.done = False

        def _behave(self, mode: str) -> None:
            import urllib.request

            request = urllib.request.Request(
                f"{BANKSIM_URL}/admin/banks/{OUTAGE_BANK}/behaviour",
                data=json.dumps({"mode": mode}).encode(),
                headers={"X-Service-Token": SERVICE_TOKEN, "Content-Type": "application/json"},
                method="PUT",
            )
            begin = time.perf_counter()
            with urllib.request.urlopen(request, timeout=10) as resp:
                assert resp.status == 200
            events.request.fire(
                request_type="ADMIN",
                name=f"bank {mode}",
                response_time=(time.perf_counter() - begin) * 1000,
                response_length=0,
                exception=None,
                context={},
            )
            counters[f"bank_{mode}"] += 1

        @task
        def outage(self) -> None:
            if self.done:
                return
            elapsed = time.monotonic() - self.started
            gevent.sleep(max(0.0, OUTAGE_AT_S - elapsed))
            self._behave("outage")
            gevent.sleep(OUTAGE_FOR_S)
            self._behave("normal")
            self.done = True


class LoadShape(LoadTestShape):
    """steady: all users for the whole run; ramp: 10% to 100% linearly; spike: a third of the
    users, all of them for the middle fifth of the run, then a third again."""

    def tick(self) -> tuple[int, float] | None:
        t = self.get_run_time()
        if t >= DURATION_S:
            return None
        extra = 1 if OUTAGE_BANK else 0
        if SHAPE == "ramp":
            users = max(1, round(USERS * (0.1 + 0.9 * t / DURATION_S)))
            return users + extra, max(1.0, USERS / 10)
        if SHAPE == "spike":
            in_spike = 0.4 * DURATION_S <= t < 0.6 * DURATION_S
            users = USERS if in_spike else max(1, USERS // 3)
            return users + extra, float(USERS)
        return USERS + extra, max(1.0, USERS / 5)


@events.quitting.add_listener
def _write_summary(environment: Any, **_: Any) -> None:
    if SUMMARY_FILE:
        Path(SUMMARY_FILE).write_text(json.dumps(dict(counters), indent=2))
