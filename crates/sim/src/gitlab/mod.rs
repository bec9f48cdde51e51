//! A GitLab instance: the REST endpoints linking and syncing use, and webhook delivery.
//!
//! Rules modelled from GitLab's documentation: group hooks need Premium and the Owner role (404 on Free,
//! 403 below Owner); project hooks need Maintainer; `members/all` reports inherited membership; lists use
//! offset pagination with `x-*` headers and `Link`; deliveries carry GitLab's headers, including a per-
//! delivery `Idempotency-Key`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use serde_json::{Value, json};

mod paging;

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
    branches: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct Hook {
    pub id: i64,
    /// `group` or `project`.
    pub scope: &'static str,
    pub target_id: i64,
    pub url: String,
    token: String,
    pub push_events: bool,
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
    pub status: Option<u16>,
    pub idempotency_key: String,
}

#[derive(Default)]
struct Inner {
    next_id: i64,
    users: Vec<User>,
    groups: Vec<Group>,
    /// (group id, user id) → direct access level.
    members: BTreeMap<(i64, i64), i64>,
    projects: Vec<Project>,
    commits: BTreeMap<(i64, String), SimCommit>,
    hooks: Vec<Hook>,
    deliveries: Vec<Delivery>,
}

struct Shared {
    base_url: Mutex<String>,
    inner: Mutex<Inner>,
    /// How far the simulated clock runs ahead of the real one (`GitLabSim::advance_clock`).
    clock_offset_ms: std::sync::atomic::AtomicI64,
}

impl Shared {
    /// The simulator's current time: real time plus whatever tests advanced it by.
    fn now(&self) -> time::OffsetDateTime {
        let offset = self
            .clock_offset_ms
            .load(std::sync::atomic::Ordering::Relaxed);
        time::OffsetDateTime::now_utc() + time::Duration::milliseconds(offset)
    }
}

/// Routes of the per-feature modules (merge requests, CI, deployments, feature flags).
fn feature_routes() -> Router<Arc<Shared>> {
    Router::new()
}

pub struct GitLabSim {
    pub base_url: String,
    shared: Arc<Shared>,
    http: reqwest::Client,
    _server: tokio::task::JoinHandle<()>,
}

