-- Jobs that update the same Jira entity (a merge request, pipeline, deployment or flag of one
-- subscription) share a key; an older one finds a newer one queued and leaves the work to it.
ALTER TABLE jobs ADD COLUMN coalesce_key TEXT;
CREATE INDEX jobs_coalesce ON jobs (coalesce_key, id) WHERE coalesce_key IS NOT NULL;
