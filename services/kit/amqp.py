"""RabbitMQ: the ``payments.events`` topic exchange, confirmed publishing, and consumers.

Every consumer has its own durable quorum queue with a dead-letter exchange and a delivery
limit, so a poison message is parked after a bounded number of attempts instead of looping.
Names carry a prefix (``AMQP_PREFIX``) so test runs can share one broker without colliding.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aio_pika
import msgspec
import structlog
from aio_pika.abc import (
    AbstractIncomingMessage,
    AbstractRobustChannel,
    AbstractRobustConnection,
    AbstractRobustExchange,
)

from contracts.wire import Envelope, encode
from services.kit.logging import get_logger
from services.kit.metrics import (
    AMQP_CONSUME_LAG_SECONDS,
    AMQP_CONSUMED_TOTAL,
    AMQP_QUEUE_CONSUMERS,
    AMQP_QUEUE_MESSAGES,
)

log = get_logger(__name__)
QUEUE_DEPTH_REFRESH_S = 5.0
# Readiness turns red after this long without a consumer on one of our queues.
CONSUMER_STALE_AFTER_S = 30.0
CANCEL_TIMEOUT_S = 2.0

Handler = Callable[[Envelope], Awaitable[None]]
REDELIVERY_BACKOFF_BASE_S = 0.1
REDELIVERY_BACKOFF_MAX_S = 5.0


def _redelivery_backoff_s(message: AbstractIncomingMessage) -> float:
    """0.1 s, doubling with each earlier delivery (quorum queues count them), at most 5 s:
    about 20 s before a limit of 10 parks the message."""
    count = (message.headers or {}).get("x-delivery-count", 0)
    count = count if isinstance(count, int) and count >= 0 else 0
    return float(min(REDELIVERY_BACKOFF_MAX_S, REDELIVERY_BACKOFF_BASE_S * 2 ** min(count, 16)))


@dataclass(frozen=True)
class Names:
    prefix: str

    @property
    def exchange(self) -> str:
        return f"{self.prefix}.events"

    @property
    def dead_letter_exchange(self) -> str:
        return f"{self.prefix}.dlx"

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.prefix}.dead_letters"

    def queue(self, consumer: str) -> str:
        return f"{self.prefix}.{consumer}"


class Broker:
    """One robust connection, one confirmed publishing channel, consumer channels on demand."""

    def __init__(
        self,
        url: str,
        prefix: str,
        *,
        delivery_limit: int = 10,
        drain_timeout_s: float = 10.0,
        queue_expires_ms: int = 0,
        publish_timeout_s: float = 10.0,
    ) -> None:
        self.url = url
        self.names = Names(prefix)
        self.delivery_limit = delivery_limit
        # > 0: the broker deletes a queue that has had no consumer for this long
        # (``x-expires``). Throw-away deployments (test runs) set it so their queues never
        # pile up in a shared broker; production leaves it 0 (durable queues stay).
        self.queue_expires_ms = queue_expires_ms
        self.drain_timeout_s = drain_timeout_s
        # A publish (waiting for the channel to be restored, then for the confirm) that takes
        # longer raises TimeoutError: the caller retries instead of waiting forever.
        self.publish_timeout_s = publish_timeout_s
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractRobustChannel | None = None
        self._exchange: AbstractRobustExchange | None = None
        self._consumer_channels: list[AbstractRobustChannel] = []
        self._consumers: list[tuple[Any, str]] = []  # (queue, consumer tag)
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._depth_task: asyncio.Task[None] | None = None
        self._depth_wake = asyncio.Event()
        # Watchdog for readiness: when the broker last answered the depth refresh, and per
        # queue when it last counted a consumer on it (ours, once we consume).
        self._refreshed_at: float | None = None
        self._consumed_at: dict[str, float] = {}

    async def connect(self, *, timeout_s: float = 15.0) -> None:
        self._connection = await aio_pika.connect_robust(self.url, timeout=timeout_s)
        self._channel = await self._connection.channel(publisher_confirms=True)
        assert self._channel is not None
        self._exchange = await self._channel.declare_exchange(
            self.names.exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        dlx = await self._channel.declare_exchange(
            self.names.dead_letter_exchange, aio_pika.ExchangeType.FANOUT, durable=True
        )
        dlq = await self._channel.declare_queue(
            self.names.dead_letter_queue,
            durable=True,
            arguments=self._queue_arguments({"x-queue-type": "quorum"}),
        )
        await dlq.bind(dlx)

    def _queue_arguments(self, arguments: dict[str, Any]) -> dict[str, Any]:
        if self.queue_expires_ms > 0:
            return {"x-expires": self.queue_expires_ms, **arguments}
        return arguments

    @property
    def is_connected(self) -> bool:
        return self._connection is not None and not self._connection.is_closed

    async def close(self) -> None:
        """Stop taking messages, let the handlers in flight finish (bounded by
        ``drain_timeout_s``; an unfinished one is redelivered), then close."""
        if self._depth_task is not None:
            self._depth_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._depth_task
        for queue, tag in self._consumers:
            # The channel may be gone or being restored (a cancel would wait for it): bounded.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(queue.cancel(tag), timeout=CANCEL_TIMEOUT_S)
        try:
            await asyncio.wait_for(self._idle.wait(), timeout=self.drain_timeout_s)
        except TimeoutError:
            log.warning("amqp_drain_timeout", in_flight=self._in_flight)
        for channel in self._consumer_channels:
            if not channel.is_closed:
                await channel.close()
        if self._connection is not None:
            await self._connection.close()

    async def publish_raw(
        self, body: bytes, routing_key: str, *, message_id: str, correlation_id: str | None
    ) -> None:
        """Publish and wait for the broker's confirm (raises if it is refused, TimeoutError if
        it has not come within ``publish_timeout_s``)."""
        assert self._exchange is not None, "broker not connected"
        message = aio_pika.Message(
            body,
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=message_id,
            correlation_id=correlation_id,
            headers={"correlation_id": correlation_id or ""},
        )
        async with asyncio.timeout(self.publish_timeout_s):
            await self._exchange.publish(message, routing_key=routing_key, mandatory=False)

    async def publish(self, envelope: Envelope) -> None:
        await self.publish_raw(
            encode(envelope),
            envelope.event_type,
            message_id=envelope.event_id,
            correlation_id=envelope.correlation_id,
        )

    async def consume(
        self,
        consumer: str,
        binding_keys: list[str],
        handler: Handler,
        *,
        prefetch: int = 32,
        queue_arguments: dict[str, Any] | None = None,
    ) -> None:
        """Start consuming. The handler must be idempotent (inbox); an exception requeues the
        message, and after ``delivery_limit`` deliveries the broker dead-letters it.
        ``queue_arguments`` adds to the queue's arguments, e.g. ``{"x-expires": ms}`` for a
        per-instance queue that the broker removes once its process is gone."""
        assert self._connection is not None, "broker not connected"
        channel: AbstractRobustChannel = await self._connection.channel()
        self._consumer_channels.append(channel)
        await channel.set_qos(prefetch_count=prefetch)
        exchange = await channel.declare_exchange(
            self.names.exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue(
            self.names.queue(consumer),
            durable=True,
            arguments=self._queue_arguments(
                {
                    "x-queue-type": "quorum",
                    "x-delivery-limit": self.delivery_limit,
                    "x-dead-letter-exchange": self.names.dead_letter_exchange,
                    **(queue_arguments or {}),
                }
            ),
        )
        for key in binding_keys:
            await queue.bind(exchange, routing_key=key)

        async def on_message(message: AbstractIncomingMessage) -> None:
            self._in_flight += 1
            self._idle.clear()
            try:
                await handle(message)
            finally:
                self._in_flight -= 1
                if self._in_flight == 0:
                    self._idle.set()

        async def handle(message: AbstractIncomingMessage) -> None:
            try:
                envelope = msgspec.json.decode(message.body, type=Envelope)
            except (msgspec.ValidationError, msgspec.DecodeError):
                log.error(
                    "amqp_message_undecodable", consumer=consumer, message_id=message.message_id
                )
                AMQP_CONSUMED_TOTAL.labels(consumer, "rejected").inc()
                await message.reject(requeue=False)  # straight to the dead-letter queue
                return
            # The event's correlation id becomes this task's request id: its log lines, the
            # events it writes to the outbox and the HTTP calls it makes all carry it.
            correlation_id = envelope.correlation_id or message.correlation_id
            bound: dict[str, Any] = {"event_id": envelope.event_id, "consumer": consumer}
            if correlation_id:
                bound["request_id"] = correlation_id
            with structlog.contextvars.bound_contextvars(**bound):
                try:
                    await handler(envelope)
                except asyncio.CancelledError:
                    await message.nack(requeue=True)
                    raise
                except Exception:  # consumer loop boundary: log, requeue, let the limit decide
                    log.exception(
                        "amqp_handler_failed",
                        consumer=consumer,
                        event_id=envelope.event_id,
                        event_type=envelope.event_type,
                    )
                    AMQP_CONSUMED_TOTAL.labels(consumer, "requeued").inc()
                    # Space the redeliveries out: requeued at once, a database restart of a
                    # second used up the whole delivery limit in milliseconds and
                    # dead-lettered the event.
                    await asyncio.sleep(_redelivery_backoff_s(message))
                    await message.nack(requeue=True)
                    return
            await message.ack()
            AMQP_CONSUMED_TOTAL.labels(consumer, "acked").inc()
            lag_s = (datetime.now(UTC) - envelope.occurred_at).total_seconds()
            AMQP_CONSUME_LAG_SECONDS.labels(consumer).observe(max(lag_s, 0.0))

        tag = await queue.consume(on_message)
        self._consumers.append((queue, tag))
        self._consumed_at[queue.name] = time.monotonic()  # grace until the first count
        self._depth_wake.set()  # count the new queue now, not at the next period
        if self._depth_task is None:
            self._depth_task = asyncio.create_task(self._refresh_depths(), name="amqp-depths")

    async def queue_depths(self) -> dict[str, tuple[int, int]]:
        """Messages ready and consumers per queue this process consumes from."""
        depths: dict[str, tuple[int, int]] = {}
        for queue, _tag in self._consumers:
            # Same name and arguments as the original declaration: a no-op that counts.
            result = await queue.declare()
            depths[queue.name] = (result.message_count or 0, result.consumer_count or 0)
        return depths

    def check(self, *, stale_after_s: float = CONSUMER_STALE_AFTER_S) -> None:
        """Raise unless the connection is up and, for ``stale_after_s``, the broker has kept
        answering and has counted a consumer on every queue this process consumes from. A
        consumer that the broker cancelled or that was never restored after a restart turns
        readiness red instead of leaving the service silently deaf."""
        if not self.is_connected:
            raise ConnectionError("broker not connected")
        if not self._consumers:
            return
        now = time.monotonic()
        refresh_stale_s = max(stale_after_s, QUEUE_DEPTH_REFRESH_S * 3)
        if self._refreshed_at is None or now - self._refreshed_at > refresh_stale_s:
            raise ConnectionError("broker has not answered the queue refresh")
        for queue, _tag in self._consumers:
            seen = self._consumed_at.get(queue.name)
            if seen is None or now - seen > stale_after_s:
                raise ConnectionError(f"no consumer on {queue.name}")

    async def _refresh_depths(self) -> None:
        while True:
            self._depth_wake.clear()
            try:
                async with asyncio.timeout(QUEUE_DEPTH_REFRESH_S * 2):
                    depths = await self.queue_depths()
                for name, (ready, consumers) in depths.items():
                    AMQP_QUEUE_MESSAGES.labels(name).set(ready)
                    AMQP_QUEUE_CONSUMERS.labels(name).set(consumers)
                    if consumers > 0:
                        self._consumed_at[name] = time.monotonic()
                self._refreshed_at = time.monotonic()
            except Exception as exc:  # noqa: BLE001 - background loop boundary: keep refreshing
                log.warning("amqp_depth_refresh_failed", error=f"{type(exc).__name__}: {exc}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._depth_wake.wait(), timeout=QUEUE_DEPTH_REFRESH_S)
