"""Ledger writer series for ``/metrics``, taken from the single writer's running totals when
scraped: batches committed, jobs and transfers in them, time spent committing, and the queue
in front of the writer; and the scheduled tamper check's state (checks run, whether the last
one found the ledger intact, the newest sequence number it verified). Mean batch size is
``rate(ledger_writer_transfers_total) / rate(ledger_writer_batches_total)``; mean commit latency is
``rate(ledger_writer_busy_seconds_total) / rate(ledger_writer_batches_total)``."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import Counter, Gauge

from services.kit.metrics import add_refresher
from services.ledger.keys import tamper_check_key, writer_key

BATCHES = Counter("ledger_writer_batches_total", "Batches committed by the writer.")
JOBS = Counter("ledger_writer_jobs_total", "Requests (jobs) committed in those batches.")
TRANSFERS = Counter("ledger_writer_transfers_total", "Transfers committed in those batches.")
BUSY_SECONDS = Counter(
    "ledger_writer_busy_seconds_total", "Time the writer spent applying and committing batches."
)
RETRIED_ALONE = Counter(
    "ledger_writer_retried_alone_total", "Jobs retried on their own after a failed batch."
)
BATCH_JOBS_MAX = Gauge("ledger_writer_batch_jobs_max", "Largest batch so far, in jobs.")
QUEUE_DEPTH = Gauge("ledger_writer_queue_depth", "Jobs waiting for the writer.")

VERIFY_RUNS = Counter("ledger_verify_runs_total", "Scheduled tamper checks completed.")
VERIFY_OK = Gauge(
    "ledger_verify_ok", "1 if the last tamper check found chain, counters and balances intact."
)
VERIFIED_SEQ = Gauge("ledger_verify_head_seq", "Newest transfer seq the last tamper check read.")

_seen_key = web.AppKey("ledger_metrics_seen", dict)


def register(app: web.Application) -> None:
    app[_seen_key] = {}

    async def ledger_writer(app: web.Application) -> None:
        writer = app[writer_key]
        stats, seen = writer.stats, app[_seen_key]
        for name, counter, value in (
            ("batches", BATCHES, stats.batches),
            ("jobs", JOBS, stats.jobs),
            ("transfers", TRANSFERS, stats.transfers),
            ("busy_s", BUSY_SECONDS, stats.busy_s),
            ("retried_alone", RETRIED_ALONE, stats.retried_alone),
        ):
            delta = value - seen.get(name, 0)
            if delta > 0:
                counter.inc(delta)
            seen[name] = value
        BATCH_JOBS_MAX.set(stats.batch_jobs_max)
        QUEUE_DEPTH.set(writer.queue.qsize())
        check = app[tamper_check_key]
        delta = check.runs - seen.get("verify_runs", 0)
        if delta > 0:
            VERIFY_RUNS.inc(delta)
        seen["verify_runs"] = check.runs
        if check.last_report is not None:
            VERIFY_OK.set(1 if check.last_report.ok else 0)
            VERIFIED_SEQ.set(check.last_report.head_seq)

    add_refresher(app, ledger_writer)
