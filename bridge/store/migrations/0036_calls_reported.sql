-- Whether a call's end is told: its final row and, where its session has a
-- webhook, its `call.completed` went in together (one statement). A process
-- killed between a call's end and that write leaves `reported` false; the
-- next one finds the row (bridge/calls/adopt.py, `close_left_call`), moves
-- the recording Asterisk still holds and sends the event. Rows from before
-- this column, and the FastAGI path's (which sends no events), count as told.
ALTER TABLE calls ADD COLUMN reported boolean NOT NULL DEFAULT true;
CREATE INDEX calls_not_reported ON calls (asterisk_node) WHERE NOT reported;
