"""The single writer: TigerBeetle's lesson (batch) on PostgreSQL.

Requests queue up as jobs; one task takes whatever is waiting (lingering at most
``linger_us`` for more, up to ``batch_transfers_max`` transfers), loads the state those jobs
touch under the writer lock, applies them in arrival order in memory (``domain.batch``), and
appends everything with ONE statement in one transaction, with one counter update per
touched account. Every caller is answered only after COMMIT. A hot account is written once
per batch, so it never serialises callers on its row lock. Batches are pipelined two deep:
the next one is computed and sent while the previous one's COMMIT is being flushed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg

from services.kit.logging import get_logger
from services.ledger.adapters import store
from services.ledger.domain.batch import Batch
from services.ledger.domain.model import (
    KIND_POST,
    KIND_VOID,
    Account,
    Barrier,
    Pending,
    Refusal,
    TccLeg,
    TransferRequest,
)

log = get_logger(__name__)


class WriterUnavailable(Exception):
    """The batch could not be committed (database fault) or the queue is full."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


@dataclass
class TransfersJob:
    requests: Sequence[TransferRequest]

    @property
    def size(self) -> int:
        return len(self.requests)


@dataclass
class TccJob:
    op: str  # try | confirm | cancel
    gid: str
    branch_id: str
    legs: Sequence[TccLeg] = ()
    timeout_s: int = 0

    @property
    def size(self) -> int:
        return max(len(self.legs), 1)


@dataclass
class ExpireJob:
    pending_ids: Sequence[str]

    @property
    def size(self) -> int:
        return len(self.pending_ids)


Job = TransfersJob | TccJob | ExpireJob


@dataclass
class _Entry:
    job: Job
    future: asyncio.Future[Any]


@dataclass
class _Pending:
    """A batch whose append was sent inside a transaction that is not committed yet."""

    conn: asyncpg.Connection
    tx: Any
    append: asyncio.Task[None]
    entries: list[_Entry]
    outcomes: list[Any]
    started: float
    done: bool = False
    abandoned: bool = False


# Resolved pendings stay cached until this many pendings are cached; trimming waits for the
# batch in flight so a resolution it carries is never forgotten before it commits.
RESOLVED_PENDINGS_KEPT = 50_000


@dataclass
class WriterStats:
    batches: int = 0
    jobs: int = 0
    transfers: int = 0
    batch_jobs_max: int = 0
    retried_alone: int = 0
    busy_s: float = 0.0
    sizes: list[int] = field(default_factory=list)


