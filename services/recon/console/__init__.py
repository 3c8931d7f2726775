"""The finance console of the recon service: finance API additions, report downloads and the
web pages at ``/``. ``setup(app)`` mounts all of it on the recon application."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from services.recon.console import api, pages
from services.recon.console.keys import console_http_key, console_settings_key
from services.recon.console.settings import ConsoleSettings, from_env
from services.recon.reports import views as reports


def setup(app: web.Application, settings: ConsoleSettings | None = None) -> None:
    """Mount the console. Without ``settings`` they are read from the environment when the
    application starts (``python -m services.recon``); tests set ``console_settings_key``
    on the application before it starts."""
    if settings is not None:
        app[console_settings_key] = settings

    async def context(app: web.Application) -> AsyncIterator[None]:
        if console_settings_key not in app:
            app[console_settings_key] = from_env()
        timeout_s = app[console_settings_key].upstream_timeout_s
        session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=timeout_s, connect=min(timeout_s, 3.0))
        )
        app[console_http_key] = session
        yield
        await session.close()

    app.cleanup_ctx.append(context)
    api.add_routes(app)
    reports.add_routes(app)
    pages.add_routes(app)
