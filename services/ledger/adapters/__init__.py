"""asyncpg adapters: the ledger's tables, the service's database role, chain verification."""
