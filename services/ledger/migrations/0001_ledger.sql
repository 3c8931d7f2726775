-- The ledger: accounts with TigerBeetle's four counters, append-only transfers in commit order
-- with a hash chain, remembered rejections, and the TCC barrier.
--
-- Tables are owned by the migration role (the DATABASE_URL user). The service connects as a
-- separate role that is granted INSERT/SELECT only on the append-only tables (see
-- services/ledger/adapters/roles.py); the triggers below refuse UPDATE, DELETE and TRUNCATE
-- even for the owner, so a mistake in code or a manual session cannot rewrite history.

CREATE TABLE accounts (
    id              text PRIMARY KEY,
    currency        char(3) NOT NULL,
    code            integer NOT NULL CHECK (code BETWEEN 0 AND 65535),
    debits_must_not_exceed_credits boolean NOT NULL,
    credits_must_not_exceed_debits boolean NOT NULL,
    debits_pending  bigint NOT NULL DEFAULT 0 CHECK (debits_pending >= 0),
    debits_posted   bigint NOT NULL DEFAULT 0 CHECK (debits_posted >= 0),
    credits_pending bigint NOT NULL DEFAULT 0 CHECK (credits_pending >= 0),
    credits_posted  bigint NOT NULL DEFAULT 0 CHECK (credits_posted >= 0),
    created_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (NOT (debits_must_not_exceed_credits AND credits_must_not_exceed_debits)),
    -- The overdraft rules are checked by the writer AND here, so a bug cannot overdraw.
    CHECK (NOT debits_must_not_exceed_credits
           OR debits_pending + debits_posted <= credits_posted),
    CHECK (NOT credits_must_not_exceed_debits
           OR credits_pending + credits_posted <= debits_posted)
);

-- seq is the commit order, assigned by the single writer under an advisory lock; hash chains
-- every transfer to its predecessor. pending_delta_minor / posted_delta_minor are the signed
-- changes this row makes to the pending / posted counters of BOTH legs (debits_* of the debit
-- account, credits_* of the credit account), so every counter is a plain SUM over transfers.
CREATE TABLE transfers (
    seq                 bigint PRIMARY KEY CHECK (seq > 0),
    id                  text NOT NULL UNIQUE,
    kind                text NOT NULL CHECK (kind IN ('single', 'pending', 'post', 'void', 'expire')),
    debit_account_id    text NOT NULL REFERENCES accounts (id),
    credit_account_id   text NOT NULL REFERENCES accounts (id),
    amount_minor        bigint NOT NULL CHECK (amount_minor >= 0),
    currency            char(3) NOT NULL,
    pending_delta_minor bigint NOT NULL,
    posted_delta_minor  bigint NOT NULL CHECK (posted_delta_minor >= 0),
    pending_id          text,
    timeout_s           integer NOT NULL DEFAULT 0 CHECK (timeout_s >= 0),
    expires_at          timestamptz,
    code                integer NOT NULL DEFAULT 0,
    body_hash           bytea NOT NULL,
    created_at          timestamptz NOT NULL,
    prev_hash           bytea NOT NULL,
    hash                bytea NOT NULL,
    CHECK (debit_account_id <> credit_account_id),
    CHECK ((kind IN ('post', 'void', 'expire')) = (pending_id IS NOT NULL))
);
-- A pending transfer is resolved (posted, voided or expired) at most once: the database,
-- not only the code, refuses a second resolution.
CREATE UNIQUE INDEX transfers_pending_resolved_once ON transfers (pending_id)
    WHERE pending_id IS NOT NULL;
CREATE INDEX transfers_debit_history ON transfers (debit_account_id, seq);
CREATE INDEX transfers_credit_history ON transfers (credit_account_id, seq);
CREATE INDEX transfers_created_at ON transfers (created_at, seq);
CREATE INDEX transfers_pending_expiry ON transfers (expires_at)
    WHERE kind = 'pending' AND expires_at IS NOT NULL;

-- Rejected transfer ids are remembered so a retry returns the same rejection.
CREATE TABLE rejections (
    id          text PRIMARY KEY,
    body_hash   bytea NOT NULL,
    code        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- TCC barrier: at most one row per (gid, branch, op), written in the same transaction as the
-- ledger effect. A cancel row with no transfers is the empty-rollback tombstone.
CREATE TABLE tcc_barrier (
    gid           text NOT NULL,
    branch_id     text NOT NULL,
    op            text NOT NULL CHECK (op IN ('try', 'confirm', 'cancel')),
    status        text NOT NULL CHECK (status IN ('tried', 'rejected', 'confirmed', 'cancelled')),
    code          text,
    transfer_ids  text[] NOT NULL,
    body_hash     bytea,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (gid, branch_id, op)
);

CREATE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger table % is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE TRIGGER transfers_append_only BEFORE UPDATE OR DELETE ON transfers
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER transfers_no_truncate BEFORE TRUNCATE ON transfers
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER rejections_append_only BEFORE UPDATE OR DELETE ON rejections
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER rejections_no_truncate BEFORE TRUNCATE ON rejections
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER tcc_barrier_append_only BEFORE UPDATE OR DELETE ON tcc_barrier
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER tcc_barrier_no_truncate BEFORE TRUNCATE ON tcc_barrier
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();

-- Accounts are never deleted and their identity (currency, code, flags) never changes; only
-- the counters move, and only by the writer.
CREATE FUNCTION ledger_account_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'accounts are never deleted' USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NEW.id <> OLD.id OR NEW.currency <> OLD.currency OR NEW.code <> OLD.code
       OR NEW.debits_must_not_exceed_credits <> OLD.debits_must_not_exceed_credits
       OR NEW.credits_must_not_exceed_debits <> OLD.credits_must_not_exceed_debits
       OR NEW.created_at <> OLD.created_at THEN
        RAISE EXCEPTION 'account identity is immutable' USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER accounts_guard BEFORE UPDATE OR DELETE ON accounts
    FOR EACH ROW EXECUTE FUNCTION ledger_account_guard();
CREATE TRIGGER accounts_no_truncate BEFORE TRUNCATE ON accounts
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
