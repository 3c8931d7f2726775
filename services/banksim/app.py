"""Composition root of the bank simulator. Never reads the environment."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import yaml
from aiohttp import web

import contracts.banksim
from services.banksim.adapters import callbacks
from services.banksim.adapters.repository import Repository
from services.banksim.domain.config import BankConfig, ConfigError, parse_config
from services.banksim.entrypoints import http
from services.banksim.handlers import Simulator, utc_now
from services.banksim.keys import (
    pool_key,
    session_key,
    settings_key,
    simulator_key,
    statements_key,
)
from services.banksim.settings import Settings
from services.banksim.statements import StatementWriter
from services.kit import db
from services.kit.http_client import client_session_context
from services.kit.logging import get_logger
from services.kit.web import base_app

log = get_logger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"


def load_config(path: Path) -> dict[str, BankConfig]:
    """Read and validate the banks' file; ``ConfigError`` names the file and the problem."""
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the bank configuration: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    try:
        return parse_config(raw)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def dsn(settings: Settings) -> str:
    return db.service_dsn(settings.database_url, settings.db_name_prefix, "banksim")


async def database_ready(app: web.Application) -> None:
    await app[pool_key].fetchval("SELECT 1")


def create_app(settings: Settings, banks: dict[str, BankConfig] | None = None) -> web.Application:
    banks = banks if banks is not None else load_config(settings.config_path)
    app = base_app(
        openapi_document=contracts.banksim.document(),
        client_max_size=settings.request_body_max_bytes,
        middlewares=[http.auth_middleware(settings.client_key, settings.service_token)],
        readiness=[database_ready],
    )
    app[settings_key] = settings

    async def database(app: web.Application) -> AsyncIterator[None]:
        async for pool in db.pool_context(dsn(settings), settings.db_pool_max):
            app[pool_key] = pool
            repo = Repository(pool)
            simulator = Simulator(repo, banks, seed=settings.seed)
            await simulator.load()
            app[simulator_key] = simulator
            app[statements_key] = StatementWriter(
                repo, banks, drop_dir=settings.recon_drop_dir, seed=settings.seed
            )
            yield
            # Before the pool closes: rows still processing are finished after the restart.
            await simulator.stop_processing()

    async def http_session(app: web.Application) -> AsyncIterator[None]:
        async for session in client_session_context(
            total_timeout_s=settings.callback_timeout_ms / 1000
        ):
            app[session_key] = session
            yield

    app.cleanup_ctx.append(database)
    app.cleanup_ctx.append(http_session)
    app.cleanup_ctx.append(_loop("banksim_worker", _worker_tick, settings.worker_poll_ms / 1000))
    if settings.eod_enabled:
        app.cleanup_ctx.append(_loop("banksim_eod", _eod_tick, 30.0))
    http.add_routes(app)
    return app


async def _worker_tick(app: web.Application) -> None:
    settings = app[settings_key]
    simulator = app[simulator_key]
    await simulator.finish_stuck(settings.completion_batch_max)
    await simulator.complete_due(settings.completion_batch_max)
    await callbacks.deliver_due(
        simulator.repo,
        app[session_key],
        secret=settings.callback_secret,
        now=utc_now(),
        batch_max=settings.completion_batch_max,
        attempts_max=settings.callback_attempts_max,
        timeout_s=settings.callback_timeout_ms / 1000,
    )


async def _eod_tick(app: web.Application) -> None:
    """After ``eod_minute`` past midnight UTC, write yesterday's statement once per bank."""
    settings = app[settings_key]
    now = utc_now()
    if now.hour * 60 + now.minute < settings.eod_minute:
        return
    await app[statements_key].end_of_day(now.date() - timedelta(days=1))


def _loop(
    name: str, tick: Callable[[web.Application], Awaitable[None]], interval_s: float
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A background loop as a cleanup context: stops on shutdown, survives a failed tick."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        stop = asyncio.Event()

        async def run() -> None:
            while not stop.is_set():
                try:
                    await tick(app)
                except Exception:  # loop boundary: log and keep the simulator alive
                    log.exception(f"{name}_tick_failed")
                try:
                    await asyncio.wait_for(stop.wait(), timeout=interval_s)
                except TimeoutError:
                    pass

        task = asyncio.create_task(run(), name=name)
        yield
        stop.set()
        await task

    return context
