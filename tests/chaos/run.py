"""Chaos run (``make chaos``; a short version is ``tests/chaos/test_chaos_smoke.py``).

While merchants keep creating payouts (each retried with its own Idempotency-Key until the API
answers, as a merchant would), faults are injected one after another at random moments:

- ``kill:<service>`` — SIGKILL, then the process is started again;
- ``pause:<service>`` — SIGSTOP for 1 to 3 s, then SIGCONT;
- ``bank_outage`` / ``lost_responses`` / ``slow_bank`` — through the simulator's admin API
  (slow = latency above the router's bank timeout, so answers come too late: unknown outcomes);
- ``drop_dir_full`` — the recon drop directory is a small tmpfs; it is filled and a statement
  is requested while it is full;
- ``pg_restart`` / ``rabbit_restart`` — ``pg_ctl restart -m immediate`` and RabbitMQ
  ``stop_app``/``start_app`` on this run's own throw-away servers (``--own-servers``).

Then traffic and faults stop, the suite quiesces (bounded), and every invariant is checked;
``Report.table()`` prints faults, injections, recovery times and each invariant's result,
with payout ids and evidence for any failure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

from loadtest import target as t
from loadtest.receiver import Receiver, serve
from loadtest.run import start_suite
from tests.support.processes import free_port

SERVICES = ("banksim", "ledger", "router", "payout", "recon")
ALL_FAULTS = (
    *(f"kill:{s}" for s in SERVICES),
    *(f"pause:{s}" for s in ("ledger", "router", "payout")),
    "bank_outage",
    "lost_responses",
    "slow_bank",
    "drop_dir_full",
    "pg_restart",
    "rabbit_restart",
)
FUNDS_MINOR = 1_000_000_000
# Short windows so one run sees unknown outcomes resolved, leases expire and webhooks retried.
CHAOS_ENV = {
    "payout": {
        "PAYOUT_INQUIRY_SCHEDULE_S": "1,2",
        "PAYOUT_RESOLUTION_WINDOW_S": "45",
        "PAYOUT_TX_LEASE_S": "3",
        "PAYOUT_IDEMPOTENCY_LEASE_S": "5",
        "PAYOUT_TRY_TIMEOUT_S": "20",
        "PAYOUT_PARTICIPANT_TIMEOUT_MS": "3000",
        "PAYOUT_SUBMISSION_TIMEOUT_MS": "10000",
        "PAYOUT_RETRY_MAX_MS": "1000",
    },
    "router": {
        "ROUTER_BANK_TIMEOUT_MS": "1500",
        "ROUTER_INQUIRY_BASE_MS": "500",
        "ROUTER_INQUIRY_MAX_MS": "2000",
        # Above the slow bank's latency (2.5 s median, 4 s p99): a bank still working on a
        # request answers an inquiry with 404, and a grace shorter than that turned a payout the
        # bank then paid into `failed` (chaos run of 22 Nov 2026, po_01a2015aa071cc95c35965).
        "ROUTER_NOT_FOUND_GRACE_MS": "15000",
        "ROUTER_BREAKER_OPEN_MS": "2000",
    },
    "banksim": {"BANKSIM_CALLBACK_TIMEOUT_MS": "1000"},
}


@dataclass
class Injection:
    fault: str
    at: float  # monotonic
    lifted: float
    note: str = ""


@dataclass
class Invariant:
    name: str
    ok: bool | None  # None: not checked (and why in detail)
    detail: str
    evidence: list[str] = field(default_factory=list)


@dataclass
class Report:
    injections: list[Injection]
    recovery_s: dict[str, list[float]]
    invariants: list[Invariant]
    counts: dict[str, Any]
    skipped_faults: dict[str, str]

    @property
    def ok(self) -> bool:
        return all(i.ok is not False for i in self.invariants)

    def table(self) -> str:
        lines = ["", "== chaos run ==", f"  {self.counts}", ""]
        lines.append(f"  {'fault':<18} {'injected':>8} {'recovery p50':>13} {'recovery max':>13}")
        by_fault = Counter(i.fault for i in self.injections)
        for fault in ALL_FAULTS:
            if fault in self.skipped_faults:
                lines.append(f"  {fault:<18} {'skipped':>8}  {self.skipped_faults[fault]}")
                continue
            rec = sorted(self.recovery_s.get(fault, []))
            p50 = f"{rec[len(rec) // 2]:.1f} s" if rec else "-"
            mx = f"{rec[-1]:.1f} s" if rec else "-"
            lines.append(f"  {fault:<18} {by_fault[fault]:>8} {p50:>13} {mx:>13}")
        lines.append("")
        for inv in self.invariants:
            mark = {True: "PASS", False: "FAIL", None: "SKIP"}[inv.ok]
            lines.append(f"  [{mark}] {inv.name}: {inv.detail}")
            lines.extend(f"         {e}" for e in inv.evidence[:20])
        return "\n".join(lines)


# ------------------------------------------------------------------------------- traffic


@dataclass
class Traffic:
    sent: dict[str, float] = field(default_factory=dict)  # payout id -> first send (monotonic)
    refused: Counter[str] = field(default_factory=Counter)
    retries: int = 0
    gave_up: int = 0


async def create_until_answered(
    http: aiohttp.ClientSession,
    tgt: t.Target,
    m: t.Merchant,
    traffic: Traffic,
    n: int,
    deadline_s: float,
) -> None:
    """A merchant's behaviour: retry with the same key until the API answers."""
    key = uuid.uuid4().hex
    body = {
        "amount": 1_000 + (n * 37) % 40_000,
        "currency": "EUR",
        "beneficiary": {
            "name": "Chaos Beneficiary",
            "account_number": "GB29NWBK60161331926819",
            "bank_code": "NRTHGB2L",
        },
        "reference": f"chaos-{key[:20]}",
    }
    began = time.monotonic()
    headers = {"Authorization": f"Bearer {m.key}", "Idempotency-Key": key}
    while time.monotonic() - began < deadline_s:
        try:
            async with http.post(
                f"{tgt.payout_url}/v1/payouts",
                json=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=8),
            ) as resp:
                data = await resp.json(content_type=None)
                if resp.status in (200, 201):
                    traffic.sent.setdefault(data["id"], began)
                    return
                if resp.status == 409 or resp.status >= 500:
                    traffic.retries += 1
                else:
                    traffic.refused[f"{resp.status} {data.get('code')}"] += 1
                    return
        except (aiohttp.ClientError, TimeoutError, json.JSONDecodeError):
            traffic.retries += 1
        await asyncio.sleep(0.3)
    traffic.gave_up += 1


