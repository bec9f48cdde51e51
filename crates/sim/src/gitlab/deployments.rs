//! Environments, deployments and deployment approvals (Premium).
//!
//! Deployments come from jobs with an environment (created with the job, `blocked` when the environment
//! needs approval, then following the job) or from `POST /projects/:id/deployments` (external tools; no
//! deployable). GitLab delivers the Deployment Hook only on `running`, `success`, `failed` and `canceled`:
//! `created` and `blocked` are silent, so a waiting deployment is only visible through the Job/Pipeline Hook
//! (`manual` + environment) or `GET .../deployments?status=blocked`.
//!
//! A protected environment here is GitLab's "multiple approval rules" shape reduced to what the service
//! needs: named approver users and a required count. Deploy access (needed to play the job or create a
//! deployment through the API) goes to Maintainers and the named approvers.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::macros::format_description;

use super::ci::{Outbox, job_entity, job_transition};
use super::merge_requests::{
    authorize, body_params, check_values, clock, deliver_all, find_user, grape_error, list_url,
    opt_rest_time, param_bool, param_str, parse_time, project_of, rest_time, user_basic, user_hook,
};
use super::{GitLabSim, Inner, Project, Shared, err, paging, project_json, sha_for};

#[derive(Debug, Clone)]
pub(super) struct Environment {
    pub(super) id: i64,
    pub(super) project_id: i64,
    pub(super) name: String,
    slug: String,
    pub(super) tier: String,
    external_url: Option<String>,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
    protection: Option<Protection>,
}

#[derive(Debug, Clone)]
struct Protection {
    approvers: Vec<i64>,
    required_approvals: u32,
    /// Deploy access for Maintainers only, not the approvers too.
    maintainers_deploy_only: bool,
}

#[derive(Debug, Clone)]
pub(super) struct Deployment {
    pub(super) id: i64,
    pub(super) iid: i64,
    pub(super) project_id: i64,
    environment_id: i64,
    git_ref: String,
    tag: bool,
    sha: String,
    pub(super) status: String,
    /// Who triggered it (the pipeline's user, or the API caller): GitLab does not let them approve it.
    user_id: i64,
    deployable_id: Option<i64>,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
    finished_at: Option<OffsetDateTime>,
    approvals: Vec<Approval>,
}

#[derive(Debug, Clone)]
struct Approval {
    user_id: i64,
    status: String,
    comment: Option<String>,
    created_at: OffsetDateTime,
}

/// `Gitlab::Slug::Environment`: lowercase, `[a-z0-9-]`, at most 24 characters, with a suffix when the name
/// had to be changed so different names keep different slugs.
fn slug(name: &str) -> String {
    let mut s: String = name
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    s = s.trim_matches('-').to_owned();
    if s.is_empty() || !s.starts_with(|c: char| c.is_ascii_lowercase()) {
        s = format!("env-{s}");
    }
    if s != name || s.len() > 24 {
        s.truncate(17);
        let s = s.trim_end_matches('-');
        return format!("{s}-{}", &sha_for(name)[..6]);
    }
    s
}

/// `Environment#guess_tier`: the first of development, testing, staging, production whose pattern
/// matches the name, else `other`.
fn guess_tier(name: &str) -> &'static str {
    let n = name.to_ascii_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| n.contains(w));
    if has(&["dev", "review", "trunk"]) {
        "development"
    } else if has(&[
        "test", "tst", "int", "accept", "acpt", "qa", "qc", "control", "quality",
    ]) {
        "testing"
    } else if has(&["stag", "stg", "model", "modl", "pre", "demo", "non"]) {
        "staging"
    } else if has(&["prod", "prd", "live"]) {
        "production"
    } else {
        "other"
    }
}

fn env_index(i: &Inner, project_id: i64, name: &str) -> Option<usize> {
    i.environments
        .iter()
        .position(|e| e.project_id == project_id && e.name == name)
}

/// The environment called `name`, created on first use as GitLab does for jobs and the deployments API.
pub(super) fn ensure_environment(
    i: &mut Inner,
    now: OffsetDateTime,
    project_id: i64,
    name: &str,
    tier: &str,
) -> i64 {
    if let Some(n) = env_index(i, project_id, name) {
        return i.environments[n].id;
    }
    let id = GitLabSim::next_id(i);
    i.environments.push(Environment {
        id,
        project_id,
        name: name.into(),
        slug: slug(name),
        tier: tier.into(),
        external_url: None,
        created_at: now,
        updated_at: now,
        protection: None,
    });
    id
}

