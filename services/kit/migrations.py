"""Numbered SQL migrations per service, applied once each under an advisory lock.

Files are ``NNNN_<what>.sql`` in a ``migrations/`` folder; each folder is a *scope* (``kit``
for the shared outbox/inbox tables, then the service's own). Each file is applied in its own
transaction and recorded in ``schema_migrations`` with its checksum; a changed file that was
already applied is refused rather than silently ignored.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import asyncpg

_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
_LOCK_ID = 0x5041594D  # "PAYM"


class MigrationError(RuntimeError):
    pass


def discover(directory: Path) -> list[tuple[int, str, str]]:
    found = []
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if not match:
            raise MigrationError(f"migration file name not NNNN_name.sql: {path.name}")
        found.append((int(match.group(1)), path.name, path.read_text()))
    versions = [v for v, _, _ in found]
    if len(versions) != len(set(versions)):
        raise MigrationError(f"duplicate migration numbers in {directory}")
    return found


KIT_MIGRATIONS = Path(__file__).parent / "migrations"


async def apply(dsn: str, directory: Path, *, with_kit: bool = True) -> list[str]:
    """Apply pending migrations (the kit's first, then ``directory``); returns names applied."""
    scopes = ([("kit", KIT_MIGRATIONS)] if with_kit else []) + [(directory.parent.name, directory)]
    conn = await asyncpg.connect(dsn)
    applied_now: list[str] = []
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_ID)
        try:
            await conn.execute(
                """CREATE TABLE IF NOT EXISTS schema_migrations (
                       scope text NOT NULL,
                       version integer NOT NULL,
                       name text NOT NULL,
                       checksum text NOT NULL,
                       applied_at timestamptz NOT NULL DEFAULT now(),
                       PRIMARY KEY (scope, version))"""
            )
            done = {
                (r["scope"], r["version"]): r["checksum"]
                for r in await conn.fetch("SELECT scope, version, checksum FROM schema_migrations")
            }
            for scope, folder in scopes:
                for version, name, sql in discover(folder):
                    checksum = hashlib.sha256(sql.encode()).hexdigest()
                    if (scope, version) in done:
                        if done[(scope, version)] != checksum:
                            raise MigrationError(f"{scope}/{name} changed after it was applied")
                        continue
                    async with conn.transaction():
                        await conn.execute(sql)
                        await conn.execute(
                            "INSERT INTO schema_migrations(scope, version, name, checksum)"
                            " VALUES ($1, $2, $3, $4)",
                            scope,
                            version,
                            name,
                            checksum,
                        )
                    applied_now.append(f"{scope}/{name}")
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_ID)
    finally:
        await conn.close()
    return applied_now
