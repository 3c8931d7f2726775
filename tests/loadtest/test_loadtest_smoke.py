"""A short ``make loadtest``: the real suite, locust headless, a bank outage mid-run, every
threshold checked by the runner (which exits non-zero when one fails)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from loadtest.run import ARTIFACTS
from loadtest.thresholds import Limits, Observed, evaluate
from tests.support.infra import ROOT

pytestmark = pytest.mark.e2e


@pytest.mark.timeout(90)
def test_short_load_run_with_a_bank_outage_passes_every_threshold() -> None:
    summary_file = ARTIFACTS / "summary.json"
    summary_file.unlink(missing_ok=True)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "loadtest.run",
            "--users=6",
            "--duration=15",
            "--merchants=3",
            "--settle=20",
            "--outage-bank=northbank",
            # The smoke proves the wiring and the money checks; the latency bound of a real run
            # is LOADTEST_P99_MS (this machine is shared while tests run).
            "--p99-ms=10000",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=85,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    summary = json.loads(summary_file.read_text())
    assert summary["passed"]
    assert summary["payouts_accepted_by_api"] >= 10
    assert summary["payouts_accepted_by_api"] == summary["payouts_accepted_seen_by_locust"]
    assert summary["locust_counters"].get("bank_outage") == 1
    assert summary["locust_counters"].get("bank_normal") == 1
    assert summary["webhooks"].get("payout.paid") == summary["statuses"]["paid"]


def _observed(**changes: object) -> Observed:
    base = Observed(accepted=1000, statuses={"paid": 1000}, api_p99_ms=100.0, http_5xx=0)
    for k, v in changes.items():
        setattr(base, k, v)
    return base


@pytest.mark.parametrize(
    ("changes", "failing"),
    [
        ({}, set()),
        ({"statuses": {"paid": 998, "failed": 2}}, {"accepted payouts end paid"}),
        ({"statuses": {"paid": 999, "manual_review": 1}}, set()),
        ({"api_p99_ms": 2_001.0}, {"API p99"}),
        ({"http_5xx": 1}, {"no 5xx"}),
        (
            {"double_executions": ["po_1: [(a, att_1), (b, att_2)]"]},
            {"no double execution at any bank"},
        ),
        (
            {"paid_without_webhook": ["po_1"]},
            {"every paid payout's webhook delivered and verified"},
        ),
        ({"bad_signatures": 1}, {"every paid payout's webhook delivered and verified"}),
        ({"idempotency_violations": 1}, {"same Idempotency-Key, same payout"}),
        ({"accepted": 0, "statuses": {}}, {"accepted payouts end paid"}),
    ],
)
def test_each_threshold_fails_the_run_when_broken(changes: dict, failing: set[str]) -> None:
    checks = evaluate(_observed(**changes), Limits())
    assert {c.name for c in checks if not c.ok} == failing
