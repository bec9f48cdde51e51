//! The `gitlab-for-jira` binary's library: settings, wiring, and the commands of `docs/interface.md`.
//!
//! Data flow (see ARCHITECTURE.md): GitLab → `gfj-server` (intake) → `gfj-store` (durable queue) →
//! `gfj-sync` (workers, using the pure `gfj-core` mapping) → `gfj-jira-client` → Jira.

pub mod commands;
pub mod settings;
pub mod telemetry;

pub use settings::Settings;
