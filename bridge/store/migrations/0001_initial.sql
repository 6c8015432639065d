-- The pool, the sessions that bind two participants to a virtual number, one
-- row per call attempt (written as the call progresses, so a crash leaves
-- evidence), and the recordings moved out of Asterisk.

CREATE TABLE virtual_numbers (
    number            text PRIMARY KEY CHECK (number ~ '^\+[1-9][0-9]{6,14}$'),
    status            text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'retired')),
    created_at        timestamptz NOT NULL DEFAULT now(),
    last_allocated_at timestamptz
);

CREATE TABLE masking_sessions (
    id             uuid PRIMARY KEY,
    virtual_number text NOT NULL REFERENCES virtual_numbers (number),
    participant_a  text NOT NULL CHECK (participant_a ~ '^\+[1-9][0-9]{6,14}$'),
    participant_b  text NOT NULL CHECK (participant_b ~ '^\+[1-9][0-9]{6,14}$'),
    status         text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'closed')),
    record         boolean NOT NULL DEFAULT true,
    created_at     timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz NOT NULL,
    closed_at      timestamptz,
    CHECK (participant_a <> participant_b),
    CHECK (expires_at > created_at)
);
-- The call path's lookup: (virtual number, caller) whichever side the caller is.
CREATE INDEX masking_sessions_by_a ON masking_sessions (virtual_number, participant_a);
CREATE INDEX masking_sessions_by_b ON masking_sessions (virtual_number, participant_b);

CREATE TABLE calls (
    id                  uuid PRIMARY KEY,
    session_id          uuid REFERENCES masking_sessions (id),
    virtual_number      text NOT NULL,
    direction           text CHECK (direction IN ('a_to_b', 'b_to_a')),
    caller_channel_id   text NOT NULL,
    callee_channel_id   text,
    started_at          timestamptz NOT NULL,
    ringing_at          timestamptz,
    answered_at         timestamptz,
    ended_at            timestamptz,
    disposition         text NOT NULL DEFAULT 'in_progress' CHECK (disposition IN (
                            'in_progress', 'answered', 'busy', 'no_answer', 'failed',
                            'cancelled', 'rejected')),
    reject_reason       text CHECK (reject_reason IN (
                            'unknown_number', 'not_a_participant', 'session_expired',
                            'session_closed', 'database_unavailable', 'invalid_caller')),
    dial_status         text,
    caller_hangup_cause integer,
    callee_hangup_cause integer,
    hangup_by           text CHECK (hangup_by IN ('caller', 'callee', 'system')),
    setup_ms            integer,
    talk_seconds        numeric(10, 3),
    recorded            boolean NOT NULL DEFAULT false
);
CREATE INDEX calls_by_session ON calls (session_id, started_at);
CREATE INDEX calls_in_progress ON calls (started_at) WHERE disposition = 'in_progress';

CREATE TABLE recordings (
    id               uuid PRIMARY KEY,
    call_id          uuid NOT NULL UNIQUE REFERENCES calls (id),
    storage_path     text NOT NULL,
    format           text NOT NULL,
    bytes            bigint NOT NULL CHECK (bytes >= 0),
    duration_seconds numeric(10, 3) NOT NULL,
    sha256           text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    created_at       timestamptz NOT NULL DEFAULT now()
);
