"""``python -m services.payout``: settings → logging → database + migrations → serve."""

from __future__ import annotations

import asyncio
from pathlib import Path

from services.kit import db, migrations
from services.kit.logging import configure_logging, get_logger
from services.kit.settings import SettingsError
from services.kit.web import ignore_sigpipe, serve
from services.payout.app import create_app, dsn
from services.payout.settings import from_env

MIGRATIONS = Path(__file__).parent / "migrations"


async def prepare(database_url: str, prefix: str, service_dsn: str) -> list[str]:
    await db.ensure_database(database_url, prefix + "payout")
    return await migrations.apply(service_dsn, MIGRATIONS)


def main() -> None:
    try:
        settings = from_env()
    except SettingsError as exc:
        raise SystemExit(f"payout: bad configuration: {exc}") from None
    configure_logging("payout", fmt=settings.log_format, level=settings.log_level)
    log = get_logger("services.payout")
    applied = asyncio.run(prepare(settings.database_url, settings.db_name_prefix, dsn(settings)))
    log.info("migrations_applied", applied=applied)
    ignore_sigpipe()
    serve(create_app(settings), host=settings.host, port=settings.port)


if __name__ == "__main__":
    main()
