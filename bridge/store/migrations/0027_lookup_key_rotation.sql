-- Lookup-key rotation (bridge/privacy/lookup.py, bridge/store/lookup_keys.py):
-- every row holding a number's keyed hash records which lookup key made it,
-- so `masking keys rehash` knows what is left to move and `keys retire-lookup`
-- knows when a key is no longer needed. Rows from before are the legacy key,
-- `l0` (a key file with a single `lookup` key names it so). The default is
-- dropped once the rows are labelled: a new row must say which key it used.
ALTER TABLE masking_sessions ADD COLUMN lookup_key_id text;
UPDATE masking_sessions SET lookup_key_id = 'l0' WHERE participant_a_hash IS NOT NULL;
CREATE INDEX masking_sessions_by_lookup_key ON masking_sessions (lookup_key_id) WHERE lookup_key_id IS NOT NULL;

ALTER TABLE session_participants ADD COLUMN lookup_key_id text NOT NULL DEFAULT 'l0';
ALTER TABLE session_participants ALTER COLUMN lookup_key_id DROP DEFAULT;
CREATE INDEX session_participants_by_lookup_key ON session_participants (lookup_key_id);

-- A caller's wrong PINs are keyed by their number's hash; 'withheld' and the
-- per-number rows hold no hash (NULL).
ALTER TABLE pin_failures ADD COLUMN lookup_key_id text;
UPDATE pin_failures SET lookup_key_id = 'l0' WHERE scope = 'caller' AND key <> 'withheld';

-- Request digests are keyed too; they are never re-computed (the body is not kept).
ALTER TABLE idempotency_keys ADD COLUMN lookup_key_id text NOT NULL DEFAULT 'l0';
ALTER TABLE idempotency_keys ALTER COLUMN lookup_key_id DROP DEFAULT;

-- A session with hashes names their key, or `rehash` would never see it (and
-- retiring the key would lose it). Anonymising nulls the hashes: no label needed.
ALTER TABLE masking_sessions ADD CONSTRAINT masking_sessions_hashes_name_their_key
    CHECK (participant_a_hash IS NULL OR lookup_key_id IS NOT NULL);
