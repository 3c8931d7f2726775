"""asyncpg repositories, bank connectors, the config-file watcher."""
