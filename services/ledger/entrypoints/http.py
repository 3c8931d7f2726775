"""aiohttp views: decode and validate, call the use case, encode. No rules live here."""

from __future__ import annotations

import re
from datetime import datetime

from aiohttp import web

from contracts import ledger as wire
from services.kit.errors import ProblemError, json_response, read_json
from services.kit.logging import get_logger
from services.ledger import handlers
from services.ledger.keys import pool_key, settings_key, writer_key

log = get_logger(__name__)
_IDENTIFIER = re.compile(r"^[A-Za-z0-9_.:\-]{1,64}$")


def _path_id(request: web.Request, name: str) -> str:
    value = request.match_info[name]
    if not _IDENTIFIER.match(value):
        raise ProblemError(
            400,
            "invalid_identifier",
            "Invalid identifier",
            f"{name} must match {_IDENTIFIER.pattern}",
        )
    return value


def _int_query(request: web.Request, name: str, *, min_value: int, max_value: int) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or not min_value <= int(raw) <= max_value:
        raise ProblemError(
            400,
            "invalid_query",
            "Invalid query parameter",
            f"{name} must be an integer in [{min_value}, {max_value}]",
        )
    return int(raw)


async def create_account(request: web.Request) -> web.Response:
    body = await read_json(request, wire.AccountCreate)
    created, account = await handlers.create_account(request.app[pool_key], body)
    return json_response(account, status=201 if created else 200)


async def get_account(request: web.Request) -> web.Response:
    account = await handlers.get_account(request.app[pool_key], _path_id(request, "account_id"))
    return json_response(account)


async def account_history(request: web.Request) -> web.Response:
    page_max = request.app[settings_key].history_page_max
    limit = _int_query(request, "limit", min_value=1, max_value=page_max) or min(100, page_max)
    page = await handlers.history(
        request.app[pool_key],
        _path_id(request, "account_id"),
        request.query.get("cursor"),
        limit,
    )
    return json_response(page)


async def account_balance(request: web.Request) -> web.Response:
    as_of_seq = _int_query(request, "as_of_seq", min_value=0, max_value=2**63 - 1)
    as_of: datetime | None = None
    raw = request.query.get("as_of")
    if raw:
        try:
            as_of = datetime.fromisoformat(raw)
        except ValueError:
            as_of = None
        if as_of is None or as_of.tzinfo is None:
            raise ProblemError(
                400,
                "invalid_query",
                "Invalid query parameter",
                "as_of must be RFC 3339 with offset",
            )
    result = await handlers.balance(
        request.app[pool_key], _path_id(request, "account_id"), as_of_seq, as_of
    )
    return json_response(result)


async def create_transfers(request: web.Request) -> web.Response:
    body = await read_json(request, wire.TransfersRequest)
    return json_response(await handlers.create_transfers(request.app[writer_key], body))


async def get_transfer(request: web.Request) -> web.Response:
    return json_response(
        await handlers.get_transfer(request.app[pool_key], request.match_info["transfer_id"])
    )


async def verify(request: web.Request) -> web.Response:
    return json_response(await handlers.verify(request.app[pool_key]))


async def tcc_try(request: web.Request) -> web.Response:
    body = await read_json(request, wire.TccTry)
    settings = request.app[settings_key]
    if body.timeout_s is not None and body.timeout_s > settings.tcc_hold_timeout_max_s:
        raise ProblemError(
            422,
            "validation_error",
            "Invalid request",
            f"timeout_s must be <= {settings.tcc_hold_timeout_max_s}",
        )
    result = await handlers.tcc_try(
        request.app[writer_key],
        _path_id(request, "gid"),
        _path_id(request, "branch_id"),
        body,
        settings.tcc_hold_timeout_s,
    )
    _log_tcc("try", result)
    return json_response(result)


async def tcc_confirm(request: web.Request) -> web.Response:
    result = await handlers.tcc_confirm(
        request.app[writer_key], _path_id(request, "gid"), _path_id(request, "branch_id")
    )
    _log_tcc("confirm", result)
    return json_response(result)


async def tcc_cancel(request: web.Request) -> web.Response:
    result = await handlers.tcc_cancel(
        request.app[writer_key], _path_id(request, "gid"), _path_id(request, "branch_id")
    )
    _log_tcc("cancel", result)
    return json_response(result)


def _log_tcc(phase: str, result: wire.TccResult) -> None:
    """One line per TCC call, carrying the payout's request id: the ledger's part of a payout
    can be found in its logs by that id."""
    log.info(
        "tcc_branch_answered",
        phase=phase,
        gid=result.gid,
        branch_id=result.branch_id,
        status=result.status,
    )


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/accounts", create_account)
    app.router.add_get("/v1/accounts/{account_id}", get_account)
    app.router.add_get("/v1/accounts/{account_id}/transfers", account_history)
    app.router.add_get("/v1/accounts/{account_id}/balance", account_balance)
    app.router.add_post("/v1/transfers", create_transfers)
    app.router.add_get("/v1/transfers/{transfer_id}", get_transfer)
    app.router.add_get("/v1/verify", verify)
    app.router.add_post("/v1/tcc/{gid}/{branch_id}/try", tcc_try)
    app.router.add_post("/v1/tcc/{gid}/{branch_id}/confirm", tcc_confirm)
    app.router.add_post("/v1/tcc/{gid}/{branch_id}/cancel", tcc_cancel)
