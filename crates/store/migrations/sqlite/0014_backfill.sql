-- The backfill of linked groups: one task per subscription, project and kind of history
-- (merge_requests, branches, commits, pipelines, deployments, feature_flags). The cursor is the next
-- GitLab page; a task moves pending -> running -> done, or failed with the reason.
CREATE TABLE backfill_tasks (
    subscription_id BIGINT NOT NULL REFERENCES subscriptions (id) ON DELETE CASCADE,
    project_id      BIGINT NOT NULL,
    project_path    TEXT NOT NULL,
    entity          TEXT NOT NULL,
    -- The order tasks of one project start in (merge requests first: what users look for).
    entity_rank     BIGINT NOT NULL,
    state           TEXT NOT NULL,
    -- History from this time (epoch ms); NULL: all of it.
    since_ms        BIGINT,
    -- The task's start: lists that grow while it runs (commits) are read up to it.
    until_ms        BIGINT,
    next_page       BIGINT NOT NULL,
    items_done      BIGINT NOT NULL,
    items_sent      BIGINT NOT NULL,
    items_total     BIGINT,
    error           TEXT,
    queued_at       BIGINT NOT NULL,
    started_at      BIGINT,
    finished_at     BIGINT,
    updated_at      BIGINT NOT NULL,
    PRIMARY KEY (subscription_id, project_id, entity)
);
CREATE INDEX backfill_tasks_by_state ON backfill_tasks (state, queued_at, project_id, entity_rank);
