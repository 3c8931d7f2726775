"""The ledger: append-only double-entry accounts and transfers, a TCC participant, one writer."""
