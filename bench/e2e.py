"""End-to-end payout throughput on this machine (``make bench-e2e``): every suite process on
one box, open-loop offered load stepped up until the knee.

For each step the generator offers ``rate`` payouts/s (POST /v1/payouts, spread over several
merchants) for ``--step-s`` seconds. A payout's end-to-end latency runs from the moment its
POST is sent to the moment its signed ``payout.paid`` webhook arrives at the receiver (so it
includes the ledger hold, the router, the bank, the confirm phase, the outbox relay, RabbitMQ and
the webhook sender). Achieved throughput is the rate of ``payout.paid`` webhooks during the
step's second half. CPU-seconds per 1,000 payouts are summed over the suite's processes (and,
separately, over the PostgreSQL backends serving this run's databases) from ``/proc/<pid>/stat``.

Baseline, same run: a bare aiohttp server (``POST /echo`` parses and returns a small JSON body)
driven by the same client at its maximum for a few seconds; the ratio payouts/s ÷ baseline
requests/s is the figure that travels between machines.

``--profile`` samples the busiest process with py-spy for 10 s at the knee rate and prints its
top frames. Results go to ``test-artifacts/bench/e2e.json``; ``bench/plot_e2e.py`` draws
``docs/img/e2e.png`` from them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from loadtest import target as t  # noqa: E402
from loadtest.receiver import Receiver, serve  # noqa: E402
from loadtest.run import start_suite  # noqa: E402
from tests.support.processes import free_port  # noqa: E402

OUT = ROOT / "test-artifacts" / "bench"
CLK_TCK = os.sysconf("SC_CLK_TCK")
INFLIGHT_MAX = 400  # the generator never has more POSTs open than this (bounded)
BODY_TEMPLATE = {
    "currency": "EUR",
    "beneficiary": {
        "name": "Bench Beneficiary",
        "account_number": "GB29NWBK60161331926819",
        "bank_code": "NRTHGB2L",
    },
}


def cpu_s(pid: int) -> float:
    """utime + stime of one process (seconds); 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


# ----------------------------------------------------------------------------- baseline


def serve_baseline(port: int) -> None:
    async def echo(request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response({"id": uuid.uuid4().hex, "amount": body["amount"]}, status=201)

    app = web.Application()
    app.router.add_post("/echo", echo)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


async def closed_loop(url: str, seconds: float, concurrency: int) -> tuple[int, list[float]]:
    """As many requests as ``concurrency`` clients can make in ``seconds``."""
    done = 0
    latencies: list[float] = []
    stop = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def worker() -> None:
            nonlocal done
            while time.monotonic() < stop:
                began = time.perf_counter()
                async with http.post(url, json={"amount": 1234, **BODY_TEMPLATE}) as resp:
                    await resp.read()
                    assert resp.status == 201
                latencies.append(time.perf_counter() - began)
                done += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done, latencies


async def baseline(seconds: float) -> dict[str, Any]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--serve-baseline", str(port)], cwd=ROOT)
    try:
        url = f"http://127.0.0.1:{port}/echo"
        async with aiohttp.ClientSession() as http:
            for _ in range(100):  # start-up, bounded
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.post(url, json={"amount": 1}) as resp:
                        if resp.status == 201:
                            break
                await asyncio.sleep(0.05)
        cpu0 = cpu_s(proc.pid)
        began = time.monotonic()
        done, latencies = await closed_loop(url, seconds, 32)
        elapsed = time.monotonic() - began
        cpu = cpu_s(proc.pid) - cpu0
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
    return {
        "requests_per_s": done / elapsed,
        "p50_ms": pct(latencies, 0.5) * 1000,
        "p99_ms": pct(latencies, 0.99) * 1000,
        "cpu_s_per_1000": cpu / done * 1000 if done else float("nan"),
    }


# ----------------------------------------------------------------------------- the suite


async def pg_backends(dsn: str, prefix: str) -> list[int]:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname LIKE $1",
            prefix.replace("_", "\\_") + "%",
        )
    finally:
        await conn.close()
    return [int(r["pid"]) for r in rows]


