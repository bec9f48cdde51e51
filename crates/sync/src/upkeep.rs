//! Periodic work: each subscription's hook check, reconciliation and gating check once per interval,
//! backfill tasks started as slots free, the audit trail pruned.
//!
//! Every replica ticks, but the intervals are schedules in the database (`store::locks`): the replica
//! whose claim moves a schedule on queues that run, so each check runs once per interval across all
//! replicas, and a restart neither repeats nor skips one.

use std::sync::Arc;
use std::time::Duration;

use gfj_store::{Clock, Store, StoreError};

/// How often the periodic jobs run (`GFJ_HOOK_CHECK_SECS`, `GFJ_RECONCILE_SECS`, `GFJ_AUDIT_DAYS`,
/// `GFJ_BACKFILL_TASKS`).
#[derive(Debug, Clone, Copy)]
pub struct Upkeep {
    pub hook_check_ms: i64,
    pub reconcile_ms: i64,
    /// How often deployment gates are looked after (`GFJ_GATING_POLL_SECS`).
    pub gating_ms: i64,
    pub audit_retention_ms: i64,
    pub backfill_tasks: i64,
}

/// The schedules' names in the database.
pub const HOOK_CHECKS: &str = "hook_checks";
pub const RECONCILE: &str = "reconcile";
pub const GATING: &str = "gating";

/// A run claimed but not queued (the database failed in between) is due again this much later.
const RETRY_MS: i64 = 5_000;

/// What one tick queued.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Ticked {
    /// Hook checks queued (one per subscription), when this replica ran the hook-check schedule.
    pub hook_checks: Option<u64>,
    /// Reconciliations queued, when this replica ran the reconcile schedule.
    pub reconciles: Option<u64>,
    /// Gating checks queued, when this replica ran the gating schedule.
    pub gating_checks: Option<u64>,
}

impl Upkeep {
    /// Creates the schedules unless they exist. Hook checks are due at once on a fresh database
    /// (and, after downtime longer than their interval, at once on start); reconciliation one
    /// interval on, since its cursors already cover any downtime.
    pub async fn prepare(&self, store: &Store, now_ms: i64) -> Result<(), StoreError> {
        store.ensure_schedule(HOOK_CHECKS, now_ms).await?;
        store.ensure_schedule(GATING, now_ms).await?;
        store
            .ensure_schedule(RECONCILE, now_ms + self.reconcile_ms)
            .await
    }

    /// Runs what is due at `now_ms` and this replica won.
    pub async fn tick(&self, store: &Store, now_ms: i64) -> Result<Ticked, StoreError> {
        let mut ticked = Ticked::default();
        if store
            .claim_schedule(HOOK_CHECKS, now_ms, self.hook_check_ms)
            .await?
        {
            ticked.hook_checks = Some(
                run_claimed(store, HOOK_CHECKS, now_ms, async {
                    crate::hooks::schedule_hook_checks(store, now_ms, self.hook_check_ms).await
                })
                .await?,
            );
            if let Err(e) = store.prune_audit(now_ms - self.audit_retention_ms).await {
                tracing::warn!(error = %e, "could not prune the audit trail; trying again");
            }
        }
        // Tasks start as others finish; this catches those a `resync` queued from the command line.
        store
            .start_backfill_tasks(self.backfill_tasks, now_ms)
            .await?;
        if store
            .claim_schedule(RECONCILE, now_ms, self.reconcile_ms)
            .await?
        {
            ticked.reconciles = Some(
                run_claimed(store, RECONCILE, now_ms, async {
                    crate::reconcile::schedule_reconciles(store, now_ms, self.reconcile_ms).await
                })
                .await?,
            );
        }
        if store.claim_schedule(GATING, now_ms, self.gating_ms).await? {
            ticked.gating_checks = Some(
                run_claimed(store, GATING, now_ms, async {
                    crate::gating::schedule_gating_checks(store, now_ms, self.gating_ms).await
                })
                .await?,
            );
        }
        Ok(ticked)
    }

    /// Ticks until `stop`, often enough that a schedule runs within a few percent of its interval.
    pub async fn run(
        self,
        store: Store,
        clock: Arc<dyn Clock>,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let tick_ms = (self
            .hook_check_ms
            .min(self.reconcile_ms)
            .min(self.gating_ms)
            / 20)
            .clamp(250, 15_000);
        let mut ticker = tokio::time::interval(Duration::from_millis(tick_ms as u64));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut prepared = false;
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = stop.changed() => return,
            }
            let now = clock.now_ms();
            if !prepared {
                match self.prepare(&store, now).await {
                    Ok(()) => prepared = true,
                    Err(e) => {
                        tracing::warn!(error = %e, "could not set up the periodic schedules; trying again");
                        continue;
                    }
                }
            }
            match self.tick(&store, now).await {
                Ok(ticked) => {
                    if let Some(n) = ticked.hook_checks {
                        tracing::info!(subscriptions = n, "queued the periodic hook checks");
                    }
                    if let Some(n) = ticked.reconciles {
                        tracing::info!(subscriptions = n, "queued the periodic reconciliation");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "periodic upkeep failed; trying again"),
            }
        }
    }
}

/// Queues a claimed run; if that fails, makes the schedule due again soon rather than skip a run.
async fn run_claimed(
    store: &Store,
    schedule: &str,
    now_ms: i64,
    queue: impl std::future::Future<Output = Result<u64, StoreError>>,
) -> Result<u64, StoreError> {
    match queue.await {
        Ok(n) => Ok(n),
        Err(e) => {
            store.reschedule(schedule, now_ms + RETRY_MS).await?;
            Err(e)
        }
    }
}
