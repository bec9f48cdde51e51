//! Pipelines and jobs: `run_pipeline` and `set_job_status` drive them (delivering Job and Pipeline Hooks the
//! way GitLab does), `POST .../jobs/:id/play` runs manual jobs, and the list/get endpoints serve a backfill.
//!
//! Simplification: every job is ready as soon as the pipeline starts (as with `needs: []`); stages are only
//! labels. Manual jobs get GitLab's default `allow_failure: true`, other jobs `false`.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::macros::format_description;

use super::merge_requests::{
    authorize, check_values, clock, commit_entity, commit_hook, deliver_all, find_user, hook_time,
    list_url, opt_hook_time, opt_rest_time, parse_time, project_of, repository_hook, rest_time,
    sync_heads, user_basic, user_hook,
};
use super::{GitLabSim, Inner, NULL_SHA, Project, Shared, err, paging, project_json};

/// One job of a pipeline started by `GitLabSim::run_pipeline`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSpec {
    pub name: String,
    pub stage: String,
    /// Environment name and tier (`production`, `staging`, `testing`, `development`, `other`).
    pub environment: Option<(String, String)>,
    /// `when: manual`.
    pub manual: bool,
}

impl JobSpec {
    pub fn new(name: &str, stage: &str) -> Self {
        Self {
            name: name.into(),
            stage: stage.into(),
            environment: None,
            manual: false,
        }
    }

    pub fn deploy(name: &str, environment: &str, tier: &str, manual: bool) -> Self {
        Self {
            name: name.into(),
            stage: "deploy".into(),
            environment: Some((environment.into(), tier.into())),
            manual,
        }
    }
}

/// What `run_pipeline` returns; `job_ids` follow the order of the specs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineRef {
    pub id: i64,
    pub iid: i64,
    pub job_ids: Vec<i64>,
}

#[derive(Debug, Clone)]
pub(super) struct Pipeline {
    pub(super) id: i64,
    pub(super) iid: i64,
    pub(super) project_id: i64,
    pub(super) git_ref: String,
    pub(super) sha: String,
    before_sha: String,
    source: &'static str,
    pub(super) status: String,
    user_id: i64,
    merge_request_iid: Option<i64>,
    stages: Vec<String>,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
    started_at: Option<OffsetDateTime>,
    finished_at: Option<OffsetDateTime>,
}

#[derive(Debug, Clone)]
pub(super) struct Job {
    pub(super) id: i64,
    pub(super) project_id: i64,
    pub(super) pipeline_id: i64,
    pub(super) name: String,
    pub(super) stage: String,
    pub(super) status: String,
    /// `when: manual`, also set when GitLab turns a job into a manual one because its environment needs
    /// approval.
    manual: bool,
    allow_failure: bool,
    pub(super) environment: Option<(String, String)>,
    pub(super) user_id: i64,
    pub(super) deployment_id: Option<i64>,
    created_at: OffsetDateTime,
    started_at: Option<OffsetDateTime>,
    finished_at: Option<OffsetDateTime>,
    failure_reason: Option<String>,
}

const JOB_STATUSES: &[&str] = &[
    "created",
    "waiting_for_resource",
    "preparing",
    "pending",
    "running",
    "success",
    "failed",
    "canceled",
    "skipped",
    "manual",
    "scheduled",
];

fn finished(status: &str) -> bool {
    matches!(status, "success" | "failed" | "canceled" | "skipped")
}

/// `Gitlab::Ci::Status::Composite#status`: allowed-to-fail jobs that failed, were canceled or wait for a
/// manual action count as `ignored`.
fn composite_status(jobs: &[&Job]) -> String {
    use std::collections::BTreeSet;
    let set: BTreeSet<&str> = jobs
        .iter()
        .map(|j| {
            if j.allow_failure && matches!(j.status.as_str(), "failed" | "canceled" | "manual") {
                "ignored"
            } else {
                j.status.as_str()
            }
        })
        .collect();
    let only = |allowed: &[&str]| set.iter().all(|s| allowed.contains(s));
    let any = |wanted: &[&str]| set.iter().any(|s| wanted.contains(s));
    let status = if set.is_empty() || only(&["skipped", "ignored"]) {
        "skipped"
    } else if only(&["success", "skipped", "ignored"]) {
        "success"
    } else if only(&["created", "ignored"]) {
        "created"
    } else if only(&["preparing", "ignored"]) {
        "preparing"
    } else if only(&["canceled", "success", "skipped", "ignored"]) {
        "canceled"
    } else if only(&["pending", "created", "skipped", "ignored"]) {
        "pending"
    } else if any(&["running", "pending"]) {
        "running"
    } else if any(&["waiting_for_resource"]) {
        "waiting_for_resource"
    } else if any(&["manual"]) {
        "manual"
    } else if any(&["scheduled"]) {
        "scheduled"
    } else if any(&["preparing"]) {
        "preparing"
    } else if any(&["created"]) {
        "running"
    } else {
        "failed"
    };
    status.to_owned()
}

