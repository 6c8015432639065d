-- Sessions over HTTP, pool rules enforced by the database, call events to the
-- business through an outbox.

ALTER TABLE virtual_numbers
    ADD COLUMN reserved boolean NOT NULL DEFAULT false,  -- never auto-allocated
    ADD COLUMN country  text;                            -- ISO region, e.g. 'SG'

ALTER TABLE masking_sessions DROP CONSTRAINT masking_sessions_status_check;
ALTER TABLE masking_sessions
    ADD CONSTRAINT masking_sessions_status_check CHECK (status IN ('active', 'closed', 'expired')),
    ADD COLUMN external_ref text,
    ADD COLUMN ttl_mode    text NOT NULL DEFAULT 'creation' CHECK (ttl_mode IN ('creation', 'last_interaction')),
    ADD COLUMN ttl_seconds integer CHECK (ttl_seconds > 0),
    ADD COLUMN webhook_url text;
CREATE INDEX masking_sessions_by_external_ref ON masking_sessions (external_ref) WHERE external_ref IS NOT NULL;
CREATE INDEX masking_sessions_active_expiry ON masking_sessions (expires_at) WHERE status = 'active';
UPDATE masking_sessions SET ttl_seconds = GREATEST(1, extract(epoch FROM expires_at - created_at)::integer);

-- One row per participant of a session. The partial unique index is the pool's
-- central rule, enforced under any concurrency: a participant never holds the
-- same virtual number in two live sessions, so (virtual number, caller) always
-- names one session.
CREATE TABLE session_participants (
    session_id     uuid NOT NULL REFERENCES masking_sessions (id) ON DELETE CASCADE,
    role           text NOT NULL CHECK (role IN ('a', 'b')),
    virtual_number text NOT NULL,
    number         text NOT NULL,
    live           boolean NOT NULL DEFAULT true,
    ended_at       timestamptz,
    PRIMARY KEY (session_id, role)
);
CREATE UNIQUE INDEX session_participants_one_live_number
    ON session_participants (virtual_number, number) WHERE live;
CREATE INDEX session_participants_recent ON session_participants (number, virtual_number, ended_at);
INSERT INTO session_participants (session_id, role, virtual_number, number, live, ended_at)
SELECT id, 'a', virtual_number, participant_a, status = 'active' AND expires_at > now(),
       CASE WHEN status = 'active' AND expires_at > now() THEN NULL ELSE coalesce(closed_at, expires_at) END
FROM masking_sessions
UNION ALL
SELECT id, 'b', virtual_number, participant_b, status = 'active' AND expires_at > now(),
       CASE WHEN status = 'active' AND expires_at > now() THEN NULL ELSE coalesce(closed_at, expires_at) END
FROM masking_sessions;
UPDATE masking_sessions SET status = 'expired' WHERE status = 'active' AND expires_at <= now();

CREATE TABLE api_keys (
    id         uuid PRIMARY KEY,
    name       text NOT NULL,
    prefix     text NOT NULL UNIQUE,       -- the public part of the token, for lookup
    key_hash   text NOT NULL,              -- sha256 of the secret part; the secret is never stored
    scopes     text[] NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);

CREATE TABLE idempotency_keys (
    api_key_id   uuid NOT NULL REFERENCES api_keys (id),
    key          text NOT NULL,
    request_hash text NOT NULL,
    session_id   uuid NOT NULL REFERENCES masking_sessions (id),
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (api_key_id, key)
);

CREATE TABLE webhook_outbox (
    id              bigserial PRIMARY KEY,
    event_id        uuid NOT NULL UNIQUE,
    event_type      text NOT NULL,
    session_id      uuid REFERENCES masking_sessions (id),
    url             text NOT NULL,
    payload         jsonb NOT NULL,
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz
);
CREATE INDEX webhook_outbox_due ON webhook_outbox (next_attempt_at) WHERE status = 'pending';
