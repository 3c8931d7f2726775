"""aiohttp views: the merchant API under /v1 and the operator API under /admin."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from contracts import payout as wire
from services.kit.auth import bearer_token, constant_time_equal, hash_key
from services.kit.errors import ProblemError, json_response, read_json
from services.payout import handlers, operations
from services.payout.keys import context_key, merchant_id_key

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _unauthorized(detail: str) -> ProblemError:
    return ProblemError(
        401,
        "unauthorized",
        "Unauthorized",
        detail,
        headers={"WWW-Authenticate": 'Bearer realm="payments"'},
    )


BATCH_PATH = "/v1/payout_batches"


@web.middleware
async def body_size_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Only batch uploads may use the large body limit; every other body keeps the common one."""
    ctx = request.app[context_key]
    limit = (
        ctx.settings.batch_body_max_bytes
        if request.path == BATCH_PATH
        else ctx.settings.request_body_max_bytes
    )
    length = request.content_length
    if length is not None and length > limit:
        raise ProblemError(
            413, "request_too_large", "Request body too large", f"at most {limit} bytes"
        )
    if length is None and request.body_exists and request.path != BATCH_PATH:
        raw = await request.read()  # chunked: aiohttp's own limit already applies; check ours
        if len(raw) > limit:
            raise ProblemError(
                413, "request_too_large", "Request body too large", f"at most {limit} bytes"
            )
    return await handler(request)


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """/v1: a merchant secret key (hashed lookup, revoked keys refused); /admin: the admin key."""
    path = request.path
    if path.startswith("/v1/"):
        token = bearer_token(request)
        if token is None:
            raise _unauthorized("send Authorization: Bearer <secret key>")
        ctx = request.app[context_key]
        merchant_id = await ctx.pool.fetchval(
            "SELECT merchant_id FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
            hash_key(token),
        )
        if merchant_id is None:
            raise _unauthorized("unknown or revoked key")
        request[merchant_id_key] = merchant_id
    elif path.startswith("/admin"):
        token = bearer_token(request)
        ctx = request.app[context_key]
        if token is None or not constant_time_equal(hash_key(token), ctx.settings.admin_key_hash):
            raise _unauthorized("a valid admin key is required")
    return await handler(request)


def _ctx(request: web.Request) -> handlers.Context:
    return request.app[context_key]


def _merchant(request: web.Request) -> str:
    return request[merchant_id_key]


def _answer(answer: handlers.Answer) -> web.Response:
    headers = {"Idempotent-Replayed": "true"} if answer.replayed else {}
    return web.Response(
        status=answer.status, body=answer.body, content_type="application/json", headers=headers
    )


def _query(request: web.Request) -> dict[str, str]:
    return {k: v for k, v in request.query.items()}


# ---- merchant API ---------------------------------------------------------------------------


async def create_payout(request: web.Request) -> web.Response:
    if request.content_type != "application/json":
        raise ProblemError(
            415, "unsupported_media_type", "Unsupported media type", "send application/json"
        )
    raw = await request.read()
    answer = await handlers.create_payout(
        _ctx(request), _merchant(request), request.headers.get("Idempotency-Key"), raw
    )
    return _answer(answer)


async def list_payouts(request: web.Request) -> web.Response:
    return json_response(
        await handlers.list_payouts(_ctx(request), _merchant(request), _query(request))
    )


async def get_payout(request: web.Request) -> web.Response:
    return json_response(
        await handlers.get_payout(
            _ctx(request), _merchant(request), request.match_info["payout_id"]
        )
    )


async def cancel_payout(request: web.Request) -> web.Response:
    return json_response(
        await handlers.cancel_payout(
            _ctx(request), _merchant(request), request.match_info["payout_id"]
        )
    )


async def create_batch(request: web.Request) -> web.Response:
    raw = await request.read()
    answer = await handlers.create_batch(
        _ctx(request),
        _merchant(request),
        request.headers.get("Idempotency-Key"),
        raw,
        request.content_type,
    )
    return _answer(answer)


async def get_batch(request: web.Request) -> web.Response:
    return json_response(
        await handlers.get_batch(_ctx(request), _merchant(request), request.match_info["batch_id"])
    )


