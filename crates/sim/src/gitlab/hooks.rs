//! Project and group webhooks: the management API, delivery with GitLab's headers (and the optional
//! Standard-Webhooks signature), event-flag filtering, auto-disabling, and test deliveries.
//!
//! Auto-disabling follows `WebHooks::AutoDisabling` (GitLab 17.11+): a failure is a non-2xx answer, a
//! timeout or a connection error; the 4th consecutive failure disables the hook for 1 minute, each
//! further failure doubles that up to 24 hours, and the 40th disables it for good. Nothing is sent while
//! a hook is disabled; a 2xx, or a successful test delivery, makes it executable again.

use gfj_core::standard_webhooks;
use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Map, Value, json};

use super::{GitLabSim, Plan, Shared, err, param_err};

/// Flags every hook has, with their defaults: only `push_events` starts on.
const PROJECT_FLAGS: &[&str] = &[
    "push_events",
    "tag_push_events",
    "merge_requests_events",
    "pipeline_events",
    "job_events",
    "deployment_events",
    "feature_flag_events",
    "issues_events",
    "confidential_issues_events",
    "note_events",
    "confidential_note_events",
    "wiki_page_events",
    "releases_events",
    "emoji_events",
    "resource_access_token_events",
];
/// Flags only group hooks have.
const GROUP_FLAGS: &[&str] = &[
    "subgroup_events",
    "member_events",
    "project_events",
    "milestone_events",
    "vulnerability_events",
];
/// Events `POST …/hooks/:id/test/:trigger` can send; deployment and feature-flag events cannot be tested.
const TEST_TRIGGERS: &[&str] = &[
    "push_events",
    "tag_push_events",
    "issues_events",
    "confidential_issues_events",
    "note_events",
    "merge_requests_events",
    "job_events",
    "pipeline_events",
    "wiki_page_events",
    "releases_events",
    "emoji_events",
    "resource_access_token_events",
];
const TEMPORARY_THRESHOLD: u32 = 4;
const PERMANENT_THRESHOLD: u32 = 40;
const TESTS_PER_MINUTE: usize = 5;

/// A hook's state as `alert_status` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertStatus {
    Executable,
    TemporarilyDisabled,
    Disabled,
}

impl AlertStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Executable => "executable",
            Self::TemporarilyDisabled => "temporarily_disabled",
            Self::Disabled => "disabled",
        }
    }
}

impl PartialEq<&str> for AlertStatus {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[derive(Debug, Clone)]
pub struct Hook {
    pub id: i64,
    /// `group` or `project`.
    pub scope: &'static str,
    pub target_id: i64,
    pub url: String,
    pub name: String,
    pub description: String,
    pub enable_ssl_verification: bool,
    /// Every `*_events` flag of the hook's scope.
    pub events: BTreeMap<&'static str, bool>,
    /// As of the moment the hook was read (it is derived from the failure count and the clock).
    pub alert_status: AlertStatus,
    pub disabled_until: Option<time::OffsetDateTime>,
    /// Consecutive failed deliveries.
    pub recent_failures: u32,
    pub created_at: time::OffsetDateTime,
    /// `X-Gitlab-Webhook-UUID`.
    pub uuid: String,
    token: String,
    signing_token: String,
    tests: Vec<time::OffsetDateTime>,
}

impl Hook {
    /// Whether the hook subscribes to the event behind `flag` (e.g. `push_events`).
    pub fn wants(&self, flag: &str) -> bool {
        self.events.get(flag).copied().unwrap_or(false)
    }

    fn status_at(&self, now: time::OffsetDateTime) -> AlertStatus {
        if self.recent_failures >= PERMANENT_THRESHOLD {
            AlertStatus::Disabled
        } else if self.disabled_until.is_some_and(|until| until > now) {
            AlertStatus::TemporarilyDisabled
        } else {
            AlertStatus::Executable
        }
    }

