-- Issue keys Jira said it does not know (`unknownIssueKeys`), so operators can spot typos and missing
-- projects; data sent under them is not shown anywhere in Jira.
CREATE TABLE jira_unknown_keys (
    client_key TEXT NOT NULL,
    issue_key  TEXT NOT NULL,
    last_seen  BIGINT NOT NULL,
    PRIMARY KEY (client_key, issue_key)
);
