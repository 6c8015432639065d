-- Whether a call's end is told: its final row and, where its session has a
-- webhook, its `call.completed` went in together (one statement). A process
-- killed between a call's end and that write leaves `reported` false; the
-- next one finds the row (bridge/calls/unclosed.py), moves the recording
-- Asterisk still holds and sends the event. Rows from before this column,
-- and the FastAGI path's (which sends no events), count as told; ARI calls
-- still in progress at the upgrade do not, so that an adoption by the new
-- release that dies before its end is told is still found.
-- The partial index is built under the migration's lock on `calls` (a scan
-- of the table: on a large one, new calls wait for it during the upgrade).
ALTER TABLE calls ADD COLUMN reported boolean NOT NULL DEFAULT true;
UPDATE calls SET reported = false WHERE disposition = 'in_progress' AND path = 'ari';
CREATE INDEX calls_not_reported ON calls (asterisk_node) WHERE NOT reported;
