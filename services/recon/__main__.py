"""``python -m services.recon``: settings from env, logging, migrations, then serve."""

from __future__ import annotations

import asyncio
from pathlib import Path

from services.kit import db, migrations
from services.kit.logging import configure_logging
from services.kit.web import ignore_sigpipe, serve
from services.recon.app import SERVICE, create_app
from services.recon.settings import Settings, from_env


async def prepare(settings: Settings) -> None:
    await db.ensure_database(settings.database_url, settings.db_name_prefix + SERVICE)
    dsn = db.service_dsn(settings.database_url, settings.db_name_prefix, SERVICE)
    await migrations.apply(dsn, Path(__file__).parent / "migrations")


def main() -> None:
    settings = from_env()
    configure_logging(SERVICE, fmt=settings.log_format, level=settings.log_level)
    ignore_sigpipe()
    asyncio.run(prepare(settings))
    serve(create_app(settings), host=settings.host, port=settings.port)


if __name__ == "__main__":
    main()
