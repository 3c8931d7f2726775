"""HTTP entry points of the ledger."""
