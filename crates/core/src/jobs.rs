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
