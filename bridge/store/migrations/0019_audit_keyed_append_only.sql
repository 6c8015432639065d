-- The audit trail, keyed and append-only (issue 13; docs/security.md).
--
-- key_id names the audit key (in the key file, never here) whose HMAC seals the
-- row; rows written before this migration keep NULL and their plain SHA-256,
-- and stay verifiable as they were. The CHECK records where the switch
-- happened: no unkeyed row can be appended after it.
ALTER TABLE audit_log ADD COLUMN key_id text;
DO $$
DECLARE
    last bigint;
BEGIN
    SELECT coalesce(max(seq), 0) INTO last FROM audit_log;
    EXECUTE format('ALTER TABLE audit_log ADD CONSTRAINT audit_log_keyed_after_switch'
                   ' CHECK (key_id IS NOT NULL OR seq <= %s)', last);
END
$$;

-- Grants give the application role INSERT and SELECT only (bridge/store/roles.py);
-- this refuses UPDATE, DELETE and TRUNCATE to every role, the owner included, so
-- a single-role setup or a grant made by mistake cannot rewrite history either.
-- A superuser can still switch triggers off: the keyed chain and the checkpoints
-- kept outside the database are what catch that.
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();

-- Key files made before this migration get an audit key (copy the file to every host).
-- masking:code add_audit_key
