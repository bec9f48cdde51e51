//! A GitLab instance: the REST endpoints linking and syncing use, OAuth, and webhook delivery.
//!
//! Rules modelled from GitLab's documentation: private groups and projects are invisible (404) to
//! non-members; group hooks need Premium and the Owner role (404 on Free, 403 below Owner); project hooks
//! need Maintainer; `members/all` reports inherited membership; lists use offset pagination with `x-*`
//! headers and `Link`, and project lists also keyset pagination; every API request passes the rate
//! limiter and fault injector in `limits.rs`. Hooks live in `hooks.rs`, OAuth in `oauth.rs`, the
//! repository in `repo.rs`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

pub mod bulk;
pub mod ci;
pub mod deployments;
pub mod feature_flags;
pub mod merge_requests;

mod hooks;
mod limits;
mod oauth;
mod paging;
mod repo;

pub use hooks::{AlertStatus, Hook};
pub use limits::ApiRequest;

/// GitLab tiers, as far as they change behaviour here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    Free,
    Premium,
}

#[derive(Debug, Clone)]
struct User {
    id: i64,
    username: String,
    name: String,
    email: String,
    token: String,
}

#[derive(Debug, Clone)]
struct Group {
    id: i64,
    name: String,
    full_path: String,
    parent_id: Option<i64>,
    plan: Plan,
}

#[derive(Debug, Clone)]
struct Project {
    id: i64,
    name: String,
    path_with_namespace: String,
    group_id: i64,
    default_branch: String,
    /// Branch name → head SHA.
    branches: BTreeMap<String, String>,
    archived: bool,
}

/// A commit stored in the simulated repositories.
#[derive(Debug, Clone)]
pub struct SimCommit {
    pub id: String,
    pub message: String,
    pub timestamp: String,
    pub author_name: String,
    pub author_email: String,
    pub added: Vec<String>,
    pub modified: Vec<String>,
}

/// One webhook delivery attempt.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub hook_id: i64,
    pub event: String,
    /// The receiver's status; `None` after a connection error or timeout, or when skipped.
    pub status: Option<u16>,
    pub idempotency_key: String,
    /// Not sent because the hook was temporarily or permanently disabled.
    pub skipped: bool,
    /// Sent by `POST …/hooks/:id/test/:trigger` rather than by an event.
    pub test: bool,
}

#[derive(Default)]
struct Inner {
    next_id: i64,
    /// Every approval decision and job play the API accepted, in order, as (`approved` / `rejected` /
    /// `play`, deployment or job id, user id).
    decisions: Vec<(String, i64, i64)>,
    users: Vec<User>,
    groups: Vec<Group>,
    /// (group id, user id) → direct access level.
    members: BTreeMap<(i64, i64), i64>,
    projects: Vec<Project>,
    commits: BTreeMap<(i64, String), SimCommit>,
    /// (project id, commit SHA) → parent SHAs; kept beside `commits` so `SimCommit` literals stay valid.
    parents: BTreeMap<(i64, String), Vec<String>>,
    /// (project id, group id) → the most a member of the group gets on the shared project.
    shares: BTreeMap<(i64, i64), i64>,
    hooks: Vec<Hook>,
    deliveries: Vec<Delivery>,
    merge_requests: Vec<merge_requests::MergeRequest>,
    pipelines: Vec<ci::Pipeline>,
    jobs: Vec<ci::Job>,
    environments: Vec<deployments::Environment>,
    deployments: Vec<deployments::Deployment>,
    feature_flags: Vec<feature_flags::FeatureFlag>,
}

struct Shared {
    base_url: Mutex<String>,
    inner: Mutex<Inner>,
    /// How far the simulated clock runs ahead of the real one (`GitLabSim::advance_clock`).
    clock_offset_ms: std::sync::atomic::AtomicI64,
    limits: Mutex<limits::Limits>,
    oauth: Mutex<oauth::OAuth>,
    refresh_hold: oauth::RefreshHold,
    /// For webhook deliveries; GitLab gives up on a receiver after about 10 s.
    http: reqwest::Client,
    /// `GitLabSim::set_signing_tokens_supported(false)`.
    signing_unsupported: std::sync::atomic::AtomicBool,
    /// `GitLabSim::set_approval_events`: approvals reported as Deployment Hooks (newer GitLab).
    approval_events: std::sync::atomic::AtomicBool,
}

