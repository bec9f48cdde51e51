-- How far each linked project has been reconciled with GitLab (epoch ms): the next pass reads what
-- changed since then.
CREATE TABLE reconcile_cursors (
    subscription_id BIGINT NOT NULL REFERENCES subscriptions (id) ON DELETE CASCADE,
    project_id      BIGINT NOT NULL,
    cursor_ms       BIGINT NOT NULL,
    PRIMARY KEY (subscription_id, project_id)
);
