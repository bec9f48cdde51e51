-- Entities Jira refused (failed entities of a 202, or a single entity still too large for a 413), kept so
-- that operators can see what did not arrive and why.
CREATE TABLE jira_rejections (
    client_key    TEXT NOT NULL,
    repository_id TEXT NOT NULL,
    entity_type   TEXT NOT NULL,
    entity_id     TEXT NOT NULL,
    reason        TEXT NOT NULL,
    at            BIGINT NOT NULL,
    PRIMARY KEY (client_key, repository_id, entity_type, entity_id)
);
