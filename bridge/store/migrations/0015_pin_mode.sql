-- Shared virtual numbers with a PIN: a pool number in `pin_mode` serves many
-- live sessions at once; each of its sessions holds a short numeric PIN that
-- the caller enters to say which session they mean.

ALTER TABLE virtual_numbers ADD COLUMN pin_mode boolean NOT NULL DEFAULT false;

ALTER TABLE masking_sessions
    ADD COLUMN pin text CHECK (pin ~ '^[0-9]{3,8}$'),
    -- A caller who is neither participant may still use the PIN, as the
    -- customer side (participant a): they reach participant b.
    ADD COLUMN pin_unknown_callers boolean NOT NULL DEFAULT false;
-- The hard guarantee under any concurrency: a PIN names one live session on
-- its number. (Quarantine after the session ends is the allocator's rule, under
-- a per-number advisory lock: an index predicate cannot read the clock.)
CREATE UNIQUE INDEX masking_sessions_one_live_pin
    ON masking_sessions (virtual_number, pin) WHERE status = 'active' AND pin IS NOT NULL;
CREATE INDEX masking_sessions_by_pin
    ON masking_sessions (virtual_number, pin, created_at) WHERE pin IS NOT NULL;

-- The pool's rule "a participant holds a number in one live session only"
-- makes (number, caller) name one session. On a PIN number the PIN names it
-- instead, so a participant (a driver, say) may hold that number in many live
-- sessions. `pinned` is set from the session as the row goes in, so the code
-- inserting participants does not need to know about PINs.
ALTER TABLE session_participants ADD COLUMN pinned boolean NOT NULL DEFAULT false;
CREATE FUNCTION session_participants_pinned() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.pinned := coalesce((SELECT pin IS NOT NULL FROM masking_sessions WHERE id = NEW.session_id), false);
    RETURN NEW;
END $$;
CREATE TRIGGER session_participants_pinned BEFORE INSERT ON session_participants
    FOR EACH ROW EXECUTE FUNCTION session_participants_pinned();
DROP INDEX session_participants_one_live_number;
CREATE UNIQUE INDEX session_participants_one_live_number
    ON session_participants (virtual_number, number_hash) WHERE live AND NOT pinned;

-- How many PIN entries a call on a shared number took (NULL elsewhere).
ALTER TABLE calls ADD COLUMN pin_attempts smallint CHECK (pin_attempts >= 0);

-- New reject reasons, added to whatever list the constraint holds now (other
-- migrations extend it too): no valid PIN within the attempts, and a shared
-- number reached over the FastAGI fallback, which does not ask for PINs.
DO $$
DECLARE
    definition text;
BEGIN
    SELECT pg_get_constraintdef(oid) INTO definition FROM pg_constraint
    WHERE conrelid = 'calls'::regclass AND conname = 'calls_reject_reason_check';
    IF position('invalid_pin' IN definition) = 0 THEN
        EXECUTE 'ALTER TABLE calls DROP CONSTRAINT calls_reject_reason_check';
        EXECUTE 'ALTER TABLE calls ADD CONSTRAINT calls_reject_reason_check '
                || replace(definition, 'ARRAY[', 'ARRAY[''invalid_pin''::text, ''pin_unavailable''::text, ');
    END IF;
END $$;
