-- An event that becomes due wakes the dispatchers listening on
-- `masking_webhook_outbox` (bridge/webhooks.py), whichever process wrote it:
-- this service, the FastAGI fallback, another node, the API. A new event, or
-- a dead one sent again; not a claim, a retry set for later, or a delivery.
-- NOTIFY is sent at commit, so an event is never announced before it can be
-- read, and once per transaction however many rows it wrote. Without a
-- listener (a pooler that does not pass LISTEN on) dispatchers poll, as before.
CREATE FUNCTION webhook_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('masking_webhook_outbox', '');
    RETURN NULL;
END
$$;
CREATE TRIGGER webhook_outbox_notify AFTER INSERT OR UPDATE OF status, next_attempt_at ON webhook_outbox
    FOR EACH ROW WHEN (NEW.status = 'pending' AND NEW.next_attempt_at <= now())
    EXECUTE FUNCTION webhook_outbox_notify();
