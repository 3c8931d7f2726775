"""The background intake loop: watch the drop directory, reconcile due days, check cut-offs.

It runs as a cleanup context: a stop event ends it between scans, so a SIGTERM never leaves a
file half-handled (a file is either still in ``processing/``, taken again on start, or moved).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
from aiohttp import web

from services.kit.logging import get_logger
from services.recon.adapters.dropdir import DropDir
from services.recon.handlers import ReconService

log = get_logger(__name__)


async def intake_once(service: ReconService, drop: DropDir, *, first: bool = False) -> int:
    """One scan: take stable files, reconcile due days, raise missing statements."""
    handled = 0
    channels = drop.channels(service.rules.configured())
    for channel in channels:
        drop.ensure(channel)
        paths = drop.leftovers(channel) if first else []
        for path in drop.stable_files(channel):
            claimed = drop.claim(path)
            if claimed is not None:
                paths.append(claimed)
        for path in paths:
            await _take(service, drop, channel, path)
            handled += 1
    await service.run_due(channels)
    await service.check_cutoffs()
    return handled


def _read_capped(path: Path, size_max: int) -> bytes:
    with path.open("rb") as file:
        return file.read(size_max)


async def _take(service: ReconService, drop: DropDir, channel: str, path: Path) -> None:
    # One byte past the cap is enough to know the file is too large: never read the rest.
    data = await asyncio.to_thread(_read_capped, path, service.settings.statement_max_bytes + 1)
    outcome = await service.receive_file(channel, path.name, data, source="dropdir")
    if outcome.status == "quarantined":
        drop.quarantine(
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
        drop.archive(path, outcome.sha256, duplicate=outcome.status == "duplicate")


async def intake_loop(service: ReconService, drop: DropDir, stop: asyncio.Event) -> None:
    interval_s = service.settings.scan_interval_ms / 1000
    first = True
    while not stop.is_set():
        try:
            await intake_once(service, drop, first=first)
            first = False
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
