"""AMQP consumers: breaker states announced by other router instances."""

from __future__ import annotations

from contracts.wire import Envelope
from services.kit.amqp import Broker
from services.router.handlers import RouterService

HEALTH_EVENT = "channel.health_changed"


def health_queue(instance_id: str) -> str:
    """Each instance has its own queue (every instance must see every change); it expires
    once its instance is gone, so dead instances leave nothing behind."""
    return f"router.health.{instance_id}"


async def start_health_consumer(
    broker: Broker, service: RouterService, *, instance_id: str, expiry_ms: int
) -> None:
    async def on_health(envelope: Envelope) -> None:
        # Following a peer's state is idempotent (setting a state twice is one effect), so a
        # redelivery needs no inbox row.
        service.adopt_peer_health(envelope.data)

    await broker.consume(
        health_queue(instance_id),
        [HEALTH_EVENT],
        on_health,
        prefetch=64,
        queue_arguments={"x-expires": expiry_ms},
    )