fn iso_time(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
        ))
        .expect("formattable")
}

fn secs(from: Option<OffsetDateTime>, to: Option<OffsetDateTime>) -> Value {
    match (from, to) {
        (Some(a), Some(b)) => json!((b - a).as_seconds_f64()),
        _ => Value::Null,
    }
}

/// What GitLab shows as a pipeline's `detailed_status` label.
fn pipeline_label(status: &str) -> &str {
    match status {
        "success" => "passed",
        "manual" => "waiting for manual action",
        "waiting_for_resource" => "waiting for resource",
        s => s,
    }
}

fn job_web_url(base: &str, p: &Project, job_id: i64) -> String {
    format!("{base}/{}/-/jobs/{job_id}", p.path_with_namespace)
}

fn pipeline_web_url(base: &str, p: &Project, pipeline_id: i64) -> String {
    format!("{base}/{}/-/pipelines/{pipeline_id}", p.path_with_namespace)
}

/// `PipelineBasic`.
pub(super) fn pipeline_basic(base: &str, p: &Project, pl: &Pipeline) -> Value {
    json!({
        "id": pl.id,
        "iid": pl.iid,
        "project_id": pl.project_id,
        "sha": pl.sha,
        "ref": pl.git_ref,
        "status": pl.status,
        "source": pl.source,
        "created_at": rest_time(pl.created_at),
        "updated_at": rest_time(pl.updated_at),
        "web_url": pipeline_web_url(base, p, pl.id),
        "name": null,
    })
}

fn pipeline_detail(base: &str, i: &Inner, p: &Project, pl: &Pipeline) -> Value {
    let mut e = pipeline_basic(base, p, pl);
    let label = pipeline_label(&pl.status);
    e["before_sha"] = json!(pl.before_sha);
    e["tag"] = json!(false);
    e["yaml_errors"] = Value::Null;
    e["user"] = user_basic(base, &find_user(i, pl.user_id));
    e["started_at"] = opt_rest_time(pl.started_at);
    e["finished_at"] = opt_rest_time(pl.finished_at);
    e["committed_at"] = Value::Null;
    e["duration"] = secs(pl.started_at, pl.finished_at);
    e["queued_duration"] = Value::Null;
    e["coverage"] = Value::Null;
    e["archived"] = json!(false);
    e["detailed_status"] = json!({
        "icon": format!("status_{}", pl.status),
        "text": label,
        "label": label,
        "group": pl.status,
        "tooltip": label,
        "has_details": true,
        "details_path": format!("/{}/-/pipelines/{}", p.path_with_namespace, pl.id),
        "illustration": null,
        "favicon": format!("/assets/ci_favicons/favicon_status_{}.png", pl.status),
    });
    e
}

/// `Ci::Job` as the jobs API returns it.
pub(super) fn job_entity(base: &str, i: &Inner, p: &Project, j: &Job) -> Value {
    let pl = pipeline(i, j.pipeline_id);
    let commit = i
        .commits
        .get(&(p.id, pl.sha.clone()))
        .map(|c| commit_entity(base, i, p, c));
    let mut e = json!({
        "id": j.id,
        "status": j.status,
        "stage": j.stage,
        "name": j.name,
        "ref": pl.git_ref,
        "tag": false,
        "coverage": null,
        "allow_failure": j.allow_failure,
        "created_at": rest_time(j.created_at),
        "started_at": opt_rest_time(j.started_at),
        "finished_at": opt_rest_time(j.finished_at),
        "erased_at": null,
        "duration": secs(j.started_at, j.finished_at),
        "queued_duration": null,
        "user": user_basic(base, &find_user(i, j.user_id)),
        "commit": commit,
        "pipeline": pipeline_basic(base, p, pl),
        "web_url": job_web_url(base, p, j.id),
        "project": { "ci_job_token_scope_enabled": false },
        "artifacts": [],
        "artifacts_expire_at": null,
        "runner": null,
        "runner_manager": null,
        "archived": false,
        "tag_list": [],
    });
    if j.status == "failed" {
        e["failure_reason"] = json!(j.failure_reason);
    }
    e
}

