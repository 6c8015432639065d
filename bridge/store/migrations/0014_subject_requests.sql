-- Data subjects' requests (PDPA access and correction obligations, and
-- erasure): tracked from the day they were received to the day they were
-- answered, so the 30-day deadline can be shown kept, and overdue ones found.
-- Never the number: its keyed hash (as audit_log.subject_hash) and a masked
-- hint (+65****4567) a person can match against their ticket.
CREATE TABLE subject_requests (
    id           uuid PRIMARY KEY,
    kind         text NOT NULL CHECK (kind IN ('access', 'correction', 'erasure')),
    subject_hash bytea NOT NULL CHECK (length(subject_hash) = 32),
    subject_hint text NOT NULL,
    received_at  timestamptz NOT NULL,
    due_at       timestamptz NOT NULL CHECK (due_at >= received_at),
    status       text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'done', 'refused')),
    completed_at timestamptz,
    actor        text NOT NULL,          -- who opened it: apikey:<prefix>:<name>, cli:<os user>
    completed_by text,
    notes        text CHECK (length(notes) <= 1000),
    created_at   timestamptz NOT NULL DEFAULT now(),
    CHECK ((status = 'open') = (completed_at IS NULL))
);
CREATE INDEX subject_requests_open_by_due ON subject_requests (due_at) WHERE status = 'open';
CREATE INDEX subject_requests_by_subject ON subject_requests (subject_hash);
