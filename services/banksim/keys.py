"""Typed application keys: the one place the app's shared state is declared."""

from __future__ import annotations

import aiohttp
import asyncpg
from aiohttp import web

from services.banksim.handlers import Simulator
from services.banksim.settings import Settings
from services.banksim.statements import StatementWriter

settings_key = web.AppKey("banksim_settings", Settings)
pool_key = web.AppKey("banksim_pool", asyncpg.Pool)
simulator_key = web.AppKey("banksim_simulator", Simulator)
statements_key = web.AppKey("banksim_statements", StatementWriter)
session_key = web.AppKey("banksim_http_session", aiohttp.ClientSession)
