"""The background intake loop: watch the drop directory, reconcile due days, check cut-offs.

It runs as a cleanup context: a stop event ends it between scans, so a SIGTERM never leaves a
file half-handled (a file is either still in ``processing/``, taken again on start, or moved).

A file whose intake fails without a verdict on the file (an error, not a quarantine) stays in
``processing/`` and is tried again with a doubling back-off; after
``RECON_INTAKE_ATTEMPTS_MAX`` attempts it is quarantined with ``file_intake_failed``. Other
files, due runs and cut-offs go on meanwhile.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
from aiohttp import web

from services.kit.logging import get_logger
from services.recon.adapters.dropdir import DropDir
from services.recon.handlers import ReconService, file_sha256

log = get_logger(__name__)

RETRY_BACKOFF_MAX_S = 3600
MATCHES_SWEEP_INTERVAL_S = 3600
# Lost connections to PostgreSQL: the file is not at fault, the attempt is not counted.
TRANSIENT = (ConnectionError, TimeoutError, asyncpg.PostgresConnectionError)


async def intake_once(service: ReconService, drop: DropDir, *, first: bool = False) -> int:
    """One scan: take stable files (and failed ones due again), reconcile due days, raise
    missing statements."""
    handled = 0
    channels = drop.channels(service.rules.configured())
    for channel in channels:
        drop.ensure(channel)
        paths = drop.leftovers(channel) if first else drop.due_retries(channel, time.monotonic())
        for path in drop.stable_files(channel):
            claimed = drop.claim(path)
            if claimed is not None:
                paths.append(claimed)
        for path in paths:
            if await _attempt(service, drop, channel, path):
                handled += 1
    await service.run_due(channels)
    await service.check_cutoffs()
    return handled


async def _attempt(service: ReconService, drop: DropDir, channel: str, path: Path) -> bool:
    """Take one file; on an error, schedule another attempt or give up. True when taken."""
    settings = service.settings
    attempt = await asyncio.to_thread(drop.count_attempt, path)
    if attempt <= settings.intake_attempts_max:
        try:
            await _take(service, drop, channel, path)
            return True
        except asyncio.CancelledError:
            raise
        except TRANSIENT as exc:
            await asyncio.to_thread(drop.uncount_attempt, path)
            error = f"{type(exc).__name__}: {exc}"
            log.warning("recon_intake_file_deferred", channel=channel, file=path.name, error=error)
            drop.retry_later(path, time.monotonic() + settings.intake_retry_backoff_ms / 1000)
            return False
        except Exception as exc:  # the boundary of one file: any error, then retry or give up
            error = f"{type(exc).__name__}: {exc}"
            log.exception(
                "recon_intake_file_failed", channel=channel, file=path.name, attempt=attempt
            )
            if attempt < settings.intake_attempts_max:
                backoff_s = min(
                    RETRY_BACKOFF_MAX_S,
                    settings.intake_retry_backoff_ms / 1000 * 2 ** (attempt - 1),
                )
                drop.retry_later(path, time.monotonic() + backoff_s)
                return False
            await asyncio.to_thread(drop.note_error, path, error)
    await _give_up(service, drop, channel, path, min(attempt, settings.intake_attempts_max))
    return True


async def _give_up(
    service: ReconService, drop: DropDir, channel: str, path: Path, attempts: int
) -> None:
    """Quarantine a file every attempt at failed, with the last error and an alert."""
    error = await asyncio.to_thread(drop.last_error, path)
    sha256 = await asyncio.to_thread(file_sha256, path)
    try:
        alert_id = await service.intake_failed(channel, path.name, sha256, error, attempts)
    except Exception:
        # No alert, no quarantine: the file stays and giving up is tried again later.
        drop.retry_later(path, time.monotonic() + service.settings.intake_retry_backoff_ms / 1000)
        raise
    await asyncio.to_thread(
        drop.quarantine,
        path,
        sha256,
        {
            "channel": channel,
            "filename": path.name,
            "reason_code": "intake_failed",
            "reason": error,
            "attempts": attempts,
            "alert_id": alert_id,
        },
    )
    log.error("recon_intake_file_quarantined", channel=channel, file=path.name, attempts=attempts)


async def _take(service: ReconService, drop: DropDir, channel: str, path: Path) -> None:
    # The intake reads the file from disk in blocks; it is never held whole in memory.
    outcome = await service.receive_file(channel, path.name, path, source="dropdir")
    if outcome.status == "quarantined":
        await asyncio.to_thread(
            drop.quarantine,
            path,
            outcome.sha256,
            {
                "file_id": outcome.file_id,
                "channel": channel,
                "filename": outcome.filename,
                "reason_code": outcome.reason_code,
                "reason": outcome.reason,
            },
        )
    else:
        await asyncio.to_thread(
            drop.archive, path, outcome.sha256, duplicate=outcome.status == "duplicate"
        )


async def intake_loop(service: ReconService, drop: DropDir, stop: asyncio.Event) -> None:
    interval_s = service.settings.scan_interval_ms / 1000
    first = True
    swept_at: float | None = None
    while not stop.is_set():
        try:
            await intake_once(service, drop, first=first)
            first = False
            if swept_at is None or time.monotonic() - swept_at >= MATCHES_SWEEP_INTERVAL_S:
                swept_at = time.monotonic()
                await service.sweep_matches()
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("recon_intake_retry", error=str(exc))
        except Exception:  # loop boundary: log and keep watching, never die silently
            log.exception("recon_intake_failed")
        try:
            await asyncio.wait_for(stop.wait(), timeout=interval_s)
        except TimeoutError:
            pass


def intake_context(
    service_key: web.AppKey[ReconService],
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def context(app: web.Application) -> AsyncIterator[None]:
        service = app[service_key]
        drop = DropDir(service.settings.drop_dir)
        stop = asyncio.Event()
        task = asyncio.create_task(intake_loop(service, drop, stop))
        yield
        stop.set()
        await task

    return context
