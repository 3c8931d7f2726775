"""Draw ``docs/img/e2e.png`` from ``test-artifacts/bench/e2e.json`` (written by bench/e2e.py):
achieved payouts/s and end-to-end latency (p50, p99) against the offered load."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "test-artifacts/bench/e2e.json"
    out = ROOT / "docs" / "img" / "e2e.png"
    result = json.loads(source.read_text())
    steps = result["steps"]
    offered = [s["offered_per_s"] for s in steps]
    achieved = [s["achieved_per_s"] for s in steps]
    p50 = [s["e2e_p50_ms"] for s in steps]
    p99 = [s["e2e_p99_ms"] if s["e2e_p99_ms"] is not None else float("nan") for s in steps]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(offered, offered, ":", color="grey", label="offered")
    left.plot(offered, achieved, "o-", label="paid/s (webhooks)")
    knee = result.get("knee")
    if knee:
        left.axvline(knee["offered_per_s"], color="red", alpha=0.3, label="knee")
    left.set_xlabel("offered payouts/s")
    left.set_ylabel("payouts/s end to end")
    left.legend()
    left.grid(alpha=0.3)
    right.plot(offered, p50, "o-", label="p50")
    right.plot(offered, p99, "s-", label="p99")
    right.set_yscale("log")
    right.set_xlabel("offered payouts/s")
    right.set_ylabel("POST to signed payout.paid webhook (ms)")
    right.legend()
    right.grid(alpha=0.3)
    base = result["baseline"]["requests_per_s"]
    fig.suptitle(
        f"Payouts end to end, {result['cores']} cores, every process on one machine"
        f" (bare aiohttp baseline: {base:.0f} req/s)"
    )
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    print(out)


if __name__ == "__main__":
    main()
