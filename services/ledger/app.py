"""Composition root: ``create_app(settings)`` wires the pool (as the service's own role), the
broker and the outbox relay (alerts), the single writer, the expiry sweeper, the scheduled
tamper check and the routes. It never reads the environment."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import web

from contracts import ledger as contract
from services.kit import db, outbox
from services.kit.amqp import Broker
from services.kit.auth import service_token_middleware
from services.kit.logging import get_logger
from services.kit.web import base_app
from services.ledger import metrics
from services.ledger.entrypoints import http
from services.ledger.keys import (
    broker_key,
    pool_key,
    settings_key,
    tamper_check_key,
    writer_key,
)
from services.ledger.settings import Settings
from services.ledger.tamper_check import TamperCheck, run_schedule
from services.ledger.writer import Writer, expiry_sweeper

log = get_logger(__name__)


async def database_ready(app: web.Application) -> None:
    async with app[pool_key].acquire() as conn:
        await conn.fetchval("SELECT 1 FROM transfers LIMIT 1")


async def _database(app: web.Application) -> AsyncIterator[None]:
    settings = app[settings_key]
    pool = await db.create_pool(settings.app_dsn, max_size=settings.db_pool_max)
    app[pool_key] = pool
    try:
        yield
    finally:
        await pool.close()


async def broker_ready(app: web.Application) -> None:
    if not app[broker_key].is_connected:
        raise ConnectionError("broker not connected")


async def _broker(app: web.Application) -> AsyncIterator[None]:
    """The broker (publisher confirms on) and the outbox relay that publishes the ledger's
    alerts; the relay stops before the broker closes."""
    settings = app[settings_key]
    broker = Broker(
        settings.amqp_url, settings.amqp_prefix, queue_expires_ms=settings.amqp_queue_expires_ms
    )
    await broker.connect()
    app[broker_key] = broker
    stop = asyncio.Event()
    relay_task = asyncio.create_task(
        outbox.relay(app[pool_key], broker, batch_size=settings.relay_batch_max, stop=stop),
        name="ledger-outbox-relay",
    )
    try:
        yield
    finally:
        stop.set()
        await relay_task
        await broker.close()


async def _tamper_check(app: web.Application) -> AsyncIterator[None]:
    settings = app[settings_key]
    check = TamperCheck(app[pool_key], full_every=settings.verify_full_every)
    app[tamper_check_key] = check
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_schedule(check, interval_s=settings.verify_interval_s, stop=stop),
        name="ledger-tamper-check",
    )
    try:
        yield
    finally:
        stop.set()
        await task


async def _writer(app: web.Application) -> AsyncIterator[None]:
    """The writer and the sweeper stop after aiohttp has drained in-flight requests, so every
    waiting caller gets its committed answer."""
    settings = app[settings_key]
    writer = Writer(
        app[pool_key],
        settings.app_dsn,
        linger_us=settings.writer_linger_us,
        batch_transfers_max=settings.writer_batch_transfers_max,
        queue_max=settings.writer_queue_max,
    )
    app[writer_key] = writer
    stop = asyncio.Event()
    writer_task = asyncio.create_task(writer.run(stop), name="ledger-writer")
    sweeper_task = asyncio.create_task(
        expiry_sweeper(
            app[pool_key],
            writer,
            interval_s=settings.expiry_sweep_interval_ms / 1000,
            batch_max=settings.expiry_sweep_batch_max,
            stop=stop,
        ),
        name="ledger-expiry-sweeper",
    )
    try:
        yield
    finally:
        stop.set()
        await asyncio.gather(sweeper_task, writer_task)
        stats = writer.stats
        log.info(
            "ledger_writer_stats",
            batches=stats.batches,
            jobs=stats.jobs,
            transfers=stats.transfers,
            jobs_per_batch=round(stats.jobs / stats.batches, 1) if stats.batches else 0,
            batch_jobs_max=stats.batch_jobs_max,
            busy_s=round(stats.busy_s, 3),
            retried_alone=stats.retried_alone,
        )


def create_app(settings: Settings) -> web.Application:
    app = base_app(
        openapi_document=contract.document(),
        client_max_size=settings.request_body_max_bytes,
        middlewares=[service_token_middleware(settings.service_token)],
        readiness=[database_ready, broker_ready],
    )
    app[settings_key] = settings
    app.cleanup_ctx.append(_database)
    app.cleanup_ctx.append(_broker)
    app.cleanup_ctx.append(_writer)
    app.cleanup_ctx.append(_tamper_check)
    metrics.register(app)
    http.add_routes(app)
    return app