class Writer:
    def __init__(
        self,
        pool: asyncpg.Pool,
        dsn: str,
        *,
        linger_us: int,
        batch_transfers_max: int,
        queue_max: int,
        cache_entries_max: int = 1_000_000,
    ) -> None:
        self.pool = pool
        self.dsn = dsn
        self.linger_s = linger_us / 1_000_000
        self.batch_transfers_max = batch_transfers_max
        self.cache_entries_max = cache_entries_max
        self.queue: asyncio.Queue[_Entry] = asyncio.Queue(queue_max)
        self.stats = WriterStats()
        self._conn: asyncpg.Connection | None = None  # holds the writer lock
        self._spare: asyncpg.Connection | None = None  # the pipeline's second connection
        self._inflight_stored: dict[str, Any] = {}
        # Authoritative while this writer holds the lock; cleared on any failed batch.
        self._accounts: dict[str, Account] = {}
        self._pendings: dict[str, Pending] = {}
        self._barriers: dict[tuple[str, str], dict[str, Barrier]] = {}
        self._head: tuple[int, bytes, datetime | None] | None = None

    async def submit(self, job: Job) -> Any:
        """Queue ``job`` and wait for its committed outcome (or its ``Refusal``)."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        try:
            self.queue.put_nowait(_Entry(job, future))
        except asyncio.QueueFull:
            raise WriterUnavailable(
                "ledger_overloaded", "the writer queue is full; retry shortly"
            ) from None
        return await future

    async def run(self, stop: asyncio.Event) -> None:
        previous: _Pending | None = None
        try:
            while not stop.is_set() or not self.queue.empty():
                if previous is not None and self.queue.empty():
                    # Nothing to overlap with: commit now rather than keep callers waiting.
                    await self._complete_or_redo(previous, None, stop)
                    previous = None
                try:
                    first = await asyncio.wait_for(self.queue.get(), timeout=0.2)
                except TimeoutError:
                    if previous is not None:
                        await self._complete_or_redo(previous, None, stop)
                        previous = None
                    continue
                entries = [first]
                size = first.job.size
                if self.linger_s > 0 and self.queue.empty():
                    await asyncio.sleep(self.linger_s)
                while size < self.batch_transfers_max and not self.queue.empty():
                    entry = self.queue.get_nowait()
                    entries.append(entry)
                    size += entry.job.size
                if previous is None:
                    self._trim()
                elif self._needs_trim():
                    await self._complete_or_redo(previous, None, stop)
                    previous = None
                    self._trim()
                current = await self._send(entries, previous, stop)
                if previous is not None:
                    await self._complete_or_redo(previous, current, stop)
                    if current is not None and current.abandoned:
                        current = None
                previous = current
            if previous is not None:
                await self._complete_or_redo(previous, None, stop)
        finally:
            for conn in (self._conn, self._spare):
                if conn is not None:
                    await conn.close()  # closing the first releases the writer lock

    async def _send(
        self, entries: list[_Entry], previous: _Pending | None, stop: asyncio.Event
    ) -> _Pending | None:
        """Compute this batch on top of the one still committing (``previous``) and send its
        append inside a transaction on the other connection. It commits only after
        ``previous`` did, so commit order is batch order, while its computation and its
        inserts overlap the predecessor's WAL flush. Returns None when it was committed on
        the slow path instead."""
        started = time.perf_counter()
        try:
            conn = await self._connection(stop)
            if previous is not None:
                if self._spare is None or self._spare.is_closed():
                    self._spare = await asyncpg.connect(self.dsn)
                conn = self._spare if previous.conn is conn else conn
            tx = conn.transaction()
            await tx.start()
            try:
                outcomes, batch, deltas = await self._compute(conn, [e.job for e in entries])
            except BaseException:
                await tx.rollback()
                raise
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, WriterUnavailable):
            # Nothing of this batch was sent: finish the predecessor, then go one by one.
            if previous is not None:
                await self._complete_or_redo(previous, None, stop)
                previous.done = True
            self._forget()
            for entry in entries:
                await self._commit([entry], stop)
            return None
        self._inflight_stored = {
            r.id: batch.stored[r.id] for r in batch.rows if r.id in batch.stored
        } | {r.id: batch.stored[r.id] for r in batch.rejections}
        if previous is not None:
            # The predecessor's statement must have run (and taken its row locks) before this
            # one starts, or this one could lock rows first and wait for a commit that waits
            # for it. Its failure, if any, is handled when it is completed.
            with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
                await previous.append
        append = asyncio.create_task(
            store.append(conn, batch.rows, batch.rejections, batch.new_barriers, deltas)
        )
        self.stats.transfers += len(batch.rows)
        return _Pending(conn, tx, append, entries, outcomes, started)

    async def _finish(self, pending: _Pending) -> bool:
        """Wait for the append, COMMIT, answer the callers; False if it did not commit."""
        ok = True
        try:
            await pending.append
            await pending.tx.commit()
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            log.warning("ledger_pipelined_batch_failed", jobs=len(pending.entries), error=str(exc))
            ok = False
            try:
                await pending.tx.rollback()
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
                pass  # a broken connection rolls back by itself
        pending.done = True
        if not ok:
            return False
        self.stats.batches += 1
        self.stats.jobs += len(pending.entries)
        self.stats.batch_jobs_max = max(self.stats.batch_jobs_max, len(pending.entries))
        self.stats.busy_s += time.perf_counter() - pending.started
        for entry, outcome in zip(pending.entries, pending.outcomes, strict=True):
            _settle(entry.future, outcome)
        return True

    async def _complete_or_redo(
        self, previous: _Pending, current: _Pending | None, stop: asyncio.Event
    ) -> None:
        """Commit ``previous``. If it fails, ``current`` was computed on a state that never
        happened: roll it back as well, reload, and redo both one job at a time."""
        if previous.done:
            return
        if await self._finish(previous):
            return
        redo = list(previous.entries)
        if current is not None:
            try:
                await current.append
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
                pass
            try:
                await current.tx.rollback()
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
                pass
            current.done = current.abandoned = True
            redo.extend(current.entries)
        self._forget()
        for entry in redo:
            await self._commit([entry], stop)

    async def _connection(self, stop: asyncio.Event) -> asyncpg.Connection:
        """The writer's own session, holding the writer lock; a standby waits here."""
        if self._conn is not None and not self._conn.is_closed():
            return self._conn
        conn = await asyncpg.connect(self.dsn)
        waited = False
        while not await store.try_lock_writer(conn):
            if not waited:
                log.warning("ledger_writer_waiting_for_lock")
                waited = True
            if stop.is_set():
                await conn.close()
                raise WriterUnavailable("ledger_unavailable", "another writer holds the ledger")
            await asyncio.sleep(0.5)
        self._conn = conn
        self._forget()
        return conn

    def _forget(self) -> None:
        self._inflight_stored = {}  # outcomes of a batch that did not commit are not outcomes
        self._accounts.clear()
        self._pendings.clear()
        self._barriers.clear()
        self._head = None

    async def _commit(self, entries: list[_Entry], stop: asyncio.Event) -> None:
        started = time.perf_counter()
        try:
            conn = await self._connection(stop)
            outcomes = await self._apply(conn, [e.job for e in entries])
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            self._forget()  # the batch may have moved cached balances: reload from the table
            if self._conn is not None and isinstance(exc, asyncpg.InterfaceError | OSError):
                await self._conn.close()
                self._conn = None
            if len(entries) > 1:
                # One poisoned job must not fail its neighbours: retry each on its own.
                log.warning("ledger_batch_retried_alone", jobs=len(entries), error=str(exc))
                self.stats.retried_alone += 1
                for entry in entries:
                    await self._commit([entry], stop)
                return
            log.error("ledger_batch_failed", error=str(exc))
            _settle(
                entries[0].future,
                WriterUnavailable("ledger_unavailable", "the ledger could not commit; retry"),
            )
            return
        except WriterUnavailable as exc:
            for entry in entries:
                _settle(entry.future, exc)
            return
        except Exception as exc:  # consumer-loop boundary: a bug fails its batch, not the task
            self._forget()
            log.exception("ledger_batch_crashed", jobs=len(entries))
            for entry in entries:
                _settle(entry.future, exc)
            return
        self.stats.batches += 1
        self.stats.jobs += len(entries)
        self.stats.batch_jobs_max = max(self.stats.batch_jobs_max, len(entries))
        self.stats.busy_s += time.perf_counter() - started
        for entry, outcome in zip(entries, outcomes, strict=True):
            _settle(entry.future, outcome)

    async def _apply(self, conn: asyncpg.Connection, jobs: list[Job]) -> list[Any]:
        """Compute and append one batch in a single autocommit statement (no pipelining)."""
        outcomes, batch, deltas = await self._compute(conn, jobs)
        if batch.rows or batch.rejections or batch.new_barriers:
            await store.append(conn, batch.rows, batch.rejections, batch.new_barriers, deltas)
        self.stats.transfers += len(batch.rows)
        self._inflight_stored = {}
        self._trim()
        return outcomes

    async def _compute(
        self, conn: asyncpg.Connection, jobs: list[Job]
    ) -> tuple[list[Any], Batch, list[tuple[str, int, int, int, int]]]:
        """Load what the caches lack, then apply the jobs in memory; advances the cached chain
        head and balances to the state after this batch."""
        transfer_ids: list[str] = []
        pending_ids: list[str] = []
        account_ids: list[str] = []
        barrier_keys: list[tuple[str, str]] = []
        for job in jobs:
            if isinstance(job, TransfersJob):
                for req in job.requests:
                    transfer_ids.append(req.id)
                    if req.kind in (KIND_POST, KIND_VOID):
                        assert req.pending_id is not None
                        pending_ids.append(req.pending_id)
                    else:
                        assert req.debit_account_id and req.credit_account_id
                        account_ids.extend((req.debit_account_id, req.credit_account_id))
            elif isinstance(job, TccJob):
                barrier_keys.append((job.gid, job.branch_id))
                for leg in job.legs:
                    account_ids.extend((leg.debit_account_id, leg.credit_account_id))
            else:
                pending_ids.extend(job.pending_ids)

        if self._head is None:
            self._head = await store.chain_head(conn)
        stored = await store.load_stored(conn, transfer_ids)
        for transfer_id in transfer_ids:  # outcomes of the batch still committing
            if transfer_id in self._inflight_stored and transfer_id not in stored:
                stored[transfer_id] = self._inflight_stored[transfer_id]
        missing_keys = [k for k in barrier_keys if k not in self._barriers]
        if missing_keys:
            self._barriers.update(await store.load_barriers(conn, missing_keys))
        for key in barrier_keys:
            tried = self._barriers[key].get("try")
            if tried is not None:
                pending_ids.extend(tried.transfer_ids)
        missing_pendings = [p for p in pending_ids if p not in self._pendings]
        if missing_pendings:
            self._pendings.update(await store.load_pendings(conn, missing_pendings))
        for pending_id in pending_ids:
            pending = self._pendings.get(pending_id)
            if pending is not None:
                account_ids.extend((pending.debit_account_id, pending.credit_account_id))
        # Accounts are never deleted and only this writer moves their counters, so a cached
        # account is current; a missing one may have been created since (or may not exist).
        missing_accounts = [a for a in account_ids if a not in self._accounts]
        if missing_accounts:
            self._accounts.update(await store.load_accounts(conn, missing_accounts))

        head_seq, head_hash, head_at = self._head
        now = datetime.now(UTC)
        if head_at is not None and head_at > now:
            now = head_at  # commit order and time never disagree, even if the clock steps
        batch = Batch(
            accounts=self._accounts,
            pendings=self._pendings,
            stored=stored,
            barriers=self._barriers,
            head_seq=head_seq,
            head_hash=head_hash,
            now=now,
        )
        outcomes = [_run(batch, job) for job in jobs]
        self._head = (batch.head_seq, batch.head_hash, now if batch.rows else head_at)
        return outcomes, batch, batch.deltas()

    def _needs_trim(self) -> bool:
        return len(self._pendings) > RESOLVED_PENDINGS_KEPT or any(
            len(c) > self.cache_entries_max for c in (self._accounts, self._barriers)
        )

    def _trim(self) -> None:
        """Resolved pendings are settled history; other caches are bounded by a reset."""
        for row_pending in [p.id for p in self._pendings.values() if p.resolved_by is not None]:
            del self._pendings[row_pending]
        for cache in (self._accounts, self._pendings, self._barriers):
            if len(cache) > self.cache_entries_max:
                cache.clear()


