"""``make loadtest``: start the suite on free ports (or aim at a deployed one), seed merchants
through the payout admin API, run locust headless, let the suite quiesce, then check the
thresholds and exit non-zero when one fails.

    python -m loadtest.run --shape steady --users 30 --duration 60 --outage-bank atlas

Artifacts go to ``test-artifacts/loadtest/``: locust's HTML report and CSV stats, the
counters of the locust run, and ``summary.json`` with every check. Aim at a deployed suite
with the ``LOADTEST_*`` variables described in docs/CHAOS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

import aiohttp

from loadtest import target as t
from loadtest.receiver import Receiver, serve
from loadtest.thresholds import Check, Limits, Observed, evaluate

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts" / "loadtest"
BANKS_FILE = Path(__file__).with_name("banks.yaml")
CHANNELS = [
    {"id": "ch_load_north", "bank": "northbank", "currency": "EUR", "fee_minor": 10},
    {"id": "ch_load_atlas", "bank": "atlas", "currency": "EUR", "fee_minor": 40},
    {"id": "ch_load_meridian", "bank": "meridian", "currency": "EUR", "fee_minor": 60},
]
# Faster than production defaults so a run of a minute sees its webhooks and recoveries.
SUITE_ENV = {
    "payout": {
        "PAYOUT_WEBHOOK_RETRY_BASE_MS": "200",
        "PAYOUT_WEBHOOK_RETRY_MAX_MS": "2000",
        "PAYOUT_RECOVERY_INTERVAL_MS": "200",
        "PAYOUT_RETRY_BASE_MS": "100",
        "PAYOUT_RETRY_MAX_MS": "2000",
        "PAYOUT_INQUIRY_SCHEDULE_S": "2,5",
        "PAYOUT_TX_LEASE_S": "5",
        "DB_POOL_MAX": "20",
    },
    "router": {"ROUTER_BANK_TIMEOUT_MS": "3000", "ROUTER_RECOVERY_POLL_MS": "200"},
}


def start_suite(workdir: Path, name: str, *, with_recon: bool = False, **env: Any) -> Any:
    """Start the whole suite on this machine (tests/support/suite.py)."""
    from tests.support.suite import ADMIN_KEY, SERVICE_TOKEN, Suite, SuiteSpec

    service_env: dict[str, dict[str, str]] = {k: dict(v) for k, v in SUITE_ENV.items()}
    for service, extra in env.get("service_env", {}).items():
        service_env.setdefault(service, {}).update(extra)
    servers = {
        k: env[k] for k in ("database_url", "amqp_url") if env.get(k)
    }  # a chaos run's own servers; the machine's servers otherwise
    spec = SuiteSpec(
        **servers,
        workdir=workdir,
        banks_file=BANKS_FILE,
        channels=CHANNELS,
        name=name,
        with_recon=with_recon,
        env=env.get("common_env", {}),
        service_env=service_env,
    )
    suite = Suite(spec)
    try:
        suite.start()
    except BaseException:
        suite.stop()
        suite.cleanup()
        raise
    tgt = t.Target(
        payout_url=suite.urls["payout"],
        banksim_url=suite.urls["banksim"],
        router_url=suite.urls["router"],
        ledger_url=suite.urls["ledger"],
        admin_key=ADMIN_KEY,
        service_token=SERVICE_TOKEN,
        banks=tuple(str(c["bank"]) for c in CHANNELS),
    )
    return suite, tgt


def p99_from_csv(stats_csv: Path) -> tuple[float, dict[str, dict[str, str]]]:
    """The aggregated p99 of merchant API requests (admin calls of the operator excluded)."""
    rows = {r["Name"]: r for r in csv.DictReader(stats_csv.open())}
    api = {k: v for k, v in rows.items() if k != "Aggregated" and v["Type"] != "ADMIN"}
    if not api:
        return float("inf"), rows
    # The CSV gives per-name percentiles; the worst per-name p99 bounds the aggregate's.
    return max(float(v["99%"] or 0) for v in api.values()), rows


async def seed_merchants(
    http: aiohttp.ClientSession, tgt: t.Target, receiver: Receiver, url: str, n: int
) -> list[t.Merchant]:
    sem = asyncio.Semaphore(8)

    async def one(i: int) -> t.Merchant:
        async with sem:
            m = await t.create_merchant(
                http, tgt, url, funds_minor=1_000_000_000, name=f"Load Merchant {i}"
            )
        receiver.secrets[m.id] = m.webhook_secret
        return m

    return list(await asyncio.gather(*(one(i) for i in range(n))))


async def settle(
    http: aiohttp.ClientSession, tgt: t.Target, merchants: list[t.Merchant], timeout_s: float
) -> tuple[float, Counter[str]]:
    """Wait (bounded) until no payout is left in a non-terminal state; seconds waited."""
    begin = time.monotonic()
    while True:
        open_ = await t.open_statuses(http, tgt, merchants)
        if sum(open_.values()) == 0 or time.monotonic() - begin > timeout_s:
            return time.monotonic() - begin, open_
        await asyncio.sleep(0.5)


async def double_executions(
    http: aiohttp.ClientSession, tgt: t.Target, banks: tuple[str, ...], payout_ids: set[str]
) -> tuple[list[str], dict[str, list[tuple[str, str]]]]:
    journals = {b: await t.journal(http, tgt, b) for b in banks}
    rows: dict[str, dict[str, Any]] = {}
    for b in banks:
        rows.update(await t.attempts(http, tgt, b))
    per_payout, doubles = t.executions_by_payout(journals, rows)
    doubles += [
        f"{pid}: {refs}" for pid, refs in per_payout.items() if len(refs) > 1 and pid in payout_ids
    ]
    return doubles, per_payout


async def run(args: argparse.Namespace) -> int:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    deployed = t.Target.from_env()
    suite = None
    workdir = Path(tempfile.mkdtemp(prefix="loadtest-"))
    if deployed is None:
        print(f"starting the suite in {workdir} ...", flush=True)
        suite, tgt = start_suite(workdir, "load")
    else:
        tgt = deployed
    receiver = Receiver()
    host = os.environ.get("LOADTEST_RECEIVER_HOST", "127.0.0.1")
    from tests.support.processes import free_port

    port = int(os.environ.get("LOADTEST_RECEIVER_PORT") or free_port())
    public = os.environ.get("LOADTEST_RECEIVER_URL", f"http://{host}:{port}")
    runner = await serve(receiver, host, port)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
            banks = await t.discover_banks(http, tgt)
            merchants = await seed_merchants(http, tgt, receiver, public, args.merchants)
            merchants_file = workdir / "merchants.json"
            merchants_file.write_text(json.dumps([{"id": m.id, "key": m.key} for m in merchants]))
            outage = args.outage_bank if args.outage_bank != "none" else ""
            if outage and outage not in banks:
                raise SystemExit(f"--outage-bank {outage} is not one of {banks}")
            locust_counters = ARTIFACTS / "locust_counters.json"
            env = {
                **os.environ,
                "LOADTEST_MERCHANTS_FILE": str(merchants_file),
                "LOADTEST_BANKSIM_URL": tgt.banksim_url,
                "LOADTEST_SERVICE_TOKEN": tgt.service_token,
                "LOADTEST_OUTAGE_BANK": outage,
                "LOADTEST_OUTAGE_AT_S": str(args.duration * 0.3),
                "LOADTEST_OUTAGE_FOR_S": str(args.duration * 0.3),
                "LOADTEST_SHAPE": args.shape,
                "LOADTEST_USERS": str(args.users),
                "LOADTEST_DURATION_S": str(args.duration),
                "LOADTEST_SUMMARY_FILE": str(locust_counters),
            }
            prefix = ARTIFACTS / "locust"
            cmd = [
                sys.executable,
                "-m",
                "locust",
                "-f",
                str(Path(__file__).with_name("locustfile.py")),
                "--headless",
                "--host",
                tgt.payout_url,
                "--csv",
                str(prefix),
                "--html",
                str(ARTIFACTS / "report.html"),
                "--stop-timeout",
                "5",
                "--loglevel",
                "WARNING",
                "--exit-code-on-error",
                "0",
            ]
            print(
                f"locust: shape={args.shape} users={args.users} duration={args.duration}s"
                f" merchants={len(merchants)} outage={outage or '-'}",
                flush=True,
            )
            began = time.monotonic()
            proc = await asyncio.create_subprocess_exec(*cmd, env=env, cwd=ROOT)
            try:
                await asyncio.wait_for(proc.wait(), timeout=args.duration + 60)
            except TimeoutError:
                proc.kill()
                await proc.wait()
                raise SystemExit("locust did not stop within its run time + 60 s") from None
            load_s = time.monotonic() - began
            if proc.returncode not in (0, 1):
                raise SystemExit(f"locust exited with {proc.returncode}")
            counters = json.loads(locust_counters.read_text())
            if outage:  # make sure the bank is back even if the operator was cut short
                await t.behave(http, tgt, outage, "normal")
            settle_s, still_open = await settle(http, tgt, merchants, args.settle)
            all_payouts = [p for m in merchants for p in await t.payouts(http, tgt, m)]
            statuses = Counter(p["status"] for p in all_payouts)
            paid_ids = {p["id"] for p in all_payouts if p["status"] == "paid"}
            begin = time.monotonic()
            while time.monotonic() - begin < args.settle:
                if not paid_ids - set(receiver.delivered("payout.paid")):
                    break
                await asyncio.sleep(0.5)
            missing = sorted(paid_ids - set(receiver.delivered("payout.paid")))
            doubles, per_payout = await double_executions(
                http, tgt, banks, {p["id"] for p in all_payouts}
            )
    finally:
        await runner.cleanup()
        if suite is not None:
            suite.stop()
            await suite.acleanup()
    p99, rows = p99_from_csv(Path(f"{prefix}_stats.csv"))
    observed = Observed(
        accepted=len(all_payouts),
        statuses=dict(statuses),
        api_p99_ms=p99,
        http_5xx=int(counters.get("http_5xx", 0)),
        double_executions=doubles,
        paid_without_webhook=missing,
        bad_signatures=receiver.bad_signatures,
        idempotency_violations=int(counters.get("idempotency_violations", 0)),
    )
    checks = evaluate(observed, Limits(p99_ms_max=args.p99_ms))
    agg = rows.get("Aggregated", {})
    summary: dict[str, Any] = {
        "shape": args.shape,
        "users": args.users,
        "duration_s": args.duration,
        "load_s": round(load_s, 1),
        "settle_s": round(settle_s, 1),
        "still_open": dict(still_open),
        "merchants": len(merchants),
        "requests": int(agg.get("Request Count", 0) or 0),
        "failures": int(agg.get("Failure Count", 0) or 0),
        "requests_per_s": float(agg.get("Requests/s", 0) or 0),
        "payouts_accepted_by_api": len(all_payouts),
        "payouts_accepted_seen_by_locust": counters.get("payouts_accepted", 0),
        "payouts_per_s": round(len(all_payouts) / load_s, 1) if load_s else 0,
        "statuses": dict(statuses),
        "banks_used": dict(Counter(b for refs in per_payout.values() for b, _ in refs)),
        "webhooks": dict(receiver.by_type),
        "webhook_duplicates": receiver.duplicates,
        "locust_counters": counters,
        "checks": [asdict(c) for c in checks],
        "passed": all(c.ok for c in checks),
    }
    (ARTIFACTS / "summary.json").write_text(json.dumps(summary, indent=2))
    print_summary(summary, checks, rows)
    return 0 if summary["passed"] else 1


def print_summary(summary: dict[str, Any], checks: list[Check], rows: dict[str, Any]) -> None:
    print("\n== load test summary ==")
    for key in (
        "shape",
        "users",
        "load_s",
        "settle_s",
        "merchants",
        "requests",
        "requests_per_s",
        "payouts_accepted_by_api",
        "payouts_per_s",
        "statuses",
        "banks_used",
        "webhooks",
        "locust_counters",
    ):
        print(f"  {key:<26} {summary[key]}")
    print(f"  {'request':<34} {'count':>7} {'fail':>5} {'p50':>6} {'p99':>6} (ms)")
    for name, r in rows.items():
        print(
            f"  {name[:34]:<34} {r['Request Count']:>7} {r['Failure Count']:>5}"
            f" {r['50%']:>6} {r['99%']:>6}"
        )
    for c in checks:
        print(f"  [{'PASS' if c.ok else 'FAIL'}] {c.name}: {c.detail}")
    print(f"artifacts: {ARTIFACTS}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", choices=("steady", "ramp", "spike"), default="steady")
    parser.add_argument("--users", type=int, default=int(os.environ.get("LOADTEST_USERS", 30)))
    parser.add_argument(
        "--duration", type=float, default=float(os.environ.get("LOADTEST_DURATION_S", 90))
    )
    parser.add_argument("--merchants", type=int, default=10)
    parser.add_argument(
        "--outage-bank", default="northbank", help="bank taken down mid-run, or none"
    )
    parser.add_argument(
        "--p99-ms", type=float, default=float(os.environ.get("LOADTEST_P99_MS", 2000))
    )
    parser.add_argument("--settle", type=float, default=60.0, help="max quiesce wait, seconds")
    args = parser.parse_args(argv)
    assert 0 < args.duration <= 3600 and 0 < args.users <= 2000 and 0 < args.merchants <= 1000
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