fn env(i: &Inner, env_id: i64) -> &Environment {
    i.environments
        .iter()
        .find(|e| e.id == env_id)
        .expect("environment exists")
}

fn deployment(i: &Inner, id: i64) -> &Deployment {
    i.deployments
        .iter()
        .find(|d| d.id == id)
        .expect("deployment exists")
}

pub(super) fn needs_approval(i: &Inner, env_id: i64) -> bool {
    env(i, env_id)
        .protection
        .as_ref()
        .is_some_and(|p| p.required_approvals > 0)
}

pub(super) fn is_blocked(i: &Inner, deployment_id: i64) -> bool {
    deployment(i, deployment_id).status == "blocked"
}

/// Deploy access to the environment (unprotected: anyone who can otherwise run the job).
pub(super) fn can_deploy(i: &Inner, project_id: i64, name: &str, user_id: i64, level: i64) -> bool {
    let Some(n) = env_index(i, project_id, name) else {
        return true;
    };
    match &i.environments[n].protection {
        None => true,
        Some(p) => level >= 40 || (!p.maintainers_deploy_only && p.approvers.contains(&user_id)),
    }
}

fn pending_approval_count(i: &Inner, d: &Deployment) -> u32 {
    let required = env(i, d.environment_id)
        .protection
        .as_ref()
        .map_or(0, |p| p.required_approvals);
    let approved = d
        .approvals
        .iter()
        .filter(|a| a.status == "approved")
        .count() as u32;
    if d.status == "blocked" || d.status == "created" {
        required.saturating_sub(approved)
    } else {
        0
    }
}

pub(super) struct NewDeployment<'a> {
    pub(super) project_id: i64,
    pub(super) environment_id: i64,
    pub(super) deployable_id: Option<i64>,
    pub(super) git_ref: &'a str,
    pub(super) tag: bool,
    pub(super) sha: &'a str,
    pub(super) user_id: i64,
    pub(super) blocked: bool,
}

/// Creates a deployment in `created` (or `blocked`); neither status sends a hook.
pub(super) fn create(i: &mut Inner, now: OffsetDateTime, d: NewDeployment<'_>) -> i64 {
    let id = GitLabSim::next_id(i);
    let iid = i
        .deployments
        .iter()
        .filter(|x| x.project_id == d.project_id)
        .map(|x| x.iid)
        .max()
        .unwrap_or(0)
        + 1;
    i.deployments.push(Deployment {
        id,
        iid,
        project_id: d.project_id,
        environment_id: d.environment_id,
        git_ref: d.git_ref.into(),
        tag: d.tag,
        sha: d.sha.into(),
        status: if d.blocked { "blocked" } else { "created" }.into(),
        user_id: d.user_id,
        deployable_id: d.deployable_id,
        created_at: now,
        updated_at: now,
        finished_at: None,
        approvals: vec![],
    });
    id
}

/// The state-machine event that leads to `status`, and whether `from` allows it (`Deployment` model).
fn event_for(from: &str, status: &str) -> (&'static str, bool) {
    match status {
        "running" => ("run", from == "created"),
        "success" => ("succeed", from != "success"),
        "failed" => ("drop", from != "failed"),
        "canceled" => ("cancel", from != "canceled"),
        "skipped" => ("skip", from != "skipped"),
        "blocked" => ("block", from == "created"),
        _ => ("unblock", from == "blocked"),
    }
}

/// Moves a deployment to `status` if GitLab's state machine allows it; returns the Deployment Hook to deliver
/// when the new status is one GitLab announces.
pub(super) fn transition(
    i: &mut Inner,
    base: &str,
    now: OffsetDateTime,
    deployment_id: i64,
    status: &str,
) -> Option<Value> {
    let d = i
        .deployments
        .iter_mut()
        .find(|d| d.id == deployment_id)
        .expect("deployment exists");
    if !event_for(&d.status, status).1 {
        return None;
    }
    d.status = status.to_owned();
    d.updated_at = now;
    if matches!(status, "success" | "failed" | "canceled" | "skipped") {
        d.finished_at = Some(now);
    }
    let d = d.clone();
    matches!(status, "running" | "success" | "failed" | "canceled").then(|| hook(base, i, &d, now))
}