fn env_hook(j: &Job) -> Value {
    j.environment.as_ref().map_or(
        Value::Null,
        |(name, tier)| json!({ "name": name, "action": "start", "deployment_tier": tier }),
    )
}

pub(super) fn pipeline(i: &Inner, id: i64) -> &Pipeline {
    i.pipelines
        .iter()
        .find(|p| p.id == id)
        .expect("pipeline exists")
}

fn job_hook(base: &str, i: &Inner, j: &Job) -> Value {
    let p = project_of(i, j.project_id);
    let pl = pipeline(i, j.pipeline_id);
    let c = i.commits.get(&(p.id, pl.sha.clone()));
    let iso = |t: Option<OffsetDateTime>| t.map_or(Value::Null, |t| json!(iso_time(t)));
    json!({
        "object_kind": "build",
        "ref": pl.git_ref,
        "tag": false,
        "before_sha": pl.before_sha,
        "sha": pl.sha,
        "retries_count": 0,
        "build_id": j.id,
        "build_name": j.name,
        "build_stage": j.stage,
        "build_status": j.status,
        "build_created_at": rest_time(j.created_at),
        "build_created_at_iso": iso_time(j.created_at),
        "build_started_at": opt_rest_time(j.started_at),
        "build_started_at_iso": iso(j.started_at),
        "build_finished_at": opt_rest_time(j.finished_at),
        "build_finished_at_iso": iso(j.finished_at),
        "build_duration": secs(j.started_at, j.finished_at),
        "build_queued_duration": null,
        "build_allow_failure": j.allow_failure,
        "build_failure_reason": j.failure_reason.as_deref().unwrap_or("unknown_failure"),
        "pipeline_id": pl.id,
        "runner": null,
        "project_id": p.id,
        "project_name": p.path_with_namespace,
        "user": user_hook(base, &find_user(i, j.user_id)),
        "commit": {
            // GitLab's quirk: this `id` is the pipeline id.
            "id": pl.id,
            "name": null,
            "sha": pl.sha,
            "message": c.map(|c| c.message.clone()),
            "author_name": c.map(|c| c.author_name.clone()),
            "author_email": c.map(|c| c.author_email.clone()),
            "author_url": c.map(|c| format!("mailto:{}", c.author_email)),
            "status": pl.status,
            "duration": secs(pl.started_at, pl.finished_at),
            "started_at": opt_rest_time(pl.started_at),
            "started_at_iso": iso(pl.started_at),
            "finished_at": opt_rest_time(pl.finished_at),
            "finished_at_iso": iso(pl.finished_at),
        },
        "repository": repository_hook(base, &p),
        "project": project_json(base, &p),
        "environment": env_hook(j),
        "source_pipeline": null,
    })
}

