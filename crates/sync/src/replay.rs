//! Replay: what GitLab's REST API lists (merge requests, pipelines, deployments, flags), turned into the
//! typed events the live path maps (no webhook JSON is made up and parsed again) and sent the same way.
//! Shared by backfill and reconciliation. The conversions are pure functions at the bottom.

use gfj_core::domain::{ProjectId, SubscriptionId};
use gfj_core::gitlab::{
    Commit, DeploymentEvent, FeatureFlagAttributes, FeatureFlagEvent, GitLabTime,
    MergeRequestAttributes, MergeRequestEvent, PipelineAttributes, PipelineBuild, PipelineEvent,
    Project, WebhookEvent,
};
use gfj_gitlab_client::{
    DeploymentDetails, GitLabClient, MergeRequestDetails, PipelineDetails, PipelineJob,
};
use gfj_jira_client::Site;
use gfj_store::subscriptions::Subscription;

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
        project: &Project,
        d: &DeploymentDetails,
        seq: i64,
    ) -> Result<(), JobError> {
        let event = WebhookEvent::Deployment(Box::new(deployment_event(project, d)));
        self.cicd_event(sub, site, opts, event, seq).await
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
        project: &Project,
        pipeline: &PipelineDetails,
        seq: i64,
    ) -> Result<(), JobError> {
        let jobs = gitlab.pipeline_jobs(project.id, pipeline.id).await?;
        let sha = pipeline.sha.as_deref().unwrap_or_default();
        let commit = match gitlab.commit(project.id, sha).await {
            Ok(c) => Some(c),
            Err(gfj_gitlab_client::GitLabError::NotFound(_)) => None,
            Err(e) => return Err(e.into()),
        };
        let Some(event) = pipeline_event(project, pipeline, &jobs, commit) else {
            tracing::warn!(
                subscription = sub.id,
                pipeline = pipeline.id,
                "a pipeline GitLab listed has no ref, SHA or status; skipped"
            );
            return Ok(());
        };
        let event = WebhookEvent::Pipeline(Box::new(event));
        self.cicd_event(sub, site, opts, event, seq).await
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
        project: &Project,
        since_ms: Option<i64>,
        seq: i64,
    ) -> Result<(), JobError> {
        let known = self
            .store
            .known_feature_flags(SubscriptionId(sub.id), ProjectId(project.id))
            .await?;
        if known.is_empty() {
            return Ok(());
        }
        let listed = gitlab.feature_flags(project.id).await?;
        for (name, id) in known {
            let changed = match listed.iter().find(|f| f.name == name) {
                None => true,
                Some(f) => within_window(f.updated_at.as_deref(), since_ms),
            };
            if changed {
                let event = WebhookEvent::FeatureFlag(Box::new(flag_event(project, id, name)));
                self.cicd_event(sub, site, opts, event, seq).await?;
            }
        }
        Ok(())
    }
}

/// Whether a record GitLab stamped `time` belongs to a window starting at `since_ms` (all of history when
/// `None`). A record without a readable time is kept: sending it again is harmless, leaving it out is not.
pub(crate) fn within_window(time: Option<&str>, since_ms: Option<i64>) -> bool {
    time.and_then(GitLabTime::parse)
        .is_none_or(|t| since_ms.is_none_or(|s| t.unix_ms() >= s))
}

/// A REST merge request as the Merge Request Hook would describe it; `None` when it lacks what routes it
/// (its branches and state).
pub(crate) fn merge_request_event(
    project: &Project,
    mr: MergeRequestDetails,
) -> Option<MergeRequestEvent> {
    let time = |t: &Option<String>| t.as_deref().and_then(GitLabTime::parse);
    let author_id = mr.author.as_ref().and_then(|a| a.id);
    Some(MergeRequestEvent {
        object_kind: "merge_request".into(),
        user: mr.author,
        project: project.clone(),
        object_attributes: MergeRequestAttributes {
            id: mr.id,
            iid: mr.iid,
            title: mr.title.unwrap_or_default(),
            description: mr.description,
            state: mr.state?,
            action: None,
            source_branch: mr.source_branch?,
            target_branch: mr.target_branch?,
            source_project_id: mr.source_project_id,
            target_project_id: mr.target_project_id,
            author_id,
            assignee_ids: Vec::new(),
            reviewer_ids: Vec::new(),
            created_at: time(&mr.created_at),
            updated_at: time(&mr.updated_at),
            last_edited_at: None,
            merged_at: time(&mr.merged_at),
            url: mr.web_url.unwrap_or_default(),
            last_commit: None,
            merge_commit_sha: mr.merge_commit_sha,
            head_pipeline_id: None,
            oldrev: None,
            draft: mr.draft.unwrap_or(false),
            work_in_progress: false,
            merge_status: None,
            detailed_merge_status: None,
            blocking_discussions_resolved: None,
        },
        repository: None,
        labels: Vec::new(),
        assignees: Vec::new(),
        reviewers: mr.reviewers.unwrap_or_default(),
        changes: serde_json::Value::Null,
    })
}