async def balance(request: web.Request) -> web.Response:
    return json_response(await handlers.balance(_ctx(request), _merchant(request)))


async def list_events(request: web.Request) -> web.Response:
    return json_response(
        await handlers.list_events(_ctx(request), _merchant(request), _query(request))
    )


async def create_webhook_endpoint(request: web.Request) -> web.Response:
    body = await read_json(request, wire.CreateWebhookEndpoint)
    return json_response(
        await handlers.create_webhook_endpoint(_ctx(request), _merchant(request), body), status=201
    )


async def list_webhook_endpoints(request: web.Request) -> web.Response:
    return json_response(await handlers.list_webhook_endpoints(_ctx(request), _merchant(request)))


async def delete_webhook_endpoint(request: web.Request) -> web.Response:
    return json_response(
        await handlers.delete_webhook_endpoint(
            _ctx(request), _merchant(request), request.match_info["endpoint_id"]
        )
    )


# ---- admin API ------------------------------------------------------------------------------


async def admin_create_merchant(request: web.Request) -> web.Response:
    body = await read_json(request, wire.CreateMerchant)
    return json_response(await operations.create_merchant(_ctx(request), body), status=201)


async def admin_get_merchant(request: web.Request) -> web.Response:
    return json_response(
        await operations.merchant_object(_ctx(request).pool, request.match_info["merchant_id"])
    )


async def admin_create_key(request: web.Request) -> web.Response:
    return json_response(
        await operations.create_key(_ctx(request), request.match_info["merchant_id"]), status=201
    )


async def admin_revoke_key(request: web.Request) -> web.Response:
    return json_response(
        await operations.revoke_key(
            _ctx(request), request.match_info["merchant_id"], request.match_info["key_id"]
        )
    )


async def admin_set_limits(request: web.Request) -> web.Response:
    body = await read_json(request, wire.Limits)
    return json_response(
        await operations.set_limits(_ctx(request), request.match_info["merchant_id"], body)
    )


async def admin_set_fees(request: web.Request) -> web.Response:
    body = await read_json(request, wire.Fees)
    return json_response(
        await operations.set_fees(_ctx(request), request.match_info["merchant_id"], body)
    )


async def admin_fund(request: web.Request) -> web.Response:
    body = await read_json(request, wire.FundMerchant)
    status, funding = await operations.fund_merchant(
        _ctx(request), request.match_info["merchant_id"], body
    )
    return json_response(funding, status=status)


async def admin_list_review(request: web.Request) -> web.Response:
    return json_response(await operations.list_review(_ctx(request), _query(request)))


async def admin_approve(request: web.Request) -> web.Response:
    body = await read_json(request, wire.Approve)
    return json_response(
        await operations.approve(_ctx(request), request.match_info["payout_id"], body)
    )


async def admin_mark_paid(request: web.Request) -> web.Response:
    body = await read_json(request, wire.MarkPaid)
    return json_response(
        await operations.mark_paid(_ctx(request), request.match_info["payout_id"], body)
    )


async def admin_mark_failed(request: web.Request) -> web.Response:
    body = await read_json(request, wire.MarkFailed)
    return json_response(
        await operations.mark_failed(_ctx(request), request.match_info["payout_id"], body)
    )


async def admin_audit(request: web.Request) -> web.Response:
    return json_response(
        await operations.audit_records(_ctx(request), request.match_info["payout_id"])
    )


async def admin_list_deliveries(request: web.Request) -> web.Response:
    return json_response(await operations.list_deliveries(_ctx(request), _query(request)))


async def admin_get_delivery(request: web.Request) -> web.Response:
    return json_response(
        await operations.delivery_detail(_ctx(request), request.match_info["delivery_id"])
    )


async def admin_resend(request: web.Request) -> web.Response:
    return json_response(
        await operations.resend_delivery(_ctx(request), request.match_info["delivery_id"])
    )


# ---- risk controls --------------------------------------------------------------------------


def _version(request: web.Request) -> int:
    raw = request.match_info["version"]
    if not raw.isdigit() or not 1 <= int(raw) <= 2**62:
        raise ProblemError(400, "invalid_query", "Invalid version", "a positive integer")
    return int(raw)


