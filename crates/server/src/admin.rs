//! The standalone admin page, for sites in OAuth-credentials mode (which have no page inside Jira) and
//! for operators: sites, linked groups with their backfill progress, link, unlink and resync.
//!
//! Everything needs `Authorization: Bearer <GFJ_ADMIN_TOKEN>` (compared in constant time); without the
//! setting the page and its API are off (404). `GET /admin` without the token answers 401 with a form
//! that keeps the token in the tab's session storage and sends it as that header, never as a cookie, so
//! no other site can act through the operator's browser.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use gfj_sync::linking::{GitLabCredentials, HookMode, LinkRequest};
use serde::Deserialize;
use serde_json::json;

use crate::AppState;
use crate::jira_config::{error, link_error, linked_groups, storage_unavailable};

/// Wrong admin tokens accepted per minute by one process; past that every admin request is refused with
/// 429 until the minute is over, so guessing costs a minute per ten tries.
pub const ADMIN_FAILURES_PER_MINUTE: u32 = 10;
const THROTTLE_WINDOW_MS: i64 = 60_000;

/// Failed admin attempts in the current minute.
#[derive(Default)]
pub(crate) struct AdminThrottle(std::sync::Mutex<(i64, u32)>);

/// What an admin request may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AdminAccess {
    /// `GFJ_ADMIN_TOKEN` is not set: the admin routes are off.
    Off,
    Granted,
    Refused,
    Throttled {
        retry_after_secs: i64,
    },
}

/// Checks `Authorization: Bearer <GFJ_ADMIN_TOKEN>` by comparing digests in constant time, within the
/// failure throttle.
pub(crate) fn admin_access(state: &AppState, headers: &HeaderMap) -> AdminAccess {
    let Some(expected) = state.config.admin_token_digest.as_deref() else {
        return AdminAccess::Off;
    };
    let now = state.clock.now_ms();
    let mut window = state
        .admin_throttle
        .0
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if now.saturating_sub(window.0) >= THROTTLE_WINDOW_MS || now < window.0 {
        *window = (now, 0);
    }
    if window.1 >= ADMIN_FAILURES_PER_MINUTE {
        let left_ms = THROTTLE_WINDOW_MS - now.saturating_sub(window.0);
        return AdminAccess::Throttled {
            retry_after_secs: (left_ms + 999) / 1000,
        };
    }
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(token) if gfj_core::digest::matches_digest(token.trim().as_bytes(), expected) => {
            AdminAccess::Granted
        }
        Some(_) => {
            window.1 += 1;
            tracing::warn!(
                failures_this_minute = window.1,
                "admin request with a wrong token"
            );
            AdminAccess::Refused
        }
        None => AdminAccess::Refused,
    }
}

/// `None` when the caller may go on; else the answer.
pub(crate) fn guard(state: &AppState, headers: &HeaderMap) -> Option<Response> {
    match admin_access(state, headers) {
        AdminAccess::Granted => None,
        AdminAccess::Off => Some(error(
            StatusCode::NOT_FOUND,
            "the admin page is off (no GFJ_ADMIN_TOKEN)",
        )),
        AdminAccess::Refused => Some(error(StatusCode::UNAUTHORIZED, "admin token required")),
        AdminAccess::Throttled { retry_after_secs } => Some(throttled(retry_after_secs)),
    }
}

fn throttled(retry_after_secs: i64) -> Response {
    let mut r = error(
        StatusCode::TOO_MANY_REQUESTS,
        "too many wrong admin tokens; wait a minute",
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
    r
}

/// `GET /admin`: the page (200 with the token, 401 with the same page asking for it).
pub async fn page(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let status = match admin_access(&state, &headers) {
        AdminAccess::Off => {
            return error(
                StatusCode::NOT_FOUND,
                "the admin page is off (no GFJ_ADMIN_TOKEN)",
            );
        }
        AdminAccess::Throttled { retry_after_secs } => return throttled(retry_after_secs),
        AdminAccess::Granted => StatusCode::OK,
        AdminAccess::Refused => StatusCode::UNAUTHORIZED,
    };
    let mut response = (status, Html(include_str!("../assets/admin.html"))).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

pub async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("../assets/admin.js"),
    )
        .into_response()
}

