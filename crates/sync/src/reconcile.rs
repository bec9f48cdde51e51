//! Reconciliation: what webhooks never say. GitLab sends no push webhook when one push touches more than
//! three refs, none for a deployment waiting for approval, and nothing at all while a hook is disabled
//! or this service is down. A periodic `reconcile` job per subscription reads, per project, what changed
//! in GitLab since that project's cursor (and since the start of any recorded gap), and sends it through
//! the same paths as live events. Its sequence number is the pass's start, so a live event that arrives
//! later still wins, and an older queued one cannot overwrite what the pass sent.

use std::collections::HashSet;

use gfj_core::gitlab::{EventKind, GitLabTime, NULL_SHA, PushEvent, WebhookEvent};
use gfj_core::jobs::{Job, Reconcile};
use gfj_core::mapping::project_keys::ProjectKeys;
use gfj_gitlab_client::{GitLabClient, HookScope};
use gfj_jira_client::{DevinfoEntity, Site};
use gfj_store::subscriptions::Subscription;
use gfj_store::{Store, StoreError};
use serde_json::{Value, json};

use crate::JobError;
use crate::handlers::{Handlers, SendOptions, site_of};

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

impl Handlers {
    pub(crate) async fn reconcile(&self, r: &Reconcile) -> Result<(), JobError> {
        let Some(sub) = self.store.subscription(r.subscription_id).await? else {
            return Ok(());
        };
        let Some(install) = self.store.installation(&sub.client_key).await? else {
            return Ok(());
        };
        let site = site_of(install);
        let keys = ProjectKeys::new(self.store.site_project_keys(&sub.client_key).await?);
        let live = SendOptions::live(keys.clone());
        let history = SendOptions {
            keys,
            history: true,
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
            // Projects that joined the group since the link get their history too.
            self.plan_projects(&sub, &listed, started).await?;
            listed.into_iter().map(|p| p.id).collect()
        };
        let gaps = self.store.open_gaps(sub.id).await?;
        for project_id in projects {
            let covering: Vec<_> = gaps
                .iter()
                .filter(|g| g.scope == HookScope::Group || g.target_id == project_id)
                .collect();
            let cursor = self
                .store
                .reconcile_cursor(sub.id, project_id)
                .await?
                .unwrap_or(sub.created_at);
            let since = covering.iter().map(|g| g.since_ms).fold(cursor, i64::min) - OVERLAP_MS;
            // A window reaching back before the link (a project that joined the group) is history.
            let opts = if since + OVERLAP_MS < sub.created_at {
                &history
            } else {
                &live
            };
            self.reconcile_project(&sub, &site, opts, &gitlab, project_id, since, seq)
                .await?;
            let project_gaps: Vec<i64> = covering
                .iter()
                .filter(|g| g.scope == HookScope::Project)
                .map(|g| g.id)
                .collect();
            self.store
                .advance_reconcile_cursor(sub.id, project_id, started, &project_gaps)
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
            let changed = branch
                .commit
                .committed_date
                .as_deref()
                .and_then(GitLabTime::parse)
                .is_none_or(|t| t.unix_ms() >= since_ms);
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
        let project_json = serde_json::to_value(&project).expect("project serialises");
        // Merge requests edited, opened, merged or closed.
        for mr in gitlab
            .merge_requests_updated_after(project_id, &since)
            .await?
        {
            let hook = merge_request_hook(&project_json, &mr);
            self.replay(sub, site, opts, EventKind::MergeRequest, &hook, seq)
                .await?;
        }
        // Merge requests deleted in GitLab (which sends no webhook for it) leave Jira.
        let sent = self.store.sent_merge_requests(sub.id, project_id).await?;
        if !sent.is_empty() {
            let existing: HashSet<i64> = gitlab
                .merge_request_ids(project_id)
                .await?
                .into_iter()
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
                self.at_site(&sub.client_key, delete).await?;
                self.store
                    .forget_sent_merge_request(sub.id, project_id, mr_id)
                    .await?;
            }
        }
        // Deployments, blocked ones (waiting for approval) included.
        for d in gitlab.deployments_updated_after(project_id, &since).await? {
            self.replay_deployment(sub, site, opts, &project_json, &d, seq)
                .await?;
        }
        // Pipelines whose webhooks were missed.
        for pipeline in gitlab.pipelines_updated_after(project_id, &since).await? {
            self.replay_pipeline(sub, site, opts, gitlab, &project_json, &pipeline, seq)
                .await?;
        }
        self.replay_known_flags(sub, site, opts, gitlab, &project_json, Some(since_ms), seq)
            .await
    }

    /// A deployment as the REST API lists it, through the live path.
    pub(crate) async fn replay_deployment(
        &self,
        sub: &Subscription,
        site: &Site,
        opts: &SendOptions,
        project_json: &Value,
        d: &gfj_gitlab_client::DeploymentDetails,
        seq: i64,
    ) -> Result<(), JobError> {
        let hook = json!({
            "object_kind": "deployment",
            "status": d.status,
            "status_changed_at": d.updated_at,
            "deployment_id": d.id,
            "environment": d.environment.name,
            "environment_tier": d.environment.tier,
            "project": project_json,
            "short_sha": d.sha.chars().take(8).collect::<String>(),
            "ref": d.git_ref,
        });
        self.replay(sub, site, opts, EventKind::Deployment, &hook, seq)
            .await
    }

