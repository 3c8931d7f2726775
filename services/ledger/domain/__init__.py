"""Pure ledger rules: no I/O, no clocks (``now`` is an argument), no framework imports."""
