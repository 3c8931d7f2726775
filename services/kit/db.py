"""PostgreSQL: one database per service, an asyncpg pool as an aiohttp cleanup context."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg


def service_dsn(database_url: str, prefix: str, service: str) -> str:
    """The service's own database on the server named by ``database_url``."""
    parts = urlsplit(database_url)
    return urlunsplit(parts._replace(path="/" + prefix + service))


def with_user(dsn: str, user: str) -> str:
    parts = urlsplit(dsn)
    host = parts.hostname or "127.0.0.1"
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit(parts._replace(netloc=f"{user}@{host}{port}"))


def database_name(dsn: str) -> str:
    return urlsplit(dsn).path.lstrip("/")


async def ensure_database(database_url: str, name: str) -> None:
    """Create the database if it does not exist (idempotent, safe to race)."""
    conn = await asyncpg.connect(database_url)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            try:
                await conn.execute(f'CREATE DATABASE "{name}"')
            except (asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):
                pass
    finally:
        await conn.close()


async def drop_database(database_url: str, name: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


class PooledConnection(asyncpg.Connection):
    """A pooled connection that remembers whether it ever registered a ``LISTEN``.

    Rule for every pooled connection: leave no session state behind when it goes back to the
    pool. No session advisory locks (use ``pg_advisory_xact_lock``, or a dedicated
    ``asyncpg.connect`` as the ledger writer and the migrations do), no ``SET`` without
    ``LOCAL``, no cursor outside a transaction (asyncpg's cursors need one, so they close at
    commit). ``LISTEN`` is the one exception allowed, and it is tracked here so that only
    such a connection pays for the full reset query on release.
    """

    _session_dirty = False

    async def add_listener(self, channel: str, callback: Any) -> None:
        self._session_dirty = True
        await super().add_listener(channel, callback)


async def _reset_cheaply(conn: asyncpg.Connection) -> None:
    """Pool release hook. asyncpg has already rolled back any open transaction and dropped the
    Python-side listeners (``Connection._reset``) before calling this; the server-side reset
    (``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL``) is one more round trip
    per release, so it runs only on a connection that registered a listener. Nothing else in
    the suite leaves session state on a pooled connection (see ``PooledConnection``)."""
    if getattr(conn, "_session_dirty", False):
        query = conn.get_reset_query()
        if query:
            await conn.execute(query)
        conn._session_dirty = False


async def create_pool(dsn: str, *, max_size: int, min_size: int = 1) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min(min_size, max_size),
        max_size=max_size,
        command_timeout=30,
        max_inactive_connection_lifetime=300,
        connection_class=PooledConnection,
        reset=_reset_cheaply,
    )
    assert pool is not None
    return pool


async def pool_context(dsn: str, max_size: int) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(dsn, max_size=max_size)
    try:
        yield pool
    finally:
        await pool.close()