    fn refreshed(mut self, now: time::OffsetDateTime) -> Self {
        self.alert_status = self.status_at(now);
        self
    }

    fn record(&mut self, ok: bool, now: time::OffsetDateTime) {
        if ok {
            self.recent_failures = 0;
            self.disabled_until = None;
            return;
        }
        self.recent_failures = self.recent_failures.saturating_add(1);
        if self.recent_failures >= PERMANENT_THRESHOLD {
            self.disabled_until = None;
        } else if self.recent_failures >= TEMPORARY_THRESHOLD {
            let doublings = (self.recent_failures - TEMPORARY_THRESHOLD).min(20);
            let backoff =
                (time::Duration::minutes(1) * 2_i32.pow(doublings)).min(time::Duration::hours(24));
            self.disabled_until = Some(now + backoff);
        }
    }
}

impl GitLabSim {
    /// Every hook, as of now.
    pub fn hooks(&self) -> Vec<Hook> {
        let now = self.shared.now();
        let inner = self.shared.inner.lock().unwrap();
        inner
            .hooks
            .iter()
            .map(|h| h.clone().refreshed(now))
            .collect()
    }

    pub fn hook(&self, hook_id: i64) -> Option<Hook> {
        let now = self.shared.now();
        let inner = self.shared.inner.lock().unwrap();
        inner
            .hooks
            .iter()
            .find(|h| h.id == hook_id)
            .map(|h| h.clone().refreshed(now))
    }

    /// The secret token a hook was registered with (empty when none).
    pub fn hook_token(&self, hook_id: i64) -> Option<String> {
        self.with_hook(hook_id, |h| h.token.clone())
    }

    /// The `whsec_…` signing token a hook was registered with (empty when none).
    pub fn hook_signing_token(&self, hook_id: i64) -> Option<String> {
        self.with_hook(hook_id, |h| h.signing_token.clone())
    }

    /// Models a GitLab without webhook signing tokens (the default on most instances): `signing_token`
    /// is ignored when hooks are created or updated.
    pub fn set_signing_tokens_supported(&self, supported: bool) {
        self.shared
            .signing_unsupported
            .store(!supported, std::sync::atomic::Ordering::Relaxed);
    }

