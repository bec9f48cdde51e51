-- Jira sites that installed the app (Connect) and their encrypted shared secrets.
CREATE TABLE installations (
    client_key    TEXT PRIMARY KEY,
    base_url      TEXT NOT NULL,
    display_url   TEXT,
    shared_secret BLOB NOT NULL,
    installed_at  BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);

-- A GitLab group linked to a Jira site.
CREATE TABLE subscriptions (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    client_key         TEXT NOT NULL REFERENCES installations (client_key) ON DELETE CASCADE,
    gitlab_url         TEXT NOT NULL,
    group_id           BIGINT NOT NULL,
    group_path         TEXT NOT NULL,
    gitlab_token       BLOB NOT NULL,
    webhook_token_hash TEXT NOT NULL UNIQUE,
    hook_mode          TEXT NOT NULL,
    created_at         BIGINT NOT NULL,
    UNIQUE (client_key, gitlab_url, group_id)
);

-- The webhooks a subscription registered in GitLab, so that unlink can remove them.
CREATE TABLE subscription_hooks (
    subscription_id BIGINT NOT NULL REFERENCES subscriptions (id) ON DELETE CASCADE,
    scope           TEXT NOT NULL,
    target_id       BIGINT NOT NULL,
    hook_id         BIGINT NOT NULL,
    PRIMARY KEY (subscription_id, scope, target_id)
);

-- The durable job queue (leases, not row locks: see ARCHITECTURE.md).
CREATE TABLE jobs (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    kind         TEXT NOT NULL,
    payload      TEXT NOT NULL,
    dedup_key    TEXT UNIQUE,
    run_at       BIGINT NOT NULL,
    attempts     BIGINT NOT NULL DEFAULT 0,
    max_attempts BIGINT NOT NULL,
    locked_by    TEXT,
    locked_until BIGINT,
    last_error   TEXT,
    dead_at      BIGINT,
    created_at   BIGINT NOT NULL
);
CREATE INDEX jobs_ready ON jobs (run_at, id) WHERE dead_at IS NULL;
