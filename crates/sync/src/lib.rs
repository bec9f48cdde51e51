//! Sync: the workers that drain the durable queue and bring Jira up to date.
//!
//! [`Runner`] claims due jobs with a lease, runs each one ([`dispatch`]), and records the outcome:
//! done (row deleted), retry with backoff, postponed (Jira asked us to wait), or dead after the last
//! attempt. A handler that panics fails its attempt like any other error. It never holds a database
//! transaction across a network call.

//!
//! Modules, from the bottom up; each uses only those above it:
//!
//! - `context` ([`Handlers`]: what every job shares), `shared` (process-wide caches and locks),
//!   `gitlab_access` (GitLab clients per subscription), `audit` (audit entries of what was sent),
//!   `accepted` (the requests Jira accepted for the running job, kept across its runs);
//! - `jira_out`: everything that goes to Jira (site state, packing, senders, rejections, deletions);
//! - `push` and `cicd`: live events into Jira;
//! - `replay`: REST records through the same paths, for `backfill` and `reconcile`;
//! - `backfill`, `coverage` (which projects a subscription covers; plans a new project's backfill),
//!   `reconcile`, `hooks`, `teardown`, `linking`, `gating` (JSM deployment gates: opened, polled,
//!   decided once, applied in GitLab once);
//! - `dispatch`: job → handler; `runner`: claims, leases and outcomes; `upkeep`: periodic work, once
//!   per interval across replicas.

mod accepted;
mod audit;
pub mod backfill;
mod cicd;
mod context;
pub mod coverage;
mod dispatch;
pub mod gating;
pub mod gitlab_access;
pub mod hooks;
pub mod jira_out;
pub mod jsm_settings;
pub mod linking;
mod push;
pub mod reconcile;
mod replay;
mod runner;
pub mod shared;
mod teardown;
pub mod upkeep;

pub use context::Handlers;
pub use runner::{JobHandler, Runner, RunnerConfig};

/// How a job ended, when it did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Try again after the backoff (or after `after_ms`, when the upstream said so).
    #[error("{message}")]
    Retry {
        message: String,
        after_ms: Option<i64>,
    },
    /// The upstream asked us to slow down: try again then, without counting an attempt.
    #[error("{message}")]
    Postpone { message: String, after_ms: i64 },
    /// Will never succeed as it is; kept as a dead job for an operator.
    #[error("{0}")]
    Permanent(String),
}

impl From<gfj_jira_client::JiraError> for JobError {
    fn from(e: gfj_jira_client::JiraError) -> Self {
        use gfj_jira_client::JiraError as J;
        let message = e.to_string();
        match e {
            J::RateLimited { retry_after_ms } => Self::Postpone {
                message,
                after_ms: retry_after_ms,
            },
            J::Unavailable { retry_after_ms, .. } => Self::Retry {
                message,
                after_ms: retry_after_ms,
            },
            // A reinstall replaces the secret and a module may be enabled later: worth retrying.
            J::Transport(_) | J::Unauthorized | J::Forbidden | J::Other { .. } => Self::Retry {
                message,
                after_ms: None,
            },
            J::BadRequest(_) | J::TooLarge | J::SiteNotAllowed(_) => Self::Permanent(message),
        }
    }
}

impl From<gfj_gitlab_client::GitLabError> for JobError {
    fn from(e: gfj_gitlab_client::GitLabError) -> Self {
        use gfj_gitlab_client::GitLabError as G;
        let message = format!("GitLab: {e}");
        match e {
            G::RateLimited { retry_after_ms } => Self::Postpone {
                message,
                after_ms: retry_after_ms,
            },
            _ => Self::Retry {
                message,
                after_ms: None,
            },
        }
    }
}

impl From<gfj_store::StoreError> for JobError {
    fn from(e: gfj_store::StoreError) -> Self {
        Self::Retry {
            message: format!("store: {e}"),
            after_ms: None,
        }
    }
}

/// Queues one job of `kind` per subscription for the interval `now_ms` falls in. The dedup key names the
/// interval, so replicas that tick together queue each job once.
pub(crate) async fn queue_per_subscription(
    store: &gfj_store::Store,
    now_ms: i64,
    interval_ms: i64,
    job: impl Fn(i64, i64) -> gfj_core::jobs::Job,
) -> Result<u64, gfj_store::StoreError> {
    let interval = now_ms / interval_ms.max(1);
    let jobs: Vec<gfj_store::queue::NewJob> = store
        .subscriptions()
        .await?
        .iter()
        .map(|s| gfj_store::queue::NewJob::of(&job(s.id, interval), now_ms))
        .collect();
    store.enqueue(&jobs, now_ms).await
}