    /// A pipeline as the REST API lists it, through the live path; its jobs and commit are read too (the
    /// build's test counts and issue keys come from them).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn replay_pipeline(
        &self,
        sub: &Subscription,
        site: &Site,
        opts: &SendOptions,
        gitlab: &GitLabClient,
        project_json: &Value,
        pipeline: &Value,
        seq: i64,
    ) -> Result<(), JobError> {
        let (Some(id), Some(project_id)) = (pipeline["id"].as_i64(), project_json["id"].as_i64())
        else {
            return Ok(());
        };
        let jobs = gitlab.pipeline_jobs(project_id, id).await?;
        let sha = pipeline["sha"].as_str().unwrap_or_default();
        let commit = match gitlab.commit(project_id, sha).await {
            Ok(c) => Some(c),
            Err(gfj_gitlab_client::GitLabError::NotFound(_)) => None,
            Err(e) => return Err(e.into()),
        };
        let hook = pipeline_hook(project_json, pipeline, &jobs, commit.as_ref());
        self.replay(sub, site, opts, EventKind::Pipeline, &hook, seq)
            .await
    }

    /// Feature flags: GitLab reports only toggles. Flags whose id a webhook taught us, edited since
    /// `since_ms` (all when `None`) or deleted, go through the live path, which re-reads each one (and
    /// deletes it from Jira when gone).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn replay_known_flags(
        &self,
        sub: &Subscription,
        site: &Site,
        opts: &SendOptions,
        gitlab: &GitLabClient,
        project_json: &Value,
        since_ms: Option<i64>,
        seq: i64,
    ) -> Result<(), JobError> {
        let Some(project_id) = project_json["id"].as_i64() else {
            return Ok(());
        };
        let known = self.store.known_feature_flags(sub.id, project_id).await?;
        if known.is_empty() {
            return Ok(());
        }
        let listed = gitlab.feature_flags(project_id).await?;
        for (name, id) in known {
            let changed = match listed.iter().find(|f| f.name == name) {
                None => true,
                Some(f) => f
                    .updated_at
                    .as_deref()
                    .and_then(GitLabTime::parse)
                    .is_none_or(|t| since_ms.is_none_or(|s| t.unix_ms() >= s)),
            };
            if changed {
                let hook = json!({
                    "object_kind": "feature_flag",
                    "project": project_json,
                    "object_attributes": { "id": id, "name": name, "active": false },
                });
                self.replay(sub, site, opts, EventKind::FeatureFlag, &hook, seq)
                    .await?;
            }
        }
        Ok(())
    }

    /// Sends a webhook-shaped body made up from the REST API through the live path.
    pub(crate) async fn replay(
        &self,
        sub: &Subscription,
        site: &Site,
        opts: &SendOptions,
        kind: EventKind,
        body: &Value,
        seq: i64,
    ) -> Result<(), JobError> {
        let bytes = serde_json::to_vec(body).expect("JSON serialises");
        match WebhookEvent::parse(kind, &bytes) {
            Ok(event) => self.cicd_event(sub, site, opts, event, seq).await,
            Err(e) => {
                tracing::warn!(subscription = sub.id, kind = ?kind, error = %e, "GitLab listed something reconciliation cannot read; skipped");
                Ok(())
            }
        }
    }
}

/// A REST merge request in the Merge Request Hook's shape.
pub(crate) fn merge_request_hook(project: &Value, mr: &Value) -> Value {
    json!({
        "object_kind": "merge_request",
        "project": project,
        "user": mr["author"],
        "reviewers": mr["reviewers"],
        "object_attributes": {
            "id": mr["id"],
            "iid": mr["iid"],
            "title": mr["title"],
            "description": mr["description"],
            "state": mr["state"],
            "source_branch": mr["source_branch"],
            "target_branch": mr["target_branch"],
            "source_project_id": mr["source_project_id"],
            "target_project_id": mr["target_project_id"],
            "author_id": mr["author"]["id"],
            "created_at": mr["created_at"],
            "updated_at": mr["updated_at"],
            "merged_at": mr["merged_at"],
            "url": mr["web_url"],
            "draft": mr["draft"],
            "merge_commit_sha": mr["merge_commit_sha"],
        },
    })
}

/// A REST pipeline, its jobs and its commit in the Pipeline Hook's shape.
fn pipeline_hook(
    project: &Value,
    pipeline: &Value,
    jobs: &[Value],
    commit: Option<&gfj_core::gitlab::Commit>,
) -> Value {
    json!({
        "object_kind": "pipeline",
        "project": project,
        "object_attributes": {
            "id": pipeline["id"],
            "iid": pipeline["iid"],
            "ref": pipeline["ref"],
            "tag": pipeline["tag"].as_bool().unwrap_or(false),
            "sha": pipeline["sha"],
            "source": pipeline["source"],
            "status": pipeline["status"],
            "created_at": pipeline["created_at"],
            "finished_at": pipeline["finished_at"],
            "url": pipeline["web_url"],
        },
        "commit": commit,
        "builds": jobs.iter().map(|j| json!({
            "id": j["id"],
            "stage": j["stage"],
            "name": j["name"],
            "status": j["status"],
            "created_at": j["created_at"],
            "started_at": j["started_at"],
            "finished_at": j["finished_at"],
            "allow_failure": j["allow_failure"].as_bool().unwrap_or(false),
            "manual": j["status"] == "manual",
        })).collect::<Vec<_>>(),
    })
}
