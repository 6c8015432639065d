-- Per-session caller ID policy. 'shared': both participants dial and see the
-- one virtual number. 'per_participant': each has a number of their own (as
-- Twilio Proxy's per-participant proxy numbers), so each side can save a
-- distinct contact: A dials and sees `virtual_number` (X_A), B dials and sees
-- `virtual_number_b` (X_B). session_participants then holds (X_A, A) and
-- (X_B, B), so the partial unique index session_participants_one_live_number
-- keeps its guarantee: (number dialed, caller) names at most one live session.
ALTER TABLE masking_sessions
    ADD COLUMN caller_id_policy text NOT NULL DEFAULT 'shared'
        CHECK (caller_id_policy IN ('shared', 'per_participant')),
    ADD COLUMN virtual_number_b text REFERENCES virtual_numbers (number),
    ADD CONSTRAINT masking_sessions_caller_id_numbers CHECK (
        (caller_id_policy = 'per_participant') = (virtual_number_b IS NOT NULL)
        AND virtual_number_b <> virtual_number);
-- The call path's lookup of B calling on X_B (A's side uses masking_sessions_by_a).
CREATE INDEX masking_sessions_by_number_b ON masking_sessions (virtual_number_b, participant_b_hash)
    WHERE virtual_number_b IS NOT NULL;