/// A REST pipeline, its jobs and its commit as the Pipeline Hook would describe them; `None` when it
/// lacks its ref, SHA or status.
pub(crate) fn pipeline_event(
    project: &Project,
    pipeline: &PipelineDetails,
    jobs: &[PipelineJob],
    commit: Option<Commit>,
) -> Option<PipelineEvent> {
    let time = |t: &Option<String>| t.as_deref().and_then(GitLabTime::parse);
    let builds = jobs
        .iter()
        .map(|j| {
            let status = j.status.clone().unwrap_or_default();
            PipelineBuild {
                id: j.id,
                stage: j.stage.clone().unwrap_or_default(),
                name: j.name.clone().unwrap_or_default(),
                manual: status == "manual",
                status,
                created_at: time(&j.created_at),
                started_at: time(&j.started_at),
                finished_at: time(&j.finished_at),
                duration: None,
                queued_duration: None,
                when: None,
                allow_failure: j.allow_failure.unwrap_or(false),
                failure_reason: None,
                user: None,
                environment: None,
            }
        })
        .collect();
    Some(PipelineEvent {
        object_kind: "pipeline".into(),
        object_attributes: PipelineAttributes {
            id: pipeline.id,
            iid: pipeline.iid,
            name: None,
            git_ref: pipeline.git_ref.clone()?,
            tag: pipeline.tag.unwrap_or(false),
            sha: pipeline.sha.clone()?,
            before_sha: None,
            source: pipeline.source.clone(),
            status: pipeline.status.clone()?,
            detailed_status: None,
            stages: Vec::new(),
            created_at: time(&pipeline.created_at),
            finished_at: time(&pipeline.finished_at),
            duration: None,
            queued_duration: None,
            url: pipeline.web_url.clone(),
        },
        merge_request: None,
        user: None,
        project: project.clone(),
        commit,
        builds,
    })
}

/// A REST deployment as the Deployment Hook would describe it. The live path reads the deployment again
/// by id for what the hook lacks (iid, full SHA, commits).
pub(crate) fn deployment_event(project: &Project, d: &DeploymentDetails) -> DeploymentEvent {
    DeploymentEvent {
        object_kind: "deployment".into(),
        status: d.status.clone(),
        status_changed_at: d.updated_at.as_deref().and_then(GitLabTime::parse),
        deployment_id: d.id,
        deployable_id: None,
        deployable_url: None,
        environment: d.environment.name.clone(),
        environment_tier: d.environment.tier.clone(),
        environment_slug: None,
        environment_external_url: None,
        project: project.clone(),
        short_sha: d.sha.chars().take(8).collect(),
        user: None,
        user_url: None,
        commit_url: None,
        commit_title: None,
        git_ref: Some(d.git_ref.clone()),
    }
}

