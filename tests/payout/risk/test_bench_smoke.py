"""The risk benchmark runs end to end in its quick mode and checks its own invariants."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_bench_risk_quick_mode_runs_and_reports_p99_next_to_its_baselines() -> None:
    done = subprocess.run(
        [sys.executable, "bench/risk.py", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "rules: 200;" in out
    for line in (
        "risk evaluate (200 rules)",
        "baseline: msgspec decode+validate of the body",
        "baseline: aiohttp loopback POST round trip",
        "evaluate / aiohttp round trip (wall):",
        "invariants: deterministic decisions, one version per decision, every outcome seen: ok",
    ):
        assert line in out, out
