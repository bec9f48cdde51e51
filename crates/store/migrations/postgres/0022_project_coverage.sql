-- Which projects a group-hook subscription covers, as GitLab answered when a delivery first named the
-- project (`namespace.full_path` is the group or below it; 1) or not (0). A delivery authenticated by a
-- subscription's token may name any project id; each new project costs one GitLab read, not one per event.
CREATE TABLE subscription_projects (
    subscription_id BIGINT NOT NULL REFERENCES subscriptions (id) ON DELETE CASCADE,
    project_id      BIGINT NOT NULL,
    covered         BIGINT NOT NULL,
    checked_at      BIGINT NOT NULL,
    PRIMARY KEY (subscription_id, project_id)
);

-- Deliveries dropped because they named a project the subscription does not cover (shown by `status`).
ALTER TABLE subscriptions ADD COLUMN foreign_deliveries_dropped BIGINT NOT NULL DEFAULT 0;