fn pipeline_hook(base: &str, i: &Inner, pl: &Pipeline) -> Value {
    let p = project_of(i, pl.project_id);
    let jobs: Vec<&Job> = i.jobs.iter().filter(|j| j.pipeline_id == pl.id).collect();
    let mr = pl.merge_request_iid.and_then(|iid| {
        i.merge_requests
            .iter()
            .find(|m| m.project_id == p.id && m.iid == iid)
    });
    let mut out = json!({
        "object_kind": "pipeline",
        "object_attributes": {
            "id": pl.id,
            "iid": pl.iid,
            "name": null,
            "ref": pl.git_ref,
            "tag": false,
            "sha": pl.sha,
            "before_sha": pl.before_sha,
            "source": pl.source,
            "status": pl.status,
            "detailed_status": pipeline_label(&pl.status),
            "stages": pl.stages,
            "created_at": hook_time(pl.created_at),
            "finished_at": opt_hook_time(pl.finished_at),
            "duration": secs(pl.started_at, pl.finished_at).as_f64().map(|d| d as i64),
            "queued_duration": null,
            "variables": [],
            "url": pipeline_web_url(base, &p, pl.id),
        },
        "merge_request": null,
        "user": user_hook(base, &find_user(i, pl.user_id)),
        "project": project_json(base, &p),
        "commit": i.commits.get(&(p.id, pl.sha.clone())).map(|c| commit_hook(base, &p, c)),
        "source_pipeline": null,
        "builds": jobs.iter().map(|j| json!({
            "id": j.id,
            "stage": j.stage,
            "name": j.name,
            "status": j.status,
            "created_at": hook_time(j.created_at),
            "started_at": opt_hook_time(j.started_at),
            "finished_at": opt_hook_time(j.finished_at),
            "duration": secs(j.started_at, j.finished_at),
            "queued_duration": null,
            "failure_reason": j.failure_reason,
            "when": if j.manual { "manual" } else { "on_success" },
            "manual": j.manual,
            "allow_failure": j.allow_failure,
            "user": user_hook(base, &find_user(i, j.user_id)),
            "runner": null,
            "artifacts_file": { "filename": null, "size": null },
            "environment": env_hook(j),
        })).collect::<Vec<_>>(),
    });
    if let Some(mr) = mr {
        out["merge_request"] = json!({
            "id": mr.id,
            "iid": mr.iid,
            "title": mr.title,
            "source_branch": mr.source_branch,
            "source_project_id": p.id,
            "target_branch": mr.target_branch,
            "target_project_id": p.id,
            "state": mr.state,
            "merge_status": "can_be_merged",
            "detailed_merge_status": mr.detailed_merge_status(),
            "url": mr.url(base, &p),
        });
    }
    out
}

