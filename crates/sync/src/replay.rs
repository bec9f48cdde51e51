//! Replay: what GitLab's REST API lists (merge requests, pipelines, deployments, flags), turned into the
//! events the live path maps and sent the same way. Shared by backfill and reconciliation.

use gfj_core::gitlab::{EventKind, GitLabTime, WebhookEvent};
use gfj_gitlab_client::GitLabClient;
use gfj_jira_client::Site;
use gfj_store::subscriptions::Subscription;
use serde_json::{Value, json};

use crate::JobError;
use crate::context::Handlers;
use crate::jira_out::SendOptions;

impl Handlers {
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
