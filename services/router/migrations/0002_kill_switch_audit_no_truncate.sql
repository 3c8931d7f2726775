-- UPDATE and DELETE were refused row by row; TRUNCATE fires no row trigger, so it is refused
-- here as a statement.
CREATE TRIGGER kill_switch_audit_no_truncate BEFORE TRUNCATE ON kill_switch_audit
    FOR EACH STATEMENT EXECUTE FUNCTION kill_switch_audit_append_only();
