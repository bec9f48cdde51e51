//! The durable job queue, in the same database as everything else.
//!
//! Jobs are claimed with a *lease* (`locked_by`, `locked_until`) in one atomic statement, not by holding a
//! row lock for the job's duration: SQLite allows one writer at a time, and on PostgreSQL a lock held
//! across a Jira call would pin a connection. A worker that dies mid-job simply lets its lease run out and
//! the job is claimed again. Every claim takes the job's next lease number ([`Lease`]), and every write
//! that completes, fails, postpones or extends a job names the lease it holds: a worker whose lease was
//! taken over (it stalled, or lost the database for a while) cannot record anything afterwards.

use sqlx::Row;

use crate::{Backend, Store, StoreError};

/// A job to insert ([`NewJob::of`] for a [`gfj_core::jobs::Job`]).
#[derive(Debug, Clone)]
pub struct NewJob {
    pub kind: String,
    pub payload: String,
    /// Jobs with the same key are inserted once (e.g. GitLab's `Idempotency-Key`).
    pub dedup_key: Option<String>,
    pub run_at: i64,
    pub max_attempts: i64,
    /// Jobs with the same key update the same entity: an older one defers to a newer one.
    pub coalesce_key: Option<String>,
    /// Which of them is newer (see [`gfj_core::jobs::Queueing::coalesce_seq`]); the id when absent.
    pub coalesce_seq: Option<i64>,
}

/// Proof of one claim of a job: the worker and the claim's number. A write naming an older claim does
/// nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub job_id: i64,
    pub worker: String,
    /// The job's claim count when this claim took it; each claim increments it.
    pub claim: i64,
}

/// A claimed job.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: i64,
    pub lease: Lease,
    pub kind: String,
    pub payload: String,
    /// Attempts made, this one included.
    pub attempts: i64,
    pub max_attempts: i64,
    pub created_at: i64,
    pub coalesce_key: Option<String>,
    pub coalesce_seq: Option<i64>,
    /// Digests of the requests Jira accepted in earlier runs of this job
    /// ([`Store::record_accepted_requests`]).
    pub accepted_requests: Vec<String>,
}

/// What the queue holds right now.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct QueueStats {
    pub ready: i64,
    pub scheduled: i64,
    pub running: i64,
    pub dead: i64,
    /// Age in milliseconds of the oldest job that is due and not running.
    pub oldest_ready_age_ms: i64,
}

/// A job's row as an operator sees it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct JobInfo {
    pub id: i64,
    pub kind: String,
    pub attempts: i64,
    pub run_at: i64,
    pub last_error: Option<String>,
    pub dead_at: Option<i64>,
}

pub use gfj_core::jobs::DEFAULT_MAX_ATTEMPTS;

impl NewJob {
    /// `job`, to run from `run_at`, queued as its kind says ([`gfj_core::jobs::Job::queueing`]).
    pub fn of(job: &gfj_core::jobs::Job, run_at: i64) -> Self {
        let (kind, payload) = job.encode();
        let queueing = job.queueing();
        Self {
            kind: kind.to_owned(),
            payload,
            dedup_key: queueing.dedup_key,
            run_at,
            max_attempts: queueing.max_attempts,
            coalesce_key: queueing.coalesce_key,
            coalesce_seq: queueing.coalesce_seq,
        }
    }
}

/// The error kept on a job whose last attempt never reported back.
const NO_OUTCOME: &str = "no outcome after the last attempt: its worker stopped or lost the lease";

impl Store {
    /// Inserts jobs in one statement, so one commit (one fsync) for all of them, and wakes the workers.
    /// Returns how many rows were new (duplicates by `dedup_key` are skipped).
    pub async fn enqueue(&self, jobs: &[NewJob], now_ms: i64) -> Result<u64, StoreError> {
        let inserted = if jobs.len() <= ROWS_PER_INSERT {
            // One statement is its own transaction.
            let mut conn = self.pool.acquire().await?;
            insert_jobs(&mut conn, jobs, now_ms).await?
        } else {
            let mut tx = self.begin_write().await?;
            let inserted = insert_jobs(&mut tx, jobs, now_ms).await?;
            tx.commit().await?;
            inserted
        };
        if inserted > 0 {
            self.wake_workers();
        }
        Ok(inserted)
    }