fn hook(base: &str, i: &Inner, d: &Deployment, now: OffsetDateTime) -> Value {
    let p = project_of(i, d.project_id);
    let e = env(i, d.environment_id);
    let u = find_user(i, d.user_id);
    let web = format!("{base}/{}", p.path_with_namespace);
    let title = i
        .commits
        .get(&(p.id, d.sha.clone()))
        .map(|c| c.message.lines().next().unwrap_or("").to_owned());
    json!({
        "object_kind": "deployment",
        "status": d.status,
        "status_changed_at": now
            .to_offset(time::UtcOffset::UTC)
            .format(format_description!("[year]-[month]-[day] [hour]:[minute]:[second] +0000"))
            .expect("formattable"),
        "deployment_id": d.id,
        "deployable_id": d.deployable_id,
        "deployable_url": d.deployable_id.map(|j| format!("{web}/-/jobs/{j}")),
        "environment": e.name,
        "environment_tier": e.tier,
        "environment_slug": e.slug,
        "environment_external_url": e.external_url,
        "project": project_json(base, &p),
        "short_sha": &d.sha[..8.min(d.sha.len())],
        "user": user_hook(base, &u),
        "user_url": format!("{base}/{}", u.username),
        "commit_url": format!("{web}/-/commit/{}", d.sha),
        "commit_title": title,
        "ref": d.git_ref,
    })
}

impl GitLabSim {
    /// Adds an environment; returns its id.
    pub fn add_environment(&self, project_id: i64, name: &str, tier: &str) -> i64 {
        let now = clock(&self.shared);
        let mut i = self.shared.inner.lock().unwrap();
        ensure_environment(&mut i, now, project_id, name, tier)
    }

    /// Protects an environment (creating it if needed) with approval rules for the given users, of which
    /// `required_approvals` must approve. Jobs deploying to it afterwards wait as `manual` with a `blocked`
    /// deployment.
    pub fn protect_environment(
        &self,
        project_id: i64,
        name: &str,
        approver_user_ids: &[i64],
        required_approvals: u32,
    ) {
        let now = clock(&self.shared);
        let mut i = self.shared.inner.lock().unwrap();
        let id = ensure_environment(&mut i, now, project_id, name, guess_tier(name));
        let e = i
            .environments
            .iter_mut()
            .find(|e| e.id == id)
            .expect("environment exists");
        e.protection = Some(Protection {
            approvers: approver_user_ids.to_vec(),
            required_approvals,
            maintainers_deploy_only: false,
        });
    }

    /// Leaves deploy access to an environment protected by `protect_environment` to Maintainers: its
    /// approvers may approve but not run its jobs.
    pub fn restrict_deploys_to_maintainers(&self, project_id: i64, name: &str) {
        let mut i = self.shared.inner.lock().unwrap();
        let n = env_index(&i, project_id, name).expect("environment exists");
        if let Some(p) = i.environments[n].protection.as_mut() {
            p.maintainers_deploy_only = true;
        }
    }

    /// The approvals given on a deployment: (user id, `approved` or `rejected`, comment).
    pub fn approvals_of(&self, deployment_id: i64) -> Vec<(i64, String, Option<String>)> {
        let i = self.shared.inner.lock().unwrap();
        i.deployments
            .iter()
            .filter(|d| d.id == deployment_id)
            .flat_map(|d| d.approvals.iter())
            .map(|a| (a.user_id, a.status.clone(), a.comment.clone()))
            .collect()
    }

    /// Every deployment of the project: (id, iid, status).
    pub fn deployments_of(&self, project_id: i64) -> Vec<(i64, i64, String)> {
        let i = self.shared.inner.lock().unwrap();
        i.deployments
            .iter()
            .filter(|d| d.project_id == project_id)
            .map(|d| (d.id, d.iid, d.status.clone()))
            .collect()
    }
}

// ---- REST --------------------------------------------------------------------------------------------------

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route(
            "/api/v4/projects/{id}/deployments",
            get(list_deployments).post(create_deployment),
        )
        .route(
            "/api/v4/projects/{id}/deployments/{deployment_id}",
            get(show_deployment).put(update_deployment),
        )
        .route(
            "/api/v4/projects/{id}/deployments/{deployment_id}/approval",
            post(approve),
        )
        .route(
            "/api/v4/projects/{id}/protected_environments",
            get(protected_environments),
        )
        .route("/api/v4/projects/{id}/environments", get(list_environments))
        .route(
            "/api/v4/projects/{id}/environments/{environment_id}",
            get(show_environment),
        )
}

