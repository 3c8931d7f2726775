"""aiohttp views and AMQP consumers."""
