"""The router benchmark runs end to end at tiny sizes and its invariants hold."""

from __future__ import annotations

import subprocess
import sys

from tests.support.infra import ROOT


def test_router_benchmark_quick_run_reports_every_figure_and_no_double_execution() -> None:
    result = subprocess.run(
        [sys.executable, "bench/router.py", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for figure in (
        "decision cost, 50 channels x 100 merchant rules",
        "breaker open after outage",
        "traffic back on the bank after recovery",
    ):
        assert figure in out, out
    assert "double executions in truth journals: 0 (must be 0)" in out, out
    assert "router view vs truth disagreements: 0" in out, out
