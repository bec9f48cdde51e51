-- Backfill slots are shared between subscriptions: the next task is chosen per subscription, so its
-- pending tasks are found in queue order without reading every other subscription's.
CREATE INDEX backfill_tasks_by_subscription ON backfill_tasks (subscription_id, state, queued_at, project_id, entity_rank);
