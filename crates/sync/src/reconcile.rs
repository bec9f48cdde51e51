//! Reconciliation: what webhooks never say. GitLab sends no push webhook when one push touches more than
//! three refs, none for a deployment waiting for approval, and nothing at all while a hook is disabled
//! or this service is down. A periodic `reconcile` job per subscription reads, per project, what changed
//! in GitLab since that project's cursor (and since the start of any recorded gap), and sends it through
//! the same paths as live events. Its sequence number is the pass's start, so a live event that arrives
//! later still wins, and an older queued one cannot overwrite what the pass sent.

use gfj_core::domain::{MergeRequestId, ProjectId, SubscriptionId};
use std::collections::HashSet;

use gfj_core::gitlab::{GitLabTime, NULL_SHA, PushEvent};
use gfj_core::jobs::{Job, Reconcile};
use gfj_core::mapping::project_keys::ProjectKeys;
use gfj_gitlab_client::{GitLabClient, HookScope};
use gfj_jira_client::{DevinfoEntity, Site};
use gfj_store::subscriptions::Subscription;
use gfj_store::{Store, StoreError};

use crate::JobError;
use crate::context::Handlers;
use crate::jira_out::{OnPause, SendOptions, site_of};
use crate::replay::{merge_request_event, within_window};

/// Changes are read from a little before the cursor, so that clock skew between GitLab and us loses
/// nothing (resending is harmless: Jira keeps the newest by sequence number).
const OVERLAP_MS: i64 = 60_000;
/// At most this many commits of one branch per pass.
const MAX_COMMITS_PER_BRANCH: usize = 5_000;

/// Queues one `reconcile` per subscription for the current interval.
pub async fn schedule_reconciles(
    store: &Store,
    now_ms: i64,
    interval_ms: i64,
) -> Result<u64, StoreError> {
    crate::queue_per_subscription(store, now_ms, interval_ms, |subscription_id, interval| {
        Job::Reconcile(Reconcile {
            subscription_id,
            interval,
        })
    })
    .await
}

/// A pass's hold on its subscription's lock, renewed while it runs: a pass whose replica dies frees it
/// within this.
const RECONCILE_LOCK_MS: i64 = 30_000;
/// How long one pass waits out Jira's pauses (429 Retry-After) in all, before it is postponed whole.
const MAX_PAUSE_WAIT_MS: i64 = 120_000;

impl Handlers {
    pub(crate) async fn reconcile(&self, r: &Reconcile) -> Result<(), JobError> {
        // One pass per subscription at a time across all replicas: passes of later intervals that
        // start while one runs would each resend the same window. The running pass's cursors cover
        // what they would have read; the next interval's pass reads on from them.
        let name = format!("reconcile:{}", r.subscription_id);
        match self
            .while_locked(&name, RECONCILE_LOCK_MS, self.reconcile_locked(r))
            .await?
        {
            Some(reconciled) => reconciled,
            None => {
                tracing::info!(
                    subscription = r.subscription_id,
                    "reconciliation skipped: another worker is reconciling this subscription"
                );
                Ok(())
            }
        }
    }

