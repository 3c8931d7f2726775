-- The truth journal: one row per reference the bank recorded. UNIQUE (bank, reference) is
-- what makes concurrent repeats of one reference execute at most once.
CREATE TABLE bank_transfer (
    id bigserial PRIMARY KEY,
    bank text NOT NULL,
    reference text NOT NULL,
    bank_reference text NOT NULL UNIQUE,
    amount_minor bigint NOT NULL CHECK (amount_minor > 0),
    currency char(3) NOT NULL,
    beneficiary_name text NOT NULL,
    beneficiary_account text NOT NULL,
    beneficiary_bank_code text NOT NULL,
    request_hash text NOT NULL,
    status text NOT NULL CHECK (status IN ('paid', 'accepted', 'rejected')),
    failure_code text,
    fee_minor bigint NOT NULL DEFAULT 0 CHECK (fee_minor >= 0),
    received_at timestamptz NOT NULL,
    executed_at timestamptz,
    value_date date,
    complete_at timestamptz,
    final_status text CHECK (final_status IN ('paid', 'rejected')),
    final_failure_code text,
    callback_url text,
    callback_state text NOT NULL DEFAULT 'none'
        CHECK (callback_state IN ('none', 'pending', 'delivered', 'failed')),
    callback_attempts integer NOT NULL DEFAULT 0,
    callback_next_at timestamptz,
    UNIQUE (bank, reference),
    CHECK ((status = 'paid') = (executed_at IS NOT NULL AND value_date IS NOT NULL)),
    CHECK (status <> 'rejected' OR failure_code IS NOT NULL),
    CHECK (status <> 'accepted' OR (complete_at IS NOT NULL AND final_status IS NOT NULL))
);
CREATE INDEX bank_transfer_paid_by_value_date ON bank_transfer (bank, currency, value_date)
    WHERE status = 'paid';
CREATE INDEX bank_transfer_due ON bank_transfer (complete_at) WHERE status = 'accepted';
CREATE INDEX bank_transfer_callbacks ON bank_transfer (callback_next_at)
    WHERE callback_state = 'pending';

-- Amount accepted per bank, currency and business day, for the daily limit. Updated in the
-- same transaction as the journal row, with the limit in the WHERE clause.
CREATE TABLE bank_daily_usage (
    bank text NOT NULL,
    currency char(3) NOT NULL,
    business_date date NOT NULL,
    used_minor bigint NOT NULL CHECK (used_minor >= 0),
    PRIMARY KEY (bank, currency, business_date)
);

-- The chaos mode survives a restart: an outage does not end because the simulator restarted.
CREATE TABLE bank_behaviour (
    bank text PRIMARY KEY,
    mode text NOT NULL,
    overrides jsonb NOT NULL DEFAULT '{}',
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Returns of earlier payouts (money back), booked on a business date. One per reference.
CREATE TABLE bank_return (
    id bigserial PRIMARY KEY,
    bank text NOT NULL,
    reference text NOT NULL,
    currency char(3) NOT NULL,
    amount_minor bigint NOT NULL CHECK (amount_minor > 0),
    business_date date NOT NULL,
    reason_code text NOT NULL,
    UNIQUE (bank, reference)
);

-- Every statement file written; generation counts re-issues for one bank, currency and day.
CREATE TABLE bank_statement (
    id bigserial PRIMARY KEY,
    bank text NOT NULL,
    currency char(3) NOT NULL,
    business_date date NOT NULL,
    generation integer NOT NULL,
    trigger text NOT NULL CHECK (trigger IN ('eod', 'admin', 'cli')),
    file_name text NOT NULL,
    answer_key_name text,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (bank, currency, business_date, generation)
);
