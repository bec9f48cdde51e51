//! Storage: one SQL code path over SQLite (embedded default) and PostgreSQL (several replicas).
//!
//! - [`Store`]: the pool, the backend, the secrets cipher; opened with [`Store::open`], which migrates.
//! - [`crypto`]: AES-256-GCM for secrets at rest.
//! - [`installations`], [`subscriptions`]: Jira sites and linked GitLab groups.
//! - [`gitlab_connections`]: GitLab users signed in with OAuth (rotating token pairs).
//! - [`backfill`]: per project and kind of history, the backfill's cursor and progress.
//! - [`queue`]: the durable job queue (enqueue, claim with a lease, complete, retry, dead-letter).
//! - [`locks`]: work one replica at a time owns (named locks, periodic schedules).
//! - [`gauges`]: what the database holds right now, counted for `/metrics`.
//! - [`intake`]: group commit of webhook deliveries into the queue.
//! - [`reports`]: why an issue key is (or isn't) in Jira, and a group's backfill per project.
//! - [`audit`], [`feature_flags`], [`merge_requests`]: what was sent where (for "why", edits and deletions).
//!
//! Both engines run the same statements through sqlx's `Any` driver; the few places where the dialects
//! differ (`FOR UPDATE SKIP LOCKED`, `BEGIN IMMEDIATE`) branch on [`Backend`].

pub mod audit;
pub mod backfill;
pub mod clock;
pub mod crypto;
mod db;
pub mod feature_flags;
pub mod gates;
pub mod gauges;
pub mod gitlab_connections;
pub mod installations;
pub mod intake;
pub mod jsm;
pub mod locks;
pub mod merge_requests;
pub mod queue;
pub mod reports;
pub mod sites;
pub mod subscriptions;
pub mod testing;
pub mod uninstall;

pub use clock::{Clock, DatabaseClock, ManualClock, SkewedClock, SystemClock};
pub use db::{Backend, Store};

/// Everything the store can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("encryption: {0}")]
    Crypto(String),
    #[error("configuration: {0}")]
    Config(String),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(String),
    #[error("unreadable stored data: {0}")]
    Corrupt(String),
    #[error("the store is shutting down")]
    Closed,
}

impl From<gfj_core::domain::UnknownName> for StoreError {
    fn from(e: gfj_core::domain::UnknownName) -> Self {
        StoreError::Corrupt(e.to_string())
    }
}
