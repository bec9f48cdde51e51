//! Which projects a subscription covers. A delivery is authenticated by the subscription's hook token,
//! but its body may name any project id; acting on a project outside the linked group would read it
//! with the subscription's GitLab credentials and write it to the subscription's Jira site. So before
//! any other GitLab read, the project must be one the subscription covers:
//!
//! - a project with one of its hooks (project-hook mode), or
//! - with a group hook, a project of the group or its subgroups, which GitLab is asked once per new
//!   project (`namespace.full_path` is the group's path or below it) and the answer remembered.
//!
//! Anything else is dropped, logged and counted (`status --json`: `foreign_deliveries_dropped`).

use gfj_core::domain::{ProjectId, SubscriptionId};
use gfj_core::gitlab::{ProjectEvent, SubgroupEvent};
use gfj_core::jobs::{CleanupScope, JiraCleanup};
use gfj_core::metric_names;
use gfj_gitlab_client::{GitLabError, HookScope, ProjectSummary};
use gfj_store::subscriptions::Subscription;

use crate::JobError;
use crate::context::Handlers;
use crate::jira_out::queue_jira_cleanup;

/// Whether a namespace path is the group's own or one of its subgroups' (`acme`, `acme/web`, not
/// `acme-evil` or `other/acme`). GitLab paths compare case-insensitively.
pub fn within_group(namespace_path: &str, group_path: &str) -> bool {
    let ns = namespace_path.to_ascii_lowercase();
    let group = group_path.trim_end_matches('/').to_ascii_lowercase();
    !group.is_empty()
        && (ns == group
            || ns
                .strip_prefix(group.as_str())
                .is_some_and(|rest| rest.starts_with('/')))
}

/// How long GitLab's answer about a project holds: projects move between groups, so a project that
/// left the group stops being covered within a day (one read per project and day at most).
pub const RECHECK_AFTER_MS: i64 = 24 * 60 * 60 * 1000;

impl Handlers {
    /// Whether the subscription covers the project; costs at most one GitLab read per new project.
    pub(crate) async fn covers(
        &self,
        sub: &Subscription,
        project_id: i64,
    ) -> Result<bool, JobError> {
        let hooks = self.store.subscription_hooks(sub.id).await?;
        if hooks
            .iter()
            .any(|h| h.scope == HookScope::Project && h.target_id == project_id)
        {
            return Ok(true);
        }
        if !hooks.iter().any(|h| h.scope == HookScope::Group) {
            // Project-hook mode: only hooked projects deliver (the hook check hooks new ones).
            return Ok(false);
        }
        let fresh_since = self.clock.now_ms() - RECHECK_AFTER_MS;
        if let Some(known) = self
            .store
            .project_coverage(SubscriptionId(sub.id), ProjectId(project_id), fresh_since)
            .await?
        {
            return Ok(known);
        }
        // One membership read per new project, even when several of its deliveries arrive together.
        let _one_check_at_a_time = self.coverage_checks.lock().await;
        if let Some(known) = self
            .store
            .project_coverage(SubscriptionId(sub.id), ProjectId(project_id), fresh_since)
            .await?
        {
            return Ok(known);
        }
        let gitlab = self
            .gitlab
            .client_for(&self.store, sub, self.clock.now_ms())
            .await?;
        let (covered, project) = match gitlab.project_placement(project_id).await {
            Ok(Some((project, path))) => (within_group(&path, &sub.group_path), Some(project)),
            // Invisible to the subscription's credentials: certainly not one of its projects.
            Ok(None) | Err(GitLabError::Forbidden(_)) => (false, None),
            Err(e) => return Err(e.into()),
        };
        let known_before = self
            .store
            .project_coverage(SubscriptionId(sub.id), ProjectId(project_id), i64::MIN)
            .await?;
        let now = self.clock.now_ms();
        self.store
            .remember_project_coverage(SubscriptionId(sub.id), ProjectId(project_id), covered, now)
            .await?;
        // GitLab sends group hooks no event when a project moves into the group: its first delivery is
        // where the move shows, and its history is planned then (tasks that exist, such as the link's
        // own plan, are left alone).
        if known_before != Some(true)
            && covered
            && let Some(project) = project
            && self.plan_projects(sub, &[project], now).await? > 0
        {
            tracing::info!(
                subscription = sub.id,
                project = project_id,
                "a project new to the linked group; its backfill is planned"
            );
        }
        Ok(covered)
    }

    /// Projects the subscription has history of (backfill tasks) that GitLab no longer lists in the
    /// group (`listed`: moved out, deleted, or archived) are checked once a day at most (`covers`); those
    /// that left are forgotten and their data leaves Jira. GitLab tells group hooks nothing when a
    /// project moves out. Returns how many were forgotten.
    pub(crate) async fn forget_departed_projects(
        &self,
        sub: &Subscription,
        listed: &[i64],
        now: i64,
    ) -> Result<usize, JobError> {
        let listed: std::collections::HashSet<i64> = listed.iter().copied().collect();
        let known: std::collections::BTreeSet<i64> = self
            .store
            .backfill_tasks(Some(sub.id))
            .await?
            .into_iter()
            .map(|t| t.project_id)
            .filter(|id| !listed.contains(id))
            .collect();
        let mut forgotten = 0;
        for project_id in known {
            if !self.covers(sub, project_id).await? {
                self.forget_project(sub, project_id, "left the linked group", now)
                    .await?;
                forgotten += 1;
            }
        }
        Ok(forgotten)
    }

