"""Operator views across the suite, used by the ``payments`` CLI (no domain code here)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import aio_pika
import aiohttp
import asyncpg

from services.kit import db
from services.kit.settings import DEFAULT_AMQP_URL, DEFAULT_DATABASE_URL


@dataclass
class StatusReport:
    services: dict[str, str] = field(default_factory=dict)  # name -> ready | problem text
    outbox: dict[str, str] = field(default_factory=dict)  # database -> "N events, oldest Ss"
    queues: dict[str, str] = field(default_factory=dict)  # queue -> "N ready"

    @property
    def all_ready(self) -> bool:
        return all(v == "ready" for v in self.services.values())


async def _probe(session: aiohttp.ClientSession, url: str) -> str:
    try:
        async with session.get(url + "/readyz") as response:
            if response.status == 200:
                return "ready"
            body = await response.json(content_type=None)
            return f"not ready: {body.get('detail') or response.status}"
    except (aiohttp.ClientError, TimeoutError) as exc:
        return f"unreachable: {type(exc).__name__}"


async def _outbox(dsn: str) -> str:
    try:
        conn = await asyncpg.connect(dsn, timeout=3)
    except asyncpg.InvalidCatalogNameError:
        return "database missing (run `payments migrate`)"
    except (OSError, asyncpg.PostgresError) as exc:
        return f"unreachable: {type(exc).__name__}"
    try:
        exists = await conn.fetchval("SELECT to_regclass('outbox') IS NOT NULL")
        if not exists:
            return "no outbox"
        row = await conn.fetchrow(
            """SELECT count(*) AS n,
                      COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)::int AS age
               FROM outbox WHERE published_at IS NULL"""
        )
        assert row is not None
        return f"{row['n']} unpublished, oldest {row['age']}s"
    finally:
        await conn.close()


async def _queues(amqp_url: str, prefix: str, names: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        connection = await aio_pika.connect(amqp_url, timeout=3)
    except (OSError, aio_pika.exceptions.AMQPError) as exc:
        return {"broker": f"unreachable: {type(exc).__name__}"}
    try:
        for name in names:
            channel = await connection.channel()
            try:
                queue = await channel.declare_queue(f"{prefix}.{name}", passive=True)
                out[queue.name] = f"{queue.declaration_result.message_count} ready"
            except aio_pika.exceptions.ChannelClosed:
                continue  # that consumer has never started: no queue yet
    finally:
        await connection.close()
    return out


async def collect_status(
    ports: Mapping[str, int], url_of: Callable[[str], str], *, timeout_s: float
) -> StatusReport:
    report = StatusReport()
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        results = await asyncio.gather(*(_probe(session, url_of(name)) for name in ports))
    report.services = dict(zip(ports, results, strict=True))
    base = os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL)
    prefix = os.environ.get("DB_NAME_PREFIX", "payments_")
    for name in ports:
        report.outbox[prefix + name] = await _outbox(db.service_dsn(base, prefix, name))
    amqp_prefix = os.environ.get("AMQP_PREFIX", "payments")
    report.queues = await _queues(
        os.environ.get("AMQP_URL", DEFAULT_AMQP_URL),
        amqp_prefix,
        ["dead_letters", "payout.events", "payout.webhooks", "recon.events"],
    )
    return report


def render_status(report: StatusReport) -> str:
    lines = ["SERVICE    STATUS"]
    lines += [f"{name:<10} {state}" for name, state in report.services.items()]
    lines += ["", "DATABASE               OUTBOX"]
    lines += [f"{name:<22} {state}" for name, state in report.outbox.items()]
    lines += ["", "QUEUE                            DEPTH"]
    lines += [f"{name:<32} {state}" for name, state in report.queues.items()] or ["(none)"]
    return "\n".join(lines)
