"""Ledger throughput against this machine's per-commit ceiling (``make bench-ledger``).

Method (printed with the results; see docs/PERFORMANCE.md):
1. Baseline: C concurrent asyncpg connections, each committing one INSERT per transaction
   (synchronous_commit on) for a fixed time: the disk's commits/s at that concurrency.
2. The real ledger process (``python -m services.ledger``, started here on a free port with a
   throw-away database) with H hot and K cold accounts, driven by C concurrent keep-alive HTTP
   clients through a minimal HTTP/1.1 client (so the load generator costs less CPU than the
   service on a shared 2-core box):
   - batch API: requests of B transfers (hot → cold and cold → hot), transfers/s;
   - single-transfer requests, transfers/s;
   - TCC try + confirm pairs (a hot merchant holds towards a cold account), pairs/s.
   p50/p99 are per request (per pair for TCC).
3. Afterwards: GET /v1/verify must report the chain intact, every account's counters equal to
   the fold of its transfers and every currency balanced, and the number of transfers must be
   exactly what the clients were told was created. Any failure exits non-zero.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from services.kit import db  # noqa: E402
from services.ledger.adapters.roles import drop_app_role  # noqa: E402

TOKEN = "bench-service-token-0123456789"


def percentile(samples: list[float], q: float) -> float:
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class Result:
    name: str
    unit: str
    count: int
    seconds: float
    latencies_s: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0

    def line(self, baseline: float | None) -> str:
        ratio = f"{self.rate / baseline:6.2f}x" if baseline else "   1.00x"
        return (
            f"{self.name:<34} {self.rate:>10,.0f} {self.unit:<12} "
            f"p50 {percentile(self.latencies_s, 0.5) * 1000:7.2f} ms  "
            f"p99 {percentile(self.latencies_s, 0.99) * 1000:7.2f} ms  {ratio}"
        )


class Http:
    """Keep-alive HTTP/1.1 over one socket; enough for aiohttp's Content-Length replies."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> Http:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        return self

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        assert self.reader is not None and self.writer is not None
        self.writer.write(
            b"POST %s HTTP/1.1\r\nHost: ledger\r\nX-Service-Token: %s\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (path.encode(), TOKEN.encode(), len(body), body)
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        lowered = head.lower()
        start = lowered.index(b"content-length:") + 15
        length = int(lowered[start : lowered.index(b"\r\n", start)])
        return status, await self.reader.readexactly(length)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def baseline(dsn: str, clients: int, seconds: float) -> Result:
    setup = await asyncpg.connect(dsn)
    await setup.execute(
        "CREATE TABLE IF NOT EXISTS bench_baseline (id bigserial PRIMARY KEY, payload text)"
    )
    await setup.close()
    # The server is shared: take up to ``clients`` connections, as many as it will give.
    conns: list[asyncpg.Connection] = []
    try:
        while len(conns) < clients:
            conns.append(await asyncpg.connect(dsn))
    except asyncpg.TooManyConnectionsError:
        for extra in conns[-8:]:  # leave room for the ledger and everyone else
            await extra.close()
        conns = conns[:-8]
        assert conns, "PostgreSQL has no connection slots left for the baseline"
    latencies: list[float] = []
    count = 0
    deadline = time.perf_counter() + seconds

    async def worker(conn: asyncpg.Connection) -> None:
        nonlocal count
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            await conn.execute("INSERT INTO bench_baseline (payload) VALUES ($1)", "x" * 64)
            latencies.append(time.perf_counter() - started)
            count += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in conns))
    elapsed = time.perf_counter() - started
    for c in conns:
        await c.close()
    name = f"baseline: 1 INSERT/commit x{len(conns)}"
    return Result(name, "commits/s", count, elapsed, latencies)


