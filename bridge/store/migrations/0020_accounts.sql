-- Tenancy: every API key belongs to an account, and so does every session and
-- every uploaded wait audio. A key sees and changes only its own account's
-- sessions and, through them, their calls, recordings and webhook events;
-- a foreign id answers exactly as a missing one. Keys, sessions and wait audio
-- from before belong to the default account, the operator's own, as do sessions
-- the service itself creates (out of session) and rows about no session.
CREATE TABLE accounts (
    id         uuid PRIMARY KEY,
    name       text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9_.-]{0,62}$'),
    created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO accounts (id, name) VALUES ('00000000-0000-0000-0000-000000000001', 'default');

ALTER TABLE api_keys
    ADD COLUMN account_id uuid NOT NULL DEFAULT '00000000-0000-0000-0000-000000000001' REFERENCES accounts (id);
ALTER TABLE api_keys ALTER COLUMN account_id DROP DEFAULT;  -- a new key names its account

ALTER TABLE masking_sessions
    ADD COLUMN account_id uuid NOT NULL DEFAULT '00000000-0000-0000-0000-000000000001' REFERENCES accounts (id);
CREATE INDEX masking_sessions_by_account ON masking_sessions (account_id, created_at DESC);

ALTER TABLE wait_audio
    ADD COLUMN account_id uuid NOT NULL DEFAULT '00000000-0000-0000-0000-000000000001' REFERENCES accounts (id);
