//! What every job shares: the [`Handlers`] context (store, clients, settings, process-wide state), the
//! GitLab client of one job ([`LazyGitLab`]), and [`off_runtime`] for CPU-heavy work. The lowest layer of
//! the crate: it imports no other module of it but `gitlab_access` and `shared`.

use gfj_core::mapping;
use gfj_gitlab_client::GitLabClient;
use gfj_jira_client::JiraClient;
use gfj_store::subscriptions::Subscription;
use gfj_store::{Clock, Store};

use crate::JobError;
use crate::gitlab_access::GitLabAccess;
use crate::shared::{BackfillSettings, BackfillShared, CoverageChecks};

/// Everything a job may need, shared by all of them.
pub struct Handlers {
    pub store: Store,
    pub jira: JiraClient,
    pub gitlab: GitLabAccess,
    pub clock: std::sync::Arc<dyn Clock>,
    /// Builds, deployments or flags per request (`GFJ_JIRA_BATCH_SIZE`).
    pub cicd_batch_size: usize,
    /// Where GitLab delivers our webhooks (from `GFJ_BASE_URL`), for hooks registered again.
    pub webhook_url: String,
    /// How merge requests are mapped (`GFJ_MR_KEYS_FROM_BRANCH`).
    pub merge_request_options: mapping::merge_request::MergeRequestOptions,
    /// How backfills run (`GFJ_BACKFILL_DAYS`, `GFJ_BACKFILL_TASKS`).
    pub backfill: BackfillSettings,
    /// What backfill jobs share (projects read from GitLab, flush locks).
    pub backfill_shared: BackfillShared,
    /// Membership checks of projects a delivery names (see `coverage`).
    pub coverage_checks: CoverageChecks,
    /// How deployment gates are looked after (`GFJ_GATING_*`).
    pub gating: crate::gating::GatingSettings,
}

impl Handlers {
    /// Runs `work` holding the database lock `name` ([`gfj_store::locks`]), renewed every third of
    /// `hold_ms` while it runs, so that a holder that dies frees it within `hold_ms` however long the
    /// work takes. `None` when another holds it, or when the lock ran out (the work is then stopped:
    /// another holder may have started).
    pub(crate) async fn while_locked<T>(
        &self,
        name: &str,
        hold_ms: i64,
        work: impl std::future::Future<Output = T>,
    ) -> Result<Option<T>, gfj_store::StoreError> {
        let Some(lock) = self
            .store
            .try_lock(name, self.clock.now_ms(), hold_ms)
            .await?
        else {
            return Ok(None);
        };
        let renewals = async {
            let every = std::time::Duration::from_millis((hold_ms / 3).max(100) as u64);
            loop {
                tokio::time::sleep(every).await;
                match self
                    .store
                    .renew_lock(&lock, self.clock.now_ms(), hold_ms)
                    .await
                {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(e) => tracing::warn!(lock = name, error = %e, "could not renew a lock"),
                }
            }
        };
        let outcome = tokio::select! {
            done = work => Some(done),
            () = renewals => {
                tracing::warn!(lock = name, "a lock ran out while its work ran; the work was stopped");
                None
            }
        };
        if let Err(e) = self.store.unlock(lock).await {
            tracing::warn!(lock = name, error = %e, "could not release a lock; it runs out on its own");
        }
        Ok(outcome)
    }
}

/// The GitLab client acting for a subscription, made on first use (reading and, for an OAuth sign-in,
/// perhaps refreshing its credentials) and then shared by every read of one job.
pub(crate) struct LazyGitLab<'a> {
    handlers: &'a Handlers,
    sub: &'a Subscription,
    client: tokio::sync::OnceCell<GitLabClient>,
}

impl<'a> LazyGitLab<'a> {
    pub(crate) fn new(handlers: &'a Handlers, sub: &'a Subscription) -> Self {
        Self {
            handlers,
            sub,
            client: tokio::sync::OnceCell::new(),
        }
    }

    pub(crate) async fn get(&self) -> Result<&GitLabClient, JobError> {
        self.client
            .get_or_try_init(|| {
                let h = self.handlers;
                h.gitlab.client_for(&h.store, self.sub, h.clock.now_ms())
            })
            .await
    }
}

/// Runs CPU-heavy work on tokio's blocking pool: parsing and mapping an event whose texts may be megabytes
/// would otherwise hold a runtime worker that webhook intake and other jobs share. A panic inside goes on
/// here, as if the work had run inline.
pub(crate) async fn off_runtime<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, JobError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(out) => Ok(out),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // Only when the runtime shuts down before the work started: the job runs again later.
        Err(e) => Err(JobError::Retry {
            message: format!("interrupted by shutdown: {e}"),
            after_ms: None,
        }),
    }
}
