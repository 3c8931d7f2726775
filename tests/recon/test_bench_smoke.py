"""The reconciliation benchmark at a tiny size: it runs, and its invariants hold."""

from __future__ import annotations

import subprocess
import sys

from tests.support.infra import ROOT


def test_bench_recon_smoke_reconciles_a_small_day_and_checks_its_invariants(
    recon_dsn: str,
) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "recon.py"), "--lines", "3000", "--skip-parsers"],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "invariants: every line and record accounted once" in result.stdout
    assert "ratio" in result.stdout and "peak RSS" in result.stdout
