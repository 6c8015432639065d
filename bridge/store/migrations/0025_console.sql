-- The web console (bridge/console): its sign-in sessions, and the pool's
-- utilisation over time for its chart.
--
-- A sign-in is a row here, not a signed cookie, so signing out ends it for
-- good, revoking the API key behind it ends it at once, and every instance of
-- the service behind one address accepts it. The cookie carries a random
-- token; only its SHA-256 is kept, so a copy of this table signs nobody in.
CREATE TABLE console_sessions (
    token_hash  bytea PRIMARY KEY CHECK (length(token_hash) = 32),
    api_key_id  uuid NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    source      text NOT NULL,           -- the client's address at sign-in
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    ended_at    timestamptz,             -- signed out
    CHECK (expires_at > created_at)
);
CREATE INDEX console_sessions_by_expiry ON console_sessions (expires_at);

-- Live's "today" counts read calls by start time, every few seconds per viewer.
CREATE INDEX calls_by_start ON calls (started_at);

-- One row per sampling period (the sampler rounds `at` down to it, so two
-- instances sampling at once write one row). Counts only: no number here.
CREATE TABLE pool_samples (
    at          timestamptz PRIMARY KEY,
    active      integer NOT NULL CHECK (active >= 0),      -- in the pool, not retired
    in_use      integer NOT NULL CHECK (in_use >= 0),      -- held by a live session
    reserved    integer NOT NULL CHECK (reserved >= 0),
    shared      integer NOT NULL CHECK (shared >= 0),      -- pin_mode numbers
    quarantined integer NOT NULL CHECK (quarantined >= 0)  -- free, released within the quarantine
);
