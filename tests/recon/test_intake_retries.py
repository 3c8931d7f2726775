"""A drop-directory file whose intake keeps failing is retried a bounded number of times with
back-off, then quarantined with an alert; other files are taken meanwhile."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import asyncpg

from services.recon.adapters.dropdir import DropDir
from services.recon.adapters.parsing import default_parser
from services.recon.adapters.records import FileRecords
from services.recon.entrypoints.intake import intake_loop
from services.recon.handlers import ReconService
from tests.recon.conftest import make_settings, rules_book
from tests.recon.daygen import generate, statement_csv
from tests.support.waiting import wait_until


async def test_a_file_failing_every_attempt_is_quarantined_with_an_alert_after_bounded_retries(
    pool: asyncpg.Pool,
    run_id: str,
    tmp_path: Path,
    amqp_prefix: str,
    channel: str,
    records_path: Path,
) -> None:
    settings = make_settings(
        run_id,
        tmp_path,
        amqp_prefix,
        RECON_SCAN_INTERVAL_MS="50",
        RECON_INTAKE_ATTEMPTS_MAX="3",
        RECON_INTAKE_RETRY_BACKOFF_MS="200",
    )
    real_parse = default_parser()
    attempts_at: list[float] = []

    def parse(data: bytes, **kwargs: Any) -> Any:
        if data.startswith(b"poison"):
            attempts_at.append(time.monotonic())
            raise RuntimeError("the parser broke on this file")  # not a verdict on the file
        return real_parse(data, **kwargs)

    service = ReconService(pool, settings, rules_book(channel), FileRecords(records_path), parse)
    drop = DropDir(settings.drop_dir)
    drop.ensure(channel)
    inbox = settings.drop_dir / channel / "inbox"
    poison = b"poison,type,date\n1,txn,2026-11-20\n"
    (inbox / "bad.csv").write_bytes(poison)
    good = statement_csv(generate({"match": 2}, channel=channel).statements[0])
    (inbox / "good.csv").write_bytes(good)

    stop = asyncio.Event()
    loop = asyncio.create_task(intake_loop(service, drop, stop))
    quarantine = settings.drop_dir / channel / "quarantine"
    sha = hashlib.sha256(poison).hexdigest()
    try:
        alert = await wait_until(
            lambda: pool.fetchrow(
                "SELECT * FROM recon_alerts WHERE channel = $1 AND code = 'file_intake_failed'",
                channel,
            ),
            timeout_s=30,
            message="file_intake_failed alert",
        )

        async def quarantined() -> bool:
            return (quarantine / f"{sha[:12]}-bad.csv.reason.json").exists()

        await wait_until(quarantined, timeout_s=10, message="the file in quarantine/")
    finally:
        stop.set()
        await loop

    # Exactly the bounded number of attempts, each after a doubling back-off.
    assert len(attempts_at) == 3
    assert attempts_at[1] - attempts_at[0] >= 0.2
    assert attempts_at[2] - attempts_at[1] >= 0.4
    assert alert["severity"] == "high"
    assert alert["status"] == "open"
    context = json.loads(alert["context"])
    assert context["attempts"] == 3 and "the parser broke" in context["reason"]
    reason = json.loads((quarantine / f"{sha[:12]}-bad.csv.reason.json").read_text())
    assert reason["reason_code"] == "intake_failed"
    assert reason["attempts"] == 3 and "RuntimeError" in reason["reason"]
    assert (quarantine / f"{sha[:12]}-bad.csv").read_bytes() == poison
    # Nothing of it imported nor recorded as received: the same bytes may be dropped again.
    assert await pool.fetchval("SELECT count(*) FROM recon_files WHERE sha256 = $1", sha) == 0
    assert not list((settings.drop_dir / channel / "processing").iterdir())  # no bookkeeping left
    # The good file was taken while the bad one waited for its retries.
    status = await pool.fetchval(
        "SELECT status FROM recon_files WHERE sha256 = $1", hashlib.sha256(good).hexdigest()
    )
    assert status == "accepted"
