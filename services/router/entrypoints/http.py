"""aiohttp views: decode and validate, call one handler, encode. No business rules here."""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from typing import Any

import msgspec
from aiohttp import web

import contracts.router as wire
from services.kit.auth import SERVICE_TOKEN_HEADER, constant_time_equal
from services.kit.errors import ProblemError, decode_body, json_response, read_json
from services.kit.web import request_id_key
from services.router.adapters import store
from services.router.keys import service_key, settings_key

CALLBACK_PREFIX = "/v1/bank_callbacks/"
_SIGNATURE = re.compile(r"^t=(\d{1,12}),v1=([0-9a-f]{64})$")
_ID = re.compile(r"^[A-Za-z0-9_.:\-]{1,64}$")
EXPORT_CHUNK_ROWS = 500


def service_token_or_signed_callback(
    token: str,
) -> Callable[..., Awaitable[web.StreamResponse]]:
    """The internal API needs ``X-Service-Token``; bank callbacks carry a signature instead
    (checked in the view, where the body is at hand)."""
    public = frozenset(("/healthz", "/readyz", "/openapi.json", "/metrics"))

    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path not in public and not request.path.startswith(CALLBACK_PREFIX):
            presented = request.headers.get(SERVICE_TOKEN_HEADER, "")
            if not presented or not constant_time_equal(presented, token):
                raise ProblemError(
                    401,
                    "service_token_invalid",
                    "Unauthorized",
                    f"a valid {SERVICE_TOKEN_HEADER} header is required",
                )
        return await handler(request)

    return middleware


def _path_id(request: web.Request, name: str) -> str:
    value = request.match_info[name]
    if not _ID.match(value):
        raise ProblemError(400, "invalid_path", "Invalid path parameter", f"{name} is malformed")
    return value


def _answer(result: tuple[int, dict[str, Any]]) -> web.Response:
    status, body = result
    if status >= 400:
        raise ProblemError(
            status, body["code"], body["title"], body.get("detail"), errors=body.get("errors")
        )
    return json_response(body, status=status)


async def _empty_or_object(request: web.Request) -> None:
    """Confirm and cancel accept no body, or ``{}``."""
    raw = await request.read()
    if raw.strip():
        if request.content_type not in ("application/json", ""):
            raise ProblemError(415, "unsupported_media_type", "Unsupported media type")
        decode_body(raw, wire.TccEmpty)


async def tcc_try(request: web.Request) -> web.Response:
    gid, branch = _path_id(request, "gid"), _path_id(request, "branch_id")
    body = await read_json(request, wire.TryRequest)
    return _answer(await request.app[service_key].tcc_try(gid, branch, body))


async def tcc_confirm(request: web.Request) -> web.Response:
    gid, branch = _path_id(request, "gid"), _path_id(request, "branch_id")
    await _empty_or_object(request)
    return _answer(await request.app[service_key].tcc_confirm(gid, branch))


async def tcc_cancel(request: web.Request) -> web.Response:
    gid, branch = _path_id(request, "gid"), _path_id(request, "branch_id")
    await _empty_or_object(request)
    return _answer(await request.app[service_key].tcc_cancel(gid, branch))


async def submit(request: web.Request) -> web.Response:
    body = await read_json(request, wire.SubmissionRequest)
    view = await request.app[service_key].submit(body, request.get(request_id_key))
    return json_response(view)


async def get_submission(request: web.Request) -> web.Response:
    return json_response(await request.app[service_key].view(_path_id(request, "payout_id")))


async def inquire(request: web.Request) -> web.Response:
    payout_id = _path_id(request, "payout_id")
    return json_response(await request.app[service_key].inquire_now(payout_id))


