-- Per Jira site: when it may be called again (after 429) and whether it needs an operator (401/403).
CREATE TABLE site_state (
    client_key      TEXT PRIMARY KEY,
    paused_until    BIGINT NOT NULL DEFAULT 0,
    pause_reason    TEXT,
    attention       TEXT,
    attention_since BIGINT
);
