"""Typed application keys of the recon service."""

from __future__ import annotations

from aiohttp import web

from services.recon.handlers import ReconService
from services.recon.settings import Settings

settings_key = web.AppKey("recon_settings", Settings)
service_key = web.AppKey("recon_service", ReconService)
