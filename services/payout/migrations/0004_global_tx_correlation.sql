-- The merchant's request id (correlation id) of the payout, so the recovery loop, which
-- drives the bank part outside the request, still carries it to the router, the bank, the
-- events it writes and its log lines.
ALTER TABLE global_tx ADD COLUMN correlation_id text;