async def offer(
    http: aiohttp.ClientSession,
    tgt: t.Target,
    merchants: list[t.Merchant],
    traffic: Traffic,
    rate: float,
    stop: asyncio.Event,
) -> None:
    tasks: set[asyncio.Task[None]] = set()
    n = 0
    while not stop.is_set():
        if len(tasks) < 200:  # bounded: a stopped payout process does not pile up requests
            task = asyncio.create_task(
                create_until_answered(http, tgt, merchants[n % len(merchants)], traffic, n, 90)
            )
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            n += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1 / rate)
    if tasks:
        await asyncio.wait(tasks, timeout=120)


# -------------------------------------------------------------------------------- faults


class Faults:
    def __init__(self, suite: Any, tgt: t.Target, http: Any, servers: Any) -> None:
        self.suite = suite
        self.tgt = tgt
        self.http = http
        self.servers = servers  # (OwnPostgres, OwnRabbit) or None
        self.rng = random.Random(int(os.environ.get("CHAOS_SEED", "7")))
        self.drop_mount: Path | None = None

    async def _restart(self, name: str) -> None:
        await asyncio.to_thread(self.suite[name].start, ready_timeout_s=90)

    async def inject(self, fault: str) -> Injection:
        at = time.monotonic()
        hold = self.rng.uniform(1.0, 3.0)
        note = ""
        kind, _, arg = fault.partition(":")
        bank = self.rng.choice(self.tgt.banks[:2])  # the banks the router prefers
        if kind == "kill":
            self.suite[arg].kill()
            await self._restart(arg)
        elif kind == "pause":
            self.suite[arg].signal(signal.SIGSTOP)
            try:
                await asyncio.sleep(hold)
            finally:
                self.suite[arg].signal(signal.SIGCONT)
        elif kind in ("bank_outage", "lost_responses", "slow_bank"):
            overrides: dict[str, Any] = {}
            mode = "outage"
            if kind == "lost_responses":
                mode = "normal"
                overrides = {"lost_response_rate": 0.5, "lost_response_mode": "drop"}
            elif kind == "slow_bank":
                mode = "normal"
                overrides = {"latency_median_ms": 2500, "latency_p99_ms": 4000}
            await t.behave(self.http, self.tgt, bank, mode, **overrides)
            try:
                await asyncio.sleep(hold * 2)
            finally:
                await t.behave(self.http, self.tgt, bank, "normal")
            note = bank
        elif kind == "drop_dir_full":
            note = await self._drop_dir_full(bank)
        elif kind == "pg_restart":
            await asyncio.to_thread(self.servers[0].restart_immediate)
        elif kind == "rabbit_restart":
            await asyncio.to_thread(self.servers[1].restart)
        else:
            raise AssertionError(fault)
        return Injection(fault, at, time.monotonic(), note)

    async def _drop_dir_full(self, bank: str) -> str:
        assert self.drop_mount is not None
        filler = self.drop_mount / "filler.bin"
        with filler.open("wb") as f, contextlib.suppress(OSError):
            for _ in range(10_000):  # at most 10,000 x 64 KiB; ENOSPC ends it sooner
                f.write(b"\0" * 65536)
                f.flush()
        try:
            # A statement for a day without payouts: the write must fail cleanly.
            yesterday = (datetime.now(UTC).date() - timedelta(days=1)).isoformat()
            async with self.http.post(
                f"{self.tgt.banksim_url}/admin/statements",
                json={"bank": bank, "business_date": yesterday},
                headers=self.tgt.service,
            ) as resp:
                status = resp.status
                text = (await resp.text())[:120]
        finally:
            filler.unlink()
        return f"{bank} statement while full -> HTTP {status} {text}"


