"""Typed application keys, declared in one place."""

from __future__ import annotations

import asyncpg
from aiohttp import web

from services.kit.amqp import Broker
from services.router.handlers import RouterService
from services.router.settings import Settings

settings_key = web.AppKey("router_settings", Settings)
pool_key = web.AppKey("router_pool", asyncpg.Pool)
broker_key = web.AppKey("router_broker", Broker)
service_key = web.AppKey("router_service", RouterService)
