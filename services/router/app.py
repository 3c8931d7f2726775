"""Composition root: ``create_app(settings)`` wires the pool, broker, bank connector, config
watcher and background loops (relay, recovery, probing, health announcements) as cleanup
contexts, started in order and stopped in reverse. It never reads the environment."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
from aiohttp import web

import contracts.router as contract
from services.kit import db, outbox
from services.kit.amqp import Broker
from services.kit.logging import get_logger
from services.kit.web import base_app
from services.router import metrics
from services.router.adapters.config_files import ConfigFiles
from services.router.adapters.connectors.banksim.client import BanksimClient
from services.router.domain.health import HealthBoard, HealthPolicy
from services.router.entrypoints import http
from services.router.entrypoints.consumers import start_health_consumer
from services.router.handlers import RouterService, Tuning
from services.router.keys import broker_key, pool_key, service_key, settings_key
from services.router.settings import Settings

log = get_logger(__name__)
SERVICE = "router"


def policy_from(settings: Settings) -> HealthPolicy:
    return HealthPolicy(
        window_size_max=settings.health_window_size_max,
        window_age_max_s=float(settings.health_window_age_s),
        failure_rate_open_ppm=settings.breaker_failure_rate_ppm,
        min_samples_to_judge=settings.breaker_min_samples,
        consecutive_faults_open=settings.breaker_consecutive_faults,
        open_duration_s=settings.breaker_open_ms / 1000,
        half_open_probes_max=settings.breaker_probes_max,
        half_open_successes_to_close=settings.breaker_probe_successes,
        probe_lease_s=settings.bank_timeout_ms / 1000 + 5.0,
        idle_probe_after_s=float(settings.idle_probe_after_s),
    )


def tuning_from(settings: Settings) -> Tuning:
    return Tuning(
        instance_id=settings.instance_id,
        callback_base_url=settings.callback_base_url,
        fallback_attempts_max=settings.fallback_attempts_max,
        bank_timeout_s=settings.bank_timeout_ms / 1000,
        inquiry_base_s=settings.inquiry_base_s,
        inquiry_max_s=settings.inquiry_max_s,
        inquiry_batch_max=settings.inquiry_batch_max,
        not_found_grace_s=settings.not_found_grace_s,
    )


async def database_ready(app: web.Application) -> None:
    async with app[pool_key].acquire() as conn:
        await conn.fetchval("SELECT 1 FROM attempt LIMIT 1")


async def broker_ready(app: web.Application) -> None:
    if not app[broker_key].is_connected:
        raise ConnectionError("broker connection closed")


async def _database(app: web.Application) -> AsyncIterator[None]:
    settings = app[settings_key]
    dsn = db.service_dsn(settings.database_url, settings.db_name_prefix, SERVICE)
    pool = await db.create_pool(dsn, max_size=settings.db_pool_max)
    app[pool_key] = pool
    try:
        yield
    finally:
        await pool.close()


async def _broker(app: web.Application) -> AsyncIterator[None]:
    settings = app[settings_key]
    broker = Broker(
        settings.amqp_url,
        settings.amqp_prefix,
        queue_expires_ms=settings.amqp_queue_expires_ms,
    )
    await broker.connect()
    app[broker_key] = broker
    try:
        yield
    finally:
        await broker.close()


async def _service(app: web.Application) -> AsyncIterator[None]:
    """The bank session and the router's use cases (the config refuses to start broken)."""
    settings = app[settings_key]
    files = ConfigFiles(settings.channels_file, settings.rules_file)
    config = files.load()
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=500, keepalive_timeout=30),
        timeout=aiohttp.ClientTimeout(total=settings.bank_timeout_ms / 1000),
    )
    bank = BanksimClient(
        session,
        settings.banksim_url,
        settings.banksim_client_key,
        timeout_ms=settings.bank_timeout_ms,
        connect_timeout_ms=settings.bank_connect_timeout_ms,
    )
    service = RouterService(
        pool=app[pool_key],
        config=config,
        board=HealthBoard(policy_from(settings)),
        bank=bank,
        tuning=tuning_from(settings),
    )
    await service.refresh_kill_switches()
    app[service_key] = service
    app[_files_key] = files
    try:
        yield
    finally:
        await session.close()


_files_key = web.AppKey("router_config_files", ConfigFiles)


async def _loop(
    name: str, every_s: float, stop: asyncio.Event, body: Callable[[], Awaitable[object]]
) -> None:
    """Run ``body`` every ``every_s`` until stopped; a failing round is logged, never fatal."""
    backoff_s = every_s
    while not stop.is_set():
        try:
            await body()
            backoff_s = every_s
        except asyncio.CancelledError:
            raise
        except Exception:  # background loop boundary: log and go on with backoff
            log.exception("router_loop_failed", loop=name)
            backoff_s = min(max(backoff_s * 2, 0.1), 30.0)
        try:
            await asyncio.wait_for(stop.wait(), timeout=backoff_s)
        except TimeoutError:
            pass


async def _background(app: web.Application) -> AsyncIterator[None]:
    settings = app[settings_key]
    service = app[service_key]
    files = app[_files_key]
    broker = app[broker_key]
    stop = asyncio.Event()

    async def reload_config() -> None:
        fresh = files.reload_if_changed(service.config)
        if fresh is not None:
            service.config = fresh

    async def publish_health() -> None:
        # Woken by the service when a breaker may have moved; polls as a fallback.
        try:
            await asyncio.wait_for(service.health_wake.wait(), timeout=0.2)
        except TimeoutError:
            pass
        service.health_wake.clear()
        await service.publish_health_changes()

    await start_health_consumer(
        broker,
        service,
        instance_id=settings.instance_id,
        expiry_ms=settings.health_queue_expiry_ms,
    )
    tasks = [
        asyncio.create_task(
            outbox.relay(app[pool_key], broker, stop=stop, poll_interval_s=1.0),
            name="router-outbox-relay",
        ),
        asyncio.create_task(
            _loop("config", settings.config_poll_ms / 1000, stop, reload_config),
            name="router-config-watch",
        ),
        asyncio.create_task(
            _loop("recovery", settings.recovery_poll_ms / 1000, stop, service.recover_once),
            name="router-recovery",
        ),
        asyncio.create_task(
            _loop("probe", settings.probe_poll_ms / 1000, stop, service.probe_once),
            name="router-probe",
        ),
        asyncio.create_task(
            _loop(
                "kill_switches",
                settings.kill_switch_refresh_ms / 1000,
                stop,
                service.refresh_kill_switches,
            ),
            name="router-kill-switches",
        ),
        asyncio.create_task(_loop("health", 0.0, stop, publish_health), name="router-health"),
    ]
    try:
        yield
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)


def create_app(settings: Settings) -> web.Application:
    app = base_app(
        openapi_document=contract.document(),
        client_max_size=settings.request_body_max_bytes,
        middlewares=[http.service_token_or_signed_callback(settings.service_token)],
        readiness=[database_ready, broker_ready],
    )
    app[settings_key] = settings
    app.cleanup_ctx.append(_database)
    app.cleanup_ctx.append(_broker)
    app.cleanup_ctx.append(_service)
    app.cleanup_ctx.append(_background)
    metrics.register(app)
    http.add_routes(app)
    return app