    /// Models a GitLab new enough (EE `Deployment#execute_approval_hooks`) to report each approval or
    /// rejection as a Deployment Hook whose status is the decision; older ones (the default here) send
    /// nothing when someone approves.
    pub fn set_approval_events(&self, on: bool) {
        self.shared
            .approval_events
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Puts the hook where 4 consecutive failures would: `temporarily_disabled` for a minute.
    pub fn disable_hook(&self, hook_id: i64) {
        let now = self.shared.now();
        self.with_hook(hook_id, |h| {
            h.recent_failures = 0;
            for _ in 0..TEMPORARY_THRESHOLD {
                h.record(false, now);
            }
        });
    }

    /// A GitLab user deleted the hook in the UI.
    pub fn delete_hook_externally(&self, hook_id: i64) {
        self.shared
            .inner
            .lock()
            .unwrap()
            .hooks
            .retain(|h| h.id != hook_id);
    }

    /// Delivers a group-level event (`Subgroup Hook`, `Member Hook`, …) to the group hooks of the group
    /// and its ancestors that subscribe to it.
    pub async fn deliver_group_event(&self, group_id: i64, event: &str, payload: Value) {
        deliver(&self.shared, Target::Group(group_id), event, payload).await;
    }

    /// Adds a project as a user would, so group hooks with `project_events` hear `project_create`.
    pub async fn create_project(&self, group_id: i64, path: &str) -> i64 {
        let id = self.add_project(group_id, path);
        let payload = self.project_event(id, "project_create");
        deliver(&self.shared, Target::Project(id), "Project Hook", payload).await;
        id
    }

    /// Deletes a project as a user would: group hooks with `project_events` hear `project_destroy`.
    pub async fn destroy_project(&self, project_id: i64) {
        let payload = self.project_event(project_id, "project_destroy");
        deliver(
            &self.shared,
            Target::Project(project_id),
            "Project Hook",
            payload,
        )
        .await;
        self.remove_project(project_id);
    }

    /// The body of a `Project Hook` delivery about one project.
    fn project_event(&self, project_id: i64, event_name: &str) -> Value {
        let inner = self.shared.inner.lock().unwrap();
        let p = inner
            .projects
            .iter()
            .find(|p| p.id == project_id)
            .expect("the project exists");
        let at = super::rfc3339(self.shared.now());
        json!({
            "event_name": event_name,
            "created_at": at,
            "updated_at": at,
            "name": p.name,
            "path": p.name,
            "path_with_namespace": p.path_with_namespace,
            "project_id": p.id,
            "project_namespace_id": p.group_id,
            "owners": [],
            "project_visibility": "private",
        })
    }

    fn with_hook<T>(&self, hook_id: i64, f: impl FnOnce(&mut Hook) -> T) -> Option<T> {
        let mut inner = self.shared.inner.lock().unwrap();
        inner.hooks.iter_mut().find(|h| h.id == hook_id).map(f)
    }
}

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route(
            "/api/v4/groups/{id}/hooks",
            get(list_group_hooks).post(create_group_hook),
        )
        .route(
            "/api/v4/groups/{id}/hooks/{hook_id}",
            get(get_group_hook)
                .put(update_group_hook)
                .delete(delete_group_hook),
        )
        .route(
            "/api/v4/groups/{id}/hooks/{hook_id}/test/{trigger}",
            post(test_group_hook),
        )
        .route(
            "/api/v4/projects/{id}/hooks",
            get(list_project_hooks).post(create_project_hook),
        )
        .route(
            "/api/v4/projects/{id}/hooks/{hook_id}",
            get(get_project_hook)
                .put(update_project_hook)
                .delete(delete_project_hook),
        )
        .route(
            "/api/v4/projects/{id}/hooks/{hook_id}/test/{trigger}",
            post(test_project_hook),
        )
}

/// Which hooks an event can reach.
pub(super) enum Target {
    /// The project's hooks and the group hooks of its group and every ancestor.
    Project(i64),
    /// Group-only events (subgroups, members): the group hooks of the group and its ancestors.
    Group(i64),
}

/// The hook flag an `X-Gitlab-Event` needs, and whether only group hooks can have it.
fn flag_for(event: &str) -> Option<(&'static str, bool)> {
    Some(match event {
        "Push Hook" => ("push_events", false),
        "Tag Push Hook" => ("tag_push_events", false),
        "Merge Request Hook" => ("merge_requests_events", false),
        "Pipeline Hook" => ("pipeline_events", false),
        "Job Hook" => ("job_events", false),
        "Deployment Hook" => ("deployment_events", false),
        "Feature Flag Hook" => ("feature_flag_events", false),
        "Issue Hook" => ("issues_events", false),
        "Note Hook" => ("note_events", false),
        "Release Hook" => ("releases_events", false),
        "Project Hook" => ("project_events", true),
        "Subgroup Hook" => ("subgroup_events", true),
        "Member Hook" => ("member_events", true),
        _ => return None,
    })
}

/// Sends `payload` to every subscribed hook in reach, one after another, recording each attempt.
pub(super) async fn deliver(s: &Shared, target: Target, event: &str, payload: Value) {
    let Some((flag, group_only)) = flag_for(event) else {
        panic!("the simulator does not know which hook flag {event:?} needs");
    };
    let hook_ids: Vec<i64> = {
        let inner = s.inner.lock().unwrap();
        let (project, group) = match target {
            Target::Project(id) => {
                let p = inner
                    .projects
                    .iter()
                    .find(|p| p.id == id)
                    .expect("project exists");
                (Some(id), p.group_id)
            }
            Target::Group(id) => (None, id),
        };
        let mut groups = Vec::new();
        let mut g = Some(group);
        while let Some(id) = g {
            groups.push(id);
            g = inner
                .groups
                .iter()
                .find(|x| x.id == id)
                .and_then(|x| x.parent_id);
        }
        inner
            .hooks
            .iter()
            .filter(|h| h.wants(flag))
            .filter(|h| {
                (h.scope == "project" && !group_only && Some(h.target_id) == project)
                    || (h.scope == "group" && groups.contains(&h.target_id))
            })
            .map(|h| h.id)
            .collect()
    };
    let body = serde_json::to_vec(&payload).expect("JSON");
    // One event, one UUID, shared by every hook it reaches.
    let event_uuid = super::uuid_like();
    for hook_id in hook_ids {
        send(s, hook_id, event, &body, &event_uuid, false).await;
    }
}

/// One delivery to one hook. Returns the receiver's status, `None` when skipped or unreachable.
async fn send(
    s: &Shared,
    hook_id: i64,
    event: &str,
    body: &[u8],
    event_uuid: &str,
    test: bool,
) -> Option<u16> {
    let now = s.now();
    let hook = {
        let inner = s.inner.lock().unwrap();
        inner.hooks.iter().find(|h| h.id == hook_id)?.clone()
    };
    let key = super::uuid_like();
    let mut record = super::Delivery {
        hook_id,
        event: event.into(),
        status: None,
        idempotency_key: key.clone(),
        skipped: false,
        test,
    };
    if !test && hook.status_at(now) != AlertStatus::Executable {
        record.skipped = true;
        s.inner.lock().unwrap().deliveries.push(record);
        return None;
    }
    let mut req = s
        .http
        .post(&hook.url)
        .header("Content-Type", "application/json")
        .header("User-Agent", "GitLab/19.5.0")
        .header("X-Gitlab-Event", event)
        .header("X-Gitlab-Instance", s.base())
        .header("X-Gitlab-Webhook-UUID", &hook.uuid)
        .header("X-Gitlab-Event-UUID", event_uuid)
        .header("Idempotency-Key", &key);
    if !hook.token.is_empty() {
        req = req.header("X-Gitlab-Token", &hook.token);
    }
    if let Some(secret) = signing_secret(&hook.signing_token) {
        // Real time, not the simulator clock: receivers compare it with their own clock, and tests that
        // advance the GitLab clock do not mean GitLab's wall clock is wrong.
        let timestamp = time::OffsetDateTime::now_utc().unix_timestamp();
        req = req
            .header("webhook-id", &key)
            .header("webhook-timestamp", timestamp.to_string())
            .header(
                "webhook-signature",
                standard_webhooks::sign(&secret, &key, timestamp, body),
            );
    }
    let status = req
        .body(body.to_vec())
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16());
    record.status = status;
    let ok = status.is_some_and(|c| (200..300).contains(&c));
    let mut inner = s.inner.lock().unwrap();
    if let Some(h) = inner.hooks.iter_mut().find(|h| h.id == hook_id) {
        h.record(ok, s.now());
    }
    inner.deliveries.push(record);
    status
}

