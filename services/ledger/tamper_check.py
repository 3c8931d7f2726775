"""The scheduled tamper check: ``verify`` on a timer, and an alert on the first bad link.

The first check after start-up re-hashes the whole chain; later ones continue from the last
transfer a run found intact (after making sure that transfer still carries the hash it had),
and every ``full_every``-th one re-hashes everything again, because an edit to an older row
that keeps its stored hash is only visible to a full pass. Counters and conservation are
checked over the whole table every time (``adapters.verify``).

A broken link raises ``ledger.alert`` (code ``ledger_chain_broken``, critical) through the
outbox, so the alert survives a broker outage; the relay publishes it with confirms and recon
stores it in the suite's one alert list. The alert is named after the link
(``lga_<seq>``), so every repeat — later checks, a restarted process — lands on the same
open alert in recon; this process also enqueues a given link only once.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime

import asyncpg

from services.kit import outbox
from services.kit.logging import get_logger
from services.ledger.adapters.verify import VerifyReport, verify

log = get_logger(__name__)

LEDGER_ALERT_EVENT = "ledger.alert"
CHAIN_BROKEN = "ledger_chain_broken"
PRODUCER = "ledger"


@dataclass
class TamperCheck:
    pool: asyncpg.Pool
    full_every: int
    runs: int = 0
    full_runs: int = 0
    last_report: VerifyReport | None = None
    # (seq, hash) of the newest transfer a run found intact: where the next run continues.
    checkpoint: tuple[int, bytes] | None = None
    alerted: set[str] = field(default_factory=set)

    async def run_once(self) -> VerifyReport:
        full = self.checkpoint is None or self.runs % self.full_every == 0
        async with self.pool.acquire() as conn:
            report = await verify(conn, since=None if full else self.checkpoint)
        self.runs += 1
        self.full_runs += int(full)
        self.last_report = report
        if report.first_bad_seq is None:
            self.checkpoint = (report.head_seq, bytes.fromhex(report.head_hash))
        else:
            self.checkpoint = None  # while the chain is broken, every run looks at all of it
            await self._alert_chain_broken(report)
        if not report.ok:
            log.error(
                "ledger_verify_failed",
                full=full,
                first_bad_seq=report.first_bad_seq,
                first_bad_id=report.first_bad_id,
                reason=report.reason,
                counter_mismatches=report.counter_mismatches,
                unbalanced_currencies=report.unbalanced_currencies,
            )
        else:
            log.info(
                "ledger_verified",
                full=full,
                head_seq=report.head_seq,
                transfers_checked=report.transfers_checked,
            )
        return report

    async def _alert_chain_broken(self, report: VerifyReport) -> None:
        assert report.first_bad_seq is not None and report.reason is not None
        alert_id = f"lga_{report.first_bad_seq}"
        if alert_id in self.alerted:
            return
        transfer = report.first_bad_id or "(missing)"
        data = {
            "alert_id": alert_id,
            "code": CHAIN_BROKEN,
            "severity": "critical",
            "message": (
                f"ledger hash chain broken at transfer seq {report.first_bad_seq}"
                f" id {transfer}: {report.reason}"
            ),
            "details": {
                "seq": report.first_bad_seq,
                "transfer_id": report.first_bad_id,
                "reason": report.reason,
            },
        }
        async with self.pool.acquire() as conn, conn.transaction():
            await outbox.enqueue(
                conn,
                event_type=LEDGER_ALERT_EVENT,
                producer=PRODUCER,
                aggregate_id=alert_id,
                aggregate_version=1,
                data=data,
                now=datetime.now(UTC),
            )
        self.alerted.add(alert_id)
        log.critical(
            "ledger_chain_broken_alerted",
            alert_id=alert_id,
            seq=report.first_bad_seq,
            transfer_id=report.first_bad_id,
            reason=report.reason,
        )


async def run_schedule(check: TamperCheck, *, interval_s: float, stop: asyncio.Event) -> None:
    """Check at once (a full pass), then every ``interval_s`` until ``stop``."""
    while not stop.is_set():
        try:
            await check.run_once()
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            log.warning("ledger_verify_retry", error=str(exc))
        try:
            await asyncio.wait_for(stop.wait(), timeout=interval_s)
        except TimeoutError:
            pass
