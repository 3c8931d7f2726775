"""Reconciliation end to end vs a bare DuckDB read + join of the same files, same run.

Run: ``.venv/bin/python bench/recon.py [--lines N] [--skip-parsers]`` (``make bench-recon``).

1. Generates a CSV statement of N lines (the parsers' default CSV mapping) and N of our
   records (the router's NDJSON export format) with about 1% of every break type, plus every
   matching pass exercised (bank reference, amount + date, one-to-many batches, fee-adjusted).
2. Baseline, in a child process: DuckDB reads both files and joins them on our reference.
3. Ours, in another child process (its own peak RSS): the same intake as a dropped file
   (hash, parse, file checks, columnar copy), then the run (DuckDB passes, matches written as
   Parquet, COPY of breaks into PostgreSQL, outbox events, alerts, CSV report), into a
   throw-away database.
4. Invariants: every line and every record accounted exactly once, and the break counts equal
   the generator's answer key; the benchmark fails loudly otherwise.

Targets (issue 5): end to end <= 3x the bare join and < 15 s at 1M lines, peak RSS <= 1.5 GiB.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CHANNEL = "bench_bank"
DAY = date(2026, 11, 20)
THREADS = 2

# Every line/record i falls in one case by i % 100 (about 1% each); the rest match by our
# reference. Amounts 1000 + 7i are unique; lines unknown to us use 10^9 + 7i + 3.
CASES = {
    0: "amount_mismatch",
    1: "fee_mismatch",
    2: "duplicate_at_bank",
    3: "missing_in_ledger",
    4: "missing_at_bank",
    5: "timing",
    6: "returned",
    7: "status_mismatch",
    8: "bank_reference",
    9: "fee_adjusted",
    10: "amount_date",
    11: "unknown_paid",
    12: "one_to_many",
    13: "ambiguous_match",  # with 14: two records of one amount, one line without reference
}


def generate(n: int, workdir: Path) -> dict[str, int]:
    """Write statement.csv and records.ndjson; return the expected break counts."""
    import duckdb

    con = duckdb.connect()
    con.execute(f"SET threads = {THREADS}")
    d = DAY.isoformat()
    con.execute(
        f"""CREATE TABLE rec AS
        SELECT i, i % 100 AS k,
               'att_' || lpad(CAST(i AS VARCHAR), 10, '0') AS attempt_id,
               'po_' || CAST(i AS VARCHAR) AS payout_id,
               CASE WHEN i % 100 = 12 THEN 'batch_' || CAST(i // 1000 AS VARCHAR)
                    ELSE 'ch_main' END AS channel_id,
               CASE WHEN i % 100 IN (13, 14) THEN 1000 + 7 * (i - i % 100 + 13)
                    ELSE 1000 + 7 * i END AS amount_minor,
               25 AS fee_minor,
               CASE i % 100 WHEN 7 THEN 'failed' WHEN 11 THEN 'unknown' ELSE 'succeeded' END
                 AS status,
               CASE WHEN i % 100 = 4 THEN TIMESTAMPTZ '{d} 10:00:00+00' - INTERVAL 3 DAY
                    ELSE TIMESTAMPTZ '{d} 10:00:00+00' END AS created_at,
               CASE WHEN i % 100 = 8 THEN 'BK' || CAST(i AS VARCHAR) END AS bank_reference
        FROM range({n}) t(i) WHERE i % 100 <> 3"""
    )
    # Lines: one per record except timing / missing_at_bank / batch members / ambiguous
    # pairs, plus duplicates, returns, unknown lines, one batch line per 1000 and one line per
    # ambiguous pair.
    con.execute(
        f"""CREATE TABLE line AS
        SELECT i * 4 AS ord, 'debit' AS direction,
               CASE k WHEN 0 THEN amount_minor + 1 WHEN 9 THEN amount_minor + fee_minor
                 ELSE amount_minor END AS amount_minor,
               CASE k WHEN 1 THEN fee_minor + 5 ELSE fee_minor END AS fee_minor,
               CASE WHEN k IN (8, 9, 10) THEN '' ELSE attempt_id END AS reference,
               CASE WHEN k = 8 THEN bank_reference ELSE 'B' || CAST(i AS VARCHAR) END
                 AS bank_reference
        FROM rec WHERE k NOT IN (4, 5, 12, 13, 14)
        UNION ALL SELECT i * 4 + 1, 'debit', amount_minor, fee_minor, attempt_id,
               'D' || CAST(i AS VARCHAR) FROM rec WHERE k = 2
        UNION ALL SELECT i * 4 + 1, 'credit', amount_minor, 0, attempt_id,
               'R' || CAST(i AS VARCHAR) FROM rec WHERE k = 6
        UNION ALL SELECT i * 4, 'debit', 1000000000 + 7 * i + 3, 0, '',
               'U' || CAST(i AS VARCHAR) FROM range({n}) t(i) WHERE i % 100 = 3
        UNION ALL SELECT min(i) * 4 + 2, 'debit', sum(amount_minor), 0, '',
               'G' || channel_id FROM rec WHERE k = 12 GROUP BY channel_id
        UNION ALL SELECT min(i) * 4 + 2, 'debit', min(amount_minor), 0, '',
               'A' || CAST(min(i) AS VARCHAR) FROM rec WHERE k IN (13, 14) GROUP BY amount_minor"""
    )
    opening = 10**13
    net = con.execute(
        """SELECT sum(CASE direction WHEN 'credit' THEN amount_minor ELSE -amount_minor END)
                  - sum(fee_minor) FROM line"""
    ).fetchone()[0]
    closing = opening + int(net)
    csv_path = workdir / "statement.csv"
    header = "type,date,value_date,amount,direction,currency,reference,bank_reference,fee"
    money = "printf('%d.%02d', {0} // 100, {0} % 100)"
    con.execute(
        f"""COPY (
          SELECT line FROM (
            SELECT -1 AS ord, 'opening,{d},,{opening // 100}.{opening % 100:02d},,EUR,,,'
              AS line
            UNION ALL
            SELECT ord, 'txn,{d},{d},' || {money.format("amount_minor")} || ',' || direction
                   || ',EUR,' || reference || ',' || bank_reference || ','
                   || {money.format("fee_minor")}
            FROM line
            UNION ALL
            SELECT 9223372036854775807, 'closing,{d},,{closing // 100}.{closing % 100:02d},,EUR,,,'
          ) ORDER BY ord
        ) TO '{csv_path}' (FORMAT csv, HEADER false, DELIMITER '|')"""
    )
    body = csv_path.read_bytes()
    csv_path.write_bytes(header.encode() + b"\n" + body)
    con.execute(
        f"""COPY (SELECT attempt_id, payout_id, '{CHANNEL}' AS bank, channel_id, amount_minor,
                  'EUR' AS currency, fee_minor, status, created_at, NULL AS resolved_at,
                  bank_reference FROM rec)
            TO '{workdir / "records.ndjson"}' (FORMAT json)"""
    )
    lines = con.execute("SELECT count(*) FROM line").fetchone()[0]
    records = con.execute("SELECT count(*) FROM rec").fetchone()[0]
    per_k = dict(con.execute("SELECT k, count(*) FROM rec GROUP BY k").fetchall())
    unknown = con.execute(f"SELECT count(*) FROM range({n}) t(i) WHERE i % 100 = 3").fetchone()[0]
    ambiguous_lines = con.execute(
        "SELECT count(DISTINCT amount_minor) FROM rec WHERE k IN (13, 14)"
    ).fetchone()[0]
    expected = {
        "amount_mismatch": per_k.get(0, 0),
        "fee_mismatch": per_k.get(1, 0),
        "duplicate_at_bank": per_k.get(2, 0),
        "missing_in_ledger": unknown,
        "missing_at_bank": per_k.get(4, 0),
        "timing": per_k.get(5, 0) + per_k.get(13, 0) + per_k.get(14, 0),
        "returned": per_k.get(6, 0),
        "status_mismatch": per_k.get(7, 0),
        "ambiguous_match": ambiguous_lines,
    }
    meta = {"lines": lines, "records": records, "expected_breaks": expected}
    (workdir / "meta.json").write_text(json.dumps(meta))
    return meta


def baseline(workdir: Path) -> dict[str, float]:
    """The bare engine: read both files and join them on our reference."""
    import duckdb

    started, cpu0 = time.perf_counter(), _cpu_s()
    con = duckdb.connect()
    con.execute(f"SET threads = {THREADS}")
    joined, _amount = con.execute(
        f"""SELECT count(*), sum(r.amount_minor) FROM read_csv('{workdir / "statement.csv"}',
                  header = true, all_varchar = true) l
            JOIN read_json('{workdir / "records.ndjson"}', format = 'newline_delimited') r
              ON r.attempt_id = l.reference"""
    ).fetchall()[0]
    elapsed = time.perf_counter() - started
    return {
        "seconds": elapsed,
        "cpu_s": _cpu_s() - cpu0,
        "joined": joined,
        "peak_rss_mib": _peak_rss_mib(),
    }


def baseline_polars(workdir: Path) -> dict[str, float]:
    """The same read + join in polars (the other engine considered for the passes)."""
    import polars as pl

    started = time.perf_counter()
    lines = pl.scan_csv(workdir / "statement.csv", infer_schema=False)
    records = pl.scan_ndjson(workdir / "records.ndjson")
    joined, _amount = (
        lines.join(records, left_on="reference", right_on="attempt_id")
        .select(pl.len(), pl.col("amount_minor").sum())
        .collect()
        .row(0)
    )
    elapsed = time.perf_counter() - started
    return {"seconds": elapsed, "joined": joined, "peak_rss_mib": _peak_rss_mib()}


def ours(workdir: Path) -> dict[str, object]:
    from services.kit import db, migrations
    from services.recon.adapters.parsing import default_parser
    from services.recon.adapters.records import FileRecords
    from services.recon.domain.rules import load_rules
    from services.recon.handlers import ReconService
    from services.recon.settings import from_env

    prefix = f"bench{os.getpid()}_"
    settings = from_env(
        {
            **{k: v for k, v in os.environ.items() if k in ("DATABASE_URL", "AMQP_URL")},
            "DB_NAME_PREFIX": prefix,
            "RECON_DROP_DIR": str(workdir / "drop"),
            "RECON_DATA_DIR": str(workdir / "data"),
            "RECON_DUCKDB_THREADS": str(THREADS),
            "LOG_LEVEL": "warning",
        }
    )
    rules = load_rules(
        {
            "channels": {
                CHANNEL: {
                    "window_days": 2,
                    "one_to_many_group_by": ["currency", "record_date", "channel_id"],
                }
            }
        }
    )

    rss_timeline, rss_t0 = _sample_rss(interval_s=2.0)

    async def go() -> dict[str, object]:
        from services.kit.logging import configure_logging

        configure_logging("recon-bench", fmt="console", level="warning")
        await db.ensure_database(settings.database_url, prefix + "recon")
        dsn = db.service_dsn(settings.database_url, prefix, "recon")
        await migrations.apply(dsn, ROOT / "services" / "recon" / "migrations")
        pool = await db.create_pool(dsn, max_size=2)
        try:
            service = ReconService(
                pool, settings, rules, FileRecords(workdir / "records.ndjson"), default_parser()
            )
            started, cpu0 = time.perf_counter(), _cpu_s()
            received = await service.receive_file(
                CHANNEL, "statement.csv", workdir / "statement.csv", source="cli"
            )
            intake_s = time.perf_counter() - started
            assert received.status == "accepted", received
            outcome = await service.run_day(CHANNEL, DAY)
            total_s = time.perf_counter() - started
            cpu_s = _cpu_s() - cpu0
            import duckdb

            matches_path = await pool.fetchval(
                "SELECT matches_path FROM recon_runs WHERE run_id = $1", outcome.run_id
            )
            counts = {
                "parquet_matches": duckdb.connect()
                .execute(f"SELECT count(*) FROM read_parquet('{matches_path}')")
                .fetchone()[0],
                "db_breaks": await pool.fetchval(
                    "SELECT count(*) FROM recon_breaks WHERE run_id = $1", outcome.run_id
                ),
            }
            return {
                "seconds": total_s,
                "cpu_s": cpu_s,
                "intake_s": intake_s,
                "run_timings_s": outcome.timings_s,
                "summary": outcome.summary,
                "peak_rss_mib": _peak_rss_mib(),
                "intake_end_s": started + intake_s - rss_t0,
                "rss_timeline": rss_timeline,
                **counts,
            }
        finally:
            await pool.close()
            await db.drop_database(settings.database_url, prefix + "recon")

    return asyncio.run(go())


def _cpu_s() -> float:
    """CPU seconds of this process, all threads (DuckDB's included): what the work cost,
    whatever share of the machine other processes took meanwhile."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _sample_rss(interval_s: float) -> tuple[list[tuple[float, int]], float]:
    """(seconds since start, RSS MiB) every ``interval_s`` from a daemon thread: shows whether
    memory grows with the file, not just its peak."""
    import threading

    samples: list[tuple[float, int]] = []
    start = time.perf_counter()

    def sample() -> None:
        while True:
            pages = int(Path("/proc/self/statm").read_text().split()[1])
            samples.append((round(time.perf_counter() - start, 1), pages * 4096 >> 20))
            time.sleep(interval_s)

    threading.Thread(target=sample, daemon=True).start()
    return samples, start


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(step: str, workdir: Path) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--step", step, "--workdir", str(workdir)],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def check(meta: dict, result: dict) -> list[str]:
    """The invariants; a non-empty list is a failed benchmark."""
    problems = []
    summary = result["summary"]
    if summary["line_count"] != meta["lines"]:
        problems.append(f"lines {summary['line_count']} != {meta['lines']}")
    if summary["record_count"] != meta["records"]:
        problems.append(f"records {summary['record_count']} != {meta['records']}")
    breaks = {code: v["count"] for code, v in summary["breaks"].items()}
    expected = {k: v for k, v in meta["expected_breaks"].items() if v}
    if breaks != expected:
        problems.append(f"breaks {breaks} != expected {expected}")
    line_breaks = sum(
        v["count"] for c, v in summary["breaks"].items() if c not in ("timing", "missing_at_bank")
    )
    # Timing breaks here are record-only (no line); every line is matched or in a line break.
    if summary["matched_lines"] + line_breaks != summary["line_count"]:
        problems.append("lines not accounted exactly once")
    match_rows = sum(v["records"] for v in summary["passes"].values())
    if result["parquet_matches"] != match_rows:
        problems.append(f"matches in Parquet {result['parquet_matches']} != {match_rows}")
    if result["db_breaks"] != summary["break_count"]:
        problems.append(f"breaks in PostgreSQL {result['db_breaks']} != {summary['break_count']}")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--skip-parsers", action="store_true", help="skip MT940/camt throughput")
    parser.add_argument(
        "--step", choices=("generate", "baseline", "polars", "ours"), help=argparse.SUPPRESS
    )
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:
        result = {
            "generate": lambda: generate(args.lines, args.workdir),
            "baseline": lambda: baseline(args.workdir),
            "polars": lambda: baseline_polars(args.workdir),
            "ours": lambda: ours(args.workdir),
        }[args.step]()
        print(json.dumps(result, default=str))
        return

    with tempfile.TemporaryDirectory(prefix="bench-recon-") as tmp:
        workdir = Path(tmp)
        subprocess.run(
            [
                sys.executable,
                __file__,
                "--step",
                "generate",
                "--workdir",
                str(workdir),
                "--lines",
                str(args.lines),
            ],
            check=True,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
        )
        meta = json.loads((workdir / "meta.json").read_text())
        base = min((_child("baseline", workdir) for _ in range(3)), key=lambda r: r["seconds"])
        polars_base = min((_child("polars", workdir) for _ in range(3)), key=lambda r: r["seconds"])
        if polars_base["joined"] != base["joined"]:
            problems_engines = [f"engines disagree: {polars_base['joined']} != {base['joined']}"]
        else:
            problems_engines = []
        result = _child("ours", workdir)
        problems = check(meta, result) + problems_engines
        ratio = result["seconds"] / base["seconds"]
        print(
            f"reconciliation of {meta['lines']:,} statement lines vs {meta['records']:,} records"
            f" ({THREADS} DuckDB threads)"
        )
        print(
            f"  bare DuckDB read + join (best of 3): {base['seconds']:7.2f} s"
            f"   (CPU {base['cpu_s']:.2f} s)"
        )
        print(
            f"  bare polars read + join (best of 3): {polars_base['seconds']:7.2f} s"
            f"   (peak {polars_base['peak_rss_mib']:.0f} MiB vs DuckDB {base['peak_rss_mib']:.0f})"
        )
        print(
            f"  recon end to end:                    {result['seconds']:7.2f} s"
            f"   ratio {ratio:.1f}x (target <= 3x, < 15 s)"
        )
        print(
            f"  CPU seconds (all threads; PostgreSQL's own work not included): ours"
            f" {result['cpu_s']:.2f} s vs bare join {base['cpu_s']:.2f} s,"
            f" ratio {result['cpu_s'] / base['cpu_s']:.1f}x"
        )
        print(f"    intake (hash, parse, checks, columnar copy): {result['intake_s']:.2f} s")
        for stage, seconds in result["run_timings_s"].items():
            print(f"    run {stage}: {seconds:.2f} s")
        print(
            f"  peak RSS: ours {result['peak_rss_mib']:.0f} MiB (target <= 1536),"
            f" bare join {base['peak_rss_mib']:.0f} MiB"
        )
        print(
            f"  RSS MiB over time (s: MiB; intake ended at {result['intake_end_s']:.0f} s): "
            + " ".join(f"{t:.0f}:{m}" for t, m in result["rss_timeline"])
        )
        summary = result["summary"]
        print(f"  matched lines {summary['matched_lines']:,}, breaks {summary['break_count']:,}")
        for code, figures in summary["breaks"].items():
            print(f"    {code:<18} {figures['count']:>8,}")
        if not args.skip_parsers:
            sys.path.insert(0, str(ROOT / "bench"))
            from recon_parsers import measure

            for row in measure(min(args.lines, 200_000), repeat=1):
                print(
                    f"  parse {row['format']:<8} {row['lines_per_s']:>10,} lines/s"
                    f" (target >= {row['target_lines_per_s']:,})"
                )
        if problems:
            print("INVARIANTS BROKEN:\n  " + "\n  ".join(problems))
            sys.exit(1)
        print("invariants: every line and record accounted once; breaks equal the answer key")


if __name__ == "__main__":
    main()