/// The 32 secret bytes of a `whsec_<base64>` signing token.
fn signing_secret(token: &str) -> Option<Vec<u8>> {
    let key = standard_webhooks::secret_key(token).ok()?;
    (key.len() == 32).then_some(key)
}

fn hook_json(h: &Hook, now: time::OffsetDateTime) -> Value {
    let owner = if h.scope == "group" {
        "group_id"
    } else {
        "project_id"
    };
    let mut out = json!({
        "id": h.id,
        "url": h.url,
        "name": h.name,
        "description": h.description,
        owner: h.target_id,
        "enable_ssl_verification": h.enable_ssl_verification,
        "push_events_branch_filter": "",
        "branch_filter_strategy": "wildcard",
        "repository_update_events": false,
        "alert_status": h.status_at(now).as_str(),
        "disabled_until": match h.status_at(now) {
            AlertStatus::TemporarilyDisabled => h.disabled_until.map(super::rfc3339),
            _ => None,
        },
        "url_variables": [],
        "custom_headers": [],
        "custom_webhook_template": null,
        "created_at": super::rfc3339(h.created_at),
        "token_present": !h.token.is_empty(),
        "signing_token_present": !h.signing_token.is_empty(),
    });
    for (flag, on) in &h.events {
        out[*flag] = json!(on);
    }
    out
}

