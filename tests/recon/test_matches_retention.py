"""Matches files past RECON_MATCHES_RETENTION_DAYS are deleted unless a later run may read
them: days a run of today or later looks back on, and the lookback of open timing breaks."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import asyncpg

from services.recon.adapters import repository as repo
from services.recon.adapters.parsing import default_parser
from services.recon.adapters.records import FileRecords
from services.recon.handlers import ReconService
from tests.recon.conftest import make_settings, rules_book

NOW = datetime(2027, 6, 1, 3, 0, tzinfo=UTC)


async def add_run(
    pool: asyncpg.Pool, data_dir: Path, channel: str, day: date, *, superseded: bool = False
) -> Path:
    run_id = f"run_{uuid.uuid4().hex[:20]}"
    path = data_dir / "matches" / channel / f"{run_id}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"PAR1")
    finished = datetime.combine(day + timedelta(days=1), datetime.min.time(), UTC)
    async with pool.acquire() as conn:
        await repo.insert_run(
            conn,
            {
                "run_id": run_id,
                "channel": channel,
                "business_date": day,
                "identity": run_id,
                "inputs": {},
                "rules_version": "v",
                "rules": {},
                "summary": {},
                "line_count": 0,
                "record_count": 0,
                "matched_lines": 0,
                "break_count": 0,
                "report_path": None,
                "started_at": finished,
                "finished_at": finished,
                "matches_path": str(path),
            },
        )
        if superseded:
            await conn.execute(
                "UPDATE recon_runs SET superseded_by = 'run_later' WHERE run_id = $1", run_id
            )
    return path


async def test_the_sweep_deletes_old_matches_files_but_keeps_what_a_later_run_may_read(
    pool: asyncpg.Pool, run_id: str, tmp_path: Path, amqp_prefix: str, channel: str
) -> None:
    settings = make_settings(run_id, tmp_path, amqp_prefix, RECON_MATCHES_RETENTION_DAYS="30")
    service = ReconService(
        pool, settings, rules_book(channel), FileRecords(tmp_path / "r"), default_parser()
    )
    data = settings.data_dir
    old = await add_run(pool, data, channel, date(2027, 1, 10))
    old_superseded = await add_run(pool, data, channel, date(2027, 1, 9), superseded=True)
    recent = await add_run(pool, data, channel, date(2027, 5, 25))  # within retention
    # A timing break still open on Feb 20: the run that re-evaluates it reads the matches of
    # the days in its lookback (7 days + the day before): Feb 12 onwards.
    timing_run = await add_run(pool, data, channel, date(2027, 2, 20))
    in_lookback = await add_run(pool, data, channel, date(2027, 2, 13))
    before_lookback = await add_run(pool, data, channel, date(2027, 2, 10))
    await pool.execute(
        """INSERT INTO recon_breaks (break_id, run_id, channel, business_date, code, severity,
                                     attempt_id)
           VALUES ($1, $2, $3, '2027-02-20', 'timing', 'low', 'att_x')""",
        f"brk_{uuid.uuid4().hex[:20]}",
        timing_run.stem,
        channel,
    )
    # A file whose run is not committed (being persisted): never the sweep's to delete.
    orphan = data / "matches" / channel / "run_persisting.parquet"
    orphan.write_bytes(b"PAR1")
    os.utime(orphan, (0, 0))

    off = ReconService(
        pool,
        make_settings(run_id, tmp_path, amqp_prefix, RECON_MATCHES_RETENTION_DAYS="0"),
        rules_book(channel),
        FileRecords(tmp_path / "r"),
        default_parser(),
    )
    assert await off.sweep_matches(now=NOW, channels=[channel]) == []

    deleted = await service.sweep_matches(now=NOW, channels=[channel])
    assert sorted(deleted) == sorted([old, old_superseded, before_lookback])
    assert not any(p.exists() for p in deleted)
    assert all(p.exists() for p in (recent, timing_run, in_lookback, orphan))

    # Once the timing break is closed, nothing protects its lookback any more.
    await pool.execute(
        "UPDATE recon_breaks SET status = 'closed' WHERE run_id = $1", timing_run.stem
    )
    later = await service.sweep_matches(now=NOW, channels=[channel])
    assert sorted(later) == sorted([in_lookback, timing_run])
    assert recent.exists() and orphan.exists()
    # A run of a day a run of today would look back on is kept even when old enough.
    near = await add_run(pool, data, channel, NOW.date() - timedelta(days=8))
    await pool.execute(
        "UPDATE recon_runs SET finished_at = $2, started_at = $2 WHERE matches_path = $1",
        str(near),
        NOW - timedelta(days=60),
    )
    assert await service.sweep_matches(now=NOW, channels=[channel]) == []
    assert near.exists()