    /// Claims up to `limit` due jobs for `worker` until `now_ms + lease_ms`.
    pub async fn claim(
        &self,
        worker: &str,
        now_ms: i64,
        lease_ms: i64,
        limit: i64,
    ) -> Result<Vec<Job>, StoreError> {
        let lock = match self.backend() {
            Backend::Postgres => "FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        // A due job whose attempts are used up (its last one never reported an outcome: the worker died,
        // or the job itself brought it down) is marked dead by the same statement instead of being
        // claimed once more, so that such a job cannot run, and crash workers, forever. The right-hand
        // sides all read the row as it was before the update.
        let sql = format!(
            "UPDATE jobs SET
                 locked_by = CASE WHEN attempts < max_attempts THEN $1 ELSE NULL END,
                 locked_until = CASE WHEN attempts < max_attempts THEN $2 ELSE NULL END,
                 dead_at = CASE WHEN attempts < max_attempts THEN NULL ELSE $3 END,
                 last_error = CASE WHEN attempts < max_attempts THEN last_error
                                   WHEN last_error IS NULL THEN '{NO_OUTCOME}'
                                   ELSE '{NO_OUTCOME}; before: ' || last_error END,
                 attempts = CASE WHEN attempts < max_attempts THEN attempts + 1 ELSE attempts END,
                 lease = lease + 1
             WHERE id IN (SELECT id FROM jobs
                          WHERE dead_at IS NULL AND run_at <= $3 AND (locked_until IS NULL OR locked_until < $3)
                          ORDER BY run_at, id LIMIT $4 {lock})
             RETURNING id, kind, payload, attempts, max_attempts, created_at, coalesce_key, coalesce_seq, dead_at, lease,
                       accepted_requests"
        );
        let rows = sqlx::query(&sql)
            .bind(worker)
            .bind(now_ms + lease_ms)
            .bind(now_ms)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        let mut jobs = Vec::with_capacity(rows.len());
        for r in &rows {
            let id: i64 = r.try_get("id")?;
            if r.try_get::<Option<i64>, _>("dead_at")?.is_some() {
                tracing::error!(job.id = id, "{NO_OUTCOME}; the job is dead");
                continue;
            }
            jobs.push(Job {
                id,
                lease: Lease {
                    job_id: id,
                    worker: worker.to_owned(),
                    claim: r.try_get("lease")?,
                },
                kind: r.try_get("kind")?,
                payload: r.try_get("payload")?,
                attempts: r.try_get("attempts")?,
                max_attempts: r.try_get("max_attempts")?,
                created_at: r.try_get("created_at")?,
                coalesce_key: r.try_get("coalesce_key")?,
                coalesce_seq: r.try_get("coalesce_seq")?,
                accepted_requests: r
                    .try_get::<Option<String>, _>("accepted_requests")?
                    .unwrap_or_default()
                    .split_ascii_whitespace()
                    .map(str::to_owned)
                    .collect(),
            });
        }
        jobs.sort_by_key(|j| j.id);
        Ok(jobs)
    }

    /// Whether a newer job for the same entity is queued (or running): this one's update is then
    /// superseded and need not be sent.
    pub async fn superseded(&self, job: &Job) -> Result<bool, StoreError> {
        let Some(key) = &job.coalesce_key else {
            return Ok(false);
        };
        // Newer by sequence number where both have one: replicas commit their batches in any order,
        // so a later delivery may hold the lower id.
        let newer: i64 = match job.coalesce_seq {
            Some(seq) => {
                sqlx::query_scalar(
                    "SELECT COUNT(*) FROM jobs WHERE coalesce_key = $1 AND id <> $2 AND dead_at IS NULL \
                     AND (coalesce_seq > $3 OR (coalesce_seq = $3 AND id > $2) \
                          OR (coalesce_seq IS NULL AND id > $2))",
                )
                .bind(key)
                .bind(job.id)
                .bind(seq)
                .fetch_one(&self.pool)
                .await?
            }
            None => {
                sqlx::query_scalar(
                    "SELECT COUNT(*) FROM jobs WHERE coalesce_key = $1 AND id > $2 AND dead_at IS NULL",
                )
                .bind(key)
                .bind(job.id)
                .fetch_one(&self.pool)
                .await?
            }
        };
        Ok(newer > 0)
    }

    /// Extends a running job's lease. Returns false when the lease was lost.
    pub async fn extend_lease(&self, lease: &Lease, until_ms: i64) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "UPDATE jobs SET locked_until = $4 WHERE id = $1 AND locked_by = $2 AND lease = $3",
        )
        .bind(lease.job_id)
        .bind(&lease.worker)
        .bind(lease.claim)
        .bind(until_ms)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Adds `digests` to the requests Jira accepted for a running job, kept across its runs. Returns false
    /// when the lease was lost.
    pub async fn record_accepted_requests(
        &self,
        lease: &Lease,
        digests: &[String],
    ) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "UPDATE jobs SET accepted_requests = COALESCE(accepted_requests || ' ', '') || $4
             WHERE id = $1 AND locked_by = $2 AND lease = $3",
        )
        .bind(lease.job_id)
        .bind(&lease.worker)
        .bind(lease.claim)
        .bind(digests.join(" "))
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Removes a finished job. Returns false when the lease was lost (someone else owns it now).
    pub async fn complete(&self, lease: &Lease) -> Result<bool, StoreError> {
        let n = sqlx::query("DELETE FROM jobs WHERE id = $1 AND locked_by = $2 AND lease = $3")
            .bind(lease.job_id)
            .bind(&lease.worker)
            .bind(lease.claim)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(n == 1)
    }

    /// Hands a job back unfinished (a replica draining on shutdown): due again at once for another
    /// worker, and the attempt is not counted.
    pub async fn release(&self, lease: &Lease) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "UPDATE jobs SET locked_by = NULL, locked_until = NULL, attempts = attempts - 1
             WHERE id = $1 AND locked_by = $2 AND lease = $3",
        )
        .bind(lease.job_id)
        .bind(&lease.worker)
        .bind(lease.claim)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if n > 0 {
            self.wake_workers();
        }
        Ok(n == 1)
    }

    /// Records a failed attempt and schedules the next one at `retry_at_ms`; after the last attempt, or
    /// when `permanent`, the job is kept as dead for an operator to inspect or retry.
    pub async fn fail(
        &self,
        lease: &Lease,
        error: &str,
        retry_at_ms: i64,
        permanent: bool,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "UPDATE jobs SET locked_by = NULL, locked_until = NULL, run_at = $3, last_error = $4,
                 dead_at = CASE WHEN $5 = 1 OR attempts >= max_attempts THEN $6 ELSE NULL END
             WHERE id = $1 AND locked_by = $2 AND lease = $7",
        )
        .bind(lease.job_id)
        .bind(&lease.worker)
        .bind(retry_at_ms)
        .bind(truncate(error, 2000))
        .bind(i64::from(permanent))
        .bind(now_ms)
        .bind(lease.claim)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Gives a job back without counting the attempt (the upstream asked us to wait, e.g. HTTP 429).
    pub async fn postpone(
        &self,
        lease: &Lease,
        run_at_ms: i64,
        note: &str,
    ) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "UPDATE jobs SET locked_by = NULL, locked_until = NULL, run_at = $3, last_error = $4,
                 attempts = attempts - 1
             WHERE id = $1 AND locked_by = $2 AND lease = $5",
        )
        .bind(lease.job_id)
        .bind(&lease.worker)
        .bind(run_at_ms)
        .bind(truncate(note, 2000))
        .bind(lease.claim)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Puts one dead job back in the queue, due now, with all its attempts. False when it is not dead
    /// (or gone).
    pub async fn retry_dead_job(&self, id: i64, now_ms: i64) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "UPDATE jobs SET dead_at = NULL, attempts = 0, run_at = $2 WHERE id = $1 AND dead_at IS NOT NULL",
        )
        .bind(id)
        .bind(now_ms)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if n > 0 {
            self.wake_workers();
        }
        Ok(n == 1)
    }

    /// Puts dead jobs back in the queue, due now.
    pub async fn retry_dead(&self, now_ms: i64) -> Result<u64, StoreError> {
        let n = sqlx::query(
            "UPDATE jobs SET dead_at = NULL, attempts = 0, run_at = $1 WHERE dead_at IS NOT NULL",
        )
        .bind(now_ms)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if n > 0 {
            self.wake_workers();
        }
        Ok(n)
    }

    /// What the queue holds at `now_ms`. A job whose last attempt ran out of its lease without an outcome
    /// counts as dead already, before the next claim marks it so.
    pub async fn queue_stats(&self, now_ms: i64) -> Result<QueueStats, StoreError> {
        let r = sqlx::query(
            "SELECT
               COALESCE(SUM(CASE WHEN dead_at IS NULL AND attempts < max_attempts AND run_at <= $1 AND (locked_until IS NULL OR locked_until < $1) THEN 1 ELSE 0 END), 0) AS ready,
               COALESCE(SUM(CASE WHEN dead_at IS NULL AND attempts < max_attempts AND run_at > $1 AND (locked_until IS NULL OR locked_until < $1) THEN 1 ELSE 0 END), 0) AS scheduled,
               COALESCE(SUM(CASE WHEN dead_at IS NULL AND locked_until >= $1 THEN 1 ELSE 0 END), 0) AS running,
               COALESCE(SUM(CASE WHEN dead_at IS NOT NULL OR (attempts >= max_attempts AND (locked_until IS NULL OR locked_until < $1)) THEN 1 ELSE 0 END), 0) AS dead,
               COALESCE(MIN(CASE WHEN dead_at IS NULL AND attempts < max_attempts AND run_at <= $1 AND (locked_until IS NULL OR locked_until < $1) THEN run_at END), $1) AS oldest
             FROM jobs",
        )
        .bind(now_ms)
        .fetch_one(&self.pool)
        .await?;
        Ok(QueueStats {
            ready: r.try_get("ready")?,
            scheduled: r.try_get("scheduled")?,
            running: r.try_get("running")?,
            dead: r.try_get("dead")?,
            oldest_ready_age_ms: now_ms - r.try_get::<i64, _>("oldest")?,
        })
    }

    /// Every job in the queue, oldest first (for status output and tests).
    pub async fn jobs(&self) -> Result<Vec<JobInfo>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, kind, attempts, run_at, last_error, dead_at FROM jobs ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(JobInfo {
                    id: r.try_get("id")?,
                    kind: r.try_get("kind")?,
                    attempts: r.try_get("attempts")?,
                    run_at: r.try_get("run_at")?,
                    last_error: r.try_get("last_error")?,
                    dead_at: r.try_get("dead_at")?,
                })
            })
            .collect()
    }

    pub(crate) fn wake_workers(&self) {
        // `notify_one` keeps a permit when no worker is waiting at this instant, so a worker that is busy
        // claiming still sees the wake-up; `notify_waiters` wakes the others that are waiting.
        self.wake.notify_one();
        self.wake.notify_waiters();
    }

    /// Resolves when a job may have been enqueued (in this process), for workers to stop polling.
    pub async fn enqueued(&self) {
        self.wake.notified().await;
    }
}

