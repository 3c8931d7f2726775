"""Real servers for tests: throw-away databases and broker names per test session."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import aio_pika

from services.kit import db, migrations
from services.kit.settings import DEFAULT_AMQP_URL, DEFAULT_DATABASE_URL

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def database_url() -> str:
    return os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL)


def amqp_url() -> str:
    return os.environ.get("AMQP_URL", DEFAULT_AMQP_URL)


def new_run_id() -> str:
    return "t" + secrets.token_hex(4)


async def create_service_database(
    run_id: str, service: str, *, scope: str = "", migrate: bool = True
) -> str:
    """Create ``<run_id>_[<scope>_]<service>`` and apply the service's migrations; returns its
    DSN. A test folder that runs its own copy of a service passes a ``scope`` so it never
    shares a database with another folder's copy."""
    prefix = f"{run_id}_{scope}_" if scope else f"{run_id}_"
    dsn = db.service_dsn(database_url(), prefix, service)
    await db.ensure_database(database_url(), prefix + service)
    if migrate:
        await migrations.apply(dsn, ROOT / "services" / service / "migrations")
    return dsn


async def drop_run_databases(run_id: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(database_url())
    try:
        names = await conn.fetch(
            "SELECT datname FROM pg_database WHERE datname LIKE $1", f"{run_id}\\_%"
        )
    finally:
        await conn.close()
    for row in names:
        await db.drop_database(database_url(), row["datname"])
    # Roles are cluster-wide (the ledger's application role): drop the run's too.
    conn = await asyncpg.connect(database_url())
    try:
        roles = await conn.fetch(
            "SELECT rolname FROM pg_roles WHERE rolname LIKE $1", f"{run_id}\\_%"
        )
        for row in roles:
            await conn.execute(f'DROP ROLE IF EXISTS "{row["rolname"]}"')
    finally:
        await conn.close()


async def delete_broker_names(prefix: str, queues: list[str]) -> None:
    connection = await aio_pika.connect(amqp_url())
    try:
        channel = await connection.channel()
        for queue in queues:
            await channel.queue_delete(queue)
        for exchange in (f"{prefix}.events", f"{prefix}.dlx"):
            await channel.exchange_delete(exchange)
        await channel.queue_delete(f"{prefix}.dead_letters")
    finally:
        await connection.close()


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine from a synchronous (session-scoped) fixture."""
    return asyncio.run(coro)
