-- An event that becomes due wakes the dispatchers listening on
-- `masking_webhook_outbox` (bridge/webhooks.py): a new event, or a dead one
-- sent again; not a claim, a retry set for later, or a delivery. NOTIFY is
-- sent at commit, so an event is never announced before it can be read, and
-- once per transaction however many rows it wrote.
-- Only from processes that have no dispatcher of their own (the FastAGI
-- fallback, the CLI): the service's own connections set masking.outbox_notify
-- to off and wake their dispatcher in the process. A notifying commit takes a
-- lock that serialises every notifying commit of the cluster (PostgreSQL's
-- PreCommit_Notify), through a synchronous standby's acknowledgement: not a
-- thing to do three times a call on the call path.
CREATE FUNCTION webhook_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(current_setting('masking.outbox_notify', true), '') <> 'off' THEN
        PERFORM pg_notify('masking_webhook_outbox', '');
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER webhook_outbox_notify AFTER INSERT OR UPDATE OF status, next_attempt_at ON webhook_outbox
    FOR EACH ROW WHEN (NEW.status = 'pending' AND NEW.next_attempt_at <= now())
    EXECUTE FUNCTION webhook_outbox_notify();
