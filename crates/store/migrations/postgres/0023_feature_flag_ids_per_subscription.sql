-- Feature flag ids belong to the subscription that learned them, so that one subscription's deliveries
-- cannot change or delete what another one reconciles. Known ids move to every subscription that
-- covers their project (a hook on it, or a backfill of it); the rest are learned again from webhooks.
CREATE TABLE feature_flag_ids_scoped (
    subscription_id BIGINT NOT NULL REFERENCES subscriptions (id) ON DELETE CASCADE,
    project_id      BIGINT NOT NULL,
    name            TEXT NOT NULL,
    flag_id         BIGINT NOT NULL,
    PRIMARY KEY (subscription_id, project_id, name)
);
INSERT INTO feature_flag_ids_scoped (subscription_id, project_id, name, flag_id)
SELECT DISTINCT c.subscription_id, f.project_id, f.name, f.flag_id
FROM feature_flag_ids f
JOIN (
    SELECT subscription_id, target_id AS project_id FROM subscription_hooks WHERE scope = 'project'
    UNION
    SELECT subscription_id, project_id FROM backfill_tasks
) c ON c.project_id = f.project_id;
DROP TABLE feature_flag_ids;
ALTER TABLE feature_flag_ids_scoped RENAME TO feature_flag_ids;
