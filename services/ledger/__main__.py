"""``python -m services.ledger``: settings → logging → database, migrations, app role → serve."""

from __future__ import annotations

import asyncio
from pathlib import Path

from services.kit import db, migrations
from services.kit.logging import configure_logging, get_logger
from services.kit.web import ignore_sigpipe, serve
from services.ledger.adapters.roles import ensure_app_role
from services.ledger.app import create_app
from services.ledger.settings import SERVICE, Settings, from_env

MIGRATIONS = Path(__file__).parent / "migrations"


async def prepare(settings: Settings) -> list[str]:
    """Create the database, apply migrations as the owner, then make sure the service's own
    role exists with exactly its grants. Safe to run concurrently (advisory locks)."""
    await db.ensure_database(settings.database_url, settings.db_name_prefix + SERVICE)
    applied = await migrations.apply(settings.owner_dsn, MIGRATIONS)
    await ensure_app_role(settings.owner_dsn, settings.app_role, settings.app_role_password or None)
    return applied


def main() -> None:
    settings = from_env()
    configure_logging(SERVICE, fmt=settings.log_format, level=settings.log_level)
    log = get_logger(__name__)
    applied = asyncio.run(prepare(settings))
    log.info("ledger_migrated", applied=applied, app_role=settings.app_role)
    ignore_sigpipe()
    serve(create_app(settings), host=settings.host, port=settings.port)


if __name__ == "__main__":
    main()