impl Shared {
    /// The simulator's current time: real time plus whatever tests advanced it by.
    fn now(&self) -> time::OffsetDateTime {
        let offset = self
            .clock_offset_ms
            .load(std::sync::atomic::Ordering::Relaxed);
        time::OffsetDateTime::now_utc() + time::Duration::milliseconds(offset)
    }

    fn base(&self) -> String {
        self.base_url.lock().unwrap().clone()
    }
}

/// Routes of the per-feature modules (merge requests, CI, deployments, feature flags).
fn feature_routes() -> Router<Arc<Shared>> {
    Router::new()
        .merge(merge_requests::routes())
        .merge(ci::routes())
        .merge(deployments::routes())
        .merge(feature_flags::routes())
}

pub struct GitLabSim {
    pub base_url: String,
    shared: Arc<Shared>,
    _server: tokio::task::JoinHandle<()>,
}

fn err(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({ "message": message }))).into_response()
}

/// Grape's answer to a parameter that fails validation.
fn param_err(message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({ "error": message })),
    )
        .into_response()
}

impl GitLabSim {
    pub async fn start() -> anyhow::Result<Self> {
        let shared = Arc::new(Shared {
            base_url: Mutex::default(),
            inner: Mutex::new(Inner {
                next_id: 100,
                ..Default::default()
            }),
            clock_offset_ms: Default::default(),
            limits: Mutex::default(),
            oauth: Mutex::default(),
            refresh_hold: Default::default(),
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(10))
                .build()?,
            signing_unsupported: Default::default(),
            approval_events: Default::default(),
        });
        let router = Router::new()
            .route("/api/v4/user", get(current_user))
            .route("/api/v4/groups", get(all_groups))
            .route("/api/v4/groups/{id}", get(get_group))
            .route("/api/v4/groups/{id}/subgroups", get(subgroups))
            .route(
                "/api/v4/groups/{id}/descendant_groups",
                get(descendant_groups),
            )
            .route("/api/v4/groups/{id}/members/all", get(group_members))
            .route(
                "/api/v4/groups/{id}/members/all/{user_id}",
                get(group_member),
            )
            .route(
                "/api/v4/projects/{id}/members/all/{user_id}",
                get(project_member),
            )
            .route("/api/v4/groups/{id}/projects", get(group_projects))
            .route("/api/v4/projects/{id}", get(get_project))
            .route("/api/v4/namespaces/{id}", get(get_namespace))
            .merge(hooks::routes())
            .merge(repo::routes())
            .merge(oauth::routes())
            .merge(feature_routes())
            .fallback(not_found)
            .layer(axum::middleware::from_fn_with_state(
                shared.clone(),
                limits::middleware,
            ))
            .with_state(shared.clone());
        let (base_url, server) = crate::serve(router).await?;
        *shared.base_url.lock().unwrap() = base_url.clone();
        Ok(Self {
            base_url,
            shared,
            _server: server,
        })
    }

    /// Moves the simulator's clock forward (token expiry, hook `disabled_until`, rate-limit windows).
    pub fn advance_clock(&self, by: std::time::Duration) {
        self.shared.clock_offset_ms.fetch_add(
            i64::try_from(by.as_millis()).unwrap_or(i64::MAX),
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    fn next_id(inner: &mut Inner) -> i64 {
        inner.next_id += 1;
        inner.next_id
    }

    /// Adds a user whose personal access token is `token`; returns the user id.
    pub fn add_user(&self, username: &str, token: &str) -> i64 {
        let mut i = self.shared.inner.lock().unwrap();
        let id = Self::next_id(&mut i);
        i.users.push(User {
            id,
            username: username.into(),
            name: username.into(),
            email: format!("{username}@example.com"),
            token: token.into(),
        });
        id
    }

    /// Revokes the user's personal access token, as its owner would in GitLab: it gets 401 from now on.
    pub fn revoke_token(&self, user_id: i64) {
        let mut i = self.shared.inner.lock().unwrap();
        if let Some(u) = i.users.iter_mut().find(|u| u.id == user_id) {
            // No request carries an empty token (it is refused before the lookup), so this one matches none.
            u.token = String::new();
        }
    }

    /// Adds a group (under `parent` when given); returns its id. Subgroups inherit the top group's plan.
    pub fn add_group(&self, path: &str, parent: Option<i64>, plan: Plan) -> i64 {
        let mut i = self.shared.inner.lock().unwrap();
        let id = Self::next_id(&mut i);
        let (full_path, plan) = match parent.and_then(|p| i.groups.iter().find(|g| g.id == p)) {
            Some(p) => (format!("{}/{path}", p.full_path), p.plan),
            None => (path.to_owned(), plan),
        };
        i.groups.push(Group {
            id,
            name: path.into(),
            full_path,
            parent_id: parent,
            plan,
        });
        id
    }

    pub fn add_member(&self, group_id: i64, user_id: i64, access_level: i64) {
        self.shared
            .inner
            .lock()
            .unwrap()
            .members
            .insert((group_id, user_id), access_level);
    }

    /// Adds a project with a `main` branch holding one commit; returns its id.
    pub fn add_project(&self, group_id: i64, path: &str) -> i64 {
        let now = self.shared.now();
        let mut i = self.shared.inner.lock().unwrap();
        let id = Self::next_id(&mut i);
        let group = i
            .groups
            .iter()
            .find(|g| g.id == group_id)
            .expect("group exists")
            .full_path
            .clone();
        let sha = sha_for(&format!("{id}-initial"));
        let commit = SimCommit {
            id: sha.clone(),
            message: "Initial commit".into(),
            timestamp: repo::timestamp(now),
            author_name: "Sim".into(),
            author_email: "sim@example.com".into(),
            added: vec!["README.md".into()],
            modified: vec![],
        };
        i.commits.insert((id, sha.clone()), commit);
        i.parents.insert((id, sha.clone()), Vec::new());
        i.projects.push(Project {
            id,
            name: path.into(),
            path_with_namespace: format!("{group}/{path}"),
            group_id,
            default_branch: "main".into(),
            branches: BTreeMap::from([("main".to_owned(), sha)]),
            archived: false,
        });
        id
    }

    /// Shares a project with another group, as "Invite group" does: the group's members get at most
    /// Developer on it, and the project appears in that group's project list unless `with_shared=false`.
    pub fn share_project(&self, project_id: i64, with_group_id: i64) {
        self.shared
            .inner
            .lock()
            .unwrap()
            .shares
            .insert((project_id, with_group_id), 30);
    }

    pub fn archive_project(&self, project_id: i64) {
        let mut i = self.shared.inner.lock().unwrap();
        if let Some(p) = i.projects.iter_mut().find(|p| p.id == project_id) {
            p.archived = true;
        }
    }

    /// Moves a project to another group, as "Transfer project" does: its path changes, and no group hook
    /// of either group hears of it (GitLab sends none).
    pub fn transfer_project(&self, project_id: i64, to_group_id: i64) {
        let mut i = self.shared.inner.lock().unwrap();
        let group = i
            .groups
            .iter()
            .find(|g| g.id == to_group_id)
            .expect("group exists")
            .full_path
            .clone();
        if let Some(p) = i.projects.iter_mut().find(|p| p.id == project_id) {
            p.group_id = to_group_id;
            p.path_with_namespace = format!("{group}/{}", p.name);
        }
    }

    /// Deletes a project with its hooks, shares and commits.
    pub fn remove_project(&self, project_id: i64) {
        let mut i = self.shared.inner.lock().unwrap();
        i.projects.retain(|p| p.id != project_id);
        i.hooks
            .retain(|h| !(h.scope == "project" && h.target_id == project_id));
        i.shares.retain(|(p, _), _| *p != project_id);
        i.commits.retain(|(p, _), _| *p != project_id);
        i.parents.retain(|(p, _), _| *p != project_id);
    }

    /// Every approval decision and job play the API accepted, in order: (`approved`, `rejected` or
    /// `play`, the deployment's or job's id, the user's id).
    pub fn decisions(&self) -> Vec<(String, i64, i64)> {
        self.shared.inner.lock().unwrap().decisions.clone()
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.shared.inner.lock().unwrap().deliveries.clone()
    }

    /// Delivers an event to the project's hooks and to the group hooks of its group and ancestors.
    async fn deliver(&self, project_id: i64, event: &str, payload: Value) {
        hooks::deliver(
            &self.shared,
            hooks::Target::Project(project_id),
            event,
            payload,
        )
        .await;
    }
}

const NULL_SHA: &str = "0000000000000000000000000000000000000000";

fn sha_for(seed: &str) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(seed.as_bytes());
    gfj_core::qsh::hex(&d)[..40].to_owned()
}

