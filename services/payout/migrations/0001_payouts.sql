-- Merchants, their hashed API keys, limits and fees.
CREATE TABLE merchants (
    id                      text PRIMARY KEY,
    name                    text NOT NULL,
    currencies              text[] NOT NULL,
    per_payout_max_minor    bigint CHECK (per_payout_max_minor > 0),
    daily_max_minor         bigint CHECK (daily_max_minor > 0),
    monthly_max_minor       bigint CHECK (monthly_max_minor > 0),
    review_threshold_minor  bigint CHECK (review_threshold_minor > 0),
    fee_fixed_minor         bigint NOT NULL DEFAULT 0 CHECK (fee_fixed_minor >= 0),
    fee_bps                 integer NOT NULL DEFAULT 0 CHECK (fee_bps BETWEEN 0 AND 10000),
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    id          text PRIMARY KEY,
    merchant_id text NOT NULL REFERENCES merchants(id),
    key_hash    text NOT NULL UNIQUE,      -- SHA-256 of the key; the key itself is never stored
    key_prefix  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
CREATE INDEX api_keys_merchant ON api_keys (merchant_id);

-- Ledger accounts this service has already created (creation is idempotent; this saves calls).
CREATE TABLE ledger_accounts (
    id         text PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE fundings (
    id           text PRIMARY KEY,
    merchant_id  text NOT NULL REFERENCES merchants(id),
    reference    text NOT NULL,
    amount_minor bigint NOT NULL CHECK (amount_minor > 0),
    currency     text NOT NULL,
    transfer_id  text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (merchant_id, reference)
);

CREATE TABLE payouts (
    id                    text PRIMARY KEY,
    merchant_id           text NOT NULL REFERENCES merchants(id),
    amount_minor          bigint NOT NULL CHECK (amount_minor > 0),
    fee_minor             bigint NOT NULL CHECK (fee_minor >= 0),
    currency              text NOT NULL,
    beneficiary_name      text NOT NULL,
    beneficiary_account   text NOT NULL,   -- full number: the bank needs it; masked on the way out
    beneficiary_bank_code text NOT NULL,
    reference             text NOT NULL,
    metadata              jsonb,
    status                text NOT NULL CHECK (status IN ('pending_review', 'processing',
                            'submitted', 'paid', 'failed', 'canceled', 'returned', 'manual_review')),
    channel               text,
    attempt_id            text,
    failure_code          text,
    failure_message       text,
    batch_id              text,
    status_history        jsonb NOT NULL DEFAULT '[]',
    version               integer NOT NULL DEFAULT 1,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    UNIQUE (merchant_id, reference)
);
CREATE INDEX payouts_merchant_created ON payouts (merchant_id, created_at DESC, id DESC);
CREATE INDEX payouts_waiting_operator ON payouts (status, created_at)
    WHERE status IN ('manual_review', 'pending_review');

-- Idempotency keys are scoped per merchant: one merchant's key can never read another's response.
CREATE TABLE idempotency_keys (
    merchant_id     text NOT NULL,
    key             text NOT NULL,
    operation       text NOT NULL,
    request_hash    text NOT NULL,
    state           text NOT NULL CHECK (state IN ('in_flight', 'done')),
    payout_id       text,
    batch_id        text,
    response_status integer,
    response_body   bytea,
    locked_until    timestamptz NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    PRIMARY KEY (merchant_id, key)
);
CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at);

-- TCC coordinator: one global transaction per payout, one branch per participant.
CREATE TABLE global_tx (
    gid             text PRIMARY KEY,
    payout_id       text NOT NULL UNIQUE REFERENCES payouts(id),
    state           text NOT NULL CHECK (state IN ('trying', 'tried', 'submitting', 'awaiting',
                      'parked', 'confirming', 'cancelling', 'confirmed', 'cancelled')),
    decision        text CHECK (decision IN ('confirm', 'cancel')),
    decision_reason text,
    decided_at      timestamptz,
    failure_code    text,
    failure_message text,
    return_requested boolean NOT NULL DEFAULT false,
    channel_id      text,
    attempt_id      text,
    epoch           bigint NOT NULL DEFAULT 0,   -- fencing token: bumped by every claim
    lease_owner     text,
    lease_until     timestamptz,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    attempts        integer NOT NULL DEFAULT 0,
    inquiries       integer NOT NULL DEFAULT 0,
    resolve_by      timestamptz,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CHECK ((decision IS NULL) = (state IN ('trying', 'tried', 'submitting', 'awaiting', 'parked')))
);
CREATE INDEX global_tx_due ON global_tx (next_attempt_at)
    WHERE state NOT IN ('confirmed', 'cancelled', 'parked');

-- The decision is durable before phase 2 and never flips, whatever the code does.
CREATE FUNCTION global_tx_decision_is_final() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.decision IS NOT NULL AND NEW.decision IS DISTINCT FROM OLD.decision THEN
        RAISE EXCEPTION 'global_tx % decision % cannot change to %', OLD.gid, OLD.decision,
            NEW.decision;
    END IF;
    IF OLD.state IN ('confirmed', 'cancelled') AND NEW.state IS DISTINCT FROM OLD.state THEN
        RAISE EXCEPTION 'global_tx % is final (%)', OLD.gid, OLD.state;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER global_tx_decision_is_final BEFORE UPDATE ON global_tx
    FOR EACH ROW EXECUTE FUNCTION global_tx_decision_is_final();

CREATE TABLE branches (
    gid         text NOT NULL REFERENCES global_tx(gid),
    branch_id   text NOT NULL,
    participant text NOT NULL CHECK (participant IN ('ledger', 'router')),
    status      text NOT NULL CHECK (status IN ('pending', 'tried', 'rejected', 'confirmed',
                  'cancelled')),
    detail      jsonb,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (gid, branch_id)
);

-- What GET /v1/events lists; written with the outbox row in the same transaction.
CREATE TABLE events (
    event_id    uuid PRIMARY KEY,
    merchant_id text NOT NULL,
    event_type  text NOT NULL,
    payout_id   text,
    data        jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX events_merchant_created ON events (merchant_id, created_at DESC, event_id DESC);

CREATE TABLE webhook_endpoints (
    id          text PRIMARY KEY,
    merchant_id text NOT NULL REFERENCES merchants(id),
    url         text NOT NULL,
    event_types text[] NOT NULL,
    description text,
    secret      text NOT NULL,  -- needed in clear to sign; shown to the merchant once
    created_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz
);
CREATE INDEX webhook_endpoints_merchant ON webhook_endpoints (merchant_id) WHERE deleted_at IS NULL;

CREATE TABLE webhook_deliveries (
    id               text PRIMARY KEY,
    endpoint_id      text NOT NULL REFERENCES webhook_endpoints(id),
    merchant_id      text NOT NULL,
    event_id         uuid NOT NULL,
    event_type       text NOT NULL,
    payload          bytea NOT NULL,
    status           text NOT NULL CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz,
    give_up_at       timestamptz NOT NULL,
    last_status_code integer,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz,
    UNIQUE (endpoint_id, event_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_dead ON webhook_deliveries (created_at) WHERE status = 'dead';

CREATE TABLE webhook_attempts (
    id          bigserial PRIMARY KEY,
    delivery_id text NOT NULL REFERENCES webhook_deliveries(id),
    attempt_no  integer NOT NULL,
    attempted_at timestamptz NOT NULL DEFAULT now(),
    status_code integer,
    error       text,
    duration_ms integer NOT NULL
);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_id);

CREATE TABLE batches (
    id           text PRIMARY KEY,
    merchant_id  text NOT NULL REFERENCES merchants(id),
    status       text NOT NULL CHECK (status IN ('processing', 'completed')),
    total        integer NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz
);

CREATE TABLE batch_items (
    batch_id      text NOT NULL REFERENCES batches(id),
    line_no       integer NOT NULL,
    status        text NOT NULL CHECK (status IN ('pending', 'created', 'rejected')),
    reference     text,
    request       jsonb,
    payout_id     text,
    error_code    text,
    error_message text,
    PRIMARY KEY (batch_id, line_no)
);
CREATE INDEX batch_items_pending ON batch_items (batch_id, line_no) WHERE status = 'pending';

CREATE TABLE audit_log (
    id          bigserial PRIMARY KEY,
    actor       text NOT NULL,
    action      text NOT NULL,
    payout_id   text,
    merchant_id text,
    detail      jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_payout ON audit_log (payout_id);

CREATE TABLE alerts (
    id         text PRIMARY KEY,
    code       text NOT NULL,
    severity   text NOT NULL,
    message    text NOT NULL,
    payout_id  text,
    created_at timestamptz NOT NULL DEFAULT now()
);
