"""Typed application keys (the ledger's state on the aiohttp app)."""

from __future__ import annotations

import asyncpg
from aiohttp import web

from services.kit.amqp import Broker
from services.ledger.settings import Settings
from services.ledger.tamper_check import TamperCheck
from services.ledger.writer import Writer

settings_key = web.AppKey("ledger_settings", Settings)
pool_key = web.AppKey("ledger_pool", asyncpg.Pool)
writer_key = web.AppKey("ledger_writer", Writer)
broker_key = web.AppKey("ledger_broker", Broker)
tamper_check_key = web.AppKey("ledger_tamper_check", TamperCheck)