fn uuid_like() -> String {
    let h = crate::random_hex(16);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// The project as webhook payloads carry it (`namespace` is a plain name there).
fn project_json(base: &str, p: &Project) -> Value {
    let web_url = format!("{base}/{}", p.path_with_namespace);
    json!({
        "id": p.id,
        "name": p.name,
        "description": "",
        "web_url": web_url,
        "avatar_url": null,
        "git_ssh_url": format!("git@sim:{}.git", p.path_with_namespace),
        "git_http_url": format!("{web_url}.git"),
        "namespace": p.path_with_namespace.rsplit_once('/').map(|x| x.0).unwrap_or(""),
        "visibility_level": 0,
        "path_with_namespace": p.path_with_namespace,
        "default_branch": p.default_branch,
        "homepage": web_url,
        "url": format!("git@sim:{}.git", p.path_with_namespace),
        "ssh_url": format!("git@sim:{}.git", p.path_with_namespace),
        "http_url": format!("{web_url}.git")
    })
}

/// The project as the REST API returns it (`namespace` is an object there).
fn rest_project_json(base: &str, p: &Project, g: Option<&Group>) -> Value {
    let web_url = format!("{base}/{}", p.path_with_namespace);
    // Ids grow with creation time, so a fixed epoch plus the id orders `created_at` like GitLab does.
    let created =
        rfc3339(time::macros::datetime!(2026-01-01 00:00 UTC) + time::Duration::minutes(p.id));
    json!({
        "id": p.id,
        "name": p.name,
        "path": p.name,
        "description": "",
        "path_with_namespace": p.path_with_namespace,
        "name_with_namespace": p.path_with_namespace.replace('/', " / "),
        "namespace": g.map(|g| json!({
            "id": g.id, "name": g.name, "path": g.name, "kind": "group",
            "full_path": g.full_path, "parent_id": g.parent_id,
            "web_url": format!("{base}/groups/{}", g.full_path),
        })),
        "default_branch": p.default_branch,
        "visibility": "private",
        "web_url": web_url,
        "http_url_to_repo": format!("{web_url}.git"),
        "ssh_url_to_repo": format!("git@sim:{}.git", p.path_with_namespace),
        "archived": p.archived,
        "created_at": created,
        "last_activity_at": created,
    })
}

fn group_json(base: &str, g: &Group) -> Value {
    json!({
        "id": g.id,
        "name": g.name,
        "path": g.name,
        "description": "",
        "full_name": g.full_path.replace('/', " / "),
        "full_path": g.full_path,
        "parent_id": g.parent_id,
        "web_url": format!("{base}/groups/{}", g.full_path),
        "visibility": "private",
    })
}

/// The token a request authenticates with: `PRIVATE-TOKEN` or `Authorization: Bearer`.
fn request_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("private-token")
        .and_then(|v| v.to_str().ok())
        .or_else(|| {
            headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
        })
        .filter(|t| !t.is_empty())
}

