"""The finance API: upload a statement, runs, breaks, alerts (acknowledge / close)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import Awaitable, Callable
from datetime import date
from pathlib import Path
from typing import Any, BinaryIO

from aiohttp import web

from contracts.recon import RunRequest
from services.kit.auth import bearer_token, constant_time_equal
from services.kit.errors import ProblemError, json_response, read_json
from services.recon.adapters import repository as repo
from services.recon.adapters.dropdir import DropDir
from services.recon.adapters.records import RecordsUnavailable
from services.recon.domain.rules import valid_channel
from services.recon.handlers import FileOutcome, RunOutcome
from services.recon.keys import service_key, settings_key

FINANCE_PREFIX = "/v1/recon/"
_FILENAME = re.compile(r"^[A-Za-z0-9_.\-]{1,200}$")
_ID = re.compile(r"^[A-Za-z0-9_]{1,64}$")
UPLOAD_CHUNK_BYTES = 1 << 16
UPLOAD_WRITE_BYTES = 4 << 20  # written (and hashed) off the event loop in batches this size
UPLOAD_TYPES = ("application/octet-stream", "text/plain", "text/csv", "application/xml", "text/xml")


def finance_key_middleware(key: str) -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path.startswith(FINANCE_PREFIX):
            presented = bearer_token(request)
            if presented is None or not constant_time_equal(presented, key):
                raise ProblemError(
                    401,
                    "finance_key_invalid",
                    "Unauthorized",
                    "Authorization: Bearer <finance key> is required",
                    headers={"WWW-Authenticate": "Bearer"},
                )
        return await handler(request)

    return middleware


def _channel(value: str | None) -> str:
    if not value or not valid_channel(value):
        raise ProblemError(
            422, "channel_invalid", "Invalid channel", "channel must match [a-z0-9][a-z0-9_-]*"
        )
    return value


def _date(value: str | None, name: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ProblemError(
            400, "invalid_query", "Invalid query", f"{name} must be YYYY-MM-DD"
        ) from None


def _limit(request: web.Request) -> int:
    maximum = request.app[settings_key].page_size_max
    raw = request.query.get("limit")
    if raw is None:
        return min(100, maximum)
    if not raw.isdigit() or not 1 <= int(raw) <= maximum:
        raise ProblemError(400, "invalid_query", "Invalid query", f"limit must be 1..{maximum}")
    return int(raw)


def _choice(request: web.Request, name: str, choices: tuple[str, ...]) -> str | None:
    value = request.query.get(name)
    if value is not None and value not in choices:
        raise ProblemError(
            400, "invalid_query", "Invalid query", f"{name} must be one of {', '.join(choices)}"
        )
    return value


def _token(request: web.Request, name: str) -> str | None:
    value = request.query.get(name)
    if value is not None and not _ID.match(value):
        raise ProblemError(400, "invalid_query", "Invalid query", f"{name} is malformed")
    return value


async def upload_file(request: web.Request) -> web.Response:
    channel = _channel(request.query.get("channel"))
    filename = request.query.get("filename", "upload")
    if not _FILENAME.match(filename):
        raise ProblemError(400, "invalid_query", "Invalid query", "filename is malformed")
    run_now = request.query.get("run", "true")
    if run_now not in ("true", "false"):
        raise ProblemError(400, "invalid_query", "Invalid query", "run must be true or false")
    if request.content_type not in UPLOAD_TYPES:
        raise ProblemError(
            415,
            "unsupported_media_type",
            "Unsupported media type",
            f"send the file's bytes as one of {', '.join(UPLOAD_TYPES)}",
        )
    service = request.app[service_key]
    drop = DropDir(service.settings.drop_dir)
    spool = await asyncio.to_thread(drop.upload_spool, channel)
    try:
        size_bytes, sha256 = await _stream_to(request, spool, service.settings.upload_max_bytes)
        if not size_bytes:
            raise ProblemError(400, "upload_empty", "Empty upload", "the request body is empty")
        outcome = await service.receive_file(
            channel, filename, spool, source="upload", sha256=sha256
        )
    finally:
        await asyncio.to_thread(spool.unlink, missing_ok=True)
    body = file_body(outcome)
    if outcome.status == "accepted" and run_now == "true":
        assert outcome.business_date is not None
        try:
            ran = await service.run_day(channel, outcome.business_date)
        except RecordsUnavailable:
            ran = None  # the request stays queued; the intake loop retries it
        if ran is not None:
            async with service.pool.acquire() as conn:
                row = await repo.run(conn, ran.run_id)
            body["run"] = run_summary(row)
    return json_response(body, status=201 if outcome.status == "accepted" else 200)


async def _stream_to(request: web.Request, path: Path, size_max: int) -> tuple[int, str]:
    """The request body to ``path``, hashed as it goes, refused past ``size_max`` bytes: an
    upload is never held in memory whole. (size, SHA-256)"""
    digest = hashlib.sha256()
    size = 0
    pending: list[bytes] = []
    pending_bytes = 0
    with await asyncio.to_thread(path.open, "wb") as file:
        async for chunk in request.content.iter_chunked(UPLOAD_CHUNK_BYTES):
            size += len(chunk)
            if size > size_max:
                raise ProblemError(
                    413,
                    "request_too_large",
                    "Upload too large",
                    f"the file is larger than RECON_UPLOAD_MAX_BYTES ({size_max} bytes)",
                )
            pending.append(chunk)
            pending_bytes += len(chunk)
            if pending_bytes >= UPLOAD_WRITE_BYTES:
                await asyncio.to_thread(_write_hashed, file, digest, pending)
                pending, pending_bytes = [], 0
        await asyncio.to_thread(_write_hashed, file, digest, pending)
    return size, digest.hexdigest()


def _write_hashed(file: BinaryIO, digest: Any, chunks: list[bytes]) -> None:
    for chunk in chunks:
        digest.update(chunk)
        file.write(chunk)


async def create_run(request: web.Request) -> web.Response:
    body: RunRequest = await read_json(request, RunRequest)
    channel = _channel(body.channel)
    service = request.app[service_key]
    try:
        outcome: RunOutcome = await service.run_day(channel, body.business_date)
    except RecordsUnavailable as exc:
        raise ProblemError(503, "records_unavailable", "Records unavailable", str(exc)) from None
    async with service.pool.acquire() as conn:
        row = await repo.run(conn, outcome.run_id)
    return json_response(run_detail(row))


async def list_runs(request: web.Request) -> web.Response:
    channel = request.query.get("channel")
    if channel is not None:
        _channel(channel)
    day = _date(request.query.get("business_date"), "business_date")
    async with request.app[service_key].pool.acquire() as conn:
        rows = await repo.list_runs(conn, channel=channel, business_date=day, limit=_limit(request))
    return json_response({"runs": [run_summary(r) for r in rows]})


async def get_run(request: web.Request) -> web.Response:
    run_id = request.match_info["run_id"]
    async with request.app[service_key].pool.acquire() as conn:
        row = await repo.run(conn, run_id) if _ID.match(run_id) else None
    if row is None:
        raise ProblemError(404, "run_not_found", "Run not found", run_id)
    return json_response(run_detail(row))


async def list_breaks(request: web.Request) -> web.Response:
    channel = request.query.get("channel")
    if channel is not None:
        _channel(channel)
    limit = _limit(request)
    async with request.app[service_key].pool.acquire() as conn:
        rows = await repo.list_breaks(
            conn,
            run_id=_token(request, "run_id"),
            channel=channel,
            code=_token(request, "code"),
            status=_choice(request, "status", ("open", "closed")),
            after=_token(request, "after"),
            limit=limit,
        )
    breaks = [break_body(r) for r in rows]
    next_after = breaks[-1]["break_id"] if len(breaks) == limit else None
    return json_response({"breaks": breaks, "next_after": next_after})


async def list_alerts(request: web.Request) -> web.Response:
    async with request.app[service_key].pool.acquire() as conn:
        rows = await repo.list_alerts(
            conn,
            status=_choice(request, "status", ("open", "acknowledged", "closed")),
            severity=_choice(request, "severity", ("critical", "high", "medium", "low")),
            code=_token(request, "code"),
            limit=_limit(request),
        )
    return json_response({"alerts": [alert_body(r) for r in rows]})


async def acknowledge_alert(request: web.Request) -> web.Response:
    return await _transition(request, "acknowledged")


async def close_alert(request: web.Request) -> web.Response:
    return await _transition(request, "closed")


async def _transition(request: web.Request, target: str) -> web.Response:
    alert_id = request.match_info["alert_id"]
    if not _ID.match(alert_id):
        raise ProblemError(404, "alert_not_found", "Alert not found", alert_id)
    row = await request.app[service_key].transition_alert(alert_id, target)
    return json_response(alert_body(row))


# -- bodies ------------------------------------------------------------------------------


def file_body(outcome: FileOutcome) -> dict[str, Any]:
    return {
        "file_id": outcome.file_id,
        "channel": outcome.channel,
        "sha256": outcome.sha256,
        "status": outcome.status,
        "filename": outcome.filename,
        "business_date": outcome.business_date.isoformat() if outcome.business_date else None,
        "line_count": outcome.line_count,
        "statement_ids": list(outcome.statement_ids),
        "reason_code": outcome.reason_code,
        "reason": outcome.reason,
        "run": None,
    }


def run_summary(row: Any) -> dict[str, Any]:
    return {
        "run_id": row["run_id"],
        "channel": row["channel"],
        "business_date": row["business_date"].isoformat(),
        "rules_version": row["rules_version"],
        "line_count": row["line_count"],
        "record_count": row["record_count"],
        "matched_lines": row["matched_lines"],
        "break_count": row["break_count"],
        "superseded_by": row["superseded_by"],
        "started_at": row["started_at"].isoformat(),
        "finished_at": row["finished_at"].isoformat(),
    }


def run_detail(row: Any) -> dict[str, Any]:
    return {
        **run_summary(row),
        "inputs": json.loads(row["inputs"]),
        "summary": json.loads(row["summary"]),
        "report_path": row["report_path"],
    }


def break_body(row: Any) -> dict[str, Any]:
    out = {
        k: row[k]
        for k in (
            "break_id",
            "run_id",
            "channel",
            "code",
            "severity",
            "status",
            "statement_id",
            "line_number",
            "attempt_id",
            "payout_id",
            "amount_minor",
            "expected_amount_minor",
            "currency",
            "fee_minor",
            "expected_fee_minor",
            "detail",
            "closed_reason",
        )
    }
    for k in ("business_date", "value_date", "record_date"):
        out[k] = row[k].isoformat() if row[k] is not None else None
    return out


def alert_body(row: Any) -> dict[str, Any]:
    return {
        "alert_id": row["alert_id"],
        "code": row["code"],
        "severity": row["severity"],
        "message": row["message"],
        "channel": row["channel"],
        "business_date": row["business_date"].isoformat() if row["business_date"] else None,
        "status": row["status"],
        "occurrences": row["occurrences"],
        "context": json.loads(row["context"]),
        "first_seen_at": row["first_seen_at"].isoformat(),
        "last_seen_at": row["last_seen_at"].isoformat(),
        "acknowledged_at": row["acknowledged_at"].isoformat() if row["acknowledged_at"] else None,
        "closed_at": row["closed_at"].isoformat() if row["closed_at"] else None,
    }


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_post("/v1/recon/files", upload_file)
    r.add_post("/v1/recon/runs", create_run)
    r.add_get("/v1/recon/runs", list_runs)
    r.add_get("/v1/recon/runs/{run_id}", get_run)
    r.add_get("/v1/recon/breaks", list_breaks)
    r.add_get("/v1/recon/alerts", list_alerts)
    r.add_post("/v1/recon/alerts/{alert_id}/ack", acknowledge_alert)
    r.add_post("/v1/recon/alerts/{alert_id}/close", close_alert)