async def pg_waits(dsn: str, prefix: str, stop: asyncio.Event) -> Counter[str]:
    """Sampled every 100 ms while a step runs: what this run's PostgreSQL backends are doing
    (database, state, wait event) — where the time goes when CPU is not the limit."""
    import asyncpg

    seen: Counter[str] = Counter()
    conn = await asyncpg.connect(dsn)
    try:
        while not stop.is_set():
            rows = await conn.fetch(
                """SELECT datname, state, wait_event_type, wait_event, left(query, 60) AS q
                   FROM pg_stat_activity WHERE datname LIKE $1 AND state <> 'idle'""",
                prefix.replace("_", "\\_") + "%",
            )
            for r in rows:
                db = r["datname"][len(prefix) :]
                seen[f"{db} {r['state']} {r['wait_event_type']}:{r['wait_event']} {r['q']}"] += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.1)
    finally:
        await conn.close()
    return seen


async def pg_commits(dsn: str, prefix: str) -> dict[str, int]:
    """Committed transactions so far, per service database of this run."""
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT datname, xact_commit FROM pg_stat_database WHERE datname LIKE $1",
            prefix.replace("_", "\\_") + "%",
        )
    finally:
        await conn.close()
    return {r["datname"][len(prefix) :]: int(r["xact_commit"]) for r in rows}


class Step:
    def __init__(self, rate: float, seconds: float) -> None:
        self.rate = rate
        self.seconds = seconds
        self.sent: dict[str, float] = {}  # payout id -> send time (monotonic)
        self.api_latencies: list[float] = []
        self.errors: Counter[str] = Counter()
        self.skipped = 0  # not offered: the in-flight bound was reached


async def offer(
    http: aiohttp.ClientSession, tgt: t.Target, merchants: list[t.Merchant], step: Step
) -> tuple[float, float]:
    """Open loop: one POST every 1/rate seconds, whatever the answers do."""
    inflight = 0
    tasks: set[asyncio.Task[None]] = set()

    async def one(n: int) -> None:
        nonlocal inflight
        m = merchants[n % len(merchants)]
        body = {**BODY_TEMPLATE, "amount": 1_000 + n % 5_000, "reference": uuid.uuid4().hex}
        began = time.monotonic()
        try:
            async with http.post(
                f"{tgt.payout_url}/v1/payouts",
                json=body,
                headers={"Authorization": f"Bearer {m.key}", "Idempotency-Key": uuid.uuid4().hex},
            ) as resp:
                data = await resp.json(content_type=None)
                if resp.status == 201:
                    step.sent[data["id"]] = began
                    step.api_latencies.append(time.monotonic() - began)
                else:
                    step.errors[f"HTTP {resp.status} {data.get('code')}"] += 1
        except (aiohttp.ClientError, TimeoutError) as exc:
            step.errors[type(exc).__name__] += 1
        finally:
            inflight -= 1

    start = time.monotonic()
    total = int(step.rate * step.seconds)
    for n in range(total):
        due = start + n / step.rate
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if inflight >= INFLIGHT_MAX:
            step.skipped += 1
            continue
        inflight += 1
        task = asyncio.create_task(one(n))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    end = time.monotonic()
    if tasks:
        await asyncio.wait(tasks, timeout=60)
    return start, end


