"""Typed application keys (the ledger's state on the aiohttp app)."""

from __future__ import annotations

import asyncpg
from aiohttp import web

from services.ledger.settings import Settings
from services.ledger.writer import Writer

settings_key = web.AppKey("ledger_settings", Settings)
pool_key = web.AppKey("ledger_pool", asyncpg.Pool)
writer_key = web.AppKey("ledger_writer", Writer)
