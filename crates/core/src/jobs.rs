//! Payloads of the durable queue's jobs: the contract between intake (server) and sync (worker).

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// A GitLab webhook delivery, as accepted by `POST /gitlab/webhook`.
#[derive(Debug, Serialize, Deserialize)]
pub struct GitlabEvent {
    pub subscription_id: i64,
    /// The `X-Gitlab-Event` header.
    pub event: String,
    /// `updateSequenceId` for everything this delivery sends: assigned on arrival, so a retried or late
    /// job never overwrites newer data in Jira.
    pub seq: i64,
    /// The delivery's body, verbatim.
    pub body: Box<RawValue>,
}

impl GitlabEvent {
    pub const KIND: &'static str = "gitlab_event";
}

/// A periodic check of one subscription's webhooks: restore what GitLab disabled or lost, hook projects
/// that joined the group (project-hook mode), and record the windows GitLab may not have reported.
#[derive(Debug, Serialize, Deserialize)]
pub struct HookCheck {
    pub subscription_id: i64,
}

impl HookCheck {
    pub const KIND: &'static str = "hook_check";
}

/// Deleting from Jira what no longer belongs there: everything one subscription sent (after unlink), or
/// everything that came from one project (it left the linked group). Queued, so that a Jira outage
/// delays the deletion instead of losing it.
#[derive(Debug, Serialize, Deserialize)]
pub struct JiraCleanup {
    /// The Jira site.
    pub client_key: String,
    pub scope: CleanupScope,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CleanupScope {
    Subscription { subscription_id: i64 },
    Project { project_id: i64 },
}

impl JiraCleanup {
    pub const KIND: &'static str = "jira_cleanup";
}

/// A periodic pass over one subscription's projects that reads from GitLab what changed since the last
/// pass (and over any recorded gap) and sends it: what no webhook reports (pushes of more than 3 refs,
/// deployments waiting for approval, anything missed while a hook was disabled or the service down).
#[derive(Debug, Serialize, Deserialize)]
pub struct Reconcile {
    pub subscription_id: i64,
}

impl Reconcile {
    pub const KIND: &'static str = "reconcile";
}
