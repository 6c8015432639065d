-- Wrong PINs across calls (bridge/sessions/pin_guard.py): per caller (the
-- keyed hash of their number, or 'withheld') and per shared number, the
-- failures in the current window and the lockout they earned. No number in
-- clear: a caller is only ever its lookup hash here.
CREATE TABLE pin_failures (
    scope           text NOT NULL CHECK (scope IN ('caller', 'number')),
    key             text NOT NULL,
    failures        integer NOT NULL DEFAULT 0,
    window_started  timestamptz NOT NULL DEFAULT now(),
    lockouts        integer NOT NULL DEFAULT 0,
    locked_until    timestamptz,
    PRIMARY KEY (scope, key)
);

-- A caller turned away for guessing: its own reject reason.
DO $$
DECLARE
    definition text;
BEGIN
    SELECT pg_get_constraintdef(oid) INTO definition FROM pg_constraint
    WHERE conrelid = 'calls'::regclass AND conname = 'calls_reject_reason_check';
    IF position('pin_locked' IN definition) = 0 THEN
        EXECUTE 'ALTER TABLE calls DROP CONSTRAINT calls_reject_reason_check';
        EXECUTE 'ALTER TABLE calls ADD CONSTRAINT calls_reject_reason_check '
                || replace(definition, 'ARRAY[', 'ARRAY[''pin_locked''::text, ');
    END IF;
END $$;