/// `GET /admin/api/overview`: sites, linked groups with progress, GitLab instances to sign in to.
pub async fn overview(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Some(r) = guard(&state, &headers) {
        return r;
    }
    let sites = match state.store.installations().await {
        Ok(s) => s,
        Err(e) => return storage_unavailable(&e, "serve the admin page"),
    };
    let mut subscriptions = match linked_groups(&state, None).await {
        Ok(list) => list,
        Err(e) => return storage_unavailable(&e, "serve the admin page"),
    };
    for s in &mut subscriptions {
        let site = sites
            .iter()
            .find(|i| s["client_key"] == i.client_key.as_str());
        s["site"] = json!(site.map(|i| i.base_url.as_str()));
    }
    axum::Json(json!({
        "sites": sites.iter().map(|s| json!({
            "client_key": s.client_key,
            "base_url": s.base_url,
            "mode": s.mode(),
        })).collect::<Vec<_>>(),
        "subscriptions": subscriptions,
        "gitlab_instances": state.config.gitlab_oauth_apps.iter().map(|a| &a.gitlab_url).collect::<Vec<_>>(),
    }))
    .into_response()
}

/// How many of the newest rejections the page shows.
const REJECTIONS_SHOWN: usize = 50;

/// `GET /admin/api/attention`: what needs an operator: dead jobs with their last error, sites paused or
/// flagged, deployment gates still open or decided, and Jira's newest rejections.
pub async fn attention(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Some(r) = guard(&state, &headers) {
        return r;
    }
    let now = state.clock.now_ms();
    let read = async {
        let dead: Vec<_> = state
            .store
            .jobs()
            .await?
            .into_iter()
            .filter(|j| j.dead_at.is_some())
            .collect();
        let sites: Vec<_> = state
            .store
            .site_states()
            .await?
            .into_iter()
            .filter(|s| s.paused_until > now || s.attention.is_some())
            .map(|s| {
                json!({
                    "client_key": s.client_key,
                    "paused_until": (s.paused_until > now).then_some(s.paused_until),
                    "pause_reason": s.pause_reason,
                    "attention": s.attention,
                })
            })
            .collect();
        let gates: Vec<_> = state
            .store
            .gates(None)
            .await?
            .into_iter()
            .filter(|g| g.state != gfj_core::jsm::GateState::Done)
            .map(|g| {
                let mut v = json!(g);
                v["age_ms"] = json!(now - g.opened_at);
                v
            })
            .collect();
        let mut rejections = state.store.rejections().await?;
        rejections.reverse();
        rejections.truncate(REJECTIONS_SHOWN);
        Ok::<_, gfj_store::StoreError>(json!({
            "dead_jobs": dead,
            "sites": sites,
            "open_gates": gates,
            "rejections": rejections,
        }))
    };
    match read.await {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => storage_unavailable(&e, "serve the admin page"),
    }
}

/// Entities the issue search shows, newest first (as `status --issue`).
const ISSUE_ENTRIES_SHOWN: i64 = 200;

/// `GET /admin/api/issues/{key}`: what `status --issue KEY` shows: what was sent under the key with
/// Jira's verdicts, its deployment gates, and why something may not have been sent. 400 for anything
/// that is not one issue key.
pub async fn issue(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(key): Path<String>,
) -> Response {
    if let Some(r) = guard(&state, &headers) {
        return r;
    }
    let key = key.trim().to_ascii_uppercase();
    let found = gfj_core::issue_keys::extract([key.as_str()]);
    if key.len() > 255 || found.keys() != std::slice::from_ref(&key) {
        return error(
            StatusCode::BAD_REQUEST,
            "give one Jira issue key, such as PROJ-123",
        );
    }
    match state.store.issue_report(&key, ISSUE_ENTRIES_SHOWN).await {
        Ok(report) => axum::Json(report).into_response(),
        Err(e) => storage_unavailable(&e, "search an issue key"),
    }
}

