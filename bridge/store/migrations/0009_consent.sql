-- The recording notice as evidence: which notice (id, version) played to which
-- party and when, who opted out, and when recording actually started (always
-- after every notice ended).
ALTER TABLE calls
    ADD COLUMN notices              jsonb NOT NULL DEFAULT '[]',
    ADD COLUMN recording_opt_out    text CHECK (recording_opt_out IN ('caller', 'callee')),
    ADD COLUMN recording_started_at timestamptz;
