-- GitLab feature flag ids by project and name. The REST API lists flags without their id; only the
-- webhook carries it, and Jira knows flags by it. Learned from webhooks, used by reconciliation.
CREATE TABLE feature_flag_ids (
    project_id BIGINT NOT NULL,
    name       TEXT NOT NULL,
    flag_id    BIGINT NOT NULL,
    PRIMARY KEY (project_id, name)
);
