-- A GitLab sign-in completes only in the browser that started it, and is stored only once that browser
-- confirms who is connected to what. The start URL carries a single-use ticket (its SHA-256 here); opening
-- it binds the sign-in to a first-party cookie (its SHA-256 here); GitLab's callback is taken once and
-- parks the token pair (encrypted) until the confirmation.
ALTER TABLE gitlab_oauth_pending ADD COLUMN ticket_hash TEXT;
ALTER TABLE gitlab_oauth_pending ADD COLUMN browser_hash TEXT;
ALTER TABLE gitlab_oauth_pending ADD COLUMN callback_at BIGINT;
ALTER TABLE gitlab_oauth_pending ADD COLUMN tokens BLOB;
ALTER TABLE gitlab_oauth_pending ADD COLUMN gitlab_user_id BIGINT;
ALTER TABLE gitlab_oauth_pending ADD COLUMN gitlab_username TEXT;
CREATE UNIQUE INDEX gitlab_oauth_pending_ticket ON gitlab_oauth_pending (ticket_hash);

-- Admin linking may use only GitLab users who signed in through the admin page's own flow (1), not the
-- sign-ins Jira users made for themselves (0).
ALTER TABLE gitlab_connections ADD COLUMN via_admin BIGINT NOT NULL DEFAULT 0;
