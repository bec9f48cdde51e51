-- Digests of the requests Jira accepted for a job, space-separated: a job that runs again (after a failure,
-- a postponement, a hand-back or a killed worker) sends only the others.
ALTER TABLE jobs ADD COLUMN accepted_requests TEXT;