def _run(batch: Batch, job: Job) -> Any:
    try:
        if isinstance(job, TransfersJob):
            return batch.apply_transfers(job.requests)
        if isinstance(job, ExpireJob):
            return batch.expire(job.pending_ids)
        if job.op == "try":
            return batch.tcc_try(job.gid, job.branch_id, job.legs, job.timeout_s)
        if job.op == "confirm":
            return batch.tcc_confirm(job.gid, job.branch_id)
        assert job.op == "cancel"
        return batch.tcc_cancel(job.gid, job.branch_id)
    except Refusal as refusal:
        return refusal


def _settle(future: asyncio.Future[Any], outcome: Any) -> None:
    if future.done():  # the caller went away; the outcome is committed and replayable
        return
    if isinstance(outcome, Exception):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


async def expiry_sweeper(
    pool: asyncpg.Pool,
    writer: Writer,
    *,
    interval_s: float,
    batch_max: int,
    stop: asyncio.Event,
) -> None:
    """Find pendings past their expiry and let the writer append an ``expire`` record for each
    one still unresolved (the writer re-checks under its lock, so a confirm that won the race
    stays confirmed). Only expiries newer than the last swept one are scanned after the first
    pass, so the scan does not grow with history."""
    watermark: datetime | None = None
    while not stop.is_set():
        try:
            async with pool.acquire() as conn:
                rows = await store.expired_pendings(conn, datetime.now(UTC), watermark, batch_max)
            if rows:
                await writer.submit(ExpireJob([r["id"] for r in rows]))
                if len(rows) < batch_max:
                    watermark = rows[-1]["expires_at"]
                continue  # more may be waiting
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, WriterUnavailable) as exc:
            log.warning("ledger_expiry_sweep_retry", error=str(exc))
        try:
            await asyncio.wait_for(stop.wait(), timeout=interval_s)
        except TimeoutError:
            pass