    /// A group hook's subgroup event. A removed subgroup takes its projects with it: they are looked
    /// for at once rather than at the next reconciliation. A new one holds no project yet.
    pub(crate) async fn subgroup_event(
        &self,
        sub: &Subscription,
        event: &SubgroupEvent,
    ) -> Result<(), JobError> {
        if !event.is_destroy() {
            tracing::debug!(event = %event.event_name, group = %event.full_path, "subgroup event not acted on");
            return Ok(());
        }
        let now = self.clock.now_ms();
        let gitlab = self.gitlab.client_for(&self.store, sub, now).await?;
        let listed: Vec<i64> = gitlab
            .group_projects(sub.group_id)
            .await?
            .into_iter()
            .map(|p| p.id)
            .collect();
        let forgotten = self.forget_departed_projects(sub, &listed, now).await?;
        tracing::info!(subscription = sub.id, subgroup = %event.full_path, forgotten, "subgroup removed; its projects are forgotten");
        Ok(())
    }

    /// Forgets a project that left the subscription (destroyed, or moved out of the group) and queues
    /// the deletion of what it sent from Jira.
    async fn forget_project(
        &self,
        sub: &Subscription,
        project_id: i64,
        why: &str,
        now: i64,
    ) -> Result<(), JobError> {
        self.store
            .forget_project(SubscriptionId(sub.id), ProjectId(project_id), now)
            .await?;
        let cleanup = JiraCleanup {
            client_key: sub.client_key.clone(),
            scope: CleanupScope::Project { project_id },
        };
        queue_jira_cleanup(&self.store, &cleanup, now).await?;
        tracing::info!(
            subscription = sub.id,
            project = project_id,
            "project {why}; its data is deleted from Jira"
        );
        Ok(())
    }

    /// A group hook's project event. A project created in the linked group (or a subgroup) has its
    /// backfill planned and started now, not at the next reconciliation. A project of the subscription
    /// that is destroyed is forgotten, and what it sent leaves Jira.
    pub(crate) async fn project_event(
        &self,
        sub: &Subscription,
        event: &ProjectEvent,
    ) -> Result<(), JobError> {
        let now = self.clock.now_ms();
        if event.is_destroy() {
            // Only a project known to be the subscription's: GitLab can no longer be asked about it.
            if self
                .store
                .project_coverage(
                    SubscriptionId(sub.id),
                    ProjectId(event.project_id),
                    i64::MIN,
                )
                .await?
                != Some(true)
            {
                return self
                    .drop_foreign(
                        sub,
                        event.project_id,
                        "not a known project of the linked group",
                    )
                    .await;
            }
            self.forget_project(sub, event.project_id, "destroyed", now)
                .await?;
            return Ok(());
        }
        if !event.is_create() {
            tracing::debug!(event = %event.event_name, project = event.project_id, "project event not acted on");
            return Ok(());
        }
        if !self.covers(sub, event.project_id).await? {
            return self
                .drop_foreign(sub, event.project_id, "not a project of the linked group")
                .await;
        }
        let project = ProjectSummary {
            id: event.project_id,
            path_with_namespace: event.path_with_namespace.clone(),
            web_url: String::new(),
        };
        self.plan_projects(sub, &[project], now).await?;
        tracing::info!(subscription = sub.id, project = %event.path_with_namespace, "new project of the group; its backfill is planned");
        Ok(())
    }

    /// Drops a delivery for a project the subscription does not cover: logged and counted, never sent.
    pub(crate) async fn drop_foreign(
        &self,
        sub: &Subscription,
        project_id: i64,
        why: &str,
    ) -> Result<(), JobError> {
        tracing::warn!(
            subscription = sub.id,
            group = %sub.group_path,
            project = project_id,
            reason = why,
            "delivery names a project this subscription does not cover; dropped"
        );
        metrics::counter!(metric_names::EVENTS_DROPPED, "reason" => "foreign_project").increment(1);
        self.store.count_foreign_delivery(sub.id).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::within_group;

    #[test]
    fn a_group_covers_itself_and_its_subgroups_only() {
        assert!(within_group("acme", "acme"));
        assert!(within_group("acme/web/api", "acme"));
        assert!(within_group("ACME/Web", "acme"));
        assert!(within_group("acme/web", "acme/web"));
        assert!(!within_group("acme-evil", "acme"));
        assert!(!within_group("acmeweb/x", "acme"));
        assert!(!within_group("other/acme", "acme"));
        assert!(!within_group("acme", "acme/web"));
        assert!(!within_group("", "acme"));
        assert!(!within_group("acme", ""));
    }
}