fn err(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({ "message": message }))).into_response()
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
        });
        let router = Router::new()
            .route("/api/v4/user", get(current_user))
            .route("/api/v4/groups/{id}", get(get_group))
            .route(
                "/api/v4/groups/{id}/members/all/{user_id}",
                get(group_member),
            )
            .route("/api/v4/groups/{id}/projects", get(group_projects))
            .route(
                "/api/v4/groups/{id}/hooks",
                get(list_group_hooks).post(create_group_hook),
            )
            .route(
                "/api/v4/groups/{id}/hooks/{hook_id}",
                delete(delete_group_hook),
            )
            .route("/api/v4/projects/{id}", get(get_project))
            .route(
                "/api/v4/projects/{id}/hooks",
                get(list_project_hooks).post(create_project_hook),
            )
            .route(
                "/api/v4/projects/{id}/hooks/{hook_id}",
                delete(delete_project_hook),
            )
            .route(
                "/api/v4/projects/{id}/repository/commits/{sha}",
                get(get_commit),
            )
            .route("/api/v4/namespaces/{id}", get(get_namespace))
            .merge(feature_routes())
            .with_state(shared.clone());
        let (base_url, server) = crate::serve(router).await?;
        *shared.base_url.lock().unwrap() = base_url.clone();
        Ok(Self {
            base_url,
            shared,
            http: reqwest::Client::new(),
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
            timestamp: "2026-11-01T09:00:00+01:00".into(),
            author_name: "Sim".into(),
            author_email: "sim@example.com".into(),
            added: vec!["README.md".into()],
            modified: vec![],
        };
        i.commits.insert((id, sha.clone()), commit);
        i.projects.push(Project {
            id,
            name: path.into(),
            path_with_namespace: format!("{group}/{path}"),
            group_id,
            default_branch: "main".into(),
            branches: BTreeMap::from([("main".to_owned(), sha)]),
        });
        id
    }

    pub fn hooks(&self) -> Vec<Hook> {
        self.shared.inner.lock().unwrap().hooks.clone()
    }

    /// The secret token a hook was registered with.
    pub fn hook_token(&self, hook_id: i64) -> Option<String> {
        self.shared
            .inner
            .lock()
            .unwrap()
            .hooks
            .iter()
            .find(|h| h.id == hook_id)
            .map(|h| h.token.clone())
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.shared.inner.lock().unwrap().deliveries.clone()
    }

    /// Pushes new commits (one per message, oldest first) to `branch`, creating it from the default branch
    /// if needed, and delivers the Push Hook to every hook that covers the project. Returns the SHAs.
    pub async fn push(
        &self,
        project_id: i64,
        branch: &str,
        messages: &[&str],
        pusher: i64,
    ) -> Vec<String> {
        let (payload, shas) = {
            let mut i = self.shared.inner.lock().unwrap();
            let p = i
                .projects
                .iter()
                .find(|p| p.id == project_id)
                .expect("project exists")
                .clone();
            let created = !p.branches.contains_key(branch);
            let before = if created {
                NULL_SHA.to_owned()
            } else {
                p.branches[branch].clone()
            };
            let mut commits = Vec::new();
            for (n, message) in messages.iter().enumerate() {
                let sha = sha_for(&format!(
                    "{project_id}-{branch}-{}-{n}-{message}",
                    i.commits.len()
                ));
                let c = SimCommit {
                    id: sha.clone(),
                    message: format!("{message}\n"),
                    timestamp: format!("2026-11-27T1{}:00:00+02:00", n % 10),
                    author_name: "Ada Lovelace".into(),
                    author_email: "ada@example.com".into(),
                    added: vec![format!("src/file{n}.rs")],
                    modified: vec!["README.md".into()],
                };
                i.commits.insert((project_id, sha.clone()), c.clone());
                commits.push(c);
            }
            let after = commits
                .last()
                .map(|c| c.id.clone())
                .unwrap_or_else(|| p.branches[&p.default_branch].clone());
            i.projects
                .iter_mut()
                .find(|x| x.id == project_id)
                .unwrap()
                .branches
                .insert(branch.to_owned(), after.clone());
            let shas = commits.iter().map(|c| c.id.clone()).collect();
            (
                self.push_payload(&i, &p, branch, &before, &after, &commits, pusher),
                shas,
            )
        };
        self.deliver(project_id, "Push Hook", payload).await;
        shas
    }

    /// Deletes a branch and delivers the Push Hook GitLab sends for it (`after` = forty zeros).
    pub async fn delete_branch(&self, project_id: i64, branch: &str, pusher: i64) {
        let payload = {
            let mut i = self.shared.inner.lock().unwrap();
            let p = i
                .projects
                .iter()
                .find(|p| p.id == project_id)
                .expect("project exists")
                .clone();
            let before = p
                .branches
                .get(branch)
                .cloned()
                .unwrap_or_else(|| NULL_SHA.to_owned());
            i.projects
                .iter_mut()
                .find(|x| x.id == project_id)
                .unwrap()
                .branches
                .remove(branch);
            self.push_payload(&i, &p, branch, &before, NULL_SHA, &[], pusher)
        };
        self.deliver(project_id, "Push Hook", payload).await;
    }

    #[allow(clippy::too_many_arguments)]
    fn push_payload(
        &self,
        i: &Inner,
        p: &Project,
        branch: &str,
        before: &str,
        after: &str,
        commits: &[SimCommit],
        pusher: i64,
    ) -> Value {
        let base = self.base_url.clone();
        let user = i
            .users
            .iter()
            .find(|u| u.id == pusher)
            .cloned()
            .expect("pusher exists");
        let web_url = format!("{base}/{}", p.path_with_namespace);
        json!({
            "object_kind": "push",
            "event_name": "push",
            "before": before,
            "after": after,
            "ref": format!("refs/heads/{branch}"),
            "ref_protected": branch == p.default_branch,
            "checkout_sha": if after == NULL_SHA { Value::Null } else { Value::String(after.to_owned()) },
            "message": null,
            "user_id": user.id,
            "user_name": user.name,
            "user_username": user.username,
            "user_email": "[REDACTED]",
            "user_avatar": format!("{base}/uploads/-/system/user/avatar/{}/avatar.png", user.id),
            "project_id": p.id,
            "project": project_json(&base, p),
            "commits": commits.iter().map(|c| json!({
                "id": c.id,
                "message": c.message,
                "title": c.message.lines().next().unwrap_or(""),
                "timestamp": c.timestamp,
                "url": format!("{web_url}/-/commit/{}", c.id),
                "author": { "name": c.author_name, "email": c.author_email },
                "added": c.added,
                "modified": c.modified,
                "removed": [],
            })).collect::<Vec<_>>(),
            "total_commits_count": commits.len(),
            "push_options": {},
            "repository": {
                "name": p.name,
                "url": format!("{base}/{}.git", p.path_with_namespace),
                "description": "",
                "homepage": web_url,
                "git_http_url": format!("{web_url}.git"),
                "git_ssh_url": format!("git@sim:{}.git", p.path_with_namespace),
                "visibility_level": 0
            }
        })
    }

    /// Delivers an event to the project's hooks and to the group hooks of its group and ancestors.
    async fn deliver(&self, project_id: i64, event: &str, payload: Value) {
        let targets: Vec<Hook> = {
            let i = self.shared.inner.lock().unwrap();
            let p = i
                .projects
                .iter()
                .find(|p| p.id == project_id)
                .expect("project exists");
            let mut groups = Vec::new();
            let mut g = Some(p.group_id);
            while let Some(id) = g {
                groups.push(id);
                g = i
                    .groups
                    .iter()
                    .find(|x| x.id == id)
                    .and_then(|x| x.parent_id);
            }
            i.hooks
                .iter()
                .filter(|h| h.push_events || event != "Push Hook")
                .filter(|h| {
                    (h.scope == "project" && h.target_id == project_id)
                        || (h.scope == "group" && groups.contains(&h.target_id))
                })
                .cloned()
                .collect()
        };
        for hook in targets {
            let key = uuid_like();
            let resp = self
                .http
                .post(&hook.url)
                .header("Content-Type", "application/json")
                .header("User-Agent", "GitLab/19.5.0")
                .header("X-Gitlab-Event", event)
                .header("X-Gitlab-Token", &hook.token)
                .header("X-Gitlab-Instance", &self.base_url)
                .header("X-Gitlab-Webhook-UUID", format!("hook-{}", hook.id))
                .header("X-Gitlab-Event-UUID", uuid_like())
                .header("Idempotency-Key", &key)
                .json(&payload)
                .send()
                .await;
            let status = resp.ok().map(|r| r.status().as_u16());
            self.shared.inner.lock().unwrap().deliveries.push(Delivery {
                hook_id: hook.id,
                event: event.into(),
                status,
                idempotency_key: key,
            });
        }
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

impl Shared {
    fn user(&self, headers: &HeaderMap) -> Result<User, Response> {
        let token = headers
            .get("private-token")
            .and_then(|v| v.to_str().ok())
            .or_else(|| {
                headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "))
            })
            .ok_or_else(|| err(StatusCode::UNAUTHORIZED, "401 Unauthorized"))?;
        let inner = self.inner.lock().unwrap();
        inner
            .users
            .iter()
            .find(|u| u.token == token)
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

    fn descendants(&self, group_id: i64) -> Vec<i64> {
        let inner = self.inner.lock().unwrap();
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
    s.user(&headers)?;
    let g = s.group(&id)?;
    let base = s.base_url.lock().unwrap().clone();
    Ok::<_, Response>(
        axum::Json(json!({ "id": g.id, "name": g.name, "path": g.name, "full_path": g.full_path, "parent_id": g.parent_id, "web_url": format!("{base}/groups/{}", g.full_path), "visibility": "private" }))
            .into_response(),
    )
}

async fn get_namespace(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, Response> {
    let me = s.user(&headers)?;
    if let Ok(g) = s.group(&id) {
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
    s.user(&headers)?;
    let p = s.project(&id)?;
    let base = s.base_url.lock().unwrap().clone();
    Ok::<_, Response>(axum::Json(project_json(&base, &p)).into_response())
}

async fn group_member(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path((id, user_id)): Path<(String, i64)>,
) -> Result<Response, Response> {
    s.user(&headers)?;
    let g = s.group(&id)?;
    match s.access_level(g.id, user_id) {
        0 => Err(err(StatusCode::NOT_FOUND, "404 Not found")),
        level => Ok(axum::Json(json!({ "id": user_id, "access_level": level, "state": "active", "membership_state": "active" })).into_response()),
    }
}

#[derive(serde::Deserialize)]
struct ListQuery {
    page: Option<usize>,
    per_page: Option<usize>,
    include_subgroups: Option<bool>,
}

async fn group_projects(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<Response, Response> {
    s.user(&headers)?;
    let g = s.group(&id)?;
    let groups = if q.include_subgroups.unwrap_or(false) {
        s.descendants(g.id)
    } else {
        vec![g.id]
    };
    let base = s.base_url.lock().unwrap().clone();
    let all: Vec<Value> = {
        let inner = s.inner.lock().unwrap();
        inner
            .projects
            .iter()
            .filter(|p| groups.contains(&p.group_id))
            .map(|p| project_json(&base, p))
            .collect()
    };
    let link_base = format!(
        "{base}/api/v4/groups/{}/projects?include_subgroups={}",
        g.id,
        q.include_subgroups.unwrap_or(false)
    );
    Ok::<_, Response>(paging::offset_page(all, q.page, q.per_page, &link_base))
}

#[derive(serde::Deserialize)]
struct HookBody {
    url: Option<String>,
    token: Option<String>,
    push_events: Option<bool>,
}

fn hook_json(h: &Hook) -> Value {
    let owner = if h.scope == "group" {
        "group_id"
    } else {
        "project_id"
    };
    json!({ "id": h.id, "url": h.url, owner: h.target_id, "push_events": h.push_events, "alert_status": "executable", "disabled_until": null, "token_present": !h.token.is_empty() })
}

fn add_hook(s: &Shared, scope: &'static str, target_id: i64, body: HookBody) -> Response {
    let Some(url) = body.url.filter(|u| !u.is_empty()) else {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({ "error": "url is missing" })),
        )
            .into_response();
    };
    let mut inner = s.inner.lock().unwrap();
    let id = GitLabSim::next_id(&mut inner);
    let hook = Hook {
        id,
        scope,
        target_id,
        url,
        token: body.token.unwrap_or_default(),
        push_events: body.push_events.unwrap_or(true),
    };
    let out = hook_json(&hook);
    inner.hooks.push(hook);
    (StatusCode::CREATED, axum::Json(out)).into_response()
}

impl Shared {
    /// GitLab's rules for managing group hooks: Premium (404 on Free, as for any unlicensed feature) and
    /// the Owner role. Returns the group id.
    fn group_hook_owner(&self, headers: &HeaderMap, id: &str) -> Result<i64, Response> {
        let u = self.user(headers)?;
        let g = self.group(id)?;
        if g.plan != Plan::Premium {
            return Err(err(StatusCode::NOT_FOUND, "404 Not Found"));
        }
        if self.access_level(g.id, u.id) < 50 {
            return Err(err(StatusCode::FORBIDDEN, "403 Forbidden"));
        }
        Ok(g.id)
    }

    /// Project hooks need Maintainer (inherited from groups included). Returns the project id.
    fn project_hook_owner(&self, headers: &HeaderMap, id: &str) -> Result<i64, Response> {
        let u = self.user(headers)?;
        let p = self.project(id)?;
        if self.access_level(p.group_id, u.id) < 40 {
            return Err(err(StatusCode::FORBIDDEN, "403 Forbidden"));
        }
        Ok(p.id)
    }
}

async fn create_group_hook(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    axum::Json(body): axum::Json<HookBody>,
) -> Result<Response, Response> {
    let group = s.group_hook_owner(&headers, &id)?;
    Ok(add_hook(&s, "group", group, body))
}

async fn create_project_hook(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    axum::Json(body): axum::Json<HookBody>,
) -> Result<Response, Response> {
    let project = s.project_hook_owner(&headers, &id)?;
    Ok(add_hook(&s, "project", project, body))
}

fn list_hooks(s: &Shared, scope: &str, target_id: i64) -> Response {
    let inner = s.inner.lock().unwrap();
    axum::Json(
        inner
            .hooks
            .iter()
            .filter(|h| h.scope == scope && h.target_id == target_id)
            .map(hook_json)
            .collect::<Vec<_>>(),
    )
    .into_response()
}

async fn list_group_hooks(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, Response> {
    let group = s.group_hook_owner(&headers, &id)?;
    Ok(list_hooks(&s, "group", group))
}

async fn list_project_hooks(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, Response> {
    let project = s.project_hook_owner(&headers, &id)?;
    Ok(list_hooks(&s, "project", project))
}

fn remove_hook(s: &Shared, scope: &str, target_id: i64, hook_id: i64) -> Response {
    let mut inner = s.inner.lock().unwrap();
    let before = inner.hooks.len();
    inner
        .hooks
        .retain(|h| !(h.scope == scope && h.target_id == target_id && h.id == hook_id));
    if inner.hooks.len() == before {
        err(StatusCode::NOT_FOUND, "404 Not found")
    } else {
        StatusCode::NO_CONTENT.into_response()
    }
}

async fn delete_group_hook(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path((id, hook_id)): Path<(String, i64)>,
) -> Result<Response, Response> {
    let group = s.group_hook_owner(&headers, &id)?;
    Ok(remove_hook(&s, "group", group, hook_id))
}

async fn delete_project_hook(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path((id, hook_id)): Path<(String, i64)>,
) -> Result<Response, Response> {
    let project = s.project_hook_owner(&headers, &id)?;
    Ok(remove_hook(&s, "project", project, hook_id))
}

async fn get_commit(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path((id, sha)): Path<(String, String)>,
) -> Result<Response, Response> {
    let u = s.user(&headers)?;
    let p = s.project(&id)?;
    if s.access_level(p.group_id, u.id) < 10 {
        return Err(err(StatusCode::NOT_FOUND, "404 Project Not Found"));
    }
    let inner = s.inner.lock().unwrap();
    let c = inner
        .commits
        .get(&(p.id, sha.clone()))
        .ok_or_else(|| err(StatusCode::NOT_FOUND, "404 Commit Not Found"))?;
    let base = s.base_url.lock().unwrap().clone();
    Ok(axum::Json(json!({
        "id": c.id,
        "short_id": &c.id[..8],
        "title": c.message.lines().next().unwrap_or(""),
        "message": c.message,
        "author_name": c.author_name,
        "author_email": c.author_email,
        "authored_date": c.timestamp,
        "committer_name": c.author_name,
        "committer_email": c.author_email,
        "committed_date": c.timestamp,
        "created_at": c.timestamp,
        "parent_ids": [],
        "web_url": format!("{base}/{}/-/commit/{}", p.path_with_namespace, c.id),
    }))
    .into_response())
}
