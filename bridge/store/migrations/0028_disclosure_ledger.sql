-- The disclosure ledger (bridge/privacy/ledger.py) lives in audit_log: reads,
-- session creations, out-of-session questions and webhook deliveries. These
-- indexes serve `masking audit list --actor/--since/--until` and the breach
-- scope by actor and time range; --subject uses audit_log_by_subject and
-- audit_log_by_session (0006). Indexes only: the rows and their hashes are untouched.
CREATE INDEX audit_log_by_actor ON audit_log (actor, at);
CREATE INDEX audit_log_by_action ON audit_log (action, at);