impl Shared {
    /// The user behind a personal access token or an OAuth access token.
    fn user(&self, headers: &HeaderMap) -> Result<User, Response> {
        let token = request_token(headers)
            .ok_or_else(|| err(StatusCode::UNAUTHORIZED, "401 Unauthorized"))?;
        if let Some(u) = self
            .inner
            .lock()
            .unwrap()
            .users
            .iter()
            .find(|u| u.token == token)
        {
            return Ok(u.clone());
        }
        let user_id = self.oauth.lock().unwrap().resolve(token, self.now())?;
        let inner = self.inner.lock().unwrap();
        inner
            .users
            .iter()
            .find(|u| u.id == user_id)
            .cloned()
            .ok_or_else(|| err(StatusCode::UNAUTHORIZED, "401 Unauthorized"))
    }

    fn group(&self, id: &str) -> Result<Group, Response> {
        let inner = self.inner.lock().unwrap();
        inner
            .groups
            .iter()
            .find(|g| g.id.to_string() == id || g.full_path == id)
            .cloned()
            .ok_or_else(|| err(StatusCode::NOT_FOUND, "404 Group Not Found"))
    }

    fn project(&self, id: &str) -> Result<Project, Response> {
        let inner = self.inner.lock().unwrap();
        inner
            .projects
            .iter()
            .find(|p| p.id.to_string() == id || p.path_with_namespace == id)
            .cloned()
            .ok_or_else(|| err(StatusCode::NOT_FOUND, "404 Project Not Found"))
    }