def mount_small_tmpfs(path: Path, size: str = "4m") -> bool:
    """A small tmpfs as the drop directory, so it can really be full (needs root)."""
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
    )
    return proc.returncode == 0


# ---------------------------------------------------------------------------- invariants


async def check(
    http: aiohttp.ClientSession,
    tgt: t.Target,
    suite: Any,
    merchants: list[t.Merchant],
    traffic: Traffic,
    receiver: Receiver,
    alerts: list[dict[str, Any]],
    settle_s: float,
) -> tuple[list[Invariant], dict[str, Any]]:
    invariants: list[Invariant] = []
    payouts: dict[str, dict[str, Any]] = {}
    merchant_of: dict[str, t.Merchant] = {}
    for m in merchants:
        for p in await t.payouts(http, tgt, m):
            payouts[p["id"]] = p
            merchant_of[p["id"]] = m
    statuses = Counter(p["status"] for p in payouts.values())
    missing = sorted(set(traffic.sent) - set(payouts))

    # 1. every accepted payout is terminal, or in manual_review with an open alert
    alerted = {a.get("payout_id") for a in alerts}
    bad = [
        f"{pid} {p['status']}"
        for pid, p in payouts.items()
        if p["status"] not in t.TERMINAL and not (p["status"] == "manual_review" and pid in alerted)
    ]
    invariants.append(
        Invariant(
            "accepted payouts terminal (or manual_review with an alert)",
            not bad and not missing,
            f"{len(payouts)} payouts {dict(statuses)}; {len(bad)} not settled;"
            f" {len(missing)} accepted but not listed",
            bad + [f"{pid} accepted, not listed" for pid in missing],
        )
    )

    # 2. each bank executed each payout at most once; statuses agree with the truth journals
    journals = {b: await t.journal(http, tgt, b) for b in tgt.banks}
    rows: dict[str, dict[str, Any]] = {}
    for b in tgt.banks:
        rows.update(await t.attempts(http, tgt, b))
    executed: dict[str, list[str]] = defaultdict(list)
    unknown_refs: list[str] = []
    for bank, entries in journals.items():
        for e in entries:
            if e["status"] == "rejected":
                continue
            row = rows.get(e["reference"])
            if row is None:
                unknown_refs.append(f"{bank}:{e['reference']} {e['status']}")
                continue
            executed[row["payout_id"]].append(f"{bank}:{e['reference']}:{e['status']}")
    evidence = [f"{pid} executed {refs}" for pid, refs in executed.items() if len(refs) > 1]
    for pid, p in payouts.items():
        refs = executed.get(pid, [])
        if p["status"] == "paid" and not (len(refs) == 1 and refs[0].endswith(":paid")):
            evidence.append(f"{pid} paid, journals say {refs}")
        if p["status"] == "failed" and refs:
            evidence.append(f"{pid} failed, journals say {refs}")
    evidence += [f"journal reference without an attempt: {r}" for r in unknown_refs]
    invariants.append(
        Invariant(
            "each payout executed at most once; statuses agree with the truth journals",
            not evidence,
            f"{sum(len(v) for v in executed.values())} executions over {len(journals)} banks",
            evidence,
        )
    )

    # 3. ledger: chain, counters, conservation; no hold left for a terminal payout
    async with http.get(f"{tgt.ledger_url}/v1/verify", headers=tgt.service) as resp:
        verify = await resp.json()
    ledger_ok = bool(verify["ok"] and verify["counters_ok"] and verify["conservation_ok"])
    held_evidence: list[str] = []
    balance_evidence: list[str] = []
    for m in merchants:
        mine = [p for p in payouts.values() if merchant_of.get(p["id"]) is m]
        acc = await t.ledger_account(http, tgt, f"{m.id}.EUR")
        open_hold = sum(p["amount"] + p["fee"] for p in mine if p["status"] not in t.TERMINAL)
        paid = sum(p["amount"] + p["fee"] for p in mine if p["status"] == "paid")
        if acc["debits_pending"] != open_hold:
            held_evidence.append(
                f"{m.id}: debits_pending {acc['debits_pending']} != open payouts {open_hold}"
            )
        # 4. available = deposits - paid amounts - fees (- what is still held)
        want = m.funds_minor - paid - open_hold
        if (
            acc["available"] != want
            or acc["debits_posted"] != paid
            or acc["credits_posted"] != m.funds_minor
        ):
            balance_evidence.append(
                f"{m.id}: available {acc['available']} (want {want}), debits_posted"
                f" {acc['debits_posted']} (paid+fees {paid}), credits_posted"
                f" {acc['credits_posted']} (deposits {m.funds_minor})"
            )
    invariants.append(
        Invariant(
            "ledger: chain verifies, counters == fold, conservation, no hold for terminal",
            ledger_ok and not held_evidence,
            f"verify ok={verify['ok']} counters_ok={verify['counters_ok']}"
            f" conservation_ok={verify['conservation_ok']} transfers={verify['transfers_checked']}",
            ([json.dumps(verify)[:400]] if not ledger_ok else []) + held_evidence,
        )
    )
    invariants.append(
        Invariant(
            "merchant available == deposits - paid - fees",
            not balance_evidence,
            f"{len(merchants)} merchants",
            balance_evidence,
        )
    )

    # 5. every terminal payout produced its webhook event (verified at the receiver)
    def undelivered() -> list[str]:
        out = []
        for pid, p in payouts.items():
            if p["status"] in ("paid", "failed") and pid not in receiver.delivered(
                f"payout.{p['status']}"
            ):
                out.append(f"{pid} {p['status']}: no verified payout.{p['status']} webhook")
        return out

    deadline = time.monotonic() + settle_s
    while undelivered() and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
    dead = [a for a in alerts if a.get("code") == "webhook_dead_lettered"]
    late = undelivered()
    invariants.append(
        Invariant(
            "every terminal payout's webhook delivered (or dead-lettered with an alert)",
            not late and receiver.bad_signatures == 0,
            f"{receiver.verified} verified deliveries, {receiver.duplicates} duplicates,"
            f" {receiver.bad_signatures} bad signatures, {len(dead)} dead-letter alerts",
            late,
        )
    )
    counts = {
        "payouts": len(payouts),
        "statuses": dict(statuses),
        "create_retries": traffic.retries,
        "refused": dict(traffic.refused),
        "gave_up": traffic.gave_up,
        "alerts": dict(Counter(a.get("code") for a in alerts)),
        "failure_codes": dict(
            Counter(p["failure_code"] for p in payouts.values() if p["status"] == "failed")
        ),
    }
    return invariants, counts


