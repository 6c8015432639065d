-- Rights of access and correction (issue 14, item 5).
-- The identity check of a request is recorded before an export answers it:
-- how the person was identified, by whom, when. Never the document itself.
ALTER TABLE subject_requests
    ADD COLUMN verified_at   timestamptz,
    ADD COLUMN verified_by   text,
    ADD COLUMN verify_method text CHECK (verify_method IN ('in_person', 'photo_id', 'callback', 'account', 'other')),
    ADD CONSTRAINT subject_requests_verified_whole
        CHECK ((verified_at IS NULL) = (verified_by IS NULL) AND (verified_at IS NULL) = (verify_method IS NULL));
-- The preservation hold finds a session's subjects' open or lately refused
-- requests by hash (subject_requests_by_subject); refused ones by when.
CREATE INDEX subject_requests_refused_by_completion ON subject_requests (completed_at) WHERE status = 'refused';
