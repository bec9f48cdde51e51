-- Jira Service Management settings of a project (project_id set), or of a group for the projects under
-- it (project_id NULL; the group found by its full path). A NULL setting is inherited from the nearest
-- group that sets it.
CREATE TABLE jsm_settings (
    subscription_id BIGINT NOT NULL REFERENCES subscriptions (id) ON DELETE CASCADE,
    path            TEXT NOT NULL,
    project_id      BIGINT,
    -- Comma-separated service IDs; '' sets none.
    service_ids     TEXT,
    updated_at      BIGINT NOT NULL
);
CREATE UNIQUE INDEX jsm_settings_project ON jsm_settings (subscription_id, project_id) WHERE project_id IS NOT NULL;
CREATE UNIQUE INDEX jsm_settings_group ON jsm_settings (subscription_id, path) WHERE project_id IS NULL;
