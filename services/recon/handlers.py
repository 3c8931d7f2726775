"""Reconciliation use cases: receive a statement file, reconcile a day, manage alerts.

Each use case commits its state change together with the events it announces (outbox).
Heavy work (parsing, matching) runs in a worker thread so the event loop keeps serving.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from services.kit import outbox
from services.kit.errors import ProblemError
from services.kit.logging import get_logger
from services.recon.adapters import columnar, columnar_csv, line_parts
from services.recon.adapters import repository as repo
from services.recon.adapters.parsing import to_csv_mapping
from services.recon.adapters.records import (
    RecordsIncomplete,
    RecordsSource,
    RecordsUnavailable,
)
from services.recon.domain import checks
from services.recon.domain.lines import Statement, StatementFormatError
from services.recon.domain.matching import Engine, MatchInputs, MatchSummary, connect
from services.recon.domain.rules import ChannelRules, RulesBook
from services.recon.domain.taxonomy import ALERTS, BREAK_SEVERITY, alert_message
from services.recon.parsers import detect_format
from services.recon.settings import Settings

log = get_logger(__name__)

PRODUCER = "recon"
ParseFn = Callable[..., list[Statement]]
RUN_RETRY_BACKOFF_MAX_S = 3600


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(10)}"


HASH_CHUNK_BYTES = 1 << 20


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _spool(data: bytes, directory: str) -> Path:
    fd, name = tempfile.mkstemp(prefix="statement-", dir=directory)
    with os.fdopen(fd, "wb") as file:
        file.write(data)
    return Path(name)


def file_blank(path: Path) -> bool:
    """Nothing but whitespace (or nothing): stops at the first other byte."""
    with path.open("rb") as file:
        while chunk := file.read(65536):
            if chunk.strip():
                return False
    return True


@dataclass(frozen=True)
class FileOutcome:
    file_id: str
    channel: str
    sha256: str
    status: str  # accepted | quarantined | duplicate
    filename: str
    business_date: date | None = None
    line_count: int = 0
    statement_ids: tuple[str, ...] = ()
    reason_code: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class RunOutcome:
    run_id: str
    channel: str
    business_date: date
    reused: bool
    summary: dict[str, Any]
    rules_version: str
    report_path: str | None
    timings_s: dict[str, float] = field(default_factory=dict)


class ReconService:
    def __init__(
        self,
        pool: asyncpg.Pool,
        settings: Settings,
        rules: RulesBook,
        records: RecordsSource,
        parse: ParseFn,
    ) -> None:
        self.pool = pool
        self.settings = settings
        self.rules = rules
        self.records = records
        self.parse = parse
        # One reconciliation at a time per process: each holds a DuckDB with its own memory
        # limit, so running them in parallel would multiply the peak.
        self._run_lock = asyncio.Lock()

    # -- intake ---------------------------------------------------------------------------

    async def receive_file(
        self,
        channel: str,
        filename: str,
        content: Path | bytes,
        *,
        source: str,
        now: datetime | None = None,
        progress: Callable[[str], None] | None = None,
        sha256: str | None = None,
    ) -> FileOutcome:
        """Parse, check and accept a statement file whole, or quarantine it whole.

        ``content`` is the file on disk (read in blocks, never held whole; the caller keeps
        it) or, for small files and tests, its bytes (spooled to a temporary file first).
        ``sha256`` when the caller hashed the file while writing it (the upload)."""
        if isinstance(content, bytes):
            spool = await asyncio.to_thread(_spool, content, self._tmp_dir())
            try:
                return await self.receive_file(
                    channel, filename, spool, source=source, now=now, progress=progress
                )
            finally:
                await asyncio.to_thread(spool.unlink, missing_ok=True)
        path = content
        now = now or datetime.now(UTC)
        rules = self.rules.for_channel(channel)
        size_bytes = (await asyncio.to_thread(path.stat)).st_size
        if sha256 is None:
            sha256 = await asyncio.to_thread(file_sha256, path)
        async with self.pool.acquire() as conn:
            known = await repo.file_by_sha(conn, sha256)
        if known is not None:
            return await self._duplicate(known, filename, now)
        if progress:
            progress("parse")
        failure: checks.CheckFailure | None = None
        totals: list[checks.StatementTotals] = []
        statements: list[Statement] | None = None
        fmt = "csv"
        lines_path = self.settings.data_dir / "lines" / channel / f"{sha256}.parquet"
        # Written under a temporary name, published only once every check passed.
        pending = lines_path.with_name(lines_path.name + ".pending")
        line_count = 0
        if size_bytes > self.settings.statement_max_bytes:
            failure = checks.CheckFailure(
                "file_too_large",
                f"the file is larger than RECON_STATEMENT_MAX_BYTES"
                f" ({self.settings.statement_max_bytes} bytes)",
            )
        elif await asyncio.to_thread(file_blank, path):
            failure = checks.CheckFailure("file_empty", "the file is empty")
        else:
            fast = None
            if await asyncio.to_thread(self._columnar_eligible, path, size_bytes, rules):
                fast = await asyncio.to_thread(
                    columnar_csv.read,
                    path,
                    channel=channel,
                    mapping=to_csv_mapping(rules.csv_mapping),
                    sha256=sha256,
                    dest=pending,
                    block_bytes=self.settings.intake_block_bytes,
                )
            if fast is not None:
                totals, line_count = fast.totals, fast.line_count
            else:
                try:
                    statements = await asyncio.to_thread(self._parse_file, path, channel, rules)
                    totals = [checks.totals_of(st) for st in statements]
                    fmt = statements[0].format if statements else rules.format
                except StatementFormatError as exc:
                    failure = checks.CheckFailure(
                        "statement_malformed", str(exc), line_number=exc.line_number
                    )
        if progress:
            progress("check")
        if failure is None:
            failure = checks.check_totals(totals, rules)
        if failure is not None:
            del statements
            pending.unlink(missing_ok=True)  # nothing of a quarantined file is kept
            return await self._quarantine(
                channel, filename, size_bytes, sha256, source, failure, now
            )
        day = checks.business_date(totals)
        file_id = new_id("fil")
        # Every channel with statements has a drop directory, so the intake loop retries its
        # runs even when its files come by upload.
        for sub in ("inbox", "processing", "archive", "quarantine"):
            (self.settings.drop_dir / channel / sub).mkdir(parents=True, exist_ok=True)
        if progress:
            progress("store")
        if statements is not None:
            # Releases each statement's lines as their part is written.
            line_count = await asyncio.to_thread(line_parts.write_parsed, statements, pending)
            del statements
        os.replace(pending, lines_path)
        async with self.pool.acquire() as conn, conn.transaction():
            inserted = await repo.insert_file(
                conn,
                file_id=file_id,
                channel=channel,
                sha256=sha256,
                filename=filename,
                size_bytes=size_bytes,
                source=source,
                status="accepted",
                fmt=fmt,
                business_date=day,
                line_count=line_count,
                lines_path=str(lines_path),
                now=now,
            )
            if not inserted:  # the same file raced in through another door
                known = await repo.file_by_sha(conn, sha256)
                assert known is not None
            else:
                for st in totals:
                    gap = checks.sequence_gap(
                        await repo.last_sequence(conn, channel, st.account), st.sequence_number
                    )
                    if gap is not None:
                        await self._alert(
                            conn,
                            "sequence_gap",
                            cause=f"sequence_gap:{channel}:{st.account}:{gap[0]}",
                            channel=channel,
                            business_date=day,
                            context={"expected": gap[0], "received": gap[1], "account": st.account},
                            now=now,
                        )
                await repo.insert_statements(
                    conn,
                    [
                        (
                            file_id,
                            st.statement_id,
                            channel,
                            st.account,
                            st.currency,
                            st.sequence_number,
                            st.opening.amount_minor if st.opening else None,
                            st.closing.amount_minor if st.closing else None,
                            st.line_count,
                        )
                        for st in totals
                    ],
                )
                await repo.request_run(conn, channel, day)
        if not inserted:
            return await self._duplicate(known, filename, now)
        log.info(
            "statement_accepted",
            channel=channel,
            file_id=file_id,
            business_date=day.isoformat(),
            lines=line_count,
        )
        return FileOutcome(
            file_id=file_id,
            channel=channel,
            sha256=sha256,
            status="accepted",
            filename=filename,
            business_date=day,
            line_count=line_count,
            statement_ids=tuple(st.statement_id for st in totals),
        )

    def _parse_file(self, path: Path, channel: str, rules: ChannelRules) -> list[Statement]:
        """The parsers take the file's bytes; they are released once its objects exist."""
        data = path.read_bytes()
        return self.parse(data, channel=channel, format=rules.format, csv_mapping=rules.csv_mapping)

    def _columnar_eligible(self, path: Path, size_bytes: int, rules: ChannelRules) -> bool:
        """Large plain CSV files go through the columnar reader (it defers to the parser
        whenever a file is not plain); small ones, and other formats, through the parser."""
        if size_bytes < self.settings.columnar_csv_min_bytes:
            return False
        if rules.format == "csv":
            return True
        if rules.format != "auto":
            return False
        with path.open("rb") as file:
            head = file.read(65536)
        try:
            return bool(detect_format(head) == "csv")
        except StatementFormatError:
            return False

    async def _duplicate(self, known: asyncpg.Record, filename: str, now: datetime) -> FileOutcome:
        async with self.pool.acquire() as conn, conn.transaction():
            await self._alert(
                conn,
                "file_duplicate",
                cause=f"file_duplicate:{known['channel']}:{known['sha256']}",
                channel=known["channel"],
                business_date=known["business_date"],
                context={"filename": filename, "first_file_id": known["file_id"]},
                now=now,
            )
        log.info("statement_duplicate", channel=known["channel"], file_id=known["file_id"])
        return FileOutcome(
            file_id=known["file_id"],
            channel=known["channel"],
            sha256=known["sha256"],
            status="duplicate",
            filename=filename,
            business_date=known["business_date"],
            line_count=known["line_count"],
            reason_code="file_duplicate",
            reason=f"same content as {known['file_id']} ({known['filename']})",
        )

    async def _quarantine(
        self,
        channel: str,
        filename: str,
        size_bytes: int,
        sha256: str,
        source: str,
        failure: checks.CheckFailure,
        now: datetime,
    ) -> FileOutcome:
        file_id = new_id("fil")
        async with self.pool.acquire() as conn, conn.transaction():
            inserted = await repo.insert_file(
                conn,
                file_id=file_id,
                channel=channel,
                sha256=sha256,
                filename=filename,
                size_bytes=size_bytes,
                source=source,
                status="quarantined",
                reason_code=failure.code,
                reason=failure.reason,
                now=now,
            )
            if inserted:
                await self._alert(
                    conn,
                    "file_quarantined",
                    cause=f"file_quarantined:{channel}:{sha256}",
                    channel=channel,
                    business_date=None,
                    context={
                        "filename": filename,
                        "reason": failure.reason,
                        "reason_code": failure.code,
                        "file_id": file_id,
                    },
                    now=now,
                )
            else:
                known = await repo.file_by_sha(conn, sha256)
        if not inserted:
            assert known is not None
            return await self._duplicate(known, filename, now)
        log.warning(
            "statement_quarantined", channel=channel, file_id=file_id, reason_code=failure.code
        )
        return FileOutcome(
            file_id=file_id,
            channel=channel,
            sha256=sha256,
            status="quarantined",
            filename=filename,
            reason_code=failure.code,
            reason=failure.reason,
        )

    async def intake_failed(
        self,
        channel: str,
        filename: str,
        sha256: str,
        reason: str,
        attempts: int,
        *,
        now: datetime | None = None,
    ) -> str:
        """Raise ``file_intake_failed``: every attempt at a file failed without a verdict on
        the file. The file is not recorded as received, so the same bytes may come again."""
        now = now or datetime.now(UTC)
        async with self.pool.acquire() as conn, conn.transaction():
            return await self._alert(
                conn,
                "file_intake_failed",
                cause=f"file_intake_failed:{channel}:{sha256}",
                channel=channel,
                business_date=None,
                context={"filename": filename, "reason": reason, "attempts": attempts},
                now=now,
            )

    # -- reconciliation -------------------------------------------------------------------

    async def run_day(
        self,
        channel: str,
        business_date: date,
        *,
        now: datetime | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> RunOutcome:
        async with self._run_lock:
            return await self._run_day(channel, business_date, now or datetime.now(UTC), progress)

    async def _run_day(
        self,
        channel: str,
        business_date: date,
        now: datetime,
        progress: Callable[[str], None] | None,
    ) -> RunOutcome:
        loop = asyncio.get_running_loop()
        started = loop.time()
        timings: dict[str, float] = {}
        rules = self.rules.for_channel(channel)
        async with self.pool.acquire() as conn:
            files = await repo.accepted_files(conn, channel, business_date)
        if not files:
            raise ProblemError(
                404,
                "statement_not_received",
                "No statement",
                f"no accepted statement for {channel} on {business_date.isoformat()}",
            )
        work = Path(tempfile.mkdtemp(prefix="recon-", dir=self._tmp_dir()))
        try:
            if progress:
                progress("records")
            start = business_date - timedelta(days=rules.lookback_days)
            end = business_date + timedelta(days=1)
            try:
                records = await self.records.fetch(channel, start, end, work / "records.ndjson")
            except RecordsUnavailable as exc:
                # An incomplete export (cut at the router's cap) is never matched: its missing
                # records would come out as breaks. Both are retried with backoff.
                code = (
                    "records_incomplete"
                    if isinstance(exc, RecordsIncomplete)
                    else "records_unavailable"
                )
                async with self.pool.acquire() as conn, conn.transaction():
                    await self._alert(
                        conn,
                        code,
                        cause=f"{code}:{channel}:{business_date}",
                        channel=channel,
                        business_date=business_date,
                        context={"reason": str(exc)},
                        now=now,
                    )
                raise
            timings["records_s"] = loop.time() - started
            async with self.pool.acquire() as conn:
                carried = await repo.carried_timing_lines(conn, channel, business_date)
            carried_keys = [(c["statement_id"], c["line_number"]) for c in carried]
            inputs = {
                "files": [{"file_id": f["file_id"], "sha256": f["sha256"]} for f in files],
                "records_sha256": records.sha256,
                "records_bytes": records.size_bytes,
                "carried_lines": [f"{sid}:{n}" for sid, n in carried_keys],
            }
            identity = hashlib.sha256(
                json.dumps(
                    [inputs["files"], records.sha256, inputs["carried_lines"], rules.version()]
                ).encode()
            ).hexdigest()
            async with self.pool.acquire() as conn:
                current = await repo.current_run(conn, channel, business_date)
            if current is not None and current["identity"] == identity:
                async with self.pool.acquire() as conn:
                    await repo.delete_run_request(conn, channel, business_date)
                return RunOutcome(
                    run_id=current["run_id"],
                    channel=channel,
                    business_date=business_date,
                    reused=True,
                    summary=json.loads(current["summary"]),
                    rules_version=current["rules_version"],
                    report_path=current["report_path"],
                )
            run_id = new_id("run")
            if progress:
                progress("match")
            con = connect(
                threads=self.settings.duckdb_threads,
                memory_limit_mb=self.settings.duckdb_memory_limit_mb,
                temp_dir=str(work / "spill"),
            )
            try:
                engine = Engine(con)
                engine.carry(carried_keys)
                lines_sql = columnar.lines_sql([Path(f["lines_path"]) for f in files])
                carried_sql = columnar.carried_lines_sql([Path(c["lines_path"]) for c in carried])
                if carried_sql is not None:
                    lines_sql = f"{lines_sql} UNION ALL {carried_sql}"
                match_inputs = MatchInputs(
                    lines_sql=lines_sql,
                    records_sql=columnar.records_ndjson_sql(records.path),
                    business_date=business_date,
                    rules=rules,
                )
                await asyncio.to_thread(engine.load, match_inputs)
                earlier = await asyncio.to_thread(engine.earlier_attempt_ids)
                async with self.pool.acquire() as conn:
                    settled = await repo.settled_before(conn, channel, business_date, earlier)
                    earlier_matches = [
                        Path(p)
                        for p in await repo.earlier_matches_paths(
                            conn, channel, business_date, start - timedelta(days=1)
                        )
                    ]
                missing = [str(p) for p in earlier_matches if not p.exists()]
                if missing:
                    raise RuntimeError(f"matches files of earlier runs are missing: {missing}")
                summary = await asyncio.to_thread(
                    engine.match, match_inputs, settled, earlier_matches
                )
                timings["match_s"] = loop.time() - started - timings["records_s"]
                if progress:
                    progress("persist")
                outcome = await self._persist(
                    engine,
                    work,
                    run_id,
                    channel,
                    business_date,
                    rules,
                    summary,
                    inputs,
                    identity,
                    now,
                    timings,
                )
                timings["persist_s"] = (
                    loop.time()
                    - started
                    - sum(v for k, v in timings.items() if k in ("records_s", "match_s"))
                )
            finally:
                con.close()
        finally:
            shutil.rmtree(work, ignore_errors=True)
        log.info(
            "recon_run_completed",
            run_id=run_id,
            channel=channel,
            business_date=business_date.isoformat(),
            lines=summary.line_count,
            records=summary.record_count,
            matched=summary.matched_lines,
            breaks=summary.break_count,
        )
        return RunOutcome(
            run_id=outcome.run_id,
            channel=channel,
            business_date=business_date,
            reused=False,
            summary=outcome.summary,
            rules_version=outcome.rules_version,
            report_path=outcome.report_path,
            timings_s=timings,
        )

    def _tmp_dir(self) -> str:
        path = self.settings.data_dir / "tmp"
        path.mkdir(parents=True, exist_ok=True)
        return str(path)

    async def _persist(
        self,
        engine: Engine,
        work: Path,
        run_id: str,
        channel: str,
        business_date: date,
        rules: ChannelRules,
        summary: MatchSummary,
        inputs: dict[str, Any],
        identity: str,
        now: datetime,
        timings: dict[str, float],
    ) -> RunOutcome:
        clock = asyncio.get_running_loop().time
        mark = clock()
        report_dir = self.settings.data_dir / "reports" / channel / run_id
        report_dir.mkdir(parents=True, exist_ok=True)
        # Per-line matches stay beside the run as Parquet (the reports read them); PostgreSQL
        # gets runs, breaks, aggregates (the summary) and resolutions.
        matches_path = self.settings.data_dir / "matches" / channel / f"{run_id}.parquet"
        matches_path.parent.mkdir(parents=True, exist_ok=True)
        pending = matches_path.with_name(matches_path.name + ".pending")
        breaks_csv = work / "breaks.csv"
        await asyncio.to_thread(
            engine.export, run_id, channel, business_date, pending, breaks_csv, report_dir
        )
        os.replace(pending, matches_path)
        resolutions = await asyncio.to_thread(engine.resolutions)
        reevaluated = await asyncio.to_thread(engine.earlier_attempt_ids)
        report = report_dir / "summary.json"
        summary_dict = summary.as_dict()
        timings["persist_export_s"] = clock() - mark
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                await repo.supersede_current(conn, channel, business_date, run_id, now)
                await repo.insert_run(
                    conn,
                    {
                        "run_id": run_id,
                        "channel": channel,
                        "business_date": business_date,
                        "identity": identity,
                        "inputs": inputs,
                        "rules_version": rules.version(),
                        "rules": asdict(rules),
                        "summary": summary_dict,
                        "line_count": summary.line_count,
                        "record_count": summary.record_count,
                        "matched_lines": summary.matched_lines,
                        "break_count": summary.break_count,
                        "report_path": str(report_dir),
                        "started_at": now,
                        "finished_at": max(now, datetime.now(UTC)),
                        "matches_path": str(matches_path),
                    },
                )
                mark = clock()
                await repo.copy_csv(conn, "recon_breaks", repo.BREAK_COLUMNS, breaks_csv)
                timings["persist_copy_s"] = clock() - mark
                await repo.close_carried_timing(
                    conn, channel, business_date, run_id, reevaluated, now
                )
                new_resolutions = await repo.insert_resolutions(conn, run_id, resolutions)
                await outbox.enqueue_many(
                    conn,
                    [
                        {
                            "event_type": "recon.payout_resolved",
                            "aggregate_id": row["payout_id"],
                            "aggregate_version": 1,
                            "data": {
                                "payout_id": row["payout_id"],
                                "attempt_id": row["attempt_id"],
                                "outcome": row["outcome"],
                                "amount_minor": row["amount_minor"],
                                "currency": row["currency"],
                                "statement_id": row["statement_id"],
                                "line_number": row["line_number"],
                                "run_id": run_id,
                            },
                        }
                        for row in new_resolutions
                    ],
                    producer=PRODUCER,
                    now=now,
                )
                for code, figures in sorted(summary.breaks.items()):
                    await self._alert(
                        conn,
                        code,
                        cause=f"break:{code}:{channel}:{business_date.isoformat()}",
                        channel=channel,
                        business_date=business_date,
                        context={
                            "count": figures["count"],
                            "amount_minor": figures["amount_minor"],
                            "run_id": run_id,
                        },
                        now=now,
                    )
                await repo.delete_run_request(conn, channel, business_date)
        except BaseException:
            matches_path.unlink(missing_ok=True)  # no run refers to it
            raise
        report.write_text(
            json.dumps(
                {
                    "run_id": run_id,
                    "channel": channel,
                    "business_date": str(business_date),
                    "rules_version": rules.version(),
                    "inputs": inputs,
                    **summary_dict,
                },
                indent=2,
                sort_keys=True,
            )
        )
        return RunOutcome(
            run_id=run_id,
            channel=channel,
            business_date=business_date,
            reused=False,
            summary=summary_dict,
            rules_version=rules.version(),
            report_path=str(report_dir),
        )

    async def run_due(
        self, channels: list[str], *, now: datetime | None = None, limit: int = 10
    ) -> int:
        """Reconcile the days whose statements arrived (or whose last try failed)."""
        now = now or datetime.now(UTC)
        async with self.pool.acquire() as conn:
            due = await repo.due_run_requests(conn, channels, now, limit)
        done = 0
        for request in due:
            channel, day = request["channel"], request["business_date"]
            try:
                await self.run_day(channel, day, now=now)
                done += 1
            except (RecordsUnavailable, ProblemError) as exc:
                backoff_s = min(RUN_RETRY_BACKOFF_MAX_S, 5 * 2 ** min(request["attempts"], 10))
                async with self.pool.acquire() as conn:
                    await repo.defer_run_request(
                        conn, channel, day, now + timedelta(seconds=backoff_s), str(exc)
                    )
                log.warning("recon_run_deferred", channel=channel, error=str(exc))
        return done

    async def sweep_matches(
        self, *, now: datetime | None = None, channels: list[str] | None = None
    ) -> list[Path]:
        """Delete matches files older than ``RECON_MATCHES_RETENTION_DAYS`` that no later run
        can read (repository.matches_files_past_retention says which); the deleted paths."""
        retention_days = self.settings.matches_retention_days
        if retention_days == 0:
            return []
        now = now or datetime.now(UTC)
        deleted: list[Path] = []
        async with self.pool.acquire() as conn:
            if channels is None:
                channels = await repo.channels_with_matches_files(conn)
            for channel in channels:
                lookback_days = self.rules.for_channel(channel).lookback_days
                rows = await repo.matches_files_past_retention(
                    conn,
                    channel,
                    finished_before=now - timedelta(days=retention_days),
                    day_before=now.date() - timedelta(days=lookback_days + 1),
                    lookback_days=lookback_days,
                )
                for row in rows:
                    path = Path(row["matches_path"])
                    if await asyncio.to_thread(path.exists):
                        await asyncio.to_thread(path.unlink, missing_ok=True)
                        deleted.append(path)
        if deleted:
            log.info("recon_matches_swept", files=len(deleted), retention_days=retention_days)
        return deleted

    # -- cut-offs and alerts --------------------------------------------------------------

    async def check_cutoffs(self, now: datetime | None = None) -> list[str]:
        """``statement_missing`` for each channel expecting a daily statement past cut-off."""
        now = now or datetime.now(UTC)
        raised: list[str] = []
        for channel in self.rules.configured():
            rules = self.rules.for_channel(channel)
            if not rules.expect_daily:
                continue
            day = now.date() - timedelta(days=1)
            if now < rules.cutoff_at(day):
                day -= timedelta(days=1)
            cause = f"statement_missing:{channel}:{day.isoformat()}"
            async with self.pool.acquire() as conn, conn.transaction():
                # Raised once per missing day: the loop checks every scan, which is not a repeat.
                if await repo.has_statement(conn, channel, day) or await repo.alert_cause_seen(
                    conn, cause
                ):
                    continue
                await self._alert(
                    conn,
                    "statement_missing",
                    cause=cause,
                    channel=channel,
                    business_date=day,
                    context={"cutoff": rules.cutoff},
                    now=now,
                )
                raised.append(channel)
        return raised

    async def _alert(
        self,
        conn: Any,
        code: str,
        *,
        cause: str,
        channel: str | None,
        business_date: date | None,
        context: dict[str, Any],
        now: datetime,
    ) -> str:
        spec = ALERTS[code]
        message = alert_message(
            code,
            {
                "channel": channel,
                "business_date": business_date.isoformat() if business_date else None,
                **context,
            },
        )
        row, opened = await repo.upsert_alert(
            conn,
            alert_id=new_id("alr"),
            cause=cause,
            code=code,
            severity=spec.severity.value,
            message=message,
            channel=channel,
            business_date=business_date,
            context=context,
            now=now,
        )
        if opened:
            await outbox.enqueue(
                conn,
                event_type="recon.alert",
                producer=PRODUCER,
                aggregate_id=row["alert_id"],
                aggregate_version=1,
                data=alert_event(row),
                now=now,
            )
            log.warning("recon_alert_opened", code=code, severity=spec.severity.value, cause=cause)
        return str(row["alert_id"])

    async def transition_alert(self, alert_id: str, target: str) -> asyncpg.Record:
        now = datetime.now(UTC)
        async with self.pool.acquire() as conn, conn.transaction():
            row = await repo.transition_alert(conn, alert_id, target, now)
            if row is not None:
                return row
            existing = await repo.alert(conn, alert_id)
        if existing is None:
            raise ProblemError(404, "alert_not_found", "Alert not found", alert_id)
        if existing["status"] == target:
            return existing  # a repeated request is answered, not refused
        raise ProblemError(
            409,
            "alert_transition_invalid",
            "Invalid alert transition",
            f"alert is {existing['status']}; cannot become {target}",
        )


def alert_event(row: Any) -> dict[str, Any]:
    return {
        "alert_id": row["alert_id"],
        "code": row["code"],
        "severity": row["severity"],
        "message": row["message"],
        "channel": row["channel"],
        "business_date": row["business_date"].isoformat() if row["business_date"] else None,
    }


assert set(BREAK_SEVERITY) <= set(ALERTS)
