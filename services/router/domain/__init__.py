"""Pure routing rules: no I/O, the clock is always an argument."""