/// Hooks to deliver, in order.
pub(super) type Outbox = Vec<(&'static str, Value)>;

/// Moves a job to `status` and lets everything that follows it react, as GitLab's state machines do: the
/// job's deployment (Deployment Hook only for running/success/failed/canceled) and the pipeline's derived
/// status (Pipeline Hook only when it changes).
pub(super) fn job_transition(
    i: &mut Inner,
    base: &str,
    now: OffsetDateTime,
    job_id: i64,
    status: &str,
    failure_reason: Option<&str>,
    user: Option<i64>,
) -> Outbox {
    let n = i
        .jobs
        .iter()
        .position(|j| j.id == job_id)
        .expect("job exists");
    if i.jobs[n].status == status {
        return vec![];
    }
    {
        let j = &mut i.jobs[n];
        j.status = status.to_owned();
        if status == "running" && j.started_at.is_none() {
            j.started_at = Some(now);
        }
        if finished(status) {
            j.finished_at = Some(now);
        }
        j.failure_reason =
            (status == "failed").then(|| failure_reason.unwrap_or("script_failure").to_owned());
        if let Some(u) = user {
            j.user_id = u;
        }
    }
    let job = i.jobs[n].clone();
    let mut out: Outbox = vec![("Job Hook", job_hook(base, i, &job))];
    if let Some(d) = job.deployment_id {
        let follows = match status {
            "running" | "success" | "failed" | "canceled" | "skipped" => Some(status),
            _ => None,
        };
        if let Some(hook) =
            follows.and_then(|st| super::deployments::transition(i, base, now, d, st))
        {
            out.push(("Deployment Hook", hook));
        }
    }
    out.extend(refresh_pipeline(i, base, now, job.pipeline_id));
    out
}

fn refresh_pipeline(i: &mut Inner, base: &str, now: OffsetDateTime, pipeline_id: i64) -> Outbox {
    let status = {
        let jobs: Vec<&Job> = i
            .jobs
            .iter()
            .filter(|j| j.pipeline_id == pipeline_id)
            .collect();
        composite_status(&jobs)
    };
    let any_started = i
        .jobs
        .iter()
        .filter(|j| j.pipeline_id == pipeline_id)
        .any(|j| j.started_at.is_some());
    let pl = i
        .pipelines
        .iter_mut()
        .find(|p| p.id == pipeline_id)
        .expect("pipeline exists");
    if any_started && pl.started_at.is_none() {
        pl.started_at = Some(now);
    }
    if pl.status == status {
        return vec![];
    }
    pl.status = status.clone();
    pl.updated_at = now;
    pl.finished_at = finished(&status).then_some(now);
    let pl = pl.clone();
    vec![("Pipeline Hook", pipeline_hook(base, i, &pl))]
}

impl GitLabSim {
    async fn send_all(&self, project_id: i64, out: Outbox) {
        for (event, payload) in out {
            self.deliver(project_id, event, payload).await;
        }
    }

    /// Starts a pipeline on the head of `git_ref` (a branch). When the branch has an open merge request the
    /// pipeline is a merge request pipeline (`source: merge_request_event`, with `merge_request` in its
    /// hooks) run as the MR's author; otherwise it runs as the project's highest-level member.
    pub async fn run_pipeline(
        &self,
        project_id: i64,
        git_ref: &str,
        jobs: &[JobSpec],
    ) -> PipelineRef {
        let mr_author = {
            let mut i = self.shared.inner.lock().unwrap();
            sync_heads(&mut i, project_id);
            i.merge_requests
                .iter()
                .find(|m| {
                    m.project_id == project_id && m.state == "opened" && m.source_branch == git_ref
                })
                .map(|m| m.author_id)
        };
        let user = match mr_author {
            Some(u) => u,
            None => self.top_member(project_id),
        };
        self.run_pipeline_as(project_id, git_ref, jobs, user).await
    }

    /// The project's highest-level member (lowest id among equals): who acts when a control method names
    /// nobody.
    pub(super) fn top_member(&self, project_id: i64) -> i64 {
        let (group, users): (i64, Vec<i64>) = {
            let i = self.shared.inner.lock().unwrap();
            (
                project_of(&i, project_id).group_id,
                i.users.iter().map(|u| u.id).collect(),
            )
        };
        let mut best: Option<(i64, i64)> = None;
        for u in users {
            let level = self.shared.access_level(group, u);
            if level > 0 && best.is_none_or(|(l, _)| level > l) {
                best = Some((level, u));
            }
        }
        best.map(|(_, u)| u).expect("the project has a member")
    }

    /// `run_pipeline`, triggered by `user_id` (who then may not approve its deployments).
    pub async fn run_pipeline_as(
        &self,
        project_id: i64,
        git_ref: &str,
        jobs: &[JobSpec],
        user_id: i64,
    ) -> PipelineRef {
        let now = clock(&self.shared);
        let base = self.base_url.clone();
        let (r, out) = {
            let mut i = self.shared.inner.lock().unwrap();
            sync_heads(&mut i, project_id);
            let p = project_of(&i, project_id);
            let sha = p.branches.get(git_ref).cloned().expect("branch exists");
            let before_sha = i
                .pipelines
                .iter()
                .rev()
                .find(|x| x.project_id == project_id && x.git_ref == git_ref)
                .map_or_else(|| NULL_SHA.to_owned(), |x| x.sha.clone());
            let id = Self::next_id(&mut i);
            let iid = i
                .pipelines
                .iter()
                .filter(|x| x.project_id == project_id)
                .count() as i64
                + 1;
            let mr_iid = i
                .merge_requests
                .iter_mut()
                .find(|m| {
                    m.project_id == project_id && m.state == "opened" && m.source_branch == git_ref
                })
                .map(|m| {
                    m.head_pipeline_id = Some(id);
                    m.iid
                });
            let mut stages: Vec<String> = Vec::new();
            for spec in jobs {
                if !stages.contains(&spec.stage) {
                    stages.push(spec.stage.clone());
                }
            }
            i.pipelines.push(Pipeline {
                id,
                iid,
                project_id,
                git_ref: git_ref.into(),
                sha: sha.clone(),
                before_sha,
                source: if mr_iid.is_some() {
                    "merge_request_event"
                } else {
                    "push"
                },
                status: "created".into(),
                user_id,
                merge_request_iid: mr_iid,
                stages,
                created_at: now,
                updated_at: now,
                started_at: None,
                finished_at: None,
            });
            let mut job_ids = Vec::new();
            for spec in jobs {
                let job_id = Self::next_id(&mut i);
                let mut needs_approval = false;
                let deployment_id = spec.environment.as_ref().map(|(name, tier)| {
                    let env =
                        super::deployments::ensure_environment(&mut i, now, project_id, name, tier);
                    needs_approval = super::deployments::needs_approval(&i, env);
                    super::deployments::create(
                        &mut i,
                        now,
                        super::deployments::NewDeployment {
                            project_id,
                            environment_id: env,
                            deployable_id: Some(job_id),
                            git_ref,
                            tag: false,
                            sha: &sha,
                            user_id,
                            blocked: needs_approval,
                        },
                    )
                });
                // EE's ProcessBuildService turns a job deploying to an environment that needs approval into
                // a manual one, so it waits instead of running.
                let manual = spec.manual || needs_approval;
                i.jobs.push(Job {
                    id: job_id,
                    project_id,
                    pipeline_id: id,
                    name: spec.name.clone(),
                    stage: spec.stage.clone(),
                    status: if manual { "manual" } else { "pending" }.into(),
                    manual,
                    allow_failure: spec.manual,
                    environment: spec.environment.clone(),
                    user_id,
                    deployment_id,
                    created_at: now,
                    started_at: None,
                    finished_at: None,
                    failure_reason: None,
                });
                job_ids.push(job_id);
            }
            let mut out: Outbox = i
                .jobs
                .iter()
                .filter(|j| j.pipeline_id == id)
                .map(|j| ("Job Hook", job_hook(&base, &i, j)))
                .collect();
            out.extend(refresh_pipeline(&mut i, &base, now, id));
            (PipelineRef { id, iid, job_ids }, out)
        };
        self.send_all(project_id, out).await;
        r
    }

    /// Moves a job to `status` (as a runner would) and delivers the Job Hook, then the Deployment Hook when
    /// its deployment starts or finishes, then the Pipeline Hook when the pipeline's derived status changes.
    /// Panics for a job still waiting for deployment approval: GitLab refuses to enqueue it.
    pub async fn set_job_status(&self, project_id: i64, job_id: i64, status: &str) {
        assert!(
            JOB_STATUSES.contains(&status),
            "unknown job status {status}"
        );
        let now = clock(&self.shared);
        let out = {
            let mut i = self.shared.inner.lock().unwrap();
            let j = i
                .jobs
                .iter()
                .find(|j| j.id == job_id && j.project_id == project_id)
                .expect("job exists")
                .clone();
            let waiting = j.status == "manual"
                && j.deployment_id
                    .is_some_and(|d| super::deployments::is_blocked(&i, d));
            assert!(
                !(waiting && matches!(status, "pending" | "running" | "success")),
                "job {job_id} is waiting for deployment approval"
            );
            job_transition(&mut i, &self.base_url, now, job_id, status, None, None)
        };
        self.send_all(project_id, out).await;
    }

    /// Every job of the project: (id, pipeline id, name, status).
    pub fn jobs_of(&self, project_id: i64) -> Vec<(i64, i64, String, String)> {
        let i = self.shared.inner.lock().unwrap();
        i.jobs
            .iter()
            .filter(|j| j.project_id == project_id)
            .map(|j| (j.id, j.pipeline_id, j.name.clone(), j.status.clone()))
            .collect()
    }
}

// ---- REST --------------------------------------------------------------------------------------------------

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/api/v4/projects/{id}/pipelines", get(list_pipelines))
        .route(
            "/api/v4/projects/{id}/pipelines/{pipeline_id}",
            get(show_pipeline),
        )
        .route(
            "/api/v4/projects/{id}/pipelines/{pipeline_id}/jobs",
            get(pipeline_jobs),
        )
        .route("/api/v4/projects/{id}/jobs/{job_id}", get(show_job))
        .route("/api/v4/projects/{id}/jobs/{job_id}/play", post(play_job))
}

