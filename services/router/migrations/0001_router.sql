-- Router state. Channels and merchant rules live in config files; what happens to payouts
-- (decisions, attempts, quota, kill switches) lives here.

-- Channel quota TCC participant. The barrier row is written in the same transaction as the
-- quota effect, so a repeat finds the stored outcome, a cancel before try leaves a tombstone,
-- and a try after cancel has no effect.
CREATE TABLE tcc_barrier (
    gid         text NOT NULL,
    branch_id   text NOT NULL,
    op          text NOT NULL CHECK (op IN ('try', 'confirm', 'cancel')),
    status      integer NOT NULL,          -- HTTP status of the stored answer
    answer      jsonb NOT NULL,            -- the answer a repeat gets back
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (gid, branch_id, op)
);

CREATE TABLE channel_quota (
    channel_id      text NOT NULL,
    business_date   date NOT NULL,
    reserved_minor  bigint NOT NULL DEFAULT 0 CHECK (reserved_minor >= 0),
    consumed_minor  bigint NOT NULL DEFAULT 0 CHECK (consumed_minor >= 0),
    PRIMARY KEY (channel_id, business_date)
);

CREATE TABLE quota_reservation (
    gid            text NOT NULL,
    branch_id      text NOT NULL,
    payout_id      text NOT NULL,
    channel_id     text NOT NULL,             -- moves when a submission falls back
    business_date  date NOT NULL,
    amount_minor   bigint NOT NULL CHECK (amount_minor > 0),
    currency       text NOT NULL,
    status         text NOT NULL CHECK (status IN ('tried', 'confirmed', 'cancelled')),
    decision_id    text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (gid, branch_id)
);
CREATE INDEX quota_reservation_gid ON quota_reservation (gid) WHERE status = 'tried';

-- Every routing decision with its candidates, scores and exclusion reasons.
CREATE TABLE decision (
    decision_id  text PRIMARY KEY,
    payout_id    text NOT NULL,
    purpose      text NOT NULL CHECK (purpose IN ('tcc_try', 'submission')),
    chosen       text,
    reason       text NOT NULL,
    facts        jsonb NOT NULL,
    candidates   jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX decision_payout ON decision (payout_id);

CREATE TABLE submission (
    payout_id     text PRIMARY KEY,
    gid           text NOT NULL,
    merchant_id   text NOT NULL,
    amount_minor  bigint NOT NULL CHECK (amount_minor > 0),
    currency      text NOT NULL,
    beneficiary   jsonb NOT NULL,
    reference     text NOT NULL,
    request_hash  text NOT NULL,
    -- Set when routing gave up (no eligible channel, fallbacks exhausted): a repeat of the
    -- submission then answers the same failure instead of routing again.
    final_failure_class   text,
    final_failure_code    text,
    final_failure_message text,
    closed_at     timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE attempt (
    attempt_id       text PRIMARY KEY,           -- also the reference the bank sees
    payout_id        text NOT NULL REFERENCES submission (payout_id),
    seq              integer NOT NULL CHECK (seq >= 1),
    channel_id       text NOT NULL,
    bank             text NOT NULL,
    decision_id      text NOT NULL REFERENCES decision (decision_id),
    amount_minor     bigint NOT NULL CHECK (amount_minor > 0),
    currency         text NOT NULL,
    status           text NOT NULL
        CHECK (status IN ('sending', 'submitted', 'unknown', 'succeeded', 'failed')),
    failure_class    text CHECK (failure_class IN ('definite_non_execution', 'beneficiary_error')),
    failure_code     text,
    failure_message  text,
    bank_reference   text,
    fee_minor        bigint,
    executed_at      timestamptz,
    sent_at          timestamptz NOT NULL DEFAULT now(),
    resolved_at      timestamptz,
    resolved_by      text CHECK (resolved_by IN ('response', 'inquiry', 'callback')),
    inquiries        integer NOT NULL DEFAULT 0,
    next_inquiry_at  timestamptz,
    version          integer NOT NULL DEFAULT 1,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (payout_id, seq),
    CHECK ((status = 'failed') = (failure_class IS NOT NULL))
);
-- Never pay twice: at most one attempt per payout that is live or has succeeded.
CREATE UNIQUE INDEX attempt_one_live_per_payout ON attempt (payout_id)
    WHERE status IN ('sending', 'submitted', 'unknown', 'succeeded');
CREATE INDEX attempt_to_inquire ON attempt (next_inquiry_at)
    WHERE status IN ('sending', 'submitted', 'unknown');
CREATE INDEX attempt_bank_sent ON attempt (bank, sent_at);

-- Operator kill switches (per channel and per operation) with an append-only audit trail.
CREATE TABLE kill_switch (
    channel_id  text NOT NULL,
    operation   text NOT NULL CHECK (operation IN ('submit', 'inquire')),
    engaged     boolean NOT NULL,
    reason      text NOT NULL,
    actor       text NOT NULL,
    changed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (channel_id, operation)
);
CREATE TABLE kill_switch_audit (
    id          bigserial PRIMARY KEY,
    channel_id  text NOT NULL,
    operation   text NOT NULL,
    engaged     boolean NOT NULL,
    reason      text NOT NULL,
    actor       text NOT NULL,
    request_id  text,
    changed_at  timestamptz NOT NULL DEFAULT now()
);
CREATE FUNCTION kill_switch_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'kill_switch_audit is append-only';
END $$;
CREATE TRIGGER kill_switch_audit_no_change BEFORE UPDATE OR DELETE ON kill_switch_audit
    FOR EACH ROW EXECUTE FUNCTION kill_switch_audit_append_only();
