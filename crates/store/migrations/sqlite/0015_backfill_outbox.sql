-- Development information a backfill read from GitLab and has yet to send to Jira: one row per page.
-- Pages of every project of a subscription are sent together, up to Jira's 1,000 entities per request,
-- so that a backfill needs about as few Jira requests as its data allows. Rows go when Jira took them.
CREATE TABLE backfill_outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    subscription_id BIGINT NOT NULL REFERENCES subscriptions (id) ON DELETE CASCADE,
    entities        BIGINT NOT NULL,
    request         TEXT NOT NULL,
    created_at      BIGINT NOT NULL
);
CREATE INDEX backfill_outbox_by_subscription ON backfill_outbox (subscription_id, id);