#[derive(serde::Deserialize)]
struct PipelineQuery {
    scope: Option<String>,
    status: Option<String>,
    source: Option<String>,
    #[serde(rename = "ref")]
    git_ref: Option<String>,
    sha: Option<String>,
    updated_after: Option<String>,
    updated_before: Option<String>,
    created_after: Option<String>,
    created_before: Option<String>,
    order_by: Option<String>,
    sort: Option<String>,
    page: Option<usize>,
    per_page: Option<usize>,
}

async fn list_pipelines(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<PipelineQuery>,
) -> Result<Response, Response> {
    let (_, p, _) = authorize(&s, &headers, &id, 20, StatusCode::FORBIDDEN)?;
    check_values(
        "scope",
        &q.scope,
        &["running", "pending", "finished", "branches", "tags"],
    )?;
    check_values("status", &q.status, JOB_STATUSES)?;
    check_values(
        "order_by",
        &q.order_by,
        &["id", "status", "ref", "updated_at", "user_id"],
    )?;
    check_values("sort", &q.sort, &["asc", "desc"])?;
    let updated_after = parse_time("updated_after", &q.updated_after)?;
    let updated_before = parse_time("updated_before", &q.updated_before)?;
    let created_after = parse_time("created_after", &q.created_after)?;
    let created_before = parse_time("created_before", &q.created_before)?;
    let base = s.base_url.lock().unwrap().clone();
    let all: Vec<Value> = {
        let i = s.inner.lock().unwrap();
        let mut pls: Vec<&Pipeline> = i
            .pipelines
            .iter()
            .filter(|x| x.project_id == p.id)
            .filter(|x| match q.scope.as_deref() {
                Some("running") => x.status == "running",
                Some("pending") => x.status == "pending",
                Some("finished") => finished(&x.status),
                // The simulator runs branch pipelines only.
                Some("tags") => false,
                _ => true,
            })
            .filter(|x| q.status.as_ref().is_none_or(|st| &x.status == st))
            .filter(|x| q.source.as_ref().is_none_or(|so| x.source == so))
            .filter(|x| q.git_ref.as_ref().is_none_or(|r| &x.git_ref == r))
            .filter(|x| q.sha.as_ref().is_none_or(|sha| &x.sha == sha))
            .filter(|x| updated_after.is_none_or(|t| x.updated_at > t))
            .filter(|x| updated_before.is_none_or(|t| x.updated_at < t))
            .filter(|x| created_after.is_none_or(|t| x.created_at > t))
            .filter(|x| created_before.is_none_or(|t| x.created_at < t))
            .collect();
        pls.sort_by(|a, b| {
            let key = match q.order_by.as_deref().unwrap_or("id") {
                "status" => a.status.cmp(&b.status),
                "ref" => a.git_ref.cmp(&b.git_ref),
                "updated_at" => a.updated_at.cmp(&b.updated_at),
                "user_id" => a.user_id.cmp(&b.user_id),
                _ => std::cmp::Ordering::Equal,
            };
            key.then(a.id.cmp(&b.id))
        });
        if q.sort.as_deref() != Some("asc") {
            pls.reverse();
        }
        pls.into_iter()
            .map(|x| pipeline_basic(&base, &p, x))
            .collect()
    };
    let link = list_url(
        &s,
        &format!("/projects/{}/pipelines", p.id),
        &[
            ("scope", &q.scope),
            ("status", &q.status),
            ("source", &q.source),
            ("ref", &q.git_ref),
            ("sha", &q.sha),
            ("updated_after", &q.updated_after),
            ("updated_before", &q.updated_before),
            ("created_after", &q.created_after),
            ("created_before", &q.created_before),
            ("order_by", &q.order_by),
            ("sort", &q.sort),
        ],
    );
    Ok(paging::offset_page(all, q.page, q.per_page, &link))
}

