-- Which of the jobs updating one entity is newer: the delivery's sequence number. Replicas commit their
-- batches in any order, so the job id alone can put an older delivery last.
ALTER TABLE jobs ADD COLUMN coalesce_seq BIGINT;
