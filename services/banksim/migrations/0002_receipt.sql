-- A transfer is recorded when the bank RECEIVES it (status 'processing'), committed before the
-- simulated processing time, and moved to its outcome (paid/accepted/rejected) afterwards. An
-- inquiry therefore never answers 404 for a reference the bank has received: 404 means "never
-- received" (or refused before acceptance, which never executes).
--
-- The outcome is drawn at receipt and stored with the row (plan_*), together with the moment
-- processing ends (execute_at). A restart with rows still 'processing' finishes them from the
-- stored plan, whatever the seed or chaos mode after the restart: deterministic, executed once.
ALTER TABLE bank_transfer DROP CONSTRAINT bank_transfer_status_check;
ALTER TABLE bank_transfer ADD CONSTRAINT bank_transfer_status_check
    CHECK (status IN ('processing', 'paid', 'accepted', 'rejected'));
ALTER TABLE bank_transfer ADD COLUMN plan_status text
    CHECK (plan_status IN ('paid', 'accepted', 'rejected'));
ALTER TABLE bank_transfer ADD COLUMN plan_failure_code text;
ALTER TABLE bank_transfer ADD COLUMN plan_fee_minor bigint CHECK (plan_fee_minor >= 0);
ALTER TABLE bank_transfer ADD COLUMN execute_at timestamptz;
ALTER TABLE bank_transfer ADD CONSTRAINT bank_transfer_processing_has_a_plan
    CHECK (status <> 'processing' OR (plan_status IS NOT NULL AND execute_at IS NOT NULL));
CREATE INDEX bank_transfer_processing ON bank_transfer (execute_at) WHERE status = 'processing';