async def check_recon(
    http: aiohttp.ClientSession, tgt: t.Target, recon_url: str | None, timeout_s: float
) -> Invariant:
    name = "next reconciliation of every bank's statement: no unexplained break"
    if recon_url is None:
        return Invariant(name, None, "recon not started in this run")
    from tests.support.suite import FINANCE_KEY

    today = date.today().isoformat()
    finance = {"Authorization": f"Bearer {FINANCE_KEY}"}
    evidence: list[str] = []
    runs = 0
    for bank in tgt.banks:
        async with http.post(
            f"{tgt.banksim_url}/admin/statements",
            json={"bank": bank, "business_date": today},
            headers=tgt.service,
        ) as resp:
            if resp.status != 201:
                evidence.append(f"{bank}: statement -> {resp.status} {(await resp.text())[:200]}")
                continue
        deadline = time.monotonic() + timeout_s
        found: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            async with http.get(
                f"{recon_url}/v1/recon/runs?channel={bank}&business_date={today}", headers=finance
            ) as resp:
                found = (await resp.json()).get("runs", [])
            if found:
                break
            await asyncio.sleep(0.5)
        if not found:
            evidence.append(f"{bank}: no recon run within {timeout_s}s")
            continue
        runs += 1
        run_id = found[0]["run_id"]
        async with http.get(
            f"{recon_url}/v1/recon/breaks?run_id={run_id}&limit=500", headers=finance
        ) as resp:
            breaks = (await resp.json())["breaks"]
        evidence += [
            f"{bank} {run_id}: {b['code']} {b.get('attempt_id')} {b.get('amount_minor')}"
            for b in breaks
        ]
    return Invariant(name, not evidence, f"{runs}/{len(tgt.banks)} banks reconciled", evidence)