async def _ruleset_body(request: web.Request) -> bytes:
    raw = await request.read()
    if not raw:
        raise ProblemError(400, "empty_body", "Empty body", "send a rule-set document")
    return raw


async def admin_risk_validate(request: web.Request) -> web.Response:
    raw = await _ruleset_body(request)
    return json_response(await _ctx(request).risk.validate(raw, request.content_type))


async def admin_risk_store(request: web.Request) -> web.Response:
    raw = await _ruleset_body(request)
    stored = await _ctx(request).risk.create(raw, request.content_type, author="admin")
    return json_response(stored, status=201)


async def admin_risk_list(request: web.Request) -> web.Response:
    return json_response(await _ctx(request).risk.listing())


async def admin_risk_get(request: web.Request) -> web.Response:
    return json_response(await _ctx(request).risk.get(_version(request)))


async def admin_risk_dry_run(request: web.Request) -> web.Response:
    version = _version(request)
    body = await read_json(request, wire.RiskDryRun) if request.body_exists else wire.RiskDryRun()
    return json_response(await _ctx(request).risk.dry_run(version, body.days, body.changes_max))


async def admin_risk_publish(request: web.Request) -> web.Response:
    return json_response(await _ctx(request).risk.publish(_version(request), by="admin"))


async def admin_risk_engine(request: web.Request) -> web.Response:
    engine = _ctx(request).risk.engine
    return json_response({"version": engine.version, "stats": engine.stats()})


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_post("/v1/payouts", create_payout)
    r.add_get("/v1/payouts", list_payouts)
    r.add_get("/v1/payouts/{payout_id}", get_payout)
    r.add_post("/v1/payouts/{payout_id}/cancel", cancel_payout)
    r.add_post(BATCH_PATH, create_batch)
    r.add_get("/v1/payout_batches/{batch_id}", get_batch)
    r.add_get("/v1/balance", balance)
    r.add_get("/v1/events", list_events)
    r.add_post("/v1/webhook_endpoints", create_webhook_endpoint)
    r.add_get("/v1/webhook_endpoints", list_webhook_endpoints)
    r.add_delete("/v1/webhook_endpoints/{endpoint_id}", delete_webhook_endpoint)
    r.add_post("/admin/merchants", admin_create_merchant)
    r.add_get("/admin/merchants/{merchant_id}", admin_get_merchant)
    r.add_post("/admin/merchants/{merchant_id}/keys", admin_create_key)
    r.add_delete("/admin/merchants/{merchant_id}/keys/{key_id}", admin_revoke_key)
    r.add_put("/admin/merchants/{merchant_id}/limits", admin_set_limits)
    r.add_put("/admin/merchants/{merchant_id}/fees", admin_set_fees)
    r.add_post("/admin/merchants/{merchant_id}/fundings", admin_fund)
    r.add_get("/admin/payouts", admin_list_review)
    r.add_post("/admin/payouts/{payout_id}/approve", admin_approve)
    r.add_post("/admin/payouts/{payout_id}/mark_paid", admin_mark_paid)
    r.add_post("/admin/payouts/{payout_id}/mark_failed", admin_mark_failed)
    r.add_get("/admin/payouts/{payout_id}/audit", admin_audit)
    r.add_get("/admin/webhook_deliveries", admin_list_deliveries)
    r.add_get("/admin/webhook_deliveries/{delivery_id}", admin_get_delivery)
    r.add_post("/admin/webhook_deliveries/{delivery_id}/resend", admin_resend)
    r.add_post("/admin/risk/rulesets/validate", admin_risk_validate)
    r.add_post("/admin/risk/rulesets", admin_risk_store)
    r.add_get("/admin/risk/rulesets", admin_risk_list)
    r.add_get("/admin/risk/rulesets/{version}", admin_risk_get)
    r.add_post("/admin/risk/rulesets/{version}/dry-run", admin_risk_dry_run)
    r.add_post("/admin/risk/rulesets/{version}/publish", admin_risk_publish)
    r.add_get("/admin/risk/engine", admin_risk_engine)
