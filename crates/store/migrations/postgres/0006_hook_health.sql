-- The hooks' secret token (encrypted; its SHA-256 stays the lookup key), so that a hook deleted or
-- reset in GitLab can be registered again without re-linking.
ALTER TABLE subscriptions ADD COLUMN webhook_token BYTEA;

-- The Standard Webhooks signing secret registered with a subscription's hooks (encrypted). Set only
-- when GitLab confirmed it (`signing_token_present`); deliveries must then carry a valid signature.
ALTER TABLE subscriptions ADD COLUMN webhook_signing_secret BYTEA;

-- What the last health check saw of each hook: `ok`, `disabled` (GitLab auto-disabled it) or
-- `missing` (deleted in GitLab), and when.
ALTER TABLE subscription_hooks ADD COLUMN state TEXT NOT NULL DEFAULT 'ok';
ALTER TABLE subscription_hooks ADD COLUMN checked_at BIGINT;

-- Windows in which GitLab may not have delivered a project's events (hook disabled or deleted, project
-- found by polling): reconciliation re-reads GitLab for them.
CREATE TABLE gitlab_gaps (
    id              BIGSERIAL PRIMARY KEY,
    subscription_id BIGINT NOT NULL REFERENCES subscriptions (id) ON DELETE CASCADE,
    scope           TEXT NOT NULL,
    target_id       BIGINT NOT NULL,
    since_ms        BIGINT NOT NULL,
    until_ms        BIGINT NOT NULL,
    reason          TEXT NOT NULL,
    recorded_at     BIGINT NOT NULL,
    reconciled_at   BIGINT
);
CREATE INDEX gitlab_gaps_open ON gitlab_gaps (subscription_id) WHERE reconciled_at IS NULL;
