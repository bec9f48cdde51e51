-- What was sent to Jira and Jira's verdict, one row per entity and issue key, so that "why is (or
-- isn't) this on PROJ-7?" is one indexed lookup. Kept for GFJ_AUDIT_DAYS.
CREATE TABLE jira_audit (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    client_key  TEXT NOT NULL,
    issue_key   TEXT NOT NULL,
    entity_type TEXT NOT NULL,
    entity_id   TEXT NOT NULL,
    seq         BIGINT NOT NULL,
    verdict     TEXT NOT NULL,
    message     TEXT,
    at          BIGINT NOT NULL
);
CREATE INDEX jira_audit_key ON jira_audit (issue_key, client_key);
CREATE INDEX jira_audit_at ON jira_audit (at);