# --------------------------------------------------------------------------------- run


@dataclass
class ChaosConfig:
    duration_s: float = 120.0
    rate: float = 6.0
    merchants: int = 4
    faults: tuple[str, ...] = ALL_FAULTS
    gap_s: tuple[float, float] = (1.0, 4.0)
    settle_s: float = 120.0
    own_servers: bool = True
    with_recon: bool = True
    schedule: tuple[tuple[float, str], ...] = ()  # fixed (offset s, fault) instead of random


async def chaos(cfg: ChaosConfig) -> Report:
    workdir = Path(tempfile.mkdtemp(prefix="chaos-"))
    os.chmod(workdir, 0o755)
    servers: Any = None
    skipped: dict[str, str] = {}
    urls: dict[str, str] = {}
    if cfg.own_servers:
        from tests.chaos.servers import OwnPostgres, OwnRabbit

        pg = await asyncio.to_thread(OwnPostgres(workdir).start)
        try:
            rabbit = await asyncio.to_thread(OwnRabbit(workdir).start)
        except BaseException:
            pg.stop()
            raise
        servers = (pg, rabbit)
        urls = {"database_url": pg.url, "amqp_url": rabbit.url}
    else:
        for f in ("pg_restart", "rabbit_restart"):
            skipped[f] = "shared servers: never restarted (use --own-servers)"
    drop = workdir / "drop"
    drop.mkdir()
    mounted = False
    suite = None
    try:
        mounted = mount_small_tmpfs(drop)
        if not mounted:
            skipped["drop_dir_full"] = "could not mount a small tmpfs (needs root)"
        suite, tgt = await asyncio.to_thread(
            start_suite,
            workdir,
            "chaos",
            with_recon=cfg.with_recon,
            service_env=CHAOS_ENV,
            **urls,
        )
        faults_ctl = Faults(suite, tgt, None, servers)
        faults_ctl.drop_mount = drop if mounted else None
        return await _run(cfg, suite, tgt, faults_ctl, skipped)
    finally:
        if suite is not None:
            suite.stop()
        if mounted:
            subprocess.run(["umount", "-l", str(drop)], capture_output=True)
        if servers is not None:
            for server in servers:
                await asyncio.to_thread(server.stop)
        elif suite is not None:
            await suite.acleanup()


