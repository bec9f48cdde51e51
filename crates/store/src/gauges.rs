//! What the database holds right now, counted for `/metrics`: the queue per job kind, backfill tasks per
//! state, the outbox, sites paused or needing attention, hooks per state, open gates. Read at scrape
//! time, so every replica reports the same figures (they describe the shared database, not the process).

use std::collections::BTreeMap;

use gfj_core::jsm::GateState;
use sqlx::Row;

use crate::{Store, StoreError};

/// One job kind's share of the queue.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KindGauges {
    /// Due and not running.
    pub ready: i64,
    /// Waiting for their time (a retry's backoff, a postponement).
    pub scheduled: i64,
    pub running: i64,
    /// Failed permanently (or out of attempts), kept for inspection.
    pub dead: i64,
    /// Age in milliseconds of the oldest ready job; 0 when none is ready.
    pub oldest_ready_age_ms: i64,
}

/// The gauges of `/metrics`, as the database has them at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Gauges {
    pub jobs_by_kind: BTreeMap<String, KindGauges>,
    pub backfill_tasks_by_state: BTreeMap<String, i64>,
    pub outbox_entities: i64,
    pub sites_paused: i64,
    pub sites_needing_attention: i64,
    pub hooks_by_state: BTreeMap<String, i64>,
    /// Deployment gates not yet applied in GitLab (waiting for JSM, or decided and being applied).
    pub gates_open: i64,
}

impl Store {
    /// The gauges at `now_ms`. Job states are judged as [`Store::queue_stats`] judges them.
    pub async fn gauges(&self, now_ms: i64) -> Result<Gauges, StoreError> {
        let mut gauges = Gauges::default();
        let jobs = sqlx::query(
            "SELECT kind,
               COALESCE(SUM(CASE WHEN dead_at IS NULL AND attempts < max_attempts AND run_at <= $1 AND (locked_until IS NULL OR locked_until < $1) THEN 1 ELSE 0 END), 0) AS ready,
               COALESCE(SUM(CASE WHEN dead_at IS NULL AND attempts < max_attempts AND run_at > $1 AND (locked_until IS NULL OR locked_until < $1) THEN 1 ELSE 0 END), 0) AS scheduled,
               COALESCE(SUM(CASE WHEN dead_at IS NULL AND locked_until >= $1 THEN 1 ELSE 0 END), 0) AS running,
               COALESCE(SUM(CASE WHEN dead_at IS NOT NULL OR (attempts >= max_attempts AND (locked_until IS NULL OR locked_until < $1)) THEN 1 ELSE 0 END), 0) AS dead,
               COALESCE(MIN(CASE WHEN dead_at IS NULL AND attempts < max_attempts AND run_at <= $1 AND (locked_until IS NULL OR locked_until < $1) THEN run_at END), $1) AS oldest
             FROM jobs GROUP BY kind",
        )
        .bind(now_ms)
        .fetch_all(&self.pool)
        .await?;
        for r in &jobs {
            gauges.jobs_by_kind.insert(
                r.try_get("kind")?,
                KindGauges {
                    ready: r.try_get("ready")?,
                    scheduled: r.try_get("scheduled")?,
                    running: r.try_get("running")?,
                    dead: r.try_get("dead")?,
                    oldest_ready_age_ms: now_ms - r.try_get::<i64, _>("oldest")?,
                },
            );
        }
        gauges.backfill_tasks_by_state = self
            .count_by("SELECT state AS name, COUNT(*) AS n FROM backfill_tasks GROUP BY state")
            .await?;
        gauges.hooks_by_state = self
            .count_by("SELECT state AS name, COUNT(*) AS n FROM subscription_hooks GROUP BY state")
            .await?;
        gauges.outbox_entities = sqlx::query(
            "SELECT CAST(COALESCE(SUM(entities), 0) AS BIGINT) AS n FROM backfill_outbox",
        )
        .fetch_one(&self.pool)
        .await?
        .try_get("n")?;
        let sites = sqlx::query(
            "SELECT COALESCE(SUM(CASE WHEN paused_until > $1 THEN 1 ELSE 0 END), 0) AS paused,
               COALESCE(SUM(CASE WHEN attention IS NOT NULL THEN 1 ELSE 0 END), 0) AS attention
             FROM site_state",
        )
        .bind(now_ms)
        .fetch_one(&self.pool)
        .await?;
        gauges.sites_paused = sites.try_get("paused")?;
        gauges.sites_needing_attention = sites.try_get("attention")?;
        gauges.gates_open = sqlx::query("SELECT COUNT(*) AS n FROM gates WHERE state <> $1")
            .bind(GateState::Done.as_str())
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?;
        Ok(gauges)
    }

    async fn count_by(&self, sql: &str) -> Result<BTreeMap<String, i64>, StoreError> {
        let rows = sqlx::query(sql).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| Ok((r.try_get("name")?, r.try_get("n")?)))
            .collect()
    }
}