/// Hook parameters from a JSON body, a form body or the query string, as Grape accepts them all.
fn hook_params(
    headers: &HeaderMap,
    raw_query: Option<&str>,
    body: &[u8],
) -> Result<Map<String, Value>, Response> {
    let mut p: Map<String, Value> = url::form_urlencoded::parse(raw_query.unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
        .collect();
    let json = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if json && !body.is_empty() {
        let parsed: Map<String, Value> = serde_json::from_slice(body).map_err(|_| {
            (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({ "error": "body is not valid JSON" })),
            )
                .into_response()
        })?;
        p.extend(parsed);
    } else {
        p.extend(
            url::form_urlencoded::parse(body)
                .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned()))),
        );
    }
    Ok(p)
}

fn bool_of(p: &Map<String, Value>, name: &str) -> Result<Option<bool>, Response> {
    match p.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::String(v)) if v == "true" || v == "1" => Ok(Some(true)),
        Some(Value::String(v)) if v == "false" || v == "0" => Ok(Some(false)),
        Some(_) => Err(param_err(&format!("{name} is invalid"))),
    }
}

fn string_of(p: &Map<String, Value>, name: &str) -> Result<Option<String>, Response> {
    match p.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(v)) => Ok(Some(v.clone())),
        Some(_) => Err(param_err(&format!("{name} is invalid"))),
    }
}

/// Grape ignores parameters a GitLab version does not know: before signing tokens (and wherever the
/// `webhook_signing_token` feature flag is off) `signing_token` is silently dropped.
fn without_unsupported(s: &Shared, mut p: Map<String, Value>) -> Map<String, Value> {
    if s.signing_unsupported
        .load(std::sync::atomic::Ordering::Relaxed)
    {
        p.remove("signing_token");
    }
    p
}