/// `GET /projects/:id/protected_environments` (Premium: 404 on Free, as for any unlicensed feature;
/// Maintainer). Each named approver is one user rule; deploy access goes to Maintainers and the approvers.
async fn protected_environments(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, Response> {
    let (_, p, level) = s.visible_project(&headers, &id)?;
    let i = s.inner.lock().unwrap();
    if super::project_plan(&i, &p) != super::Plan::Premium {
        return Err(err(StatusCode::NOT_FOUND, "404 Not Found"));
    }
    if level < 40 {
        return Err(err(StatusCode::FORBIDDEN, "403 Forbidden"));
    }
    let list: Vec<Value> = i
        .environments
        .iter()
        .filter(|e| e.project_id == p.id)
        .filter_map(|e| e.protection.as_ref().map(|pr| (e, pr)))
        .map(|(e, pr)| {
            let users = pr.approvers.iter().map(|u| {
                let name = find_user(&i, *u).name;
                (u, name)
            });
            json!({
                "name": e.name,
                "deploy_access_levels": std::iter::once(json!({ "id": e.id * 100, "access_level": 40, "access_level_description": "Maintainers", "user_id": null, "group_id": null, "group_inheritance_type": 0 }))
                    .chain(pr.approvers.iter().filter(|_| !pr.maintainers_deploy_only).map(|u| json!({ "id": e.id * 100 + u, "access_level": null, "access_level_description": find_user(&i, *u).name, "user_id": u, "group_id": null, "group_inheritance_type": 0 })))
                    .collect::<Vec<_>>(),
                "required_approval_count": 0,
                "approval_rules": users.map(|(u, name)| json!({ "id": e.id * 1000 + u, "user_id": u, "group_id": null, "access_level": null, "access_level_description": name, "required_approvals": pr.required_approvals, "group_inheritance_type": 0 })).collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(axum::Json(list).into_response())
}

fn approval_entity(base: &str, i: &Inner, a: &Approval) -> Value {
    json!({
        "user": user_basic(base, &find_user(i, a.user_id)),
        "status": a.status,
        "created_at": rest_time(a.created_at),
        "comment": a.comment,
    })
}

fn env_basic(e: &Environment) -> Value {
    json!({
        "id": e.id,
        "name": e.name,
        "slug": e.slug,
        "external_url": e.external_url,
        "created_at": rest_time(e.created_at),
        "updated_at": rest_time(e.updated_at),
        "tier": e.tier,
        "state": "available",
    })
}

/// `DeploymentExtended` with EE's approval fields.
fn entity(base: &str, i: &Inner, p: &Project, d: &Deployment) -> Value {
    let e = env(i, d.environment_id);
    let deployable = d
        .deployable_id
        .and_then(|j| i.jobs.iter().find(|x| x.id == j))
        .map(|j| job_entity(base, i, p, j));
    json!({
        "id": d.id,
        "iid": d.iid,
        "ref": d.git_ref,
        "sha": d.sha,
        "created_at": rest_time(d.created_at),
        "updated_at": rest_time(d.updated_at),
        "finished_at": opt_rest_time(d.finished_at),
        "status": d.status,
        "user": user_basic(base, &find_user(i, d.user_id)),
        "environment": env_basic(e),
        "deployable": deployable,
        "pending_approval_count": pending_approval_count(i, d),
        "approvals": d.approvals.iter().map(|a| approval_entity(base, i, a)).collect::<Vec<_>>(),
    })
}

#[derive(serde::Deserialize)]
struct DeploymentQuery {
    order_by: Option<String>,
    sort: Option<String>,
    updated_after: Option<String>,
    updated_before: Option<String>,
    finished_after: Option<String>,
    finished_before: Option<String>,
    environment: Option<String>,
    status: Option<String>,
    page: Option<usize>,
    per_page: Option<usize>,
}

const DEPLOYMENT_STATUSES: &[&str] = &[
    "created", "running", "success", "failed", "canceled", "skipped", "blocked",
];

fn bad_request(message: &str) -> Response {
    err(
        StatusCode::BAD_REQUEST,
        &format!("400 Bad request - {message}"),
    )
}

/// `GET /projects/:id/deployments` with `DeploymentsFinder`'s rules: `updated_*` filters sort by
/// `updated_at` whatever `order_by` says; `finished_*` filters need `order_by=finished_at` and
/// `status=success`; the two filter kinds can't be combined.
async fn list_deployments(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<DeploymentQuery>,
) -> Result<Response, Response> {
    s.user(&headers)?;
    check_values(
        "order_by",
        &q.order_by,
        &[
            "id",
            "iid",
            "created_at",
            "updated_at",
            "ref",
            "finished_at",
        ],
    )?;
    check_values("sort", &q.sort, &["asc", "desc"])?;
    check_values("status", &q.status, DEPLOYMENT_STATUSES)?;
    let updated_after = parse_time("updated_after", &q.updated_after)?;
    let updated_before = parse_time("updated_before", &q.updated_before)?;
    let finished_after = parse_time("finished_after", &q.finished_after)?;
    let finished_before = parse_time("finished_before", &q.finished_before)?;
    let (_, p, _) = authorize(&s, &headers, &id, 20, StatusCode::FORBIDDEN)?;
    let by_updated = updated_after.is_some() || updated_before.is_some();
    let by_finished = finished_after.is_some() || finished_before.is_some();
    let order_by = q.order_by.as_deref().unwrap_or("id");
    if by_updated && by_finished {
        return Err(bad_request(
            "Both `updated_at` filter and `finished_at` filter can not be specified",
        ));
    }
    if by_finished != (order_by == "finished_at") {
        return Err(bad_request(
            "`finished_at` filter and `finished_at` sorting must be paired",
        ));
    }
    if by_finished && q.status.as_deref() != Some("success") {
        return Err(bad_request(
            "`finished_at` filter must be combined with `success` status filter.",
        ));
    }
    let order_by = if by_updated { "updated_at" } else { order_by };
    let desc = q.sort.as_deref() == Some("desc");
    let base = s.base_url.lock().unwrap().clone();
    let all: Vec<Value> = {
        let i = s.inner.lock().unwrap();
        let mut ds: Vec<&Deployment> = i
            .deployments
            .iter()
            .filter(|d| d.project_id == p.id)
            .filter(|d| {
                q.environment
                    .as_ref()
                    .is_none_or(|n| &env(&i, d.environment_id).name == n)
            })
            .filter(|d| q.status.as_ref().is_none_or(|st| &d.status == st))
            .filter(|d| updated_after.is_none_or(|t| d.updated_at >= t))
            .filter(|d| updated_before.is_none_or(|t| d.updated_at <= t))
            .filter(|d| finished_after.is_none_or(|t| d.finished_at.is_some_and(|f| f >= t)))
            .filter(|d| finished_before.is_none_or(|t| d.finished_at.is_some_and(|f| f <= t)))
            .collect();
        ds.sort_by(|a, b| {
            let key = match order_by {
                "updated_at" => a.updated_at.cmp(&b.updated_at),
                "finished_at" => a.finished_at.cmp(&b.finished_at),
                "ref" => a.git_ref.cmp(&b.git_ref),
                // `created_at` and `iid` sort like `id`.
                _ => a.id.cmp(&b.id),
            };
            let key = if desc { key.reverse() } else { key };
            // GitLab breaks `updated_at` ties by id descending.
            key.then(if order_by == "updated_at" {
                b.id.cmp(&a.id)
            } else {
                a.id.cmp(&b.id)
            })
        });
        ds.into_iter().map(|d| entity(&base, &i, &p, d)).collect()
    };
    let link = list_url(
        &s,
        &format!("/projects/{}/deployments", p.id),
        &[
            ("order_by", &q.order_by),
            ("sort", &q.sort),
            ("updated_after", &q.updated_after),
            ("updated_before", &q.updated_before),
            ("finished_after", &q.finished_after),
            ("finished_before", &q.finished_before),
            ("environment", &q.environment),
            ("status", &q.status),
        ],
    );
    Ok(paging::offset_page(all, q.page, q.per_page, &link))
}

fn find_deployment(i: &Inner, project_id: i64, id: &str) -> Result<Deployment, Response> {
    i.deployments
        .iter()
        .find(|d| d.project_id == project_id && d.id.to_string() == id)
        .cloned()
        .ok_or_else(|| err(StatusCode::NOT_FOUND, "404 Not found"))
}

async fn show_deployment(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path((id, deployment_id)): Path<(String, String)>,
) -> Result<Response, Response> {
    let (_, p, _) = authorize(&s, &headers, &id, 20, StatusCode::FORBIDDEN)?;
    let base = s.base_url.lock().unwrap().clone();
    let i = s.inner.lock().unwrap();
    let d = find_deployment(&i, p.id, &deployment_id)?;
    Ok(axum::Json(entity(&base, &i, &p, &d)).into_response())
}

/// Grape's check for required parameters: every missing one, joined.
fn require(m: &serde_json::Map<String, Value>, keys: &[&str]) -> Result<(), Response> {
    let missing: Vec<String> = keys
        .iter()
        .filter(|k| !m.contains_key(**k))
        .map(|k| format!("{k} is missing"))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(grape_error(&missing.join(", ")))
    }
}

const API_STATUSES: &[&str] = &["running", "success", "failed", "canceled"];

fn invalid_transition(event: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(
            json!({ "message": { "status": [format!("cannot transition via \"{event}\"")] } }),
        ),
    )
        .into_response()
}

/// `POST /projects/:id/deployments`: external deployment tools report deployments here. Developer role,
/// deploy access on a protected environment, an existing ref; the environment is created on first use;
/// repeating the environment's last deployment returns it unchanged.
async fn create_deployment(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, Response> {
    let u = s.user(&headers)?;
    let m = body_params(&headers, &body)?;
    require(&m, &["environment", "sha", "ref", "tag", "status"])?;
    let tag = param_bool(&m, "tag").expect("required")?;
    let status = param_str(&m, "status");
    check_values("status", &status, API_STATUSES)?;
    let status = status.expect("required");
    let (env_name, sha, git_ref) = (
        param_str(&m, "environment").unwrap_or_default(),
        param_str(&m, "sha").unwrap_or_default(),
        param_str(&m, "ref").unwrap_or_default(),
    );
    let (_, p, level) = authorize(&s, &headers, &id, 30, StatusCode::FORBIDDEN)?;
    if !p.branches.contains_key(&git_ref) {
        return Err((
            StatusCode::BAD_REQUEST,
            axum::Json(json!({ "message": { "ref": ["The branch or tag does not exist"] } })),
        )
            .into_response());
    }
    let base = s.base_url.lock().unwrap().clone();
    let now = clock(&s);
    let (out, body) = {
        let mut i = s.inner.lock().unwrap();
        if !can_deploy(&i, p.id, &env_name, u.id, level) {
            return Err(err(StatusCode::FORBIDDEN, "403 Forbidden"));
        }
        let env_id = ensure_environment(&mut i, now, p.id, &env_name, guess_tier(&env_name));
        let last = i
            .deployments
            .iter()
            .rev()
            .find(|d| d.environment_id == env_id)
            .filter(|d| d.git_ref == git_ref && d.tag == tag && d.sha == sha && d.status == status)
            .map(|d| d.id);
        let (d, out) = match last {
            Some(d) => (d, vec![]),
            None => {
                let d = create(
                    &mut i,
                    now,
                    NewDeployment {
                        project_id: p.id,
                        environment_id: env_id,
                        deployable_id: None,
                        git_ref: &git_ref,
                        tag,
                        sha: &sha,
                        user_id: u.id,
                        blocked: false,
                    },
                );
                let out: Outbox = transition(&mut i, &base, now, d, &status)
                    .map(|h| ("Deployment Hook", h))
                    .into_iter()
                    .collect();
                (d, out)
            }
        };
        (out, entity(&base, &i, &p, deployment(&i, d)))
    };
    deliver_all(&s, p.id, out).await;
    Ok((StatusCode::CREATED, axum::Json(body)).into_response())
}

/// `PUT /projects/:id/deployments/:id`: only for API-created deployments (GitLab answers 403 for those a
/// job created) and only along the deployment state machine.
async fn update_deployment(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path((id, deployment_id)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, Response> {
    s.user(&headers)?;
    let m = body_params(&headers, &body)?;
    require(&m, &["status"])?;
    let status = param_str(&m, "status");
    check_values("status", &status, API_STATUSES)?;
    let status = status.expect("required");
    let (_, p, level) = authorize(&s, &headers, &id, 20, StatusCode::FORBIDDEN)?;
    let base = s.base_url.lock().unwrap().clone();
    let now = clock(&s);
    let (out, body) = {
        let mut i = s.inner.lock().unwrap();
        let d = find_deployment(&i, p.id, &deployment_id)?;
        if level < 30 {
            return Err(err(StatusCode::FORBIDDEN, "403 Forbidden"));
        }
        if d.deployable_id.is_some() {
            return Err(err(
                StatusCode::FORBIDDEN,
                "403 Forbidden - Deployments created using GitLab CI can not be updated using the API",
            ));
        }
        let (event, allowed) = event_for(&d.status, &status);
        if !allowed {
            return Err(invalid_transition(event));
        }
        let out: Outbox = transition(&mut i, &base, now, d.id, &status)
            .map(|h| ("Deployment Hook", h))
            .into_iter()
            .collect();
        (out, entity(&base, &i, &p, deployment(&i, d.id)))
    };
    deliver_all(&s, p.id, out).await;
    Ok(axum::Json(body).into_response())
}

/// `Deployments::ApprovalService#validate`, message for message and in its order.
fn validate_approval(
    i: &Inner,
    d: &Deployment,
    user: &super::User,
    status: &str,
    represented_as: Option<&str>,
) -> Option<&'static str> {
    if !matches!(status, "approved" | "rejected") {
        return Some("Unrecognized approval status.");
    }
    if d.status != "blocked" {
        return Some("This deployment is not waiting for approvals.");
    }
    let e = env(i, d.environment_id);
    let Some(protection) = &e.protection else {
        return Some("This environment is not protected.");
    };
    if d.user_id == user.id && status == "approved" {
        return Some(
            "You cannot approve your own deployment. This configuration can be adjusted in the protected environment settings.",
        );
    }
    if protection.required_approvals == 0 {
        return Some("Deployment approvals is not configured for this environment.");
    }
    if !protection.approvers.contains(&user.id) {
        return Some(
            "You don't have permission to approve this deployment. Contact the project or group owner for help.",
        );
    }
    // A user rule is represented by the user's name.
    if represented_as.is_some_and(|r| !r.is_empty() && r != user.name) {
        return Some(
            "There are no approval rules for the given `represent_as` parameter. Use a valid User/Group/Role name instead.",
        );
    }
    None
}

/// `POST /projects/:id/deployments/:id/approval`. A rejection fails the job (`deployment_rejected`) and with
/// it the deployment; enough approvals unblock the deployment (back to `created`) but leave the job
/// `manual` until someone plays it.
async fn approve(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path((id, deployment_id)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, Response> {
    let u = s.user(&headers)?;
    let m = body_params(&headers, &body)?;
    require(&m, &["status"])?;
    let status = param_str(&m, "status");
    check_values("status", &status, &["approved", "rejected"])?;
    let status = status.expect("required");
    let comment = param_str(&m, "comment");
    let represented_as = param_str(&m, "represented_as");
    let (_, p, _) = authorize(&s, &headers, &id, 20, StatusCode::FORBIDDEN)?;
    let base = s.base_url.lock().unwrap().clone();
    let now = clock(&s);
    let (out, body) = {
        let mut i = s.inner.lock().unwrap();
        let d = find_deployment(&i, p.id, &deployment_id)?;
        if let Some(message) = validate_approval(&i, &d, &u, &status, represented_as.as_deref()) {
            return Err(err(StatusCode::BAD_REQUEST, message));
        }
        let n = i
            .deployments
            .iter()
            .position(|x| x.id == d.id)
            .expect("deployment exists");
        let approvals = &mut i.deployments[n].approvals;
        let recorded = approvals
            .iter()
            .any(|a| a.user_id == u.id && a.status == status);
        let approval = match approvals.iter_mut().find(|a| a.user_id == u.id) {
            // Re-posting the same decision returns the existing approval untouched.
            Some(a) if a.status == status => a.clone(),
            Some(a) => {
                a.status = status.clone();
                a.comment = comment;
                a.clone()
            }
            None => {
                let a = Approval {
                    user_id: u.id,
                    status: status.clone(),
                    comment,
                    created_at: now,
                };
                approvals.push(a.clone());
                a
            }
        };
        if !recorded {
            i.decisions.push((status.clone(), d.id, u.id));
        }
        let mut out = Outbox::new();
        if let Some(job) = d.deployable_id {
            if approval.status == "rejected" {
                out = job_transition(
                    &mut i,
                    &base,
                    now,
                    job,
                    "failed",
                    Some("deployment_rejected"),
                    None,
                );
            } else if pending_approval_count(&i, &i.deployments[n]) == 0 {
                // Unblocking is silent: GitLab sends no Deployment Hook for `created`.
                let d = &mut i.deployments[n];
                d.status = "created".into();
                d.updated_at = now;
            }
        }
        // Newer GitLab (EE `Deployment#execute_approval_hooks`) also reports each decision as a
        // Deployment Hook whose status is the decision.
        if !recorded && s.approval_events.load(std::sync::atomic::Ordering::Relaxed) {
            let d = i.deployments[n].clone();
            let mut approval_hook = hook(&base, &i, &d, now);
            approval_hook["status"] = json!(approval.status);
            out.insert(0, ("Deployment Hook", approval_hook));
        }
        (out, approval_entity(&base, &i, &approval))
    };
    deliver_all(&s, p.id, out).await;
    Ok((StatusCode::CREATED, axum::Json(body)).into_response())
}

#[derive(serde::Deserialize)]
struct EnvironmentQuery {
    name: Option<String>,
    search: Option<String>,
    states: Option<String>,
    page: Option<usize>,
    per_page: Option<usize>,
}

fn env_entity(base: &str, i: &Inner, p: &Project, e: &Environment, with_last: bool) -> Value {
    let mut v = env_basic(e);
    v["description"] = Value::Null;
    v["auto_stop_at"] = Value::Null;
    v["enable_advanced_logs_querying"] = json!(false);
    v["logs_api_path"] = json!(format!(
        "/{}/-/logs/k8s.json?environment_name={}",
        p.path_with_namespace, e.name
    ));
    if with_last {
        v["last_deployment"] = i
            .deployments
            .iter()
            .rev()
            .find(|d| d.environment_id == e.id && d.status == "success")
            .map_or(Value::Null, |d| entity(base, i, p, d));
    }
    v
}

async fn list_environments(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<EnvironmentQuery>,
) -> Result<Response, Response> {
    s.user(&headers)?;
    check_values("states", &q.states, &["available", "stopping", "stopped"])?;
    let (_, p, _) = authorize(&s, &headers, &id, 20, StatusCode::FORBIDDEN)?;
    if q.name.is_some() && q.search.is_some() {
        return Err(bad_request(
            "Check the 'name' and 'search' parameters. Only one of them can be specified",
        ));
    }
    if q.search.as_ref().is_some_and(|x| x.chars().count() < 3) {
        return Err(bad_request("Search query is less than 3 characters"));
    }
    let base = s.base_url.lock().unwrap().clone();
    let all: Vec<Value> = {
        let i = s.inner.lock().unwrap();
        i.environments
            .iter()
            .filter(|e| e.project_id == p.id)
            .filter(|e| q.name.as_ref().is_none_or(|n| &e.name == n))
            .filter(|e| {
                q.search
                    .as_ref()
                    .is_none_or(|x| e.name.contains(x.as_str()))
            })
            // Environments here never stop.
            .filter(|_| q.states.as_deref().is_none_or(|st| st == "available"))
            .map(|e| env_entity(&base, &i, &p, e, false))
            .collect()
    };
    let link = list_url(
        &s,
        &format!("/projects/{}/environments", p.id),
        &[
            ("name", &q.name),
            ("search", &q.search),
            ("states", &q.states),
        ],
    );
    Ok(paging::offset_page(all, q.page, q.per_page, &link))
}

async fn show_environment(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path((id, environment_id)): Path<(String, String)>,
) -> Result<Response, Response> {
    let (_, p, _) = authorize(&s, &headers, &id, 20, StatusCode::FORBIDDEN)?;
    let base = s.base_url.lock().unwrap().clone();
    let i = s.inner.lock().unwrap();
    let e = i
        .environments
        .iter()
        .find(|e| e.project_id == p.id && e.id.to_string() == environment_id)
        .ok_or_else(|| err(StatusCode::NOT_FOUND, "404 Not found"))?;
    Ok(axum::Json(env_entity(&base, &i, &p, e, true)).into_response())
}
