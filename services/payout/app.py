"""Composition root of the payout service: pools, clients, consumers, relay and loops."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web

import contracts.payout
from contracts.wire import Envelope
from services.kit import db, outbox
from services.kit.amqp import Broker
from services.kit.logging import get_logger
from services.kit.ratelimit import TokenBucketLimiter, rate_limit_middleware
from services.kit.web import base_app
from services.payout import delivery, handlers, metrics, risk_controls
from services.payout.adapters.participants import LedgerClient, RouterClient
from services.payout.coordinator import Coordinator
from services.payout.entrypoints import consumers, http
from services.payout.keys import context_key, merchant_id_key
from services.payout.risk_controls import RiskControls
from services.payout.settings import Settings

log = get_logger(__name__)

settings_key = web.AppKey("payout_settings", Settings)
pool_key = web.AppKey("payout_pool", asyncpg.Pool)
broker_key = web.AppKey("payout_broker", Broker)
session_key = web.AppKey("payout_session", aiohttp.ClientSession)
relay_health_key = web.AppKey("payout_relay_health", outbox.RelayHealth)

JANITOR_INTERVAL_S = 60.0
RISK_POLL_INTERVAL_S = 3.0  # catches a missed risk.ruleset_published event
RISK_QUEUE_EXPIRY_MS = 60_000


def dsn(settings: Settings) -> str:
    return db.service_dsn(settings.database_url, settings.db_name_prefix, "payout")


async def database(app: web.Application) -> AsyncIterator[None]:
    pool = await db.create_pool(dsn(app[settings_key]), max_size=app[settings_key].db_pool_max)
    app[pool_key] = pool
    yield
    await pool.close()


async def clients(app: web.Application) -> AsyncIterator[None]:
    s = app[settings_key]
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200, keepalive_timeout=30))
    app[session_key] = session
    ledger = LedgerClient(session, s.ledger_url, s.service_token, s.participant_timeout_ms)
    router = RouterClient(
        session, s.router_url, s.service_token, s.participant_timeout_ms, s.submission_timeout_ms
    )
    coordinator = Coordinator(app[pool_key], ledger, router, s)
    risk_controls = RiskControls(app[pool_key])
    await risk_controls.start()  # before the site accepts requests: rules loaded and warm
    app[context_key] = handlers.Context(
        pool=app[pool_key], coordinator=coordinator, ledger=ledger, settings=s, risk=risk_controls
    )
    yield
    await session.close()


async def broker(app: web.Application) -> AsyncIterator[None]:
    s = app[settings_key]
    b = Broker(s.amqp_url, s.amqp_prefix, queue_expires_ms=s.amqp_queue_expires_ms)
    await b.connect()
    app[broker_key] = b
    ctx = app[context_key]

    async def attempt_resolved(envelope: Envelope) -> None:
        await consumers.on_attempt_resolved(ctx, envelope)

    async def recon_resolved(envelope: Envelope) -> None:
        await consumers.on_recon_resolved(ctx, envelope)

    async def fan_out(envelope: Envelope) -> None:
        await delivery.fan_out(ctx.pool, s, envelope)

    await b.consume(consumers.ATTEMPTS_CONSUMER, ["attempt.resolved"], attempt_resolved)
    await b.consume(consumers.RECON_CONSUMER, ["recon.payout_resolved"], recon_resolved)
    await b.consume(delivery.CONSUMER, ["payout.*"], fan_out)
    # Every instance must see every published rule set and every accepted payout (velocity
    # counters): a queue of its own, removed by the broker once the instance is gone.
    await b.consume(
        f"payout.risk.{s.instance_id}",
        [risk_controls.PUBLISHED_EVENT, "payout.created"],
        ctx.risk.on_event,
        queue_arguments={"x-expires": RISK_QUEUE_EXPIRY_MS},
    )
    yield
    await b.close()


Loop = Callable[[web.Application, asyncio.Event], Coroutine[Any, Any, None]]


def _background(name: str, factory: Loop) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context running ``factory(app, stop)`` until shutdown, then awaiting it."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        stop = asyncio.Event()
        task = asyncio.create_task(factory(app, stop), name=name)
        yield
        stop.set()
        try:
            await asyncio.wait_for(task, timeout=15)
        except TimeoutError:
            log.warning("background_task_slow_to_stop", task=name)

    context.__name__ = name
    return context


async def _relay(app: web.Application, stop: asyncio.Event) -> None:
    await outbox.relay(
        app[pool_key],
        app[broker_key],
        batch_size=app[settings_key].relay_batch_size,
        stop=stop,
        health=app[relay_health_key],
    )


async def _coordinator(app: web.Application, stop: asyncio.Event) -> None:
    await app[context_key].coordinator.run(stop)


async def _sender(app: web.Application, stop: asyncio.Event) -> None:
    await delivery.Sender(app[pool_key], app[session_key], app[settings_key]).run(stop)


async def _batches_and_janitor(app: web.Application, stop: asyncio.Event) -> None:
    """Batch items become payouts in chunks; expired idempotency keys are purged."""
    ctx = app[context_key]
    loop = asyncio.get_running_loop()
    last_janitor = last_risk_poll = 0.0
    while not stop.is_set():
        handled = 0
        try:
            handled = await handlers.process_batch_chunk(ctx)
            if loop.time() - last_risk_poll > RISK_POLL_INTERVAL_S:
                last_risk_poll = loop.time()
                await ctx.risk.refresh()
            if loop.time() - last_janitor > JANITOR_INTERVAL_S:
                last_janitor = loop.time()
                await handlers.complete_empty_batches(ctx)
                purged = await handlers.purge_expired_idempotency_keys(ctx)
                if purged:
                    log.info("idempotency_keys_purged", count=purged)
        except Exception:  # worker loop boundary: log, never die silently
            log.exception("batch_loop_retry")
        if handled:
            continue
        try:
            await asyncio.wait_for(stop.wait(), timeout=0.5)
        except TimeoutError:
            pass


async def database_ready(app: web.Application) -> None:
    await app[pool_key].fetchval("SELECT 1")


async def broker_ready(app: web.Application) -> None:
    # Connected, and the broker counts a consumer on each of our queues.
    app[broker_key].check()


async def relay_ready(app: web.Application) -> None:
    # The relay is the only way the payout events (and so the webhooks) leave the service.
    app[relay_health_key].check()


def rate_limit_key(request: web.Request) -> str | None:
    """A merchant's keys share its bucket; operators share the admin one."""
    merchant_id = request.get(merchant_id_key)
    if merchant_id is not None:
        return f"merchant:{merchant_id}"
    return "admin" if request.path.startswith("/admin") else None


