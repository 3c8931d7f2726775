"""aiohttp views: the per-bank API (X-Bank-Key) and the admin API (X-Service-Token)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import msgspec
from aiohttp import web

from contracts.banksim import (
    JOURNAL_STATUSES,
    BankList,
    BehaviourRequest,
    StatementRequest,
    TransferRequest,
)
from services.banksim.keys import simulator_key, statements_key
from services.kit.auth import constant_time_equal, service_token_middleware
from services.kit.errors import ProblemError, json_response, read_json
from services.kit.logging import get_logger

log = get_logger(__name__)

BANK_KEY_HEADER = "X-Bank-Key"
JOURNAL_PAGE_MAX = 5000

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def auth_middleware(
    bank_key: str, service_token: str
) -> Callable[..., Awaitable[web.StreamResponse]]:
    """The bank API takes the bank client key; everything else the internal service token."""
    service = service_token_middleware(service_token)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/banks/"):
            presented = request.headers.get(BANK_KEY_HEADER, "")
            if not presented or not constant_time_equal(presented, bank_key):
                raise ProblemError(
                    401,
                    "bank_key_invalid",
                    "Unauthorized",
                    f"a valid {BANK_KEY_HEADER} header is required",
                )
            return await handler(request)
        return await service(request, handler)

    return middleware


async def create_transfer(request: web.Request) -> web.StreamResponse:
    sim = request.app[simulator_key]
    bank = request.match_info["bank"]
    sim.bank(bank)  # 404 before reading the body
    body = await read_json(request, TransferRequest)
    outcome = await sim.submit(bank, body)
    if outcome.reply == "drop":
        # Executed and recorded; the caller never hears back. Abort the connection (RST) so
        # the client sees a reset, not a well-formed reply.
        log.info("bank_reply_dropped", bank=bank, reference=body.reference)
        if request.transport is not None:
            request.transport.abort()
        raise asyncio.CancelledError  # aiohttp treats a cancelled handler as "no response"
    if outcome.reply == "delay":
        log.info("bank_reply_delayed", bank=bank, reference=body.reference)
        await asyncio.sleep(outcome.reply_delay_ms / 1000)
    if outcome.reply == "ambiguous":
        raise ProblemError(
            outcome.ambiguous_status,
            "bank_internal_error",
            "Bank internal error",
            "the bank failed while processing; the transfer may or may not have executed",
        )
    return json_response(outcome.result, status=outcome.http_status)


async def get_transfer(request: web.Request) -> web.Response:
    sim = request.app[simulator_key]
    result = await sim.inquire(request.match_info["bank"], request.match_info["reference"])
    return json_response(result)


async def list_banks(request: web.Request) -> web.Response:
    sim = request.app[simulator_key]
    return json_response(BankList(banks=[sim.summary(name) for name in sim.banks]))


async def put_behaviour(request: web.Request) -> web.Response:
    sim = request.app[simulator_key]
    bank = request.match_info["bank"]
    sim.bank(bank)
    body = await read_json(request, BehaviourRequest)
    overrides = (
        {k: v for k, v in msgspec.structs.asdict(body.overrides).items() if v is not None}
        if body.overrides is not None
        else {}
    )
    await sim.set_behaviour(bank, body.mode, overrides)
    return json_response(sim.summary(bank))


def _int_query(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ProblemError(
            400, "invalid_query", "Invalid query parameter", f"{name} must be an integer"
        ) from None
    if not lo <= value <= hi:
        raise ProblemError(
            400, "invalid_query", "Invalid query parameter", f"{name} must be in {lo}..{hi}"
        )
    return value


async def get_journal(request: web.Request) -> web.Response:
    sim = request.app[simulator_key]
    bank = request.match_info["bank"]
    sim.bank(bank)
    after = _int_query(request, "after", 0, 0, 2**62)
    limit = _int_query(request, "limit", 1000, 1, JOURNAL_PAGE_MAX)
    status = request.query.get("status")
    if status is not None and status not in JOURNAL_STATUSES:
        raise ProblemError(
            400,
            "invalid_query",
            "Invalid query parameter",
            f"status must be {'|'.join(JOURNAL_STATUSES)}",
        )
    return json_response(await sim.journal(bank, after=after, limit=limit, status=status))


async def post_statement(request: web.Request) -> web.Response:
    body = await read_json(request, StatementRequest)
    result = await request.app[statements_key].write(body, trigger="admin")
    return json_response(result, status=201)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/banks/{bank}/transfers", create_transfer)
    app.router.add_get("/banks/{bank}/transfers/{reference}", get_transfer)
    app.router.add_get("/admin/banks", list_banks)
    app.router.add_put("/admin/banks/{bank}/behaviour", put_behaviour)
    app.router.add_get("/admin/banks/{bank}/executed", get_journal)
    app.router.add_post("/admin/statements", post_statement)
