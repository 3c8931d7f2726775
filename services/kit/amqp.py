"""RabbitMQ: the ``payments.events`` topic exchange, confirmed publishing, and consumers.

Every consumer has its own durable quorum queue with a dead-letter exchange and a delivery
limit, so a poison message is parked after a bounded number of attempts instead of looping.
Names carry a prefix (``AMQP_PREFIX``) so test runs can share one broker without colliding.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aio_pika
import msgspec
from aio_pika.abc import (
    AbstractIncomingMessage,
    AbstractRobustChannel,
    AbstractRobustConnection,
    AbstractRobustExchange,
)

from contracts.wire import Envelope, encode
from services.kit.logging import get_logger

log = get_logger(__name__)

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

    def __init__(self, url: str, prefix: str, *, delivery_limit: int = 10) -> None:
        self.url = url
        self.names = Names(prefix)
        self.delivery_limit = delivery_limit
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractRobustChannel | None = None
        self._exchange: AbstractRobustExchange | None = None
        self._consumer_channels: list[AbstractRobustChannel] = []

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
            self.names.dead_letter_queue, durable=True, arguments={"x-queue-type": "quorum"}
        )
        await dlq.bind(dlx)

    @property
    def is_connected(self) -> bool:
        return self._connection is not None and not self._connection.is_closed

    async def close(self) -> None:
        for channel in self._consumer_channels:
            if not channel.is_closed:
                await channel.close()
        if self._connection is not None:
            await self._connection.close()

    async def publish_raw(
        self, body: bytes, routing_key: str, *, message_id: str, correlation_id: str | None
    ) -> None:
        """Publish and wait for the broker's confirm (raises if it is refused)."""
        assert self._exchange is not None, "broker not connected"
        message = aio_pika.Message(
            body,
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=message_id,
            correlation_id=correlation_id,
            headers={"correlation_id": correlation_id or ""},
        )
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
            arguments={
                "x-queue-type": "quorum",
                "x-delivery-limit": self.delivery_limit,
                "x-dead-letter-exchange": self.names.dead_letter_exchange,
                **(queue_arguments or {}),
            },
        )
        for key in binding_keys:
            await queue.bind(exchange, routing_key=key)

        async def on_message(message: AbstractIncomingMessage) -> None:
            try:
                envelope = msgspec.json.decode(message.body, type=Envelope)
            except (msgspec.ValidationError, msgspec.DecodeError):
                log.error(
                    "amqp_message_undecodable", consumer=consumer, message_id=message.message_id
                )
                await message.reject(requeue=False)  # straight to the dead-letter queue
                return
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
                # Space the redeliveries out: requeued at once, a database restart of a second
                # used up the whole delivery limit in milliseconds and dead-lettered the event.
                await asyncio.sleep(_redelivery_backoff_s(message))
                await message.nack(requeue=True)
                return
            await message.ack()

        await queue.consume(on_message)
