-- Audio a business uploads for callers to hear while the counterpart rings
-- (instead of ringback), converted for Asterisk; sessions may name one.
CREATE TABLE wait_audio (
    id               uuid PRIMARY KEY,
    name             text NOT NULL,
    storage_path     text NOT NULL,
    bytes            bigint NOT NULL CHECK (bytes > 0),
    duration_seconds numeric(10, 3) NOT NULL,
    sha256           text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    created_at       timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE masking_sessions ADD COLUMN wait_audio_id uuid REFERENCES wait_audio (id) ON DELETE SET NULL;
