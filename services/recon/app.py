"""Composition root of the reconciliation service. Never reads the environment."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import asyncpg
from aiohttp import web

import contracts.recon
from services.kit import db, outbox
from services.kit.amqp import Broker
from services.kit.web import base_app
from services.recon import console, metrics
from services.recon.adapters.parsing import default_parser, load_rules_file
from services.recon.adapters.records import RecordsSource, RouterExport
from services.recon.domain.rules import RulesBook
from services.recon.entrypoints import consumers, http
from services.recon.entrypoints.intake import intake_context
from services.recon.handlers import ParseFn, ReconService
from services.recon.keys import service_key, settings_key
from services.recon.settings import Settings

SERVICE = "recon"
pool_key = web.AppKey("recon_pool", asyncpg.Pool)
broker_key = web.AppKey("recon_broker", Broker)
http_key = web.AppKey("recon_http", aiohttp.ClientSession)


async def database_ready(app: web.Application) -> None:
    await app[pool_key].fetchval("SELECT 1")


async def broker_ready(app: web.Application) -> None:
    if not app[broker_key].is_connected:
        raise ConnectionError("broker not connected")


def create_app(
    settings: Settings,
    *,
    rules: RulesBook | None = None,
    records: RecordsSource | None = None,
    parse: ParseFn | None = None,
    run_intake: bool | None = None,
) -> web.Application:
    """``records``/``parse``/``rules`` default to the router export, the parsers package and
    the channels file; tests pass their own only where a real one cannot be reached."""
    rules_book = rules if rules is not None else load_rules_file(settings.channels_file)
    app = base_app(
        openapi_document=contracts.recon.document(),
        client_max_size=max(settings.request_body_max_bytes, settings.upload_max_bytes),
        middlewares=[http.finance_key_middleware(settings.finance_key)],
        readiness=[database_ready, broker_ready],
    )
    app[settings_key] = settings

    async def database(app: web.Application) -> AsyncIterator[None]:
        dsn = db.service_dsn(settings.database_url, settings.db_name_prefix, SERVICE)
        pool = await db.create_pool(dsn, max_size=settings.db_pool_max)
        app[pool_key] = pool
        yield
        await pool.close()

    async def client(app: web.Application) -> AsyncIterator[None]:
        session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=settings.export_timeout_s, connect=5)
        )
        app[http_key] = session
        yield
        await session.close()

    async def service(app: web.Application) -> AsyncIterator[None]:
        source = records or RouterExport(
            app[http_key],
            settings.router_url,
            settings.service_token,
            max_bytes=settings.export_max_bytes,
            timeout_s=settings.export_timeout_s,
        )
        app[service_key] = ReconService(
            app[pool_key], settings, rules_book, source, parse or default_parser()
        )
        yield

    async def broker(app: web.Application) -> AsyncIterator[None]:
        connection = Broker(
            settings.amqp_url,
            settings.amqp_prefix,
            queue_expires_ms=settings.amqp_queue_expires_ms,
        )
        await connection.connect()
        app[broker_key] = connection
        yield
        await connection.close()

    async def relay(app: web.Application) -> AsyncIterator[None]:
        stop = asyncio.Event()
        task = asyncio.create_task(
            outbox.relay(
                app[pool_key], app[broker_key], batch_size=settings.relay_batch_size, stop=stop
            )
        )
        yield
        stop.set()
        await task

    app.cleanup_ctx.append(database)
    app.cleanup_ctx.append(client)
    app.cleanup_ctx.append(service)
    app.cleanup_ctx.append(broker)
    app.cleanup_ctx.append(relay)
    app.cleanup_ctx.append(consumers.payout_alerts_context(pool_key, broker_key))
    if settings.intake_enabled if run_intake is None else run_intake:
        app.cleanup_ctx.append(intake_context(service_key))
    metrics.register(app, pool_key)
    http.add_routes(app)
    console.setup(app)  # finance console, reports, finance API additions (docs/CONSOLE.md)
    return app
