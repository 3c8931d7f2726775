"""Typed keys for what the payout app and its requests carry."""

from __future__ import annotations

from aiohttp import web

from services.payout.handlers import Context

context_key = web.AppKey("payout_context", Context)
merchant_id_key = web.RequestKey("merchant_id", str)