async fn show_pipeline(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path((id, pipeline_id)): Path<(String, i64)>,
) -> Result<Response, Response> {
    let (_, p, _) = authorize(&s, &headers, &id, 20, StatusCode::FORBIDDEN)?;
    let base = s.base_url.lock().unwrap().clone();
    let i = s.inner.lock().unwrap();
    let pl = i
        .pipelines
        .iter()
        .find(|x| x.id == pipeline_id && x.project_id == p.id)
        .ok_or_else(|| err(StatusCode::NOT_FOUND, "404 Not found"))?;
    Ok(axum::Json(pipeline_detail(&base, &i, &p, pl)).into_response())
}

async fn pipeline_jobs(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path((id, pipeline_id)): Path<(String, i64)>,
    RawQuery(raw): RawQuery,
) -> Result<Response, Response> {
    let (_, p, _) = authorize(&s, &headers, &id, 20, StatusCode::FORBIDDEN)?;
    // `scope` is an array parameter (`scope[]=manual&scope[]=failed`), which serde's query parsing can't
    // collect, so read the pairs directly.
    let pairs: Vec<(String, String)> =
        url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let scopes: Vec<&str> = pairs
        .iter()
        .filter(|(k, _)| k == "scope" || k == "scope[]")
        .map(|(_, v)| v.as_str())
        .collect();
    if scopes.iter().any(|sc| !JOB_STATUSES.contains(sc)) {
        return Err(super::merge_requests::grape_error(
            "scope does not have a valid value",
        ));
    }
    let num = |key: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.parse().ok())
    };
    let base = s.base_url.lock().unwrap().clone();
    let all: Vec<Value> = {
        let i = s.inner.lock().unwrap();
        if !i
            .pipelines
            .iter()
            .any(|x| x.id == pipeline_id && x.project_id == p.id)
        {
            return Err(err(StatusCode::NOT_FOUND, "404 Not found"));
        }
        i.jobs
            .iter()
            .filter(|j| j.pipeline_id == pipeline_id)
            .filter(|j| scopes.is_empty() || scopes.contains(&j.status.as_str()))
            .map(|j| job_entity(&base, &i, &p, j))
            .collect()
    };
    let link = list_url(
        &s,
        &format!("/projects/{}/pipelines/{pipeline_id}/jobs", p.id),
        &[],
    );
    Ok(paging::offset_page(
        all,
        num("page"),
        num("per_page"),
        &link,
    ))
}

