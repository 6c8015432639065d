-- Privacy by design: participants' numbers encrypted at rest, a purpose and an
-- allowed time window on every session.
--
-- Numbers become AES-GCM ciphertext (`*_sealed`, under the master key named by
-- `key_id`) plus an HMAC (`*_hash`) for equality lookups. SQL cannot encrypt
-- (the keys are not in the database), so the conversion of existing rows runs
-- in Python at the marker below, inside this migration's transaction; the
-- clear columns are dropped after it.

ALTER TABLE masking_sessions
    ADD COLUMN participant_a_hash   bytea,
    ADD COLUMN participant_b_hash   bytea,
    ADD COLUMN participant_a_sealed bytea,
    ADD COLUMN participant_b_sealed bytea,
    ADD COLUMN key_id               text,
    ADD COLUMN purpose              text,
    ADD COLUMN window_starts_at     timestamptz,
    ADD COLUMN window_ends_at       timestamptz,
    ADD CONSTRAINT masking_sessions_window_check CHECK (window_ends_at > window_starts_at);
UPDATE masking_sessions SET purpose = 'unspecified';  -- sessions made before purposes existed
ALTER TABLE masking_sessions ALTER COLUMN purpose SET NOT NULL,
    ADD CONSTRAINT masking_sessions_purpose_check CHECK (purpose ~ '^[a-z][a-z0-9_.-]{0,63}$');
ALTER TABLE session_participants ADD COLUMN number_hash bytea;

-- masking:code seal_participant_numbers

ALTER TABLE masking_sessions
    DROP COLUMN participant_a, DROP COLUMN participant_b,
    ALTER COLUMN participant_a_hash SET NOT NULL, ALTER COLUMN participant_b_hash SET NOT NULL,
    ALTER COLUMN participant_a_sealed SET NOT NULL, ALTER COLUMN participant_b_sealed SET NOT NULL,
    ALTER COLUMN key_id SET NOT NULL,
    ADD CONSTRAINT masking_sessions_distinct_participants CHECK (participant_a_hash <> participant_b_hash);
CREATE INDEX masking_sessions_by_a ON masking_sessions (virtual_number, participant_a_hash);
CREATE INDEX masking_sessions_by_b ON masking_sessions (virtual_number, participant_b_hash);
CREATE INDEX masking_sessions_by_key ON masking_sessions (key_id);

ALTER TABLE session_participants DROP COLUMN number, ALTER COLUMN number_hash SET NOT NULL;
CREATE UNIQUE INDEX session_participants_one_live_number
    ON session_participants (virtual_number, number_hash) WHERE live;
CREATE INDEX session_participants_recent ON session_participants (number_hash, virtual_number, ended_at);

-- Request hashes were plain SHA-256 of bodies holding numbers, which a
-- dictionary of phone numbers reverses; they are keyed digests from now on.
-- Forgetting the old ones only shortens replay protection across the upgrade.
DELETE FROM idempotency_keys;

ALTER TABLE calls DROP CONSTRAINT calls_reject_reason_check;
ALTER TABLE calls ADD CONSTRAINT calls_reject_reason_check CHECK (reject_reason IN (
    'unknown_number', 'not_a_participant', 'session_expired', 'session_closed', 'database_unavailable',
    'invalid_caller', 'outside_window'));
