-- Jira sites connected with OAuth credentials (no Connect install) live beside Connect installations, so
-- that subscriptions and everything downstream treat both alike. For them `client_key` is
-- `oauth:<cloudId>` and `shared_secret` holds the encrypted client secret.
ALTER TABLE installations ADD COLUMN mode TEXT NOT NULL DEFAULT 'connect';
ALTER TABLE installations ADD COLUMN cloud_id TEXT;
ALTER TABLE installations ADD COLUMN oauth_client_id TEXT;
