"""Operator views across the suite, used by the ``payments`` CLI (no domain code here).

Everything here reads what the services already keep: their readiness endpoints, their
databases (outbox, payouts), the broker's queues and the payout admin API. Nothing here
changes money: the only writes are re-sending webhooks (through the admin API, audited) and
moving dead-lettered messages back to the queue they died in.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aio_pika
import aiohttp
import asyncpg
from aio_pika.abc import AbstractIncomingMessage

from services.kit import db
from services.kit.settings import DEFAULT_AMQP_URL, DEFAULT_DATABASE_URL

# The durable consumer queues (per-instance queues such as ``router.health.<instance>`` and
# ``payout.risk.<instance>`` come and go with their processes; each process reports its own in
# ``amqp_queue_messages_ready`` on /metrics).
CONSUMER_QUEUES = (
    "payout.attempt_outcomes",
    "payout.recon_outcomes",
    "payout.webhooks",
    "recon.payout_alerts",
)
DEAD_LETTER_QUEUE = "dead_letters"
STUCK_STATUSES = ("processing", "submitted")
WAITING_STATUSES = ("manual_review", "pending_review")


def amqp_url() -> str:
    return os.environ.get("AMQP_URL", DEFAULT_AMQP_URL)


def amqp_prefix() -> str:
    return os.environ.get("AMQP_PREFIX", "payments")


def service_dsn(service: str) -> str:
    base = os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL)
    return db.service_dsn(base, os.environ.get("DB_NAME_PREFIX", "payments_"), service)


def render_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """Columns as wide as their widest cell; numbers right-aligned; '-' for None."""
    cells = [["-" if v is None else str(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    numeric = [
        bool(cells) and all(row[i].lstrip("-").replace(".", "", 1).isdigit() for row in cells)
        for i in range(len(headers))
    ]

    def line(values: Sequence[str]) -> str:
        return "  ".join(
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ).rstrip()

    out = [line([h.upper() for h in headers]), line(["-" * w for w in widths])]
    out += [line(row) for row in cells] or ["(none)"]
    return "\n".join(out)


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
    report.queues = await _queues(amqp_url(), amqp_prefix(), [DEAD_LETTER_QUEUE, *CONSUMER_QUEUES])
    return report


def render_status(report: StatusReport) -> str:
    return "\n\n".join(
        [
            render_table(["service", "status"], report.services.items()),
            render_table(["database", "outbox"], report.outbox.items()),
            render_table(["queue", "depth"], report.queues.items()),
        ]
    )


# ---- payouts that are not moving ------------------------------------------------------------


async def stuck_payouts(dsn: str, *, older_than_s: float, limit: int) -> list[dict[str, Any]]:
    """Payouts still ``processing``/``submitted`` after ``older_than_s`` since their last
    change, and every payout waiting for an operator (``manual_review``, ``pending_review``),
    oldest first, with their coordinator transaction's state."""
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        rows = await conn.fetch(
            """SELECT p.id, p.merchant_id, p.status, p.amount_minor, p.currency, p.channel,
                      p.attempt_id, p.updated_at,
                      EXTRACT(EPOCH FROM now() - p.updated_at)::bigint AS idle_s,
                      g.state AS tx_state, g.decision, g.next_attempt_at, g.lease_owner
               FROM payouts p LEFT JOIN global_tx g ON g.payout_id = p.id
               WHERE (p.status = ANY($1::text[])
                      AND p.updated_at < now() - make_interval(secs => $2))
                  OR p.status = ANY($3::text[])
               ORDER BY p.updated_at LIMIT $4""",
            list(STUCK_STATUSES),
            older_than_s,
            list(WAITING_STATUSES),
            limit,
        )
    finally:
        await conn.close()
    return [dict(r) for r in rows]


def render_stuck(rows: list[dict[str, Any]]) -> str:
    return render_table(
        ["payout", "status", "idle", "amount", "channel", "attempt", "tx state", "decision"],
        (
            [
                r["id"],
                r["status"],
                _duration(r["idle_s"]),
                f"{r['amount_minor']} {r['currency']}",
                r["channel"],
                r["attempt_id"],
                r["tx_state"],
                r["decision"],
            ]
            for r in rows
        ),
    )


