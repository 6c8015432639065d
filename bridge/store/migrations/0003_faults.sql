-- Calls survive faults: which Asterisk node a call is on (reconciliation looks
-- only at its own node's calls), and a disposition for calls a restart ended.
ALTER TABLE calls ADD COLUMN asterisk_node text;
ALTER TABLE calls DROP CONSTRAINT calls_disposition_check;
ALTER TABLE calls ADD CONSTRAINT calls_disposition_check CHECK (disposition IN (
    'in_progress', 'answered', 'busy', 'no_answer', 'failed', 'cancelled', 'rejected', 'interrupted'));
CREATE INDEX calls_in_progress_by_node ON calls (asterisk_node) WHERE disposition = 'in_progress';
