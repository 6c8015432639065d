-- Click-to-call and call time limits. A call is either a caller dialing a
-- virtual number ('inbound') or one the service placed on request, calling
-- the first party, then the other ('connect'); for those, caller_* columns
-- describe the first party's leg and `caller_answered_at` says whether they
-- answered. A limit on talk time comes from the session or the request.
ALTER TABLE masking_sessions ADD COLUMN time_limit_seconds integer CHECK (time_limit_seconds > 0);

ALTER TABLE calls ADD COLUMN kind text NOT NULL DEFAULT 'inbound' CHECK (kind IN ('inbound', 'connect'));
ALTER TABLE calls ADD COLUMN custom_field text CHECK (length(custom_field) <= 256);
ALTER TABLE calls ADD COLUMN time_limit_seconds integer CHECK (time_limit_seconds > 0);
ALTER TABLE calls ADD COLUMN caller_answered_at timestamptz;
ALTER TABLE calls DROP CONSTRAINT calls_disposition_check;
ALTER TABLE calls ADD CONSTRAINT calls_disposition_check CHECK (disposition IN (
    'in_progress', 'answered', 'busy', 'no_answer', 'failed', 'cancelled', 'rejected', 'interrupted',
    'time_limit'));
