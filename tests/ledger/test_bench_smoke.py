"""A tiny run of bench/ledger.py so `make test` exercises the benchmark end to end (this is a
smoke test of the harness and its invariant checks, not a timed test)."""

from __future__ import annotations

import subprocess
import sys

from tests.support.infra import ROOT, amqp_url, database_url


def test_quick_benchmark_runs_and_its_invariants_hold() -> None:
    result = subprocess.run(
        [sys.executable, "bench/ledger.py", "--quick"],
        cwd=ROOT,
        env={"DATABASE_URL": database_url(), "AMQP_URL": amqp_url(), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "chain ok, counters == fold ok, conservation per currency ok" in out, out
    for phase in ("baseline", "batch API", "single-transfer requests", "TCC try+confirm"):
        assert phase in out, out
