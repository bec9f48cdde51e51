-- Deployment gating settings beside the service IDs: tiers ('' turns gating off, NULL inherits), the
-- GitLab token that approves (encrypted), and whether an approved manual job is played.
ALTER TABLE jsm_settings ADD COLUMN gating_tiers TEXT;
ALTER TABLE jsm_settings ADD COLUMN gating_token BLOB;
ALTER TABLE jsm_settings ADD COLUMN play_after_approval INTEGER;

-- One row per gated deployment: open until JSM decides (callback or poll), decided until the decision is
-- carried out in GitLab, then done. The trail of every gate.
CREATE TABLE gates (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    subscription_id    BIGINT NOT NULL REFERENCES subscriptions (id) ON DELETE CASCADE,
    client_key         TEXT NOT NULL,
    project_id         BIGINT NOT NULL,
    deployment_id      BIGINT NOT NULL,
    job_id             BIGINT,
    -- Jira's key of the deployment.
    pipeline_key       TEXT NOT NULL,
    environment_key    TEXT NOT NULL,
    deployment_seq     BIGINT NOT NULL,
    environment_name   TEXT NOT NULL,
    tier               TEXT NOT NULL,
    -- Comma-separated issue keys the deployment carried.
    issue_keys         TEXT NOT NULL,
    state              TEXT NOT NULL,
    decision           TEXT,
    change_request     TEXT,
    change_request_url TEXT,
    outcome            TEXT,
    opened_at          BIGINT NOT NULL,
    next_poll_at       BIGINT NOT NULL,
    polls              INTEGER NOT NULL DEFAULT 0,
    decided_at         BIGINT,
    done_at            BIGINT,
    UNIQUE (subscription_id, project_id, deployment_id)
);
CREATE INDEX gates_jira_key ON gates (client_key, pipeline_key, environment_key, deployment_seq);
CREATE INDEX gates_state ON gates (subscription_id, state);