async def run_step(
    http: aiohttp.ClientSession,
    tgt: t.Target,
    merchants: list[t.Merchant],
    receiver: Receiver,
    pids: dict[str, int],
    pg: tuple[str, str],
    step: Step,
    drain_s: float,
) -> dict[str, Any]:
    backends0 = await pg_backends(*pg)
    commits0 = await pg_commits(*pg)
    cpu0 = {name: cpu_s(pid) for name, pid in pids.items()}
    pg0 = {pid: cpu_s(pid) for pid in backends0}
    stop_sampling = asyncio.Event()
    sampler = asyncio.create_task(pg_waits(*pg, stop_sampling))
    start, end = await offer(http, tgt, merchants, step)
    stop_sampling.set()
    waits = await sampler
    half = start + (end - start) / 2
    paid = receiver.delivered("payout.paid")
    in_window = sum(1 for d in paid.values() if half <= d.received_at <= end)
    achieved = in_window / (end - half)
    # Let the step's payouts finish (bounded) so latencies are complete and the next step starts
    # from an empty pipeline.
    deadline = time.monotonic() + drain_s
    while time.monotonic() < deadline:
        paid = receiver.delivered("payout.paid")
        if all(pid in paid for pid in step.sent):
            break
        await asyncio.sleep(0.2)
    cpu = {name: cpu_s(pid) - cpu0[name] for name, pid in pids.items()}
    backends1 = await pg_backends(*pg)
    commits1 = await pg_commits(*pg)
    pg_cpu = sum(cpu_s(p) - pg0.get(p, 0.0) for p in set(backends0) | set(backends1))
    e2e = [paid[pid].received_at - sent for pid, sent in step.sent.items() if pid in paid]
    completed = len(e2e)
    return {
        "offered_per_s": step.rate,
        "achieved_per_s": round(achieved, 1),
        "accepted": len(step.sent),
        "completed": completed,
        "unfinished_after_drain": len(step.sent) - completed,
        "skipped_inflight_bound": step.skipped,
        "errors": dict(step.errors),
        "e2e_p50_ms": round(pct(e2e, 0.5) * 1000),
        "e2e_p99_ms": round(pct(e2e, 0.99) * 1000) if completed == len(step.sent) else None,
        "api_p50_ms": round(pct(step.api_latencies, 0.5) * 1000),
        "api_p99_ms": round(pct(step.api_latencies, 0.99) * 1000),
        "cpu_s": {k: round(v, 2) for k, v in cpu.items()},
        "cpu_s_per_1000": round(sum(cpu.values()) / completed * 1000, 1) if completed else None,
        "pg_cpu_s_per_1000": round(pg_cpu / completed * 1000, 1) if completed else None,
        "generator_cpu_s": None,
        "pg_busy_samples_top": waits.most_common(8),
        # pg_stat_database counts every commit, the sampler's and the relays' polls included.
        "pg_commits_per_payout": {
            db: round((n - commits0.get(db, 0)) / completed, 1)
            for db, n in sorted(commits1.items())
            if completed
        },
    }


