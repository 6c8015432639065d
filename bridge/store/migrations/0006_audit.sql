-- The audit trail (PDPA accountability): who read, exported, erased or changed
-- what, when, from where and why. Append-only and hash-chained (see
-- bridge/privacy/audit.py): seq is allocated as the previous seq + 1 under a
-- transaction-scoped advisory lock, so it is gapless and a deleted row shows
-- as a gap; each row carries the previous row's hash.
CREATE TABLE audit_log (
    seq          bigint PRIMARY KEY CHECK (seq > 0),
    at           timestamptz NOT NULL,
    actor        text NOT NULL,          -- apikey:<prefix>:<name>, cli:<os user>, service
    action       text NOT NULL,          -- dotted: recording.read, apikey.created, config.changed...
    target_type  text NOT NULL,
    target_id    text NOT NULL,
    session_id   uuid,
    subject_hash bytea,                  -- keyed hash of a phone number, never the number
    source       text NOT NULL,          -- client address, cli@<host>, service@<host>
    reason       text,
    details      jsonb NOT NULL DEFAULT '{}',
    prev_hash    bytea NOT NULL CHECK (length(prev_hash) = 32),
    hash         bytea NOT NULL CHECK (length(hash) = 32)
);
CREATE INDEX audit_log_by_session ON audit_log (session_id) WHERE session_id IS NOT NULL;
CREATE INDEX audit_log_by_subject ON audit_log (subject_hash) WHERE subject_hash IS NOT NULL;
CREATE INDEX audit_log_by_at ON audit_log (at);