/// A flag known by its webhook id, as a Feature Flag Hook would name it; the live path reads its state.
pub(crate) fn flag_event(project: &Project, id: i64, name: String) -> FeatureFlagEvent {
    FeatureFlagEvent {
        object_kind: "feature_flag".into(),
        project: project.clone(),
        user: None,
        user_url: None,
        object_attributes: FeatureFlagAttributes {
            id,
            name,
            description: None,
            active: false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gfj_core::mapping::merge_request::{MergeRequestAction, map_merge_request};

    /// The merge request of the webhook fixture, as `GET /projects/:id/merge_requests` lists it.
    fn rest_merge_request() -> serde_json::Value {
        serde_json::json!({
            "id": 90211, "iid": 57, "project_id": 4711,
            "title": "PAY-142: Retry webhook deliveries",
            "description": "Retries deliveries that time out.\n\nCloses PAY-142.",
            "state": "opened",
            "created_at": "2026-03-02T08:20:11Z", "updated_at": "2026-03-02T08:20:11Z",
            "merged_at": null, "closed_at": null,
            "target_branch": "main", "source_branch": "feature/PAY-142-retry-webhooks",
            "author": {"id": 212, "name": "Priya Raman", "username": "praman",
                       "avatar_url": "https://gitlab.example.com/uploads/-/system/user/avatar/212/avatar.png",
                       "email": "priya.raman@acme.example"},
            "reviewers": [{"id": 405, "name": "Mei Lin", "username": "meilin",
                           "avatar_url": "https://secure.gravatar.com/avatar/0a9e44c1?s=80&d=identicon"}],
            "source_project_id": 4711, "target_project_id": 4711,
            "draft": false, "work_in_progress": false, "merge_commit_sha": null,
            "web_url": "https://gitlab.example.com/acme/platform/payments-api/-/merge_requests/57"
        })
    }

    fn pull_requests(action: MergeRequestAction) -> Vec<gfj_core::jira::PullRequest> {
        match action {
            MergeRequestAction::Store { request, .. } => request
                .repositories
                .into_iter()
                .flat_map(|r| r.pull_requests)
                .collect(),
            MergeRequestAction::Nothing => Vec::new(),
        }
    }

    #[test]
    fn a_listed_merge_request_reaches_jira_as_its_webhook_does() {
        let hook = include_str!("../../core/tests/fixtures/gitlab/merge_request_opened.json");
        let WebhookEvent::MergeRequest(from_hook) =
            WebhookEvent::parse(gfj_core::gitlab::EventKind::MergeRequest, hook.as_bytes())
                .unwrap()
        else {
            panic!("a merge request")
        };
        let rest: MergeRequestDetails = serde_json::from_value(rest_merge_request()).unwrap();
        let from_rest = merge_request_event(&from_hook.project, rest).unwrap();
        let options = Default::default();
        let expected = pull_requests(map_merge_request(&from_hook, 7, options));
        assert_eq!(expected.len(), 1);
        assert_eq!(
            pull_requests(map_merge_request(&from_rest, 7, options)),
            expected
        );
    }

    #[test]
    fn a_listed_merge_request_without_its_branches_or_state_is_skipped() {
        let project: Project = serde_json::from_value(serde_json::json!({
            "id": 4711, "name": "payments-api", "web_url": "https://gitlab.example.com/acme/payments-api"
        }))
        .unwrap();
        for field in ["source_branch", "target_branch", "state"] {
            let mut rest = rest_merge_request();
            rest[field] = serde_json::Value::Null;
            let rest: MergeRequestDetails = serde_json::from_value(rest).unwrap();
            assert!(merge_request_event(&project, rest).is_none(), "{field}");
        }
    }

    #[test]
    fn the_window_keeps_what_is_new_or_undated() {
        let since = GitLabTime::parse("2026-03-02T08:00:00Z").unwrap().unix_ms();
        for (time, since_ms, kept) in [
            (Some("2026-03-02T08:00:00Z"), Some(since), true),
            (Some("2026-03-02T09:00:00+01:00"), Some(since), true),
            (Some("2026-03-02T07:59:59Z"), Some(since), false),
            (Some("2020-01-01T00:00:00Z"), None, true),
            (Some("yesterday"), Some(since), true),
            (None, Some(since), true),
        ] {
            assert_eq!(within_window(time, since_ms), kept, "{time:?} {since_ms:?}");
        }
    }

    #[test]
    fn a_listed_pipeline_keeps_its_jobs_and_manual_ones_are_marked() {
        let project: Project = serde_json::from_value(serde_json::json!({
            "id": 7, "name": "api", "web_url": "https://gitlab.example.com/acme/api"
        }))
        .unwrap();
        let pipeline: PipelineDetails = serde_json::from_value(serde_json::json!({
            "id": 880123, "iid": 12, "project_id": 7, "sha": "a1b2c3", "ref": "main",
            "status": "success", "source": "push", "created_at": "2026-03-02T08:20:11Z",
            "updated_at": "2026-03-02T08:30:11Z", "web_url": "https://gitlab.example.com/acme/api/-/pipelines/880123"
        }))
        .unwrap();
        let jobs: Vec<PipelineJob> = serde_json::from_value(serde_json::json!([
            {"id": 1, "stage": "test", "name": "unit", "status": "success", "allow_failure": false},
            {"id": 2, "stage": "deploy", "name": "prod", "status": "manual", "allow_failure": true}
        ]))
        .unwrap();
        let event = pipeline_event(&project, &pipeline, &jobs, None).unwrap();
        assert_eq!(event.object_attributes.git_ref, "main");
        assert_eq!(event.object_attributes.status, "success");
        let builds: Vec<(i64, bool, bool)> = event
            .builds
            .iter()
            .map(|b| (b.id, b.manual, b.allow_failure))
            .collect();
        assert_eq!(builds, [(1, false, false), (2, true, true)]);
        let mut without_sha = pipeline.clone();
        without_sha.sha = None;
        assert!(pipeline_event(&project, &without_sha, &jobs, None).is_none());
    }
}
