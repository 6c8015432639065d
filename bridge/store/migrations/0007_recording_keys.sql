-- Recordings encrypted at rest, a data key (DEK) per recording. The DEK is
-- stored only wrapped by a master key (bridge/privacy/crypto.py), in a table of
-- its own so that its backups can be kept for a short time: deleting a row
-- here (crypto-shredding) leaves the audio unreadable everywhere, the audio's
-- own backups included.
CREATE TABLE recording_keys (
    recording_id uuid PRIMARY KEY REFERENCES recordings (id) ON DELETE CASCADE,
    key_id       text NOT NULL,         -- the master key that wraps it
    wrapped_key  bytea NOT NULL,        -- nonce || AES-GCM(master key, DEK) || tag
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX recording_keys_key_id ON recording_keys (key_id);  -- rewrapping after a key rotation

ALTER TABLE recordings
    ADD COLUMN sealed      boolean NOT NULL DEFAULT false,  -- false: a plaintext file stored before sealing
    ADD COLUMN shredded_at timestamptz NULL;                -- its key deleted: the audio is unreadable
CREATE INDEX recordings_unsealed ON recordings (id) WHERE NOT sealed;  -- the sealing backfill's work list