def rate_limits(settings: Settings) -> list[Any]:
    if settings.rate_limit_per_s == 0:
        return []
    limiter = TokenBucketLimiter(settings.rate_limit_per_s, settings.rate_limit_burst)
    return [rate_limit_middleware(limiter, rate_limit_key, scope="payout")]


def create_app(settings: Settings) -> web.Application:
    app = base_app(
        openapi_document=contracts.payout.document(),
        # Batches may be larger than any other body; body_size_middleware keeps the others to
        # REQUEST_BODY_MAX_BYTES.
        client_max_size=max(settings.batch_body_max_bytes, settings.request_body_max_bytes),
        # The limiter runs after authentication: its key is the caller's identity.
        middlewares=[http.body_size_middleware, http.auth_middleware, *rate_limits(settings)],
        readiness=[database_ready, broker_ready, relay_ready],
    )
    app[settings_key] = settings
    app[relay_health_key] = outbox.RelayHealth()
    app.cleanup_ctx.append(database)
    app.cleanup_ctx.append(clients)
    app.cleanup_ctx.append(broker)
    app.cleanup_ctx.append(_background("outbox_relay", _relay))
    app.cleanup_ctx.append(_background("tcc_recovery", _coordinator))
    app.cleanup_ctx.append(_background("webhook_sender", _sender))
    app.cleanup_ctx.append(_background("batches", _batches_and_janitor))
    metrics.register(app, pool_key)
    http.add_routes(app)
    return app