    async fn reconcile_locked(&self, r: &Reconcile) -> Result<(), JobError> {
        let Some(sub) = self.store.subscription(r.subscription_id).await? else {
            return Ok(());
        };
        let Some(install) = self.store.installation(&sub.client_key).await? else {
            return Ok(());
        };
        let site = site_of(install);
        let keys = ProjectKeys::new(self.store.site_project_keys(&sub.client_key).await?);
        // A pass waits out Jira's pauses rather than start over after each (see `OnPause`).
        let live = SendOptions {
            on_pause: OnPause::Wait,
            ..SendOptions::live(keys.clone())
        };
        let history = SendOptions {
            keys,
            history: true,
            on_pause: OnPause::Wait,
        };
        let started = self.clock.now_ms();
        let seq = started.saturating_mul(1000);
        let gitlab = self.gitlab.client_for(&self.store, &sub, started).await?;
        let projects: Vec<i64> = if sub.hook_mode == HookScope::Project {
            self.store
                .subscription_hooks(sub.id)
                .await?
                .into_iter()
                .filter(|h| h.scope == HookScope::Project)
                .map(|h| h.target_id)
                .collect()
        } else {
            let listed = gitlab.group_projects(sub.group_id).await?;
            // Projects that joined the group since the link get their history too; those that left are
            // forgotten, with their data in Jira.
            self.plan_projects(&sub, &listed, started).await?;
            let listed: Vec<i64> = listed.into_iter().map(|p| p.id).collect();
            self.forget_departed_projects(&sub, &listed, started)
                .await?;
            listed
        };
        let gaps = self.store.open_gaps(sub.id).await?;
        let mut paused_ms = 0;
        for project_id in projects {
            let covering: Vec<_> = gaps
                .iter()
                .filter(|g| g.scope == HookScope::Group || g.target_id == project_id)
                .collect();
            let cursor = self
                .store
                .reconcile_cursor(SubscriptionId(sub.id), ProjectId(project_id))
                .await?
                .unwrap_or(sub.created_at);
            let since = covering.iter().map(|g| g.since_ms).fold(cursor, i64::min) - OVERLAP_MS;
            // A window reaching back before the link (a project that joined the group) is history.
            let opts = if since + OVERLAP_MS < sub.created_at {
                &history
            } else {
                &live
            };
            // A pass of many projects outlasts the pauses a busy Jira asks for: it waits them out
            // and goes on with this project, rather than starting the whole pass again (which,
            // under steady 429s, would never finish).
            loop {
                match self
                    .reconcile_project(&sub, &site, opts, &gitlab, project_id, since, seq)
                    .await
                {
                    Err(JobError::Postpone { after_ms, message })
                        if paused_ms + after_ms <= MAX_PAUSE_WAIT_MS =>
                    {
                        tracing::debug!(subscription = sub.id, project = project_id, %message, after_ms, "reconciliation waits for Jira");
                        paused_ms += after_ms.max(1);
                        tokio::time::sleep(
                            std::time::Duration::from_millis(after_ms.max(1) as u64),
                        )
                        .await;
                    }
                    outcome => break outcome?,
                }
            }
            let project_gaps: Vec<i64> = covering
                .iter()
                .filter(|g| g.scope == HookScope::Project)
                .map(|g| g.id)
                .collect();
            self.store
                .advance_reconcile_cursor(
                    SubscriptionId(sub.id),
                    ProjectId(project_id),
                    started,
                    &project_gaps,
                )
                .await?;
        }
        let group_gaps: Vec<i64> = gaps
            .iter()
            .filter(|g| g.scope == HookScope::Group)
            .map(|g| g.id)
            .collect();
        self.store
            .mark_gaps_reconciled(&group_gaps, started)
            .await?;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn reconcile_project(
        &self,
        sub: &Subscription,
        site: &Site,
        opts: &SendOptions,
        gitlab: &GitLabClient,
        project_id: i64,
        since_ms: i64,
        seq: i64,
    ) -> Result<(), JobError> {
        let Some(project) = gitlab.project(project_id).await? else {
            return Ok(()); // gone; the hook check forgets it
        };
        let since = GitLabTime::rfc3339_at(since_ms);
        // Branches and their new commits: pushes that sent no webhook, or whose webhook was missed.
        for branch in gitlab.branches(project_id).await? {
            let changed = within_window(branch.commit.committed_date.as_deref(), Some(since_ms));
            if !changed {
                continue;
            }
            let commits = gitlab
                .commits_since(project_id, &branch.name, &since, MAX_COMMITS_PER_BRANCH)
                .await?;
            let push = PushEvent {
                object_kind: "push".into(),
                before: NULL_SHA.into(),
                after: branch.commit.id.clone(),
                git_ref: format!("refs/heads/{}", branch.name),
                checkout_sha: Some(branch.commit.id.clone()),
                user_username: None,
                project_id,
                project: project.clone(),
                total_commits_count: commits.len() as i64,
                commits,
            };
            self.push_event(sub, site, opts, push, seq).await?;
        }
        // Merge requests edited, opened, merged or closed.
        for mr in gitlab
            .merge_requests_updated_after(project_id, &since)
            .await?
        {
            let Some(event) = merge_request_event(&project, mr) else {
                tracing::warn!(
                    subscription = sub.id,
                    project = project_id,
                    "a merge request GitLab listed has no branches or state; skipped"
                );
                continue;
            };
            let event = gfj_core::gitlab::WebhookEvent::MergeRequest(Box::new(event));
            self.cicd_event(sub, site, opts, event, seq).await?;
        }
        // Merge requests deleted in GitLab (which sends no webhook for it) leave Jira.
        let sent = self
            .store
            .sent_merge_requests(SubscriptionId(sub.id), ProjectId(project_id))
            .await?;
        if !sent.is_empty() {
            let existing: HashSet<MergeRequestId> = gitlab
                .merge_request_ids(project_id)
                .await?
                .into_iter()
                .map(MergeRequestId)
                .collect();
            let repository_id = project_id.to_string();
            for mr_id in sent.into_iter().filter(|id| !existing.contains(id)) {
                let entity_id = mr_id.to_string();
                let delete = self.jira.delete_devinfo_entity(
                    site,
                    &repository_id,
                    DevinfoEntity::PullRequest,
                    &entity_id,
                    seq,
                );
                self.at_site(&sub.client_key, opts.on_pause, delete).await?;
                self.store
                    .forget_sent_merge_request(SubscriptionId(sub.id), ProjectId(project_id), mr_id)
                    .await?;
            }
        }
        // Deployments, blocked ones (waiting for approval) included.
        for d in gitlab.deployments_updated_after(project_id, &since).await? {
            self.replay_deployment(sub, site, opts, &project, &d, seq)
                .await?;
        }
        // Pipelines whose webhooks were missed.
        for pipeline in gitlab.pipelines_updated_after(project_id, &since).await? {
            self.replay_pipeline(sub, site, opts, gitlab, &project, &pipeline, seq)
                .await?;
        }
        self.replay_known_flags(sub, site, opts, gitlab, &project, Some(since_ms), seq)
            .await
    }
}