def profile(pid: int, seconds: int, out: Path) -> list[tuple[str, float, float]]:
    """py-spy for ``seconds`` on ``pid``: (frame, self share, inclusive share), top 15."""
    raw = out.with_suffix(".txt")
    subprocess.run(
        [
            str(Path(sys.executable).with_name("py-spy")),
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(seconds),
            "--rate",
            "200",
            "--format",
            "raw",
            "--output",
            str(raw),
            "--nonblocking",
        ],
        check=True,
        capture_output=True,
        timeout=seconds + 30,
    )
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        count = int(n)
        frames = stack.split(";")
        total += count
        own[frames[-1]] += count
        for f in set(frames):
            inclusive[f] += count
    top = [(f, own[f] / total, inclusive[f] / total) for f, _ in own.most_common(15)]
    return top


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    OUT.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"cores": os.cpu_count(), "steps": [], "log_level": args.log_level}
    print("baseline: bare aiohttp request/response ...", flush=True)
    result["baseline"] = await baseline(5.0)
    print(f"  {result['baseline']}", flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    servers: list[Any] = []
    urls: dict[str, Any] = {}
    if args.own_servers:
        # Our own PostgreSQL and RabbitMQ: no other test's connections or queries in the way.
        from tests.chaos.servers import OwnPostgres, OwnRabbit

        servers = [OwnPostgres(workdir).start(), OwnRabbit(workdir).start()]
        urls = {"database_url": servers[0].url, "amqp_url": servers[1].url}
    try:
        suite, tgt = start_suite(
            workdir,
            "bench",
            common_env={"LOG_LEVEL": args.log_level, "DB_POOL_MAX": "20"},
            **urls,
        )
    except BaseException:
        for server in servers:
            server.stop()
        raise
    result["own_servers"] = bool(servers)
    receiver = Receiver()
    port = free_port()
    runner = await serve(receiver, "127.0.0.1", port)
    try:
        pids = suite.pids()
        pg = (suite.spec.database_url, suite.spec.db_prefix)
        timeout = aiohttp.ClientTimeout(total=60)
        connector = aiohttp.TCPConnector(limit=INFLIGHT_MAX)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:
            merchants = [
                await t.create_merchant(
                    http, tgt, f"http://127.0.0.1:{port}", funds_minor=10**11, name=f"Bench {i}"
                )
                for i in range(args.merchants)
            ]
            for m in merchants:
                receiver.secrets[m.id] = m.webhook_secret
            # Warm-up: connections, caches, the router's health windows.
            await run_step(http, tgt, merchants, receiver, pids, pg, Step(5, 4), 30)
            knee: dict[str, Any] | None = None
            for rate in args.rates:
                gen0 = time.process_time()
                row = await run_step(
                    http, tgt, merchants, receiver, pids, pg, Step(rate, args.step_s), args.drain_s
                )
                row["generator_cpu_s"] = round(time.process_time() - gen0, 2)
                result["steps"].append(row)
                print(json.dumps(row), flush=True)
                healthy = (
                    row["achieved_per_s"] >= 0.9 * rate
                    and not row["errors"]
                    and row["unfinished_after_drain"] == 0
                )
                if healthy:
                    knee = row
                elif knee is not None or row["achieved_per_s"] < 0.7 * rate:
                    break  # past the knee: one saturated step is enough
            result["knee"] = knee
            if args.profile and knee is not None:
                busiest = max(result["steps"][-1]["cpu_s"].items(), key=lambda kv: kv[1])[0]
                print(f"profiling {busiest} at {knee['offered_per_s']}/s ...", flush=True)
                step = Step(knee["offered_per_s"], 14)
                task = asyncio.create_task(
                    run_step(http, tgt, merchants, receiver, pids, pg, step, args.drain_s)
                )
                await asyncio.sleep(2)
                top = await asyncio.to_thread(
                    profile, pids[busiest], 10, OUT / f"pyspy-{busiest}.raw"
                )
                await task
                result["profile"] = {"process": busiest, "top": top}
    finally:
        await runner.cleanup()
        suite.stop()
        if servers:
            for server in servers:
                server.stop()
        else:
            await suite.acleanup()
    return result


def report(result: dict[str, Any]) -> None:
    base = result["baseline"]
    print("\n== end to end ==")
    print(
        f"{'offered/s':>9} {'paid/s':>7} {'e2e p50':>8} {'e2e p99':>8} {'api p99':>8}"
        f" {'cpu-s/1k':>9} {'pg cpu-s/1k':>11}  errors"
    )
    for r in result["steps"]:
        print(
            f"{r['offered_per_s']:>9} {r['achieved_per_s']:>7} {r['e2e_p50_ms']:>8}"
            f" {r['e2e_p99_ms'] if r['e2e_p99_ms'] is not None else 'n/a':>8}"
            f" {r['api_p99_ms']:>8} {r['cpu_s_per_1000']!s:>9} {r['pg_cpu_s_per_1000']!s:>11}"
            f"  {r['errors'] or ''}"
        )
    knee = result.get("knee")
    print(
        f"baseline bare aiohttp: {base['requests_per_s']:.0f} req/s,"
        f" p50 {base['p50_ms']:.1f} ms, {base['cpu_s_per_1000']:.2f} CPU-s/1k"
    )
    if knee:
        print(
            f"knee: {knee['achieved_per_s']} payouts/s (offered {knee['offered_per_s']}/s),"
            f" e2e p50 {knee['e2e_p50_ms']} ms p99 {knee['e2e_p99_ms']} ms,"
            f" {knee['cpu_s_per_1000']} CPU-s per 1,000 payouts (suite processes)"
        )
        print(
            f"ratio payouts/s : bare aiohttp req/s = 1 : "
            f"{base['requests_per_s'] / max(knee['achieved_per_s'], 0.1):.0f}"
        )
    if "profile" in result:
        print(f"py-spy, {result['profile']['process']} (self share, inclusive share):")
        for frame, own, incl in result["profile"]["top"]:
            print(f"  {own:6.1%} {incl:6.1%}  {frame[:150]}")


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--serve-baseline":
        serve_baseline(int(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[5, 10, 20, 30, 45, 65, 90])
    parser.add_argument("--step-s", type=float, default=12.0)
    parser.add_argument("--drain-s", type=float, default=30.0)
    parser.add_argument("--merchants", type=int, default=8)
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument(
        "--shared-servers",
        dest="own_servers",
        action="store_false",
        help="use the machine's PostgreSQL/RabbitMQ instead of starting throw-away ones",
    )
    args = parser.parse_args()
    assert all(0 < r <= 2_000 for r in args.rates) and 0 < args.step_s <= 120
    result = asyncio.run(bench(args))
    (OUT / "e2e.json").write_text(json.dumps(result, indent=2))
    report(result)
    print(f"results: {OUT / 'e2e.json'}; plot: python bench/plot_e2e.py")


if __name__ == "__main__":
    main()
