"""The service's own database role: it may read everything and append to the ledger, but it
has no UPDATE, DELETE or TRUNCATE on transfers (the tables belong to the migration role). On
the outbox it may append and mark rows published (two columns), never delete them."""

from __future__ import annotations

import asyncpg

_ROLE_LOCK_ID = 0x4C524F4C  # "LROL": concurrent GRANTs on one catalog row would collide

APPEND_ONLY_TABLES = ("transfers", "rejections", "tcc_barrier")


async def ensure_app_role(owner_dsn: str, role: str, password: str | None = None) -> None:
    """Create ``role`` if missing and (re)grant exactly what the service needs. Idempotent."""
    conn = await asyncpg.connect(owner_dsn)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _ROLE_LOCK_ID)
        try:
            exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role)
            if not exists:
                try:
                    await conn.execute(await _sql(conn, "CREATE ROLE %I LOGIN", role))
                except asyncpg.DuplicateObjectError:
                    pass  # another cluster-wide start-up created it first
            if password:
                await conn.execute(await _sql(conn, "ALTER ROLE %I PASSWORD %L", role, password))
            database = await conn.fetchval("SELECT current_database()")
            statements = [
                ("GRANT CONNECT ON DATABASE %I TO %I", database, role),
                ("GRANT USAGE ON SCHEMA public TO %I", role),
                ("REVOKE ALL ON ALL TABLES IN SCHEMA public FROM %I", role),
                ("GRANT SELECT, INSERT ON transfers, rejections, tcc_barrier TO %I", role),
                # Counters are derived state the writer moves; identity columns are guarded by
                # a trigger and DELETE/TRUNCATE are neither granted nor allowed by triggers.
                ("GRANT SELECT, INSERT, UPDATE ON accounts TO %I", role),
                ("GRANT SELECT ON schema_migrations TO %I", role),
                # The outbox (alerts): append events, and let the relay claim (FOR UPDATE
                # needs an UPDATE privilege) and mark them published; nothing else changes.
                ("GRANT SELECT, INSERT ON outbox TO %I", role),
                ("GRANT UPDATE (published_at, attempts) ON outbox TO %I", role),
                ("GRANT USAGE ON SEQUENCE outbox_id_seq TO %I", role),
            ]
            for template, *args in statements:
                await conn.execute(await _sql(conn, template, *args))
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _ROLE_LOCK_ID)
    finally:
        await conn.close()


async def drop_app_role(owner_dsns: list[str], role: str) -> None:
    """Remove the role's grants in each database, then the role (used by tests)."""
    for dsn in owner_dsns:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(await _sql(conn, "DROP OWNED BY %I", role))
        finally:
            await conn.close()
    conn = await asyncpg.connect(owner_dsns[0])
    try:
        await conn.execute(await _sql(conn, "DROP ROLE IF EXISTS %I", role))
    finally:
        await conn.close()


async def _sql(conn: asyncpg.Connection, template: str, *args: str) -> str:
    """Quote identifiers and literals with the server's own ``format`` (utility statements
    cannot take bind parameters)."""
    placeholders = ", ".join(f"${i + 2}::text" for i in range(len(args)))
    statement = await conn.fetchval(f"SELECT format($1, {placeholders})", template, *args)
    assert isinstance(statement, str)
    return statement