async def drive(
    port: int,
    clients: int,
    seconds: float,
    name: str,
    unit: str,
    step,  # async (http, client_index, iteration) -> (units_done, latency_s)
) -> Result:
    conns = [await Http(port).open() for _ in range(clients)]
    latencies: list[float] = []
    count = 0
    deadline = time.perf_counter() + seconds

    async def worker(index: int, http: Http) -> None:
        nonlocal count
        iteration = 0
        while time.perf_counter() < deadline:
            done, latency = await step(http, index, iteration)
            count += done
            latencies.append(latency)
            iteration += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker(i, c) for i, c in enumerate(conns)))
    elapsed = time.perf_counter() - started
    for c in conns:
        await c.close()
    return Result(name, unit, count, elapsed, latencies)


def get_json(port: int, path: str) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", headers={"X-Service-Token": TOKEN}
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())


def wait_ready(port: int, proc: subprocess.Popen, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"ledger exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit("ledger not ready")


async def run(args: argparse.Namespace) -> int:
    database_url = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    tag = secrets.token_hex(3)
    prefix = f"bench_{tag}_"
    role = f"bench_{tag}_ledger_app"
    owner_dsn = db.service_dsn(database_url, prefix, "ledger")
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "DB_NAME_PREFIX": prefix,
        # The ledger publishes its alerts; a throw-away prefix whose queues expire.
        "AMQP_PREFIX": f"bench.{tag}",
        "AMQP_QUEUE_EXPIRES_MS": "60000",
        "LEDGER_DB_APP_ROLE": role,
        "LEDGER_PORT": str(port),
        "SERVICE_TOKEN": TOKEN,
        "LOG_LEVEL": "info",
        "LOG_FORMAT": "json",
        "DB_POOL_MAX": "4",
        "LEDGER_WRITER_LINGER_US": str(args.linger_us),
        "PYTHONUNBUFFERED": "1",
    }
    log_path = ROOT / "test-artifacts" / "logs" / f"bench-ledger-{tag}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "services.ledger"], cwd=ROOT, env=env, stdout=log, stderr=log
        )
    failures: list[str] = []
    try:
        wait_ready(port, proc)
        clients, seconds = args.clients, args.seconds
        print(
            f"ledger bench: {clients} clients, {args.hot} hot + {args.cold} cold accounts,"
            f" {seconds:.0f} s per phase, batch {args.batch} transfers/request,"
            f" {os.cpu_count()} CPUs"
        )
        base = await baseline(owner_dsn, clients, seconds)

        hot = [f"hot{i}" for i in range(args.hot)]
        cold = [f"cold{i}" for i in range(args.cold)]
        setup = await Http(port).open()

        async def create_accounts(ids: list[str], flags: dict) -> None:
            http = await Http(port).open()
            for account_id in ids:
                status, body = await http.post(
                    "/v1/accounts",
                    json.dumps({"id": account_id, "currency": "EUR", "flags": flags}).encode(),
                )
                assert status in (200, 201), body
            await http.close()

        chunks = [cold[i::clients] for i in range(clients)]
        await asyncio.gather(*(create_accounts(c, {}) for c in chunks if c))
        await create_accounts(hot, {"debits_must_not_exceed_credits": True})
        await create_accounts(["funding"], {})
        status, body = await setup.post(
            "/v1/transfers",
            json.dumps(
                {
                    "transfers": [
                        {
                            "id": f"fund-{h}",
                            "debit_account_id": "funding",
                            "credit_account_id": h,
                            "amount_minor": 10**15,
                            "currency": "EUR",
                        }
                        for h in hot
                    ]
                }
            ).encode(),
        )
        assert status == 200 and b"rejected" not in body, body
        await setup.close()

        created = {"batch": 0, "single": 0, "tcc": 0}
        rng = random.Random(7)

        def transfer(tid: str) -> dict:
            h, c = rng.choice(hot), rng.choice(cold)
            debit, credit = (h, c) if rng.random() < 0.5 else (c, h)
            return {
                "id": tid,
                "debit_account_id": debit,
                "credit_account_id": credit,
                "amount_minor": rng.randint(1, 10_000),
                "currency": "EUR",
            }

        async def batch_step(http: Http, index: int, iteration: int) -> tuple[int, float]:
            body = json.dumps(
                {"transfers": [transfer(f"b{index}-{iteration}-{k}") for k in range(args.batch)]}
            ).encode()
            started = time.perf_counter()
            status, reply = await http.post("/v1/transfers", body)
            latency = time.perf_counter() - started
            assert status == 200, reply
            done = reply.count(b'"created"')
            created["batch"] += done
            return done, latency

        async def single_step(http: Http, index: int, iteration: int) -> tuple[int, float]:
            body = json.dumps({"transfers": [transfer(f"s{index}-{iteration}")]}).encode()
            started = time.perf_counter()
            status, reply = await http.post("/v1/transfers", body)
            latency = time.perf_counter() - started
            assert status == 200 and b'"created"' in reply, reply
            created["single"] += 1
            return 1, latency

        async def tcc_step(http: Http, index: int, iteration: int) -> tuple[int, float]:
            gid = f"g{index}-{iteration}"
            body = json.dumps(
                {
                    "legs": [
                        {
                            "debit_account_id": hot[(index + iteration) % len(hot)],
                            "credit_account_id": rng.choice(cold),
                            "amount_minor": rng.randint(1, 10_000),
                            "currency": "EUR",
                        }
                    ]
                }
            ).encode()
            started = time.perf_counter()
            status, reply = await http.post(f"/v1/tcc/{gid}/ledger/try", body)
            assert status == 200, reply
            status, reply = await http.post(f"/v1/tcc/{gid}/ledger/confirm", b"{}")
            assert status == 200, reply
            created["tcc"] += 2
            return 1, time.perf_counter() - started

        batch = await drive(
            port, clients, seconds, f"batch API ({args.batch}/request)", "transfers/s", batch_step
        )
        single = await drive(
            port, clients, seconds, "single-transfer requests", "transfers/s", single_step
        )
        tcc = await drive(port, clients, seconds, "TCC try+confirm", "pairs/s", tcc_step)

        print()
        print(base.line(None))
        for result in (batch, single, tcc):
            print(result.line(base.rate))

        report = get_json(port, "/v1/verify")
        expected = len(hot) + sum(created.values())
        print()
        print(
            f"invariants: chain {'ok' if report['first_bad_seq'] is None else 'BROKEN'},"
            f" counters == fold {'ok' if report['counters_ok'] else 'BROKEN'},"
            f" conservation per currency {'ok' if report['conservation_ok'] else 'BROKEN'},"
            f" transfers {report['transfers_checked']:,} (expected {expected:,})"
        )
        if not report["ok"]:
            failures.append(f"verify failed: {report}")
        if report["transfers_checked"] != expected:
            failures.append("committed transfers differ from what clients were told")
        batch_target = batch.rate >= 3 * base.rate
        tcc_target = tcc.rate >= 2_000 and percentile(tcc.latencies_s, 0.99) <= 0.050
        print(
            f"targets: batch >= 3x baseline: {'met' if batch_target else 'MISSED'};"
            f" TCC >= 2,000 pairs/s with p99 <= 50 ms: {'met' if tcc_target else 'MISSED'}"
        )
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        stats = [
            line for line in log_path.read_text(errors="replace").splitlines() if "writer" in line
        ]
        for line in stats[-1:]:
            print(f"writer: {line}")
        await db.drop_database(database_url, prefix + "ledger")
        try:
            await drop_app_role([database_url], role)
        except asyncpg.PostgresError as exc:
            print(f"note: could not drop role {role}: {exc}")
    for failure in failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    return 1 if failures else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run for tests")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--hot", type=int, default=10)
    parser.add_argument("--cold", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--linger-us", type=int, default=1_000)
    args = parser.parse_args()
    if args.quick:
        args.clients, args.seconds, args.cold, args.batch = 8, 1.0, 50, 20
    sys.exit(asyncio.run(run(args)))


if __name__ == "__main__":
    main()
