-- Fencing: every claim of a job takes the next lease number, and every write that completes, fails,
-- postpones or extends the job names the number it was claimed with, so that a worker that lost its
-- lease cannot record anything after another worker took the job over.
ALTER TABLE jobs ADD COLUMN lease BIGINT NOT NULL DEFAULT 0;

-- Named locks shared by every replica (a subscription's outbox flush, its hook check), held until
-- `until_ms` (database time) unless renewed or released.
CREATE TABLE locks (
    name     TEXT PRIMARY KEY,
    holder   TEXT NOT NULL,
    until_ms BIGINT NOT NULL
);

-- Periodic work (hook checks, reconciliation), due at `next_run_ms` (database time): the replica whose
-- update moves the row on runs it, so each runs once per interval across all replicas.
CREATE TABLE schedules (
    name        TEXT PRIMARY KEY,
    next_run_ms BIGINT NOT NULL
);
