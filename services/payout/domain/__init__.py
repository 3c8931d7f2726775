"""Pure payout rules: states and transitions, fees, limits, schedules. No I/O here."""
