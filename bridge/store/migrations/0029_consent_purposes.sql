-- Withdrawal of consent (PDPA s16) and the purpose registry (s18, s20).
--
-- do_not_record: a person who withdrew consent, by the keyed hash of their
-- number (the same lookup hash as session_participants.number_hash), never
-- the number. Their next call is not recorded, on either call path, and
-- their past recordings are not read unless a legal hold requires it.
-- The number is also sealed (number_sealed under key_id), so `masking keys rehash`
-- can move the row to a new lookup key (lookup_key_id, bridge/store/lookup_keys.py).
CREATE TABLE do_not_record (
    id            uuid PRIMARY KEY,
    number_hash   bytea NOT NULL UNIQUE CHECK (length(number_hash) = 32),
    number_sealed bytea NOT NULL,
    key_id        text NOT NULL,
    lookup_key_id text NOT NULL,
    withdrawn_at  timestamptz NOT NULL DEFAULT now(),
    request_id    uuid REFERENCES subject_requests (id)
);
CREATE INDEX do_not_record_lookup_key ON do_not_record (lookup_key_id);

-- A withdrawal is a subject request like the others, tracked to its answer.
ALTER TABLE subject_requests DROP CONSTRAINT IF EXISTS subject_requests_kind_check;
ALTER TABLE subject_requests ADD CONSTRAINT subject_requests_kind_check
    CHECK (kind IN ('access', 'correction', 'erasure', 'withdrawal'));

-- The notice a call's parties heard, by the sha256 its purpose declares for
-- its audio: evidence of what exactly was played.
ALTER TABLE calls ADD COLUMN notice_sha256 text CHECK (notice_sha256 ~ '^[0-9a-f]{64}$');

-- A marketing purpose's sessions carry their Do Not Call check.
ALTER TABLE masking_sessions
    ADD COLUMN dnc_checked_at timestamptz,
    ADD COLUMN dnc_reference  text CHECK (length(dnc_reference) <= 200),
    ADD CONSTRAINT masking_sessions_dnc_evidence CHECK ((dnc_checked_at IS NULL) = (dnc_reference IS NULL));
