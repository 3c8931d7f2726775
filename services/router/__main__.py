"""``python -m services.router``: settings → logging → database + migrations → serve."""

from __future__ import annotations

import asyncio
from pathlib import Path

from services.kit import db, migrations
from services.kit.logging import configure_logging, get_logger
from services.kit.web import ignore_sigpipe, serve
from services.router.adapters.config_files import ConfigFiles
from services.router.app import SERVICE, create_app
from services.router.domain.config import ConfigError
from services.router.settings import Settings, from_env

MIGRATIONS = Path(__file__).parent / "migrations"


async def prepare(settings: Settings) -> list[str]:
    await db.ensure_database(settings.database_url, settings.db_name_prefix + SERVICE)
    dsn = db.service_dsn(settings.database_url, settings.db_name_prefix, SERVICE)
    return await migrations.apply(dsn, MIGRATIONS)


def main() -> None:
    settings = from_env()
    configure_logging(SERVICE, fmt=settings.log_format, level=settings.log_level)
    log = get_logger(__name__)
    try:  # refuse to start on a broken channel or rule file, with a message that says why
        ConfigFiles(settings.channels_file, settings.rules_file).load()
    except ConfigError as exc:
        log.error("router_config_invalid", error=str(exc))
        raise SystemExit(2) from None
    applied = asyncio.run(prepare(settings))
    log.info("router_migrated", applied=applied, instance_id=settings.instance_id)
    ignore_sigpipe()
    serve(create_app(settings), host=settings.host, port=settings.port)


if __name__ == "__main__":
    main()
