-- The request id (correlation id) of the submission that made the attempt, so the recovery
-- loop, which inquires outside any request, still carries it to the bank and its log lines.
ALTER TABLE attempt ADD COLUMN request_id text;