/// `GET /admin/api/subscriptions/{id}/backfill`: the group's backfill per project, each task with its
/// state, counts and failure reason.
pub async fn backfill(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Response {
    if let Some(r) = guard(&state, &headers) {
        return r;
    }
    match state.store.subscription(id).await {
        Ok(Some(_)) => {}
        Ok(None) => return error(StatusCode::NOT_FOUND, "no such subscription"),
        Err(e) => return storage_unavailable(&e, "read a backfill"),
    }
    match state.store.backfill_report(id, state.clock.now_ms()).await {
        Ok(report) => axum::Json(report).into_response(),
        Err(e) => storage_unavailable(&e, "read a backfill"),
    }
}

/// `POST /admin/api/jobs/{id}/retry`: runs a dead job again, with all its attempts.
pub async fn retry_job(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Response {
    if let Some(r) = guard(&state, &headers) {
        return r;
    }
    match state.store.retry_dead_job(id, state.clock.now_ms()).await {
        Ok(true) => axum::Json(json!({ "retried": id })).into_response(),
        Ok(false) => error(StatusCode::NOT_FOUND, "no such dead job"),
        Err(e) => storage_unavailable(&e, "retry a job"),
    }
}

#[derive(Deserialize)]
pub struct LinkBody {
    /// A Connect clientKey or a Jira base URL.
    site: String,
    group: String,
    gitlab_url: String,
    gitlab_token: Option<String>,
    gitlab_connection: Option<i64>,
    hook_mode: Option<HookMode>,
}

/// `POST /admin/api/subscriptions`: links a group with a GitLab token or a GitLab sign-in.
pub async fn link(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    axum::Json(body): axum::Json<LinkBody>,
) -> Response {
    if let Some(r) = guard(&state, &headers) {
        return r;
    }
    let install = match state.store.find_installation(body.site.trim()).await {
        Ok(Some(i)) => i,
        Ok(None) => return error(StatusCode::NOT_FOUND, "no such Jira site"),
        Err(e) => return storage_unavailable(&e, "serve the admin page"),
    };
    let credentials = match (body.gitlab_connection, body.gitlab_token) {
        (Some(id), _) => GitLabCredentials::AdminConnection(id),
        (None, Some(t)) if !t.trim().is_empty() => GitLabCredentials::Token(t.trim().to_owned()),
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "give a GitLab token or a GitLab sign-in (connection id)",
            );
        }
    };
    let req = LinkRequest {
        install: &install,
        group: body.group.trim(),
        gitlab_url: body.gitlab_url.trim(),
        credentials,
        hook_mode: body.hook_mode.unwrap_or(HookMode::Auto),
    };
    match state.linker().link(req, state.clock.now_ms()).await {
        Ok(linked) => (StatusCode::CREATED, axum::Json(linked)).into_response(),
        Err(e) => link_error(&e),
    }
}

/// `DELETE /admin/api/subscriptions/{id}`.
pub async fn unlink(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Response {
    if let Some(r) = guard(&state, &headers) {
        return r;
    }
    let sub = match state.store.subscription(id).await {
        Ok(Some(s)) => s,
        Ok(None) => return error(StatusCode::NOT_FOUND, "no such subscription"),
        Err(e) => return storage_unavailable(&e, "serve the admin page"),
    };
    match state.linker().unlink(&sub, state.clock.now_ms()).await {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => link_error(&e),
    }
}

#[derive(Deserialize, Default)]
pub struct ResyncBody {
    #[serde(default)]
    failed: bool,
}

/// `POST /admin/api/subscriptions/{id}/resync` `{"failed": bool}`: backfills the group again (or only
/// what failed).
pub async fn resync(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    body: Option<axum::Json<ResyncBody>>,
) -> Response {
    if let Some(r) = guard(&state, &headers) {
        return r;
    }
    let only_failed = body.map(|b| b.failed).unwrap_or(false);
    let now = state.clock.now_ms();
    match state.store.subscription(id).await {
        Ok(Some(_)) => {}
        Ok(None) => return error(StatusCode::NOT_FOUND, "no such subscription"),
        Err(e) => return storage_unavailable(&e, "serve the admin page"),
    }
    let queued = match state
        .store
        .reset_backfill(id, None, None, only_failed, now)
        .await
    {
        Ok(n) => n,
        Err(e) => return storage_unavailable(&e, "serve the admin page"),
    };
    if let Err(e) = state
        .store
        .start_backfill_tasks(state.config.backfill_tasks, now)
        .await
    {
        return storage_unavailable(&e, "serve the admin page");
    }
    axum::Json(json!({ "subscription_id": id, "queued_tasks": queued })).into_response()
}