def _duration(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h"


# ---- dead letters ---------------------------------------------------------------------------


@dataclass
class DeadLetter:
    message_id: str | None
    event_type: str | None
    queue: str | None  # where it died
    reason: str | None  # rejected | expired | delivery_limit | maxlen
    deaths: int
    correlation_id: str | None
    died_at: datetime | None
    body_bytes: int

    @classmethod
    def of(cls, message: AbstractIncomingMessage) -> DeadLetter:
        death = _first_death(message)
        event_type = message.routing_key
        try:
            event_type = json.loads(message.body).get("event_type") or event_type
        except (ValueError, AttributeError):
            pass  # undecodable: that is often why it is here
        died_at = death.get("time")
        return cls(
            message_id=message.message_id,
            event_type=event_type,
            queue=_text(death.get("queue")),
            reason=_text(death.get("reason")),
            deaths=sum(int(d.get("count", 1)) for d in _deaths(message)),
            correlation_id=message.correlation_id,
            died_at=died_at if isinstance(died_at, datetime) else None,
            body_bytes=len(message.body),
        )


def _text(value: object) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


def _deaths(message: AbstractIncomingMessage) -> list[dict[str, Any]]:
    deaths = (message.headers or {}).get("x-death") or []
    return [d for d in deaths if isinstance(d, dict)] if isinstance(deaths, list) else []


def _first_death(message: AbstractIncomingMessage) -> dict[str, Any]:
    deaths = _deaths(message)
    return deaths[0] if deaths else {}


async def _dlq_messages(
    channel: aio_pika.abc.AbstractChannel, prefix: str, limit: int
) -> list[AbstractIncomingMessage]:
    """Up to ``limit`` messages from the dead-letter queue, unacknowledged (closing the
    channel without acking puts every one of them back)."""
    queue = await channel.declare_queue(f"{prefix}.{DEAD_LETTER_QUEUE}", passive=True)
    out: list[AbstractIncomingMessage] = []
    while len(out) < limit:
        message = await queue.get(no_ack=False, fail=False, timeout=5)
        if message is None:
            break
        out.append(message)
    return out


async def dlq_list(url: str, prefix: str, *, limit: int) -> list[DeadLetter]:
    connection = await aio_pika.connect(url, timeout=5)
    try:
        channel = await connection.channel()
        messages = await _dlq_messages(channel, prefix, limit)
        letters = [DeadLetter.of(m) for m in messages]
        for message in messages:
            await message.nack(requeue=True)
        return letters
    finally:
        await connection.close()


def render_dead_letters(letters: list[DeadLetter]) -> str:
    return render_table(
        ["message", "event", "died in", "reason", "deaths", "correlation", "died at"],
        (
            [
                d.message_id,
                d.event_type,
                d.queue,
                d.reason,
                d.deaths,
                d.correlation_id,
                d.died_at.isoformat(timespec="seconds") if d.died_at else None,
            ]
            for d in letters
        ),
    )


@dataclass
class ReplayReport:
    replayed: list[DeadLetter] = field(default_factory=list)
    skipped: list[DeadLetter] = field(default_factory=list)  # filtered out or no origin


async def dlq_replay(
    url: str,
    prefix: str,
    *,
    limit: int,
    queue: str | None = None,
    message_ids: Sequence[str] = (),
    progress: Callable[[int], None] = lambda _n: None,
) -> ReplayReport:
    """Move dead letters back to the queue each one died in (the consumer dedupes by
    ``event_id``, so a message that did reach its effect has none the second time). Each is
    published with a broker confirm before it is removed from the dead-letter queue.
    ``queue`` (consumer name or full queue name) and ``message_ids`` narrow the selection."""
    report = ReplayReport()
    wanted_queue = None if queue is None else _full_queue(prefix, queue)
    connection = await aio_pika.connect(url, timeout=5)
    try:
        channel = await connection.channel(publisher_confirms=True)
        messages = await _dlq_messages(channel, prefix, limit)
        for message in messages:
            letter = DeadLetter.of(message)
            chosen = (wanted_queue is None or letter.queue == wanted_queue) and (
                not message_ids or letter.message_id in message_ids
            )
            if not chosen or letter.queue is None:
                report.skipped.append(letter)
                progress(1)
                continue
            # x-death stays: a message that dies again counts its deaths on the same entry.
            headers = {k: v for k, v in (message.headers or {}).items() if k != "x-delivery-count"}
            await channel.default_exchange.publish(
                aio_pika.Message(
                    message.body,
                    content_type=message.content_type,
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    message_id=message.message_id,
                    correlation_id=message.correlation_id,
                    headers=headers,
                ),
                routing_key=letter.queue,
            )
            await message.ack()
            report.replayed.append(letter)
            progress(1)
        for letter_message in messages:
            if not letter_message.processed:
                await letter_message.nack(requeue=True)
        return report
    finally:
        await connection.close()


def _full_queue(prefix: str, queue: str) -> str:
    return queue if queue.startswith(prefix + ".") else f"{prefix}.{queue}"


# ---- payout admin API -----------------------------------------------------------------------


class AdminApi:
    """The payout service's admin API (``PAYOUT_URL``, ``ADMIN_API_KEY``)."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, admin_key: str) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {admin_key}"}

    async def call(self, method: str, path: str) -> Any:
        async with self.session.request(
            method, self.base_url + path, headers=self.headers
        ) as response:
            body = await response.json(content_type=None)
            if response.status >= 400:
                raise AdminApiError(
                    f"{method} {path}: {response.status} {body.get('code')}: "
                    f"{body.get('detail') or body.get('title')}"
                )
            return body

    async def deliveries(self, status: str | None, limit: int) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        after: str | None = None
        while len(out) < limit:
            query = f"?limit={min(100, limit - len(out))}"
            query += f"&status={status}" if status else ""
            query += f"&starting_after={after}" if after else ""
            page = await self.call("GET", "/admin/webhook_deliveries" + query)
            out += page["data"]
            if not page["has_more"] or not page["data"]:
                break
            after = page["data"][-1]["id"]
        return out

    async def resend(self, delivery_id: str) -> dict[str, Any]:
        return dict(await self.call("POST", f"/admin/webhook_deliveries/{delivery_id}/resend"))


class AdminApiError(Exception):
    pass


def render_deliveries(rows: list[dict[str, Any]]) -> str:
    return render_table(
        ["delivery", "event", "status", "attempts", "last", "created"],
        (
            [
                d["id"],
                d["event_type"],
                d["status"],
                d["attempts"],
                d["last_status_code"] or (d["last_error"] or "")[:40] or None,
                d["created_at"],
            ]
            for d in rows
        ),
    )