    /// Effective access level: the highest of the direct memberships on the group and its ancestors.
    fn access_level(&self, group_id: i64, user_id: i64) -> i64 {
        let inner = self.inner.lock().unwrap();
        group_access(&inner, group_id, user_id)
    }

    /// A private group is visible to its members, inherited ones included, and, as GitLab shows the
    /// path down to a subgroup, to members of any of its descendants.
    fn visible_group(&self, headers: &HeaderMap, id: &str) -> Result<(User, Group), Response> {
        let u = self.user(headers)?;
        let g = self.group(id)?;
        let inner = self.inner.lock().unwrap();
        if descendants(&inner, g.id)
            .iter()
            .any(|d| group_access(&inner, *d, u.id) > 0)
        {
            Ok((u, g))
        } else {
            Err(err(StatusCode::NOT_FOUND, "404 Group Not Found"))
        }
    }

    /// A private project the user cannot see is reported as missing, never as forbidden.
    fn visible_project(
        &self,
        headers: &HeaderMap,
        id: &str,
    ) -> Result<(User, Project, i64), Response> {
        let u = self.user(headers)?;
        let p = self.project(id)?;
        let level = project_access(&self.inner.lock().unwrap(), &p, u.id);
        if level > 0 {
            Ok((u, p, level))
        } else {
            Err(err(StatusCode::NOT_FOUND, "404 Project Not Found"))
        }
    }
}

fn group_access(inner: &Inner, group_id: i64, user_id: i64) -> i64 {
    let mut level = 0;
    let mut g = Some(group_id);
    while let Some(id) = g {
        level = level.max(inner.members.get(&(id, user_id)).copied().unwrap_or(0));
        g = inner
            .groups
            .iter()
            .find(|x| x.id == id)
            .and_then(|x| x.parent_id);
    }
    level
}

/// Membership through the project's group, or through a group it is shared with (capped by the share).
fn project_access(inner: &Inner, p: &Project, user_id: i64) -> i64 {
    let shared = inner
        .shares
        .iter()
        .filter(|((project, _), _)| *project == p.id)
        .map(|((_, group), cap)| group_access(inner, *group, user_id).min(*cap))
        .max()
        .unwrap_or(0);
    group_access(inner, p.group_id, user_id).max(shared)
}

/// The group and all its nested subgroups, the group first.
fn descendants(inner: &Inner, group_id: i64) -> Vec<i64> {
    let mut out = vec![group_id];
    let mut n = 0;
    while n < out.len() {
        let parent = out[n];
        out.extend(
            inner
                .groups
                .iter()
                .filter(|g| g.parent_id == Some(parent))
                .map(|g| g.id),
        );
        n += 1;
    }
    out
}

/// A Grape boolean parameter: absent → `None`; anything but true/false/1/0 is a 400.
fn bool_param(q: &HashMap<String, String>, name: &str) -> Result<Option<bool>, Response> {
    match q.get(name).map(String::as_str) {
        None => Ok(None),
        Some("true" | "1") => Ok(Some(true)),
        Some("false" | "0") => Ok(Some(false)),
        Some(_) => Err(param_err(&format!("{name} is invalid"))),
    }
}

fn usize_param(q: &HashMap<String, String>, name: &str) -> Result<Option<usize>, Response> {
    q.get(name)
        .map(|v| {
            v.parse()
                .map_err(|_| param_err(&format!("{name} is invalid")))
        })
        .transpose()
}

/// The request's query string without the given parameters, for building `Link` URLs.
fn query_without(raw: Option<&str>, drop: &[&str]) -> String {
    url::form_urlencoded::parse(raw.unwrap_or("").as_bytes())
        .filter(|(k, _)| !drop.contains(&k.as_ref()))
        .fold(
            url::form_urlencoded::Serializer::new(String::new()),
            |mut s, (k, v)| {
                s.append_pair(&k, &v);
                s
            },
        )
        .finish()
}

