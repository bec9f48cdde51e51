-- GitLab sign-ins in progress: the OAuth `state` and its PKCE verifier (encrypted), for ten minutes.
CREATE TABLE gitlab_oauth_pending (
    state      TEXT PRIMARY KEY,
    gitlab_url TEXT NOT NULL,
    verifier   BLOB NOT NULL,
    created_at BIGINT NOT NULL
);

-- A GitLab user who signed in with OAuth: the token pair (encrypted JSON), rotated on every refresh.
-- Subscriptions linked through the sign-in share it, so one rotation serves them all.
CREATE TABLE gitlab_connections (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    gitlab_url TEXT NOT NULL,
    user_id    BIGINT NOT NULL,
    username   TEXT NOT NULL,
    tokens     BLOB NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (gitlab_url, user_id)
);

ALTER TABLE subscriptions ADD COLUMN gitlab_connection_id BIGINT REFERENCES gitlab_connections (id);
