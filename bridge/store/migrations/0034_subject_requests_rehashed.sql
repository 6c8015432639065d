-- A subject request's number is sealed beside its hash, so `masking keys rehash`
-- moves the request to a new lookup key with the sessions it must match: the
-- preservation hold (bridge/store/preservation.py) compares the two in SQL.
-- Requests from before this migration keep their hash under the key that made
-- it (no label, nothing to re-hash): they stay matched under every key in the file.
ALTER TABLE subject_requests
    ADD COLUMN subject_sealed bytea,
    ADD COLUMN key_id text,
    ADD COLUMN lookup_key_id text,
    ADD CONSTRAINT subject_requests_sealed_whole
        CHECK ((subject_sealed IS NULL) = (key_id IS NULL) AND (subject_sealed IS NULL) = (lookup_key_id IS NULL));
CREATE INDEX subject_requests_by_lookup_key ON subject_requests (lookup_key_id) WHERE lookup_key_id IS NOT NULL;
