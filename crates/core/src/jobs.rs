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

/// Removing from GitLab the hooks of a subscription whose Jira site uninstalled the app (one job per
/// subscription, so a GitLab outage delays it without losing it), then signing out its GitLab sign-in
/// if nothing else uses it.
#[derive(Debug, Serialize, Deserialize)]
pub struct GitlabTeardown {
    pub teardown_id: i64,
}

impl GitlabTeardown {
    pub const KIND: &'static str = "gitlab_teardown";
}

/// Revoking a GitLab sign-in at GitLab and forgetting it, once no subscription, Jira user or pending
/// teardown uses it any more (its Jira site uninstalled the app).
#[derive(Debug, Serialize, Deserialize)]
pub struct GitlabSignOut {
    pub connection_id: i64,
}

impl GitlabSignOut {
    pub const KIND: &'static str = "gitlab_sign_out";
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

/// Plans the backfill of a subscription: lists its projects and records one task per project and kind of
/// history (queued by `link`; reconciliation plans projects that joined the group later).
#[derive(Debug, Serialize, Deserialize)]
pub struct BackfillPlan {
    pub subscription_id: i64,
}

impl BackfillPlan {
    pub const KIND: &'static str = "backfill_plan";
}

/// One page of one project's history of one kind. The task's cursor lives in the store, not here: the
/// job names the page it expects, and a job whose page was already done (a replay after SIGKILL) does
/// nothing.
#[derive(Debug, Serialize, Deserialize)]
pub struct BackfillPage {
    pub subscription_id: i64,
    pub project_id: i64,
    pub entity: BackfillEntity,
    /// The task's run (its start time): a resync starts a new run, and jobs of the old one stop.
    pub run: i64,
    pub page: i64,
}

impl BackfillPage {
    pub const KIND: &'static str = "backfill_page";
}

/// Sends a subscription's backfill outbox to Jira: the development information pages have read, packed
/// into as few requests as Jira's limits allow. One is queued at a time per subscription.
#[derive(Debug, Serialize, Deserialize)]
pub struct BackfillFlush {
    pub subscription_id: i64,
}

impl BackfillFlush {
    pub const KIND: &'static str = "backfill_flush";
}

/// The kinds of history a backfill reads, one task each per project, in the order they are started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackfillEntity {
    MergeRequests,
    Branches,
    Commits,
    Pipelines,
    Deployments,
    FeatureFlags,
}

impl BackfillEntity {
    pub const ALL: [BackfillEntity; 6] = [
        BackfillEntity::MergeRequests,
        BackfillEntity::Branches,
        BackfillEntity::Commits,
        BackfillEntity::Pipelines,
        BackfillEntity::Deployments,
        BackfillEntity::FeatureFlags,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BackfillEntity::MergeRequests => "merge_requests",
            BackfillEntity::Branches => "branches",
            BackfillEntity::Commits => "commits",
            BackfillEntity::Pipelines => "pipelines",
            BackfillEntity::Deployments => "deployments",
            BackfillEntity::FeatureFlags => "feature_flags",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.as_str() == s)
    }

    /// Its place in [`Self::ALL`].
    pub fn rank(self) -> i64 {
        Self::ALL.iter().position(|e| *e == self).unwrap_or(0) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backfill_entities_round_trip_through_their_names() {
        for e in BackfillEntity::ALL {
            assert_eq!(BackfillEntity::parse(e.as_str()), Some(e));
            assert_eq!(
                serde_json::to_value(e).unwrap(),
                serde_json::json!(e.as_str())
            );
        }
        assert_eq!(BackfillEntity::parse("issues"), None);
    }
}