fn with_query(url: String, query: &str) -> String {
    if query.is_empty() {
        url
    } else {
        format!("{url}?{query}")
    }
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(json!({ "error": "404 Not Found" })),
    )
        .into_response()
}

async fn current_user(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    match s.user(&headers) {
        Ok(u) => axum::Json(json!({ "id": u.id, "username": u.username, "name": u.name, "state": "active", "email": u.email })).into_response(),
        Err(r) => r,
    }
}

async fn get_group(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, Response> {
    let (_, g) = s.visible_group(&headers, &id)?;
    Ok(axum::Json(group_json(&s.base(), &g)).into_response())
}

async fn get_namespace(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, Response> {
    let me = s.user(&headers)?;
    if let Ok((_, g)) = s.visible_group(&headers, &id) {
        return Ok(
            axum::Json(json!({ "id": g.id, "kind": "group", "full_path": g.full_path }))
                .into_response(),
        );
    }
    let inner = s.inner.lock().unwrap();
    match inner
        .users
        .iter()
        .find(|u| u.username == id || u.id.to_string() == id)
    {
        Some(u) if u.id == me.id => Ok(axum::Json(
            json!({ "id": u.id, "kind": "user", "full_path": u.username }),
        )
        .into_response()),
        _ => Err(err(StatusCode::NOT_FOUND, "404 Namespace Not Found")),
    }
}

async fn get_project(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, Response> {
    let (_, p, _) = s.visible_project(&headers, &id)?;
    let g = s.group(&p.group_id.to_string()).ok();
    Ok(axum::Json(rest_project_json(&s.base(), &p, g.as_ref())).into_response())
}

fn member_json(base: &str, u: &User, level: i64) -> Value {
    json!({
        "id": u.id,
        "username": u.username,
        "name": u.name,
        "state": "active",
        "avatar_url": null,
        "web_url": format!("{base}/{}", u.username),
        "access_level": level,
        "expires_at": null,
        "membership_state": "active",
    })
}

async fn group_member(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path((id, user_id)): Path<(String, i64)>,
) -> Result<Response, Response> {
    let (_, g) = s.visible_group(&headers, &id)?;
    let inner = s.inner.lock().unwrap();
    match (
        group_access(&inner, g.id, user_id),
        inner.users.iter().find(|u| u.id == user_id),
    ) {
        (level, Some(u)) if level > 0 => {
            Ok(axum::Json(member_json(&s.base(), u, level)).into_response())
        }
        _ => Err(err(StatusCode::NOT_FOUND, "404 Not found")),
    }
}

/// A project member with the highest level they hold, inherited and through shares included.
async fn project_member(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path((id, user_id)): Path<(String, i64)>,
) -> Result<Response, Response> {
    let (_, p, _) = s.visible_project(&headers, &id)?;
    let inner = s.inner.lock().unwrap();
    match (
        project_access(&inner, &p, user_id),
        inner.users.iter().find(|u| u.id == user_id),
    ) {
        (level, Some(u)) if level > 0 => {
            Ok(axum::Json(member_json(&s.base(), u, level)).into_response())
        }
        _ => Err(err(StatusCode::NOT_FOUND, "404 Not found")),
    }
}

/// The plan of the project's top-level group: licensed features follow it.
fn project_plan(inner: &Inner, p: &Project) -> Plan {
    let mut group = inner.groups.iter().find(|g| g.id == p.group_id);
    while let Some(g) = group {
        match g.parent_id {
            Some(parent) => group = inner.groups.iter().find(|x| x.id == parent),
            None => return g.plan,
        }
    }
    Plan::Free
}

/// Direct and inherited members, each once with their highest level, ordered by user id.
async fn group_members(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    RawQuery(raw): RawQuery,
) -> Result<Response, Response> {
    let (_, g) = s.visible_group(&headers, &id)?;
    let base = s.base();
    let all: Vec<Value> = {
        let inner = s.inner.lock().unwrap();
        inner
            .users
            .iter()
            .map(|u| (u, group_access(&inner, g.id, u.id)))
            .filter(|(_, level)| *level > 0)
            .map(|(u, level)| member_json(&base, u, level))
            .collect()
    };
    let link = with_query(
        format!("{base}/api/v4/groups/{}/members/all", g.id),
        &query_without(raw.as_deref(), &["page", "per_page"]),
    );
    Ok(paging::offset_page(
        all,
        usize_param(&q, "page")?,
        usize_param(&q, "per_page")?,
        &link,
    ))
}

async fn subgroups(
    s: State<Arc<Shared>>,
    headers: HeaderMap,
    id: Path<String>,
    q: Query<HashMap<String, String>>,
    raw: RawQuery,
) -> Result<Response, Response> {
    list_groups(s, headers, id, q, raw, false).await
}

async fn descendant_groups(
    s: State<Arc<Shared>>,
    headers: HeaderMap,
    id: Path<String>,
    q: Query<HashMap<String, String>>,
    raw: RawQuery,
) -> Result<Response, Response> {
    list_groups(s, headers, id, q, raw, true).await
}

/// `GET /groups`: the groups the user is a member of, directly or through a parent group, with
/// `min_access_level` and `search`, ordered by name.
async fn all_groups(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
    RawQuery(raw): RawQuery,
) -> Result<Response, Response> {
    let u = s.user(&headers)?;
    let base = s.base();
    let min_level = q
        .get("min_access_level")
        .map(|v| {
            v.parse::<i64>()
                .map_err(|_| param_err("min_access_level is invalid"))
        })
        .transpose()?;
    let mut found: Vec<Group> = {
        let inner = s.inner.lock().unwrap();
        inner
            .groups
            .iter()
            .filter(|x| group_access(&inner, x.id, u.id) >= min_level.unwrap_or(10).max(10))
            .filter(|x| {
                q.get("search")
                    .is_none_or(|t| x.name.to_lowercase().contains(&t.to_lowercase()))
            })
            .cloned()
            .collect()
    };
    found.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
    let link = with_query(
        format!("{base}/api/v4/groups"),
        &query_without(raw.as_deref(), &["page", "per_page"]),
    );
    Ok(paging::offset_page(
        found.iter().map(|x| group_json(&base, x)).collect(),
        usize_param(&q, "page")?,
        usize_param(&q, "per_page")?,
        &link,
    ))
}

/// Subgroups the user can see, ordered like GitLab's default (`order_by=name`, `sort=asc`).
async fn list_groups(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    RawQuery(raw): RawQuery,
    nested: bool,
) -> Result<Response, Response> {
    let (u, g) = s.visible_group(&headers, &id)?;
    let base = s.base();
    let min_level = q
        .get("min_access_level")
        .map(|v| {
            v.parse::<i64>()
                .map_err(|_| param_err("min_access_level is invalid"))
        })
        .transpose()?;
    let mut found: Vec<Group> = {
        let inner = s.inner.lock().unwrap();
        let ids = descendants(&inner, g.id);
        inner
            .groups
            .iter()
            .filter(|x| x.id != g.id && ids.contains(&x.id))
            .filter(|x| nested || x.parent_id == Some(g.id))
            .filter(|x| {
                descendants(&inner, x.id)
                    .iter()
                    .any(|d| group_access(&inner, *d, u.id) > 0)
            })
            .filter(|x| min_level.is_none_or(|m| group_access(&inner, x.id, u.id) >= m))
            .filter(|x| {
                q.get("search")
                    .is_none_or(|t| x.name.to_lowercase().contains(&t.to_lowercase()))
            })
            .cloned()
            .collect()
    };
    match q.get("order_by").map(String::as_str).unwrap_or("name") {
        "name" | "path" => found.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id))),
        "id" => found.sort_by_key(|x| x.id),
        _ => return Err(param_err("order_by does not have a valid value")),
    }
    match q.get("sort").map(String::as_str).unwrap_or("asc") {
        "asc" => {}
        "desc" => found.reverse(),
        _ => return Err(param_err("sort does not have a valid value")),
    }
    let kind = if nested {
        "descendant_groups"
    } else {
        "subgroups"
    };
    let link = with_query(
        format!("{base}/api/v4/groups/{}/{kind}", g.id),
        &query_without(raw.as_deref(), &["page", "per_page"]),
    );
    Ok(paging::offset_page(
        found.iter().map(|x| group_json(&base, x)).collect(),
        usize_param(&q, "page")?,
        usize_param(&q, "per_page")?,
        &link,
    ))
}