/// Applies create or update parameters to `h`, with GitLab's validation.
fn apply(h: &mut Hook, p: &Map<String, Value>) -> Result<(), Response> {
    if let Some(url) = string_of(p, "url")? {
        let parsed = url::Url::parse(&url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
        if parsed.is_none() {
            return Err(err(StatusCode::UNPROCESSABLE_ENTITY, "Invalid url given"));
        }
        if url != h.url {
            // GitLab drops the secret when the URL changes, so a token cannot leak to a new receiver.
            h.token.clear();
        }
        h.url = url;
    }
    if let Some(token) = string_of(p, "token")? {
        h.token = token;
    }
    if let Some(signing) = string_of(p, "signing_token")? {
        if !signing.is_empty() && signing_secret(&signing).is_none() {
            return Err((
                StatusCode::BAD_REQUEST,
                axum::Json(json!({ "message": { "signing_token": ["must be in the format whsec_<base64 of 32 bytes>"] } })),
            )
                .into_response());
        }
        h.signing_token = signing;
    }
    if let Some(name) = string_of(p, "name")? {
        h.name = name;
    }
    if let Some(description) = string_of(p, "description")? {
        h.description = description;
    }
    if let Some(v) = bool_of(p, "enable_ssl_verification")? {
        h.enable_ssl_verification = v;
    }
    for flag in h.events.keys().copied().collect::<Vec<_>>() {
        if let Some(v) = bool_of(p, flag)? {
            h.events.insert(flag, v);
        }
    }
    Ok(())
}

fn create(
    s: &Shared,
    scope: &'static str,
    target_id: i64,
    p: Map<String, Value>,
) -> Result<Response, Response> {
    if string_of(&p, "url")?.is_none_or(|u| u.is_empty()) {
        return Err(param_err("url is missing"));
    }
    let flags = PROJECT_FLAGS
        .iter()
        .chain(if scope == "group" { GROUP_FLAGS } else { &[] })
        .map(|f| (*f, *f == "push_events"))
        .collect();
    let now = s.now();
    let mut hook = Hook {
        id: 0,
        scope,
        target_id,
        url: String::new(),
        name: String::new(),
        description: String::new(),
        enable_ssl_verification: true,
        events: flags,
        alert_status: AlertStatus::Executable,
        disabled_until: None,
        recent_failures: 0,
        created_at: now,
        uuid: super::uuid_like(),
        token: String::new(),
        signing_token: String::new(),
        tests: Vec::new(),
    };
    apply(&mut hook, &without_unsupported(s, p))?;
    let mut inner = s.inner.lock().unwrap();
    hook.id = GitLabSim::next_id(&mut inner);
    let out = hook_json(&hook, now);
    inner.hooks.push(hook);
    Ok((StatusCode::CREATED, axum::Json(out)).into_response())
}

fn find(s: &Shared, scope: &str, target_id: i64, hook_id: i64) -> Result<Hook, Response> {
    let inner = s.inner.lock().unwrap();
    inner
        .hooks
        .iter()
        .find(|h| h.scope == scope && h.target_id == target_id && h.id == hook_id)
        .cloned()
        .ok_or_else(|| err(StatusCode::NOT_FOUND, "404 Not found"))
}

fn update(
    s: &Shared,
    scope: &str,
    target_id: i64,
    hook_id: i64,
    p: Map<String, Value>,
) -> Result<Response, Response> {
    let mut hook = find(s, scope, target_id, hook_id)?;
    apply(&mut hook, &without_unsupported(s, p))?;
    let now = s.now();
    let mut inner = s.inner.lock().unwrap();
    let slot = inner
        .hooks
        .iter_mut()
        .find(|h| h.id == hook_id)
        .ok_or_else(|| err(StatusCode::NOT_FOUND, "404 Not found"))?;
    *slot = hook;
    Ok(axum::Json(hook_json(slot, now)).into_response())
}

fn list(
    s: &Shared,
    scope: &str,
    target_id: i64,
    q: &std::collections::HashMap<String, String>,
    link: String,
) -> Result<Response, Response> {
    let now = s.now();
    let all: Vec<Value> = {
        let inner = s.inner.lock().unwrap();
        inner
            .hooks
            .iter()
            .filter(|h| h.scope == scope && h.target_id == target_id)
            .map(|h| hook_json(h, now))
            .collect()
    };
    Ok(super::paging::offset_page(
        all,
        super::usize_param(q, "page")?,
        super::usize_param(q, "per_page")?,
        &link,
    ))
}

fn remove(s: &Shared, scope: &str, target_id: i64, hook_id: i64) -> Response {
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

/// `POST …/hooks/:id/test/:trigger`: sends a sample of the event to this hook alone, even while it is
/// disabled, which is how GitLab lets a user re-enable a hook; 201 on a 2xx answer, 422 otherwise.
async fn test(
    s: &Shared,
    user_id: i64,
    scope: &str,
    target_id: i64,
    hook_id: i64,
    trigger: &str,
    project_id: Option<i64>,
) -> Result<Response, Response> {
    if !TEST_TRIGGERS.contains(&trigger) {
        return Err(param_err("trigger does not have a valid value"));
    }
    find(s, scope, target_id, hook_id)?;
    let now = s.now();
    {
        let mut inner = s.inner.lock().unwrap();
        let h = inner
            .hooks
            .iter_mut()
            .find(|h| h.id == hook_id)
            .ok_or_else(|| err(StatusCode::NOT_FOUND, "404 Not found"))?;
        h.tests.retain(|t| *t > now - time::Duration::minutes(1));
        if h.tests.len() >= TESTS_PER_MINUTE {
            return Err(err(
                StatusCode::TOO_MANY_REQUESTS,
                "This endpoint has been requested too many times. Try again later.",
            ));
        }
        h.tests.push(now);
    }
    let Some(project_id) = project_id else {
        return Err(err(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Ensure the group has a project with commits.",
        ));
    };
    let (event, payload) = sample(s, trigger, project_id, user_id);
    let body = serde_json::to_vec(&payload).expect("JSON");
    match send(s, hook_id, event, &body, &super::uuid_like(), true).await {
        Some(code) if (200..300).contains(&code) => Ok((
            StatusCode::CREATED,
            axum::Json(json!({ "message": "201 Created" })),
        )
            .into_response()),
        Some(code) => Err(err(
            StatusCode::UNPROCESSABLE_ENTITY,
            &format!("Hook executed successfully but returned HTTP {code}"),
        )),
        None => Err(err(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Hook execution failed: connection error",
        )),
    }
}

/// GitLab's test data: for pushes, the last (up to three) commits of the default branch
/// (`DataBuilder::Push.build_sample`); for other events a minimal payload of the right kind.
fn sample(s: &Shared, trigger: &str, project_id: i64, user_id: i64) -> (&'static str, Value) {
    let base = s.base();
    let inner = s.inner.lock().unwrap();
    let p = inner
        .projects
        .iter()
        .find(|p| p.id == project_id)
        .expect("project exists")
        .clone();
    let project = super::project_json(&base, &p);
    let (event, kind) = match trigger {
        "push_events" => {
            let head = p.branches[&p.default_branch].clone();
            let commits: Vec<super::SimCommit> = super::repo::history(&inner, p.id, &head)
                .into_iter()
                .take(3)
                .collect();
            let before = commits
                .last()
                .map(|c| c.id.clone())
                .unwrap_or_else(|| super::NULL_SHA.into());
            return (
                "Push Hook",
                super::repo::push_payload(
                    &base,
                    &inner,
                    &p,
                    &p.default_branch,
                    &before,
                    &head,
                    &commits,
                    commits.len(),
                    user_id,
                ),
            );
        }
        "tag_push_events" => ("Tag Push Hook", "tag_push"),
        "merge_requests_events" => ("Merge Request Hook", "merge_request"),
        "pipeline_events" => ("Pipeline Hook", "pipeline"),
        "job_events" => ("Job Hook", "build"),
        "issues_events" | "confidential_issues_events" => ("Issue Hook", "issue"),
        "note_events" => ("Note Hook", "note"),
        "releases_events" => ("Release Hook", "release"),
        "wiki_page_events" => ("Wiki Page Hook", "wiki_page"),
        "emoji_events" => ("Emoji Hook", "emoji"),
        _ => ("Resource Access Token Hook", "access_token"),
    };
    (
        event,
        json!({ "object_kind": kind, "event_type": kind, "project_id": p.id, "project": project, "object_attributes": {} }),
    )
}

impl Shared {
    /// GitLab's rules for managing group hooks: Premium (404 on Free, as for any unlicensed feature) and
    /// the Owner role. Returns the group id.
    fn group_hook_owner(&self, headers: &HeaderMap, id: &str) -> Result<i64, Response> {
        let (u, g) = self.visible_group(headers, id)?;
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
        let (_, p, level) = self.visible_project(headers, id)?;
        if level < 40 {
            return Err(err(StatusCode::FORBIDDEN, "403 Forbidden"));
        }
        Ok(p.id)
    }
}

type Q = Query<std::collections::HashMap<String, String>>;

async fn create_group_hook(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Result<Response, Response> {
    let group = s.group_hook_owner(&headers, &id)?;
    create(
        &s,
        "group",
        group,
        hook_params(&headers, raw.as_deref(), &body)?,
    )
}

async fn create_project_hook(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Result<Response, Response> {
    let project = s.project_hook_owner(&headers, &id)?;
    create(
        &s,
        "project",
        project,
        hook_params(&headers, raw.as_deref(), &body)?,
    )
}

async fn list_group_hooks(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Q,
    RawQuery(raw): RawQuery,
) -> Result<Response, Response> {
    let group = s.group_hook_owner(&headers, &id)?;
    let link = super::with_query(
        format!("{}/api/v4/groups/{group}/hooks", s.base()),
        &super::query_without(raw.as_deref(), &["page", "per_page"]),
    );
    list(&s, "group", group, &q, link)
}

async fn list_project_hooks(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Q,
    RawQuery(raw): RawQuery,
) -> Result<Response, Response> {
    let project = s.project_hook_owner(&headers, &id)?;
    let link = super::with_query(
        format!("{}/api/v4/projects/{project}/hooks", s.base()),
        &super::query_without(raw.as_deref(), &["page", "per_page"]),
    );
    list(&s, "project", project, &q, link)
}

async fn get_group_hook(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path((id, hook_id)): Path<(String, i64)>,
) -> Result<Response, Response> {
    let group = s.group_hook_owner(&headers, &id)?;
    Ok(axum::Json(hook_json(&find(&s, "group", group, hook_id)?, s.now())).into_response())
}

async fn get_project_hook(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path((id, hook_id)): Path<(String, i64)>,
) -> Result<Response, Response> {
    let project = s.project_hook_owner(&headers, &id)?;
    Ok(axum::Json(hook_json(&find(&s, "project", project, hook_id)?, s.now())).into_response())
}

async fn update_group_hook(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path((id, hook_id)): Path<(String, i64)>,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Result<Response, Response> {
    let group = s.group_hook_owner(&headers, &id)?;
    update(
        &s,
        "group",
        group,
        hook_id,
        hook_params(&headers, raw.as_deref(), &body)?,
    )
}

async fn update_project_hook(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path((id, hook_id)): Path<(String, i64)>,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Result<Response, Response> {
    let project = s.project_hook_owner(&headers, &id)?;
    update(
        &s,
        "project",
        project,
        hook_id,
        hook_params(&headers, raw.as_deref(), &body)?,
    )
}

async fn delete_group_hook(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path((id, hook_id)): Path<(String, i64)>,
) -> Result<Response, Response> {
    let group = s.group_hook_owner(&headers, &id)?;
    Ok(remove(&s, "group", group, hook_id))
}

async fn delete_project_hook(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path((id, hook_id)): Path<(String, i64)>,
) -> Result<Response, Response> {
    let project = s.project_hook_owner(&headers, &id)?;
    Ok(remove(&s, "project", project, hook_id))
}

async fn test_group_hook(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path((id, hook_id, trigger)): Path<(String, i64, String)>,
) -> Result<Response, Response> {
    let group = s.group_hook_owner(&headers, &id)?;
    let user = s.user(&headers)?;
    // A group has no repository of its own; GitLab samples one of its projects.
    let project = {
        let inner = s.inner.lock().unwrap();
        let groups = super::descendants(&inner, group);
        inner
            .projects
            .iter()
            .filter(|p| groups.contains(&p.group_id))
            .map(|p| p.id)
            .min()
    };
    test(&s, user.id, "group", group, hook_id, &trigger, project).await
}

async fn test_project_hook(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path((id, hook_id, trigger)): Path<(String, i64, String)>,
) -> Result<Response, Response> {
    let project = s.project_hook_owner(&headers, &id)?;
    let user = s.user(&headers)?;
    test(
        &s,
        user.id,
        "project",
        project,
        hook_id,
        &trigger,
        Some(project),
    )
    .await
}
