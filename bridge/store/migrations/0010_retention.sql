-- Retention, legal hold and erasure (bridge/privacy/retention.py).
--
-- An anonymised session stays as a row without personal data, so calls keep
-- their session for accounting: its numbers (sealed and hashed) are nulled,
-- along with the business's reference and webhook URL, and `anonymised_at`
-- says when. Its participants rows are deleted, its recordings shredded.
-- A session under legal hold is never anonymised until the hold is lifted.
ALTER TABLE masking_sessions
    ALTER COLUMN participant_a_hash DROP NOT NULL, ALTER COLUMN participant_b_hash DROP NOT NULL,
    ALTER COLUMN participant_a_sealed DROP NOT NULL, ALTER COLUMN participant_b_sealed DROP NOT NULL,
    ALTER COLUMN key_id DROP NOT NULL,
    ADD COLUMN anonymised_at     timestamptz,
    ADD COLUMN legal_hold_at     timestamptz,
    ADD COLUMN legal_hold_reason text CHECK (length(legal_hold_reason) BETWEEN 1 AND 500),
    ADD COLUMN legal_hold_by     text,
    ADD CONSTRAINT masking_sessions_numbers_until_anonymised CHECK (
        CASE WHEN anonymised_at IS NULL
             THEN participant_a_hash IS NOT NULL AND participant_b_hash IS NOT NULL
                  AND participant_a_sealed IS NOT NULL AND participant_b_sealed IS NOT NULL AND key_id IS NOT NULL
             ELSE participant_a_hash IS NULL AND participant_b_hash IS NULL
                  AND participant_a_sealed IS NULL AND participant_b_sealed IS NULL AND key_id IS NULL
                  AND status <> 'active' AND legal_hold_at IS NULL
        END),
    ADD CONSTRAINT masking_sessions_hold_has_reason CHECK ((legal_hold_at IS NULL) = (legal_hold_reason IS NULL));

-- Erasure finds a subject's sessions by either participant's keyed hash.
CREATE INDEX masking_sessions_by_a_hash ON masking_sessions (participant_a_hash) WHERE participant_a_hash IS NOT NULL;
CREATE INDEX masking_sessions_by_b_hash ON masking_sessions (participant_b_hash) WHERE participant_b_hash IS NOT NULL;
-- The purge's work lists, walked in id order.
CREATE INDEX masking_sessions_not_anonymised ON masking_sessions (id) WHERE anonymised_at IS NULL;
CREATE INDEX recordings_not_shredded ON recordings (id) WHERE shredded_at IS NULL;

-- A call's personal details (custom field, who called whom) cleared; its
-- statistics (times, disposition, durations, causes) stay for accounting.
ALTER TABLE calls ADD COLUMN details_purged_at timestamptz;
CREATE INDEX calls_details_kept ON calls (id) WHERE details_purged_at IS NULL;
