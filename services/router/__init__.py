"""Router: channel registry, health, circuit breakers, routing decisions, bank connectors and
the channel-quota TCC participant."""
