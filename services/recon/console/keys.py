"""Typed application keys of the console."""

from __future__ import annotations

import aiohttp
from aiohttp import web

from services.recon.console.settings import ConsoleSettings

console_settings_key = web.AppKey("recon_console_settings", ConsoleSettings)
console_http_key = web.AppKey("recon_console_http", aiohttp.ClientSession)
