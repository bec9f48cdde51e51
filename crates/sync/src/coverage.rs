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
use gfj_core::gitlab::ProjectEvent;
use gfj_core::jobs::{CleanupScope, JiraCleanup};
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
        let covered = match gitlab.project_namespace_path(project_id).await {
            Ok(Some(path)) => within_group(&path, &sub.group_path),
            // Invisible to the subscription's credentials: certainly not one of its projects.
            Ok(None) | Err(GitLabError::Forbidden(_)) => false,
            Err(e) => return Err(e.into()),
        };
        self.store
            .remember_project_coverage(
                SubscriptionId(sub.id),
                ProjectId(project_id),
                covered,
                self.clock.now_ms(),
            )
            .await?;
        Ok(covered)
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
            self.store
                .forget_project(SubscriptionId(sub.id), ProjectId(event.project_id), now)
                .await?;
            let cleanup = JiraCleanup {
                client_key: sub.client_key.clone(),
                scope: CleanupScope::Project {
                    project_id: event.project_id,
                },
            };
            queue_jira_cleanup(&self.store, &cleanup, now).await?;
            tracing::info!(subscription = sub.id, project = %event.path_with_namespace, "project destroyed; its data is deleted from Jira");
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
