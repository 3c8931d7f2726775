-- Finance console: the append-only audit trail of what people did to breaks.
-- Who (actor + role) and when, for every resolution; rows are never updated or deleted.

CREATE TABLE recon_break_audit (
    audit_id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    break_id      text NOT NULL REFERENCES recon_breaks (break_id),
    action        text NOT NULL CHECK (action IN ('resolved')),
    actor         text NOT NULL CHECK (length(actor) BETWEEN 1 AND 100),
    role          text NOT NULL CHECK (role IN ('finance', 'operator')),
    comment       text NOT NULL CHECK (length(comment) BETWEEN 1 AND 2000),
    request_id    text,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX recon_break_audit_break ON recon_break_audit (break_id, audit_id);

CREATE FUNCTION recon_break_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'recon_break_audit is append-only (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE TRIGGER recon_break_audit_no_update BEFORE UPDATE OR DELETE ON recon_break_audit
    FOR EACH ROW EXECUTE FUNCTION recon_break_audit_append_only();
CREATE TRIGGER recon_break_audit_no_truncate BEFORE TRUNCATE ON recon_break_audit
    FOR EACH STATEMENT EXECUTE FUNCTION recon_break_audit_append_only();

-- The finance filters: business day and amount range over breaks.
CREATE INDEX recon_breaks_day ON recon_breaks (business_date, channel);
