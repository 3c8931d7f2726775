"""``python -m services.banksim``: settings from env → logging → config → migrations → serve."""

from __future__ import annotations

import asyncio
import sys

from services.banksim.app import MIGRATIONS, create_app, dsn, load_config
from services.banksim.domain.config import ConfigError
from services.banksim.settings import from_env
from services.kit import db, migrations
from services.kit.logging import configure_logging, get_logger
from services.kit.settings import SettingsError
from services.kit.web import serve

log = get_logger("services.banksim")


def main() -> None:
    try:
        settings = from_env()
        banks = load_config(settings.config_path)
    except (SettingsError, ConfigError) as exc:
        print(f"banksim: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging("banksim", fmt=settings.log_format, level=settings.log_level)

    async def prepare() -> None:
        await db.ensure_database(settings.database_url, db.database_name(dsn(settings)))
        await migrations.apply(dsn(settings), MIGRATIONS)

    asyncio.run(prepare())
    log.info("banksim_configured", banks=sorted(banks), seeded=True)
    serve(
        create_app(settings, banks),
        host=settings.host,
        port=settings.port,
        shutdown_timeout_s=settings.shutdown_timeout_s,
    )


if __name__ == "__main__":
    main()
