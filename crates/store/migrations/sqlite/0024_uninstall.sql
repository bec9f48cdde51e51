-- Uninstall tokens already accepted (SHA-256 of the token), so that a replay is refused; kept until
-- the token has expired.
CREATE TABLE lifecycle_tokens_used (
    token_hash TEXT PRIMARY KEY,
    client_key TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);

-- The GitLab hooks of an uninstalled site's subscriptions, still to be removed, with the credentials to
-- remove them (the subscription is gone): its access token (encrypted) or its OAuth sign-in.
CREATE TABLE gitlab_teardowns (
    id                   INTEGER PRIMARY KEY AUTOINCREMENT,
    subscription_id      BIGINT NOT NULL,
    gitlab_url           TEXT NOT NULL,
    hooks                TEXT NOT NULL,
    gitlab_token         BLOB,
    gitlab_connection_id BIGINT REFERENCES gitlab_connections (id),
    created_at           BIGINT NOT NULL
);
