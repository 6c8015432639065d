-- /metrics counts dead-lettered webhook events on every scrape
-- (masking_webhooks_dead); the pending backlog already has webhook_outbox_due.
CREATE INDEX IF NOT EXISTS webhook_outbox_dead ON webhook_outbox (id) WHERE status = 'dead';