def _query_time(request: web.Request, name: str) -> datetime | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    try:
        if len(raw) == 10:
            return datetime.combine(date.fromisoformat(raw), datetime.min.time(), tzinfo=UTC)
        # An unencoded "+01:00" offset arrives as " 01:00" (form decoding): put the sign back.
        value = datetime.fromisoformat(raw.replace("Z", "+00:00").replace(" ", "+"))
    except ValueError:
        raise ProblemError(
            400, "invalid_query", "Invalid query", f"{name} must be an ISO date or date-time"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


async def export_attempts(request: web.Request) -> web.StreamResponse:
    bank = request.query.get("bank")
    if bank is not None and not _ID.match(bank):
        raise ProblemError(400, "invalid_query", "Invalid query", "bank is malformed")
    start, end = _query_time(request, "from"), _query_time(request, "to")
    if start and end and start >= end:
        raise ProblemError(400, "invalid_query", "Invalid query", "from must be before to")
    # ?trailer=true ends the stream with {"end": true, "rows": N, "truncated": bool}, so a
    # reader can tell a complete export from one cut at ROUTER_EXPORT_ROWS_MAX or cut short.
    trailer = request.query.get("trailer", "false").lower() in ("1", "true")
    settings = request.app[settings_key]
    service = request.app[service_key]
    limit = settings.export_rows_max
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await response.prepare(request)
    encoder = msgspec.json.Encoder()
    async with service.pool.acquire() as conn, conn.transaction(readonly=True):
        cursor = conn.cursor(
            """SELECT attempt_id, payout_id, channel_id, bank, amount_minor, currency, status,
                      failure_class, failure_code, bank_reference, fee_minor, executed_at,
                      sent_at, resolved_at
               FROM attempt
               WHERE ($1::text IS NULL OR bank = $1)
                 AND ($2::timestamptz IS NULL OR sent_at >= $2)
                 AND ($3::timestamptz IS NULL OR sent_at < $3)
               ORDER BY sent_at, attempt_id LIMIT $4""",
            bank,
            start,
            end,
            limit + 1,
            prefetch=EXPORT_CHUNK_ROWS,
        )
        chunk: list[bytes] = []
        rows, truncated = 0, False
        async for row in cursor:
            if rows == limit:  # one row past the cap: the export is incomplete
                truncated = True
                break
            rows += 1
            chunk.append(encoder.encode(dict(row)) + b"\n")
            if len(chunk) >= EXPORT_CHUNK_ROWS:
                await response.write(b"".join(chunk))
                chunk.clear()
        if chunk:
            await response.write(b"".join(chunk))
    if trailer:
        await response.write(
            encoder.encode({"end": True, "rows": rows, "truncated": truncated}) + b"\n"
        )
    await response.write_eof()
    return response


async def channels(request: web.Request) -> web.Response:
    return json_response(await request.app[service_key].channels())


async def config_status(request: web.Request) -> web.Response:
    return json_response(request.app[service_key].config.describe())


async def list_kill_switches(request: web.Request) -> web.Response:
    service = request.app[service_key]
    channel_id = _path_id(request, "channel_id")
    if channel_id not in service.config.by_id:
        raise ProblemError(404, "channel_not_found", "Channel not found")
    rows = [dict(r) for r in await store.kill_switches(service.pool)]
    audit = [dict(r) for r in await store.kill_switch_audit(service.pool, channel_id)]
    return json_response(
        {"switches": [r for r in rows if r["channel_id"] == channel_id], "audit": audit}
    )


async def set_kill_switch(request: web.Request) -> web.Response:
    service = request.app[service_key]
    channel_id = _path_id(request, "channel_id")
    operation = request.match_info["operation"]
    if operation not in wire.KILL_OPERATIONS:
        raise ProblemError(
            404,
            "kill_operation_unknown",
            "Unknown operation",
            f"operation must be one of {', '.join(wire.KILL_OPERATIONS)}",
        )
    if channel_id not in service.config.by_id:
        raise ProblemError(404, "channel_not_found", "Channel not found")
    body = await read_json(request, wire.KillSwitchRequest)
    row = await service.set_kill_switch(
        channel_id, operation, body.engaged, body.reason, body.actor, request.get(request_id_key)
    )
    return json_response(row)


async def decision(request: web.Request) -> web.Response:
    service = request.app[service_key]
    key = _path_id(request, "attempt_id")
    row = await store.decision(service.pool, key)
    if row is None:
        raise ProblemError(404, "decision_not_found", "Decision not found")
    return json_response(
        {
            "decision_id": row["decision_id"],
            "attempt_id": row["attempt_id"],
            "payout_id": row["payout_id"],
            "purpose": row["purpose"],
            "chosen": row["chosen"],
            "reason": row["reason"],
            "facts": msgspec.json.decode(row["facts"]),
            "candidates": msgspec.json.decode(row["candidates"]),
            "created_at": row["created_at"],
        }
    )


def verify_bank_signature(
    secret: str, header: str, body: bytes, *, now_s: int, tolerance_s: int
) -> None:
    match = _SIGNATURE.match(header.strip())
    if not match:
        raise ProblemError(401, "bank_signature_invalid", "Invalid signature", "malformed header")
    timestamp = int(match.group(1))
    if abs(now_s - timestamp) > tolerance_s:
        raise ProblemError(401, "bank_signature_invalid", "Invalid signature", "stale timestamp")
    expected = hmac.new(
        secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256
    ).hexdigest()
    if not hmac.compare_digest(expected, match.group(2)):
        raise ProblemError(401, "bank_signature_invalid", "Invalid signature", "mismatch")


async def bank_callback(request: web.Request) -> web.Response:
    settings = request.app[settings_key]
    bank = _path_id(request, "bank")
    raw = await request.read()
    verify_bank_signature(
        settings.bank_callback_secret,
        request.headers.get("Bank-Signature", ""),
        raw,
        now_s=int(time.time()),
        tolerance_s=settings.callback_tolerance_s,
    )
    if request.content_type != "application/json":
        raise ProblemError(415, "unsupported_media_type", "Unsupported media type")
    body = decode_body(raw, wire.BankCallback)
    ack = await request.app[service_key].bank_callback(bank, msgspec.to_builtins(body))
    return json_response(ack)


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_post("/v1/tcc/{gid}/{branch_id}/try", tcc_try)
    r.add_post("/v1/tcc/{gid}/{branch_id}/confirm", tcc_confirm)
    r.add_post("/v1/tcc/{gid}/{branch_id}/cancel", tcc_cancel)
    r.add_post("/v1/submissions", submit)
    r.add_get("/v1/submissions/{payout_id}", get_submission)
    r.add_post("/v1/submissions/{payout_id}/inquire", inquire)
    r.add_get("/v1/attempts/export", export_attempts)
    r.add_get("/v1/channels", channels)
    r.add_get("/v1/config", config_status)
    r.add_get("/v1/channels/{channel_id}/kill_switches", list_kill_switches)
    r.add_put("/v1/channels/{channel_id}/kill_switches/{operation}", set_kill_switch)
    r.add_get("/v1/decisions/{attempt_id}", decision)
    r.add_post("/v1/bank_callbacks/{bank}", bank_callback)