async def _run(
    cfg: ChaosConfig, suite: Any, tgt: t.Target, faults: Faults, skipped: dict[str, str]
) -> Report:
    from services.kit.amqp import Broker

    receiver = Receiver()
    port = free_port()
    runner = await serve(receiver, "127.0.0.1", port)
    alerts: list[dict[str, Any]] = []

    async def collect(envelope: Any) -> None:
        alerts.append(dict(envelope.data))

    # Same queue arguments as the services' brokers (test sessions make queues expire).
    watcher = Broker(
        suite.spec.amqp_url,
        suite.spec.amqp_prefix,
        queue_expires_ms=int(os.environ.get("AMQP_QUEUE_EXPIRES_MS", "0")),
    )
    await watcher.connect()
    await watcher.consume("chaos_alerts", ["payout.alert", "recon.alert"], collect)
    injections: list[Injection] = []
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
            faults.http = http
            merchants = [
                await t.create_merchant(
                    http, tgt, f"http://127.0.0.1:{port}", funds_minor=FUNDS_MINOR, name=f"C{i}"
                )
                for i in range(cfg.merchants)
            ]
            for m in merchants:
                receiver.secrets[m.id] = m.webhook_secret
            traffic = Traffic()
            stop = asyncio.Event()
            load = asyncio.create_task(offer(http, tgt, merchants, traffic, cfg.rate, stop))
            began = time.monotonic()
            enabled = [f for f in cfg.faults if f not in skipped]
            if cfg.with_recon is False:
                enabled = [f for f in enabled if f != "kill:recon"]
            plan = list(cfg.schedule)
            bag: list[str] = []
            while time.monotonic() - began < cfg.duration_s:
                if cfg.schedule:
                    if not plan:
                        break
                    offset, fault = plan.pop(0)
                    await asyncio.sleep(max(0.0, began + offset - time.monotonic()))
                else:
                    await asyncio.sleep(faults.rng.uniform(*cfg.gap_s))
                    if not bag:  # every fault once per round, in random order
                        bag = list(enabled)
                        faults.rng.shuffle(bag)
                    fault = bag.pop()
                print(f"  t={time.monotonic() - began:6.1f}s inject {fault}", flush=True)
                injections.append(await faults.inject(fault))
            # A little calm traffic after the last fault, to measure its recovery.
            await asyncio.sleep(3)
            stop.set()
            await load
            quiet_began = time.monotonic()
            open_: Counter[str] = Counter()
            while time.monotonic() - quiet_began < cfg.settle_s:
                open_ = await t.open_statuses(http, tgt, merchants)
                if sum(open_.values()) == 0:
                    break
                await asyncio.sleep(1)
            quiesce_s = time.monotonic() - quiet_began
            invariants, counts = await check(
                http, tgt, suite, merchants, traffic, receiver, alerts, cfg.settle_s
            )
            invariants.append(
                await check_recon(
                    http, tgt, suite.urls.get("recon") if cfg.with_recon else None, 60
                )
            )
            counts["quiesce_s"] = round(quiesce_s, 1)
            counts["still_open_after_quiesce"] = dict(open_)
    finally:
        await watcher.close()
        await runner.cleanup()
    # Recovery: from the moment a fault is lifted until the first payout created after that
    # moment is paid (its verified webhook arrives).
    paid = receiver.delivered("payout.paid")
    recovery: dict[str, list[float]] = defaultdict(list)
    for inj in injections:
        after = [
            paid[pid].received_at - inj.lifted
            for pid, sent in traffic.sent.items()
            if sent >= inj.lifted and pid in paid
        ]
        if after:
            recovery[inj.fault].append(min(after) + (inj.lifted - inj.at))
    notes = [f"{i.fault}: {i.note}" for i in injections if i.note and i.fault == "drop_dir_full"]
    counts["drop_dir_full"] = notes[:3]
    return Report(injections, dict(recovery), invariants, counts, skipped)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=150.0)
    parser.add_argument("--rate", type=float, default=6.0, help="payouts offered per second")
    parser.add_argument("--merchants", type=int, default=4)
    parser.add_argument("--settle", type=float, default=120.0)
    parser.add_argument("--faults", default=",".join(ALL_FAULTS))
    parser.add_argument("--shared-servers", dest="own_servers", action="store_false")
    args = parser.parse_args(argv)
    assert 0 < args.duration <= 1800 and 0 < args.rate <= 200
    cfg = ChaosConfig(
        duration_s=args.duration,
        rate=args.rate,
        merchants=args.merchants,
        faults=tuple(f for f in args.faults.split(",") if f),
        settle_s=args.settle,
        own_servers=args.own_servers,
    )
    unknown = set(cfg.faults) - set(ALL_FAULTS)
    assert not unknown, f"unknown faults {unknown}; known: {ALL_FAULTS}"
    report = asyncio.run(chaos(cfg))
    print(report.table())
    out = Path(__file__).resolve().parents[2] / "test-artifacts" / "chaos"
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.txt").write_text(report.table())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