/// `GET /groups/:id/projects` with GitLab's defaults: own projects only (`include_subgroups=false`),
/// projects shared into the group included (`with_shared=true`), archived ones included, newest first.
async fn group_projects(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    RawQuery(raw): RawQuery,
) -> Result<Response, Response> {
    let (u, g) = s.visible_group(&headers, &id)?;
    let include_subgroups = bool_param(&q, "include_subgroups")?.unwrap_or(false);
    let with_shared = bool_param(&q, "with_shared")?.unwrap_or(true);
    let archived = bool_param(&q, "archived")?;
    let min_level = q
        .get("min_access_level")
        .map(|v| {
            v.parse::<i64>()
                .map_err(|_| param_err("min_access_level is invalid"))
        })
        .transpose()?;
    let order_by = q
        .get("order_by")
        .map(String::as_str)
        .unwrap_or("created_at");
    let desc = match q.get("sort").map(String::as_str).unwrap_or("desc") {
        "asc" => false,
        "desc" => true,
        _ => return Err(param_err("sort does not have a valid value")),
    };
    let base = s.base();
    let mut found: Vec<(Project, Option<Group>)> = {
        let inner = s.inner.lock().unwrap();
        let groups = if include_subgroups {
            descendants(&inner, g.id)
        } else {
            vec![g.id]
        };
        inner
            .projects
            .iter()
            .filter(|p| {
                groups.contains(&p.group_id)
                    || (with_shared
                        && inner
                            .shares
                            .keys()
                            .any(|(sp, sg)| *sp == p.id && groups.contains(sg)))
            })
            .filter(|p| archived.is_none_or(|a| p.archived == a))
            .filter(|p| {
                let level = project_access(&inner, p, u.id);
                level > 0 && min_level.is_none_or(|m| level >= m)
            })
            .filter(|p| {
                q.get("search")
                    .is_none_or(|t| p.name.to_lowercase().contains(&t.to_lowercase()))
            })
            .map(|p| {
                let pg = inner.groups.iter().find(|x| x.id == p.group_id).cloned();
                (p.clone(), pg)
            })
            .collect()
    };
    match order_by {
        // Creation and activity times follow ids in the simulator.
        "id" | "created_at" | "updated_at" | "last_activity_at" | "star_count" => {
            found.sort_by_key(|(p, _)| p.id)
        }
        "name" | "path" => {
            found.sort_by(|(a, _), (b, _)| a.name.cmp(&b.name).then(a.id.cmp(&b.id)))
        }
        _ => return Err(param_err("order_by does not have a valid value")),
    }
    if desc {
        found.reverse();
    }
    let url = format!("{base}/api/v4/groups/{}/projects", g.id);
    if q.get("pagination").map(String::as_str) == Some("keyset") {
        if order_by != "id" {
            return Err(err(
                StatusCode::METHOD_NOT_ALLOWED,
                "Keyset pagination is not yet available for this type of request",
            ));
        }
        let after = q
            .get("id_after")
            .map(|v| {
                v.parse::<i64>()
                    .map_err(|_| param_err("id_after is invalid"))
            })
            .transpose()?;
        let before = q
            .get("id_before")
            .map(|v| {
                v.parse::<i64>()
                    .map_err(|_| param_err("id_before is invalid"))
            })
            .transpose()?;
        let rest: Vec<(i64, Value)> = found
            .iter()
            .filter(|(p, _)| after.is_none_or(|a| p.id > a) && before.is_none_or(|b| p.id < b))
            .map(|(p, pg)| (p.id, rest_project_json(&base, p, pg.as_ref())))
            .collect();
        let cursor = if desc { "id_before" } else { "id_after" };
        let link = with_query(
            url,
            &query_without(
                raw.as_deref(),
                &["id_after", "id_before", "page", "per_page"],
            ),
        );
        return Ok(paging::keyset_page(
            rest,
            usize_param(&q, "per_page")?,
            &link,
            cursor,
        ));
    }
    let link = with_query(url, &query_without(raw.as_deref(), &["page", "per_page"]));
    Ok(paging::offset_page(
        found
            .iter()
            .map(|(p, pg)| rest_project_json(&base, p, pg.as_ref()))
            .collect(),
        usize_param(&q, "page")?,
        usize_param(&q, "per_page")?,
        &link,
    ))
}
