-- A GitLab sign-in started from the Jira configuration page belongs to the Jira user who started it.
ALTER TABLE gitlab_oauth_pending ADD COLUMN jira_client_key TEXT;
ALTER TABLE gitlab_oauth_pending ADD COLUMN jira_account_id TEXT;

-- Which GitLab sign-in a Jira user (site and Atlassian account id) links groups with, per GitLab instance.
CREATE TABLE jira_gitlab_sign_ins (
    client_key    TEXT NOT NULL,
    account_id    TEXT NOT NULL,
    gitlab_url    TEXT NOT NULL,
    connection_id BIGINT NOT NULL REFERENCES gitlab_connections (id) ON DELETE CASCADE,
    updated_at    BIGINT NOT NULL,
    PRIMARY KEY (client_key, account_id, gitlab_url)
);