async fn show_job(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path((id, job_id)): Path<(String, i64)>,
) -> Result<Response, Response> {
    let (_, p, _) = authorize(&s, &headers, &id, 20, StatusCode::FORBIDDEN)?;
    let base = s.base_url.lock().unwrap().clone();
    let i = s.inner.lock().unwrap();
    let j = i
        .jobs
        .iter()
        .find(|j| j.id == job_id && j.project_id == p.id)
        .ok_or_else(|| err(StatusCode::NOT_FOUND, "404 Not found"))?;
    Ok(axum::Json(job_entity(&base, &i, &p, j)).into_response())
}

/// `POST /projects/:id/jobs/:job_id/play`, in GitLab's order: read access, the job, `play_job` (Developer,
/// plus deploy access on a protected environment: 403), then `playable?` (a manual job whose deployment
/// is not blocked: otherwise 400 `Unplayable Job`).
async fn play_job(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path((id, job_id)): Path<(String, i64)>,
) -> Result<Response, Response> {
    let (u, p, level) = authorize(&s, &headers, &id, 20, StatusCode::FORBIDDEN)?;
    let base = s.base_url.lock().unwrap().clone();
    let now = clock(&s);
    let (out, entity) = {
        let mut i = s.inner.lock().unwrap();
        let j = i
            .jobs
            .iter()
            .find(|j| j.id == job_id && j.project_id == p.id)
            .cloned()
            .ok_or_else(|| err(StatusCode::NOT_FOUND, "404 Not found"))?;
        let may_deploy = j
            .environment
            .as_ref()
            .is_none_or(|(name, _)| super::deployments::can_deploy(&i, p.id, name, u.id, level));
        if level < 30 || !may_deploy {
            return Err(err(StatusCode::FORBIDDEN, "403 Forbidden"));
        }
        let blocked = j
            .deployment_id
            .is_some_and(|d| super::deployments::is_blocked(&i, d));
        if j.status != "manual" || blocked {
            return Err(err(
                StatusCode::BAD_REQUEST,
                "400 Bad request - Unplayable Job",
            ));
        }
        let out = job_transition(&mut i, &base, now, job_id, "pending", None, Some(u.id));
        i.decisions.push(("play".into(), job_id, u.id));
        let j = i.jobs.iter().find(|j| j.id == job_id).expect("job exists");
        (out, job_entity(&base, &i, &p, j))
    };
    deliver_all(&s, p.id, out).await;
    Ok(axum::Json(entity).into_response())
}