/// Most rows in one insert statement (each row binds 8 parameters: SQLite allows 32,766 of them,
/// PostgreSQL 65,535).
pub(crate) const ROWS_PER_INSERT: usize = 512;

/// Inserts jobs, `ROWS_PER_INSERT` to a statement, so that a batch outside a transaction is one round
/// trip and one commit. Within a caller's write transaction, the caller wakes the workers after
/// committing.
pub(crate) async fn insert_jobs(
    conn: &mut sqlx::AnyConnection,
    jobs: &[NewJob],
    now_ms: i64,
) -> Result<u64, StoreError> {
    let mut inserted = 0;
    for chunk in jobs.chunks(ROWS_PER_INSERT) {
        inserted += insert_rows(conn, chunk, now_ms).await?;
    }
    Ok(inserted)
}

/// One multi-row `VALUES` with every field bound, on both engines. Bound values reach the database as
/// they are: SQLite parsing a JSON parameter field by field cost 33 against 22 µs a row, and
/// PostgreSQL's `json_to_recordset` spent more of the server's time lexing the escaped payloads than
/// inserting them (BENCHMARKS.md, 2026-12-05). Rows are inserted, and so numbered, in the batch's order.
async fn insert_rows(
    conn: &mut sqlx::AnyConnection,
    jobs: &[NewJob],
    now_ms: i64,
) -> Result<u64, StoreError> {
    let sql = format!(
        "INSERT INTO jobs (kind, payload, dedup_key, run_at, max_attempts, created_at, coalesce_key, coalesce_seq)
         VALUES {} ON CONFLICT (dedup_key) DO NOTHING",
        crate::db::placeholders(crate::db::backend_of_connection(conn), jobs.len(), 8)
    );
    let mut q = sqlx::query(&sql);
    for j in jobs {
        q = q
            .bind(&j.kind)
            .bind(&j.payload)
            .bind(&j.dedup_key)
            .bind(j.run_at)
            .bind(j.max_attempts)
            .bind(now_ms)
            .bind(&j.coalesce_key)
            .bind(j.coalesce_seq);
    }
    Ok(q.execute(conn).await?.rows_affected())
}

fn truncate(s: &str, max_chars: usize) -> String {
    s.chars().take(max_chars).collect()
}

impl Store {
    /// Frees every lease. Only for a single-process database (SQLite) at start-up: whatever was running
    /// belonged to a process that is gone, so its jobs may run again at once instead of after the lease.
    pub async fn release_all_leases(&self) -> Result<u64, StoreError> {
        let n = sqlx::query(
            "UPDATE jobs SET locked_by = NULL, locked_until = NULL WHERE locked_by IS NOT NULL",
        )
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n)
    }
}
