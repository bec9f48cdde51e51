//! The configuration page inside Jira (Connect `postInstallPage`) and the API it calls.
//!
//! `GET /jira/config` is loaded by Jira in an iframe with a JWT bound to that exact request (`qsh`). The
//! page is rendered here and carries a short-lived *context token* for its user — the same kind Jira's
//! `AP.context.getToken()` gives (`qsh` = `context-qsh`) — so it works without Atlassian's script. Its
//! API calls send that token as `Authorization: JWT …`; no cookie is involved, so no other site can make
//! a browser call them (CSRF), and no secret is in the page.
//!
//! Linking needs a Jira administrator (`site-admins` or `org-admins`, read from Jira) and the user's own
//! GitLab sign-in (OAuth with PKCE, started here, finished by `/gitlab/oauth/callback`), which must hold
//! Maintainer or higher on the group.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Response};
use gfj_core::connect_jwt::{self, BoundRequest, QshRule};
use gfj_store::backfill::Progress;
use gfj_store::gitlab_connections::JiraUser;
use gfj_store::installations::Installation;
use gfj_sync::linking::{GitLabCredentials, HookMode, LinkError, LinkRequest};
use serde::Deserialize;
use serde_json::json;

use crate::AppState;

/// What the page shows when linking is refused on the Jira side (GitLab's app shows the same).
pub const LINK_REFUSED: &str = "Failed to link group. Please try again.";
/// Jira groups whose members may link and unlink.
const ADMIN_GROUPS: [&str; 2] = ["site-admins", "org-admins"];

/// A JSON error answer: `{"error": message}`.
pub(crate) fn error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({ "error": message }))).into_response()
}

/// The answer when the database fails: logged with what was being done, 503 to retry.
pub(crate) fn storage_unavailable(e: &gfj_store::StoreError, doing: &str) -> Response {
    tracing::error!(error = %e, "storage failed while trying to {doing}");
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "storage unavailable, retry",
    )
}

fn unauthorized(why: &str) -> Response {
    error(StatusCode::UNAUTHORIZED, why)
}

/// The installation a Jira-signed token names (`iss` = clientKey), with its shared secret.
pub(crate) async fn installation_of(
    state: &AppState,
    token: &str,
) -> Result<Installation, Response> {
    let (_, claims) =
        connect_jwt::peek(token).map_err(|e| unauthorized(&format!("invalid JWT: {e}")))?;
    match state.store.installation(&claims.iss).await {
        Ok(Some(i)) if i.oauth.is_none() => Ok(i),
        Ok(_) => Err(unauthorized("unknown Jira site")),
        Err(e) => Err(storage_unavailable(&e, "read an installation")),
    }
}

/// The Jira user of a context token sent as `Authorization: JWT …`.
pub(crate) async fn context_user(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<(Installation, JiraUser), Response> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("JWT "))
        .ok_or_else(|| unauthorized("Authorization: JWT <context token> required"))?;
    let install = installation_of(state, token).await?;
    let claims = connect_jwt::verify_hs256(
        token,
        install.shared_secret.as_bytes(),
        &QshRule::Context,
        true,
    )
    .map_err(|e| unauthorized(&format!("invalid JWT: {e}")))?;
    let account_id = claims
        .sub
        .filter(|s| !s.is_empty())
        .ok_or_else(|| unauthorized("the token names no Jira user"))?;
    let user = JiraUser {
        client_key: install.client_key.clone(),
        account_id,
    };
    Ok((install, user))
}

/// Refuses, with Jira's wording, a user who is not a Jira administrator or whose groups Jira would not
/// tell.
pub(crate) async fn require_jira_admin(
    state: &AppState,
    install: &Installation,
    user: &JiraUser,
) -> Result<(), Response> {
    let site = gfj_sync::jira_out::site_of(install.clone());
    match state.jira.user_groups(&site, &user.account_id).await {
        Ok(Some(groups)) if groups.iter().any(|g| ADMIN_GROUPS.contains(&g.as_str())) => Ok(()),
        Ok(Some(_)) => {
            tracing::info!(site = %install.base_url, account = %user.account_id, "linking refused: not a Jira administrator");
            Err(error(StatusCode::FORBIDDEN, LINK_REFUSED))
        }
        Ok(None) | Err(_) => {
            tracing::warn!(site = %install.base_url, account = %user.account_id, "linking refused: Jira did not tell the user's groups");
            Err(error(StatusCode::FORBIDDEN, LINK_REFUSED))
        }
    }
}

/// A refused request: its status and the message shown to the user.
struct Refused(StatusCode, String);

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        error(self.0, &self.1)
    }
}

/// The GitLab instance a request means: the one it names, or the only one with an OAuth application.
fn gitlab_instance(state: &AppState, asked: Option<&str>) -> Result<String, Refused> {
    let apps = &state.config.gitlab_oauth_apps;
    match asked {
        Some(url) => {
            let url = gfj_core::url_pattern::canonical_origin(url).unwrap_or_default();
            if apps.iter().any(|a| a.gitlab_url == url) {
                Ok(url)
            } else {
                Err(Refused(
                    StatusCode::BAD_REQUEST,
                    format!("{url} is not a GitLab instance this service signs in to"),
                ))
            }
        }
        None if apps.len() == 1 => Ok(apps[0].gitlab_url.clone()),
        None => Err(Refused(
            StatusCode::BAD_REQUEST,
            "name the GitLab instance".into(),
        )),
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `GET /jira/config?jwt=…`: the page, for a request Jira signed.
pub async fn page(State(state): State<Arc<AppState>>, uri: Uri) -> Response {
    let query = uri.query().unwrap_or("");
    let Some(token) = url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "jwt")
        .map(|(_, v)| v.into_owned())
    else {
        return (StatusCode::UNAUTHORIZED, "open this page from Jira").into_response();
    };
    let install = match installation_of(&state, &token).await {
        Ok(i) => i,
        Err(r) => return r,
    };
    let base_path = gfj_core::qsh::split_url(&state.config.base_url)
        .0
        .trim_end_matches('/')
        .to_owned();
    let request = BoundRequest {
        method: "GET",
        path: uri.path(),
        query,
        base_path: &base_path,
    };
    let claims = match connect_jwt::verify_hs256(
        &token,
        install.shared_secret.as_bytes(),
        &QshRule::Request(request),
        true,
    ) {
        Ok(c) => c,
        Err(e) => {
            return (StatusCode::UNAUTHORIZED, format!("invalid JWT: {e}")).into_response();
        }
    };
    let Some(account_id) = claims.sub.filter(|s| !s.is_empty()) else {
        return (StatusCode::UNAUTHORIZED, "the token names no Jira user").into_response();
    };
    let now_secs = state.clock.now_ms() / 1000;
    let context = connect_jwt::sign_context_token(
        &install.client_key,
        &account_id,
        install.shared_secret.as_bytes(),
        now_secs,
        connect_jwt::CONTEXT_TOKEN_LIFETIME_SECS,
    );
    let instances: String = state
        .config
        .gitlab_oauth_apps
        .iter()
        .map(|a| {
            let u = escape(&a.gitlab_url);
            format!("<option value=\"{u}\">{u}</option>")
        })
        .collect();
    // The linked groups are in the page as served (the script keeps them current).
    let rows = match linked_groups(&state, Some(&install.client_key)).await {
        Ok(list) if list.is_empty() => {
            "<tr><td colspan=\"4\" class=\"note\">No group is linked yet.</td></tr>".to_owned()
        }
        Ok(list) => list
            .iter()
            .map(|s| {
                let state = s["backfill"]["state"].as_str().unwrap_or("pending");
                format!(
                    "<tr data-subscription=\"{g}\"><td>{g}</td><td>{u}</td><td data-state=\"{state}\" class=\"state-{state}\">{state}</td><td></td></tr>",
                    g = escape(s["group_path"].as_str().unwrap_or_default()),
                    u = escape(s["gitlab_url"].as_str().unwrap_or_default()),
                )
            })
            .collect(),
        Err(e) => {
            tracing::error!(error = %e, "could not read subscriptions");
            "<tr><td colspan=\"4\" class=\"note\">Linked groups could not be read.</td></tr>"
                .to_owned()
        }
    };
    let html = include_str!("../assets/config.html")
        .replace("{{rows}}", &rows)
        .replace("{{token}}", &escape(&context))
        .replace("{{site}}", &escape(&install.base_url))
        .replace("{{instances}}", &instances);
    let mut response = Html(html).into_response();
    let ancestors = state.config.jira_urls.csp_sources();
    let csp = format!(
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; frame-ancestors 'self' {ancestors}"
    );
    if let Ok(v) = HeaderValue::from_str(&csp) {
        response
            .headers_mut()
            .insert(header::CONTENT_SECURITY_POLICY, v);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `GET /static/config.js` and `/static/config.css`: the page's script and style (its own, not
/// Atlassian's).
pub async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("../assets/config.js"),
    )
        .into_response()
}

pub async fn style() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../assets/config.css"),
    )
        .into_response()
}

#[derive(Deserialize)]
pub struct SignInRequest {
    gitlab_url: Option<String>,
}

/// `POST /jira/gitlab/sign-in` `{"gitlab_url": …}` → `{"start_url": …}`: the page opens it in a window
/// (see `gitlab_oauth` for why the sign-in starts on this service's own origin).
pub async fn sign_in(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    axum::Json(req): axum::Json<SignInRequest>,
) -> Response {
    let (_, user) = match context_user(&state, &headers).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let url = match gitlab_instance(&state, req.gitlab_url.as_deref()) {
        Ok(u) => u,
        Err(r) => return r.into_response(),
    };
    match crate::gitlab_oauth::begin_sign_in(&state, &url, Some(&user)).await {
        Ok(start_url) => axum::Json(json!({ "start_url": start_url })).into_response(),
        Err(r) => r,
    }
}

#[derive(Deserialize)]
pub struct GroupsQuery {
    gitlab_url: Option<String>,
}

/// The GitLab sign-in a Jira user links groups of `gitlab_url` with; 409 until they signed in.
async fn sign_in_of(state: &AppState, user: &JiraUser, gitlab_url: &str) -> Result<i64, Response> {
    match state.store.jira_sign_in(user, gitlab_url).await {
        Ok(Some(id)) => Ok(id),
        Ok(None) => Err(error(StatusCode::CONFLICT, "sign in to GitLab first")),
        Err(e) => Err(storage_unavailable(&e, "read a GitLab sign-in")),
    }
}

/// `GET /jira/gitlab/groups?gitlab_url=…`: the groups and subgroups the user's GitLab sign-in may link
/// (Maintainer or higher); 409 until the user signed in.
pub async fn groups(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<GroupsQuery>,
) -> Response {
    let (_, user) = match context_user(&state, &headers).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let url = match gitlab_instance(&state, q.gitlab_url.as_deref()) {
        Ok(u) => u,
        Err(r) => return r.into_response(),
    };
    let connection = match sign_in_of(&state, &user, &url).await {
        Ok(id) => id,
        Err(r) => return r,
    };
    let now = state.clock.now_ms();
    let (client, conn) = match state
        .gitlab
        .client_for_connection(&state.store, connection, now)
        .await
    {
        Ok(c) => c,
        Err(e) => {
            return error(
                StatusCode::CONFLICT,
                &format!("sign in to GitLab again: {e}"),
            );
        }
    };
    match client
        .groups_with_access(gfj_gitlab_client::MAINTAINER)
        .await
    {
        Ok(groups) => axum::Json(json!({
            "gitlab_url": url,
            "username": conn.username,
            "groups": groups,
        }))
        .into_response(),
        Err(e) => error(StatusCode::BAD_GATEWAY, &format!("GitLab: {e}")),
    }
}

/// `GET /jira/subscriptions`: the site's linked groups with their backfill progress.
pub async fn list(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let (install, _) = match context_user(&state, &headers).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    match linked_groups(&state, Some(&install.client_key)).await {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => storage_unavailable(&e, "read subscriptions"),
    }
}

/// One site's subscriptions (or every site's) with their backfill progress; also the admin page's.
pub(crate) async fn linked_groups(
    state: &AppState,
    client_key: Option<&str>,
) -> Result<Vec<serde_json::Value>, gfj_store::StoreError> {
    let now = state.clock.now_ms();
    let mut out = Vec::new();
    for sub in state.store.subscriptions().await? {
        if client_key.is_some_and(|k| k != sub.client_key) {
            continue;
        }
        let tasks = state.store.backfill_tasks(Some(sub.id)).await?;
        let outbox = state.store.outbox_state(sub.id).await?;
        let progress = Progress::of(&tasks, now);
        let failures: Vec<serde_json::Value> = tasks
            .iter()
            .filter(|t| t.state == gfj_store::backfill::TaskState::Failed)
            .map(|t| json!({ "project": t.project_path, "entity": t.entity.as_str(), "error": t.error }))
            .collect();
        out.push(json!({
            "id": sub.id,
            "client_key": sub.client_key,
            "gitlab_url": sub.gitlab_url,
            "group_path": sub.group_path,
            "hook_mode": sub.hook_mode,
            "created_at": sub.created_at,
            "backfill": {
                "state": if tasks.is_empty() { "pending" } else { progress.state_with_outbox(&outbox) },
                "fraction": progress.fraction(),
                "progress": progress,
                "unsent_entities": outbox.entities,
                "failures": failures,
            },
        }));
    }
    Ok(out)
}

#[derive(Deserialize)]
pub struct LinkBody {
    namespace_path: String,
    gitlab_url: Option<String>,
}

/// `POST /jira/subscriptions` `{"namespace_path": …}`: links a group as the user's GitLab sign-in.
pub async fn link(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    axum::Json(body): axum::Json<LinkBody>,
) -> Response {
    let (install, user) = match context_user(&state, &headers).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    if let Err(r) = require_jira_admin(&state, &install, &user).await {
        return r;
    }
    let url = match gitlab_instance(&state, body.gitlab_url.as_deref()) {
        Ok(u) => u,
        Err(r) => return r.into_response(),
    };
    let connection = match sign_in_of(&state, &user, &url).await {
        Ok(id) => id,
        Err(r) => return r,
    };
    let req = LinkRequest {
        install: &install,
        group: body.namespace_path.trim(),
        gitlab_url: &url,
        credentials: GitLabCredentials::Connection(connection),
        hook_mode: HookMode::Auto,
    };
    match state.linker().link(req, state.clock.now_ms()).await {
        Ok(linked) => (StatusCode::CREATED, axum::Json(linked)).into_response(),
        Err(e) => link_error(&e),
    }
}

/// The HTTP answer to a link or unlink that did not happen.
pub(crate) fn link_error(e: &LinkError) -> Response {
    let status = match e {
        LinkError::GitLabNotAllowed(_) => StatusCode::BAD_REQUEST,
        LinkError::Unauthorized(_)
        | LinkError::BelowMaintainer { .. }
        | LinkError::NotAnAdminSignIn(_) => StatusCode::FORBIDDEN,
        LinkError::NotAGroup(_) => StatusCode::NOT_FOUND,
        LinkError::AlreadyLinked { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        LinkError::Hooks(_) | LinkError::GitLab(_) => StatusCode::BAD_GATEWAY,
        LinkError::Store(_) | LinkError::Job(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    error(status, &e.to_string())
}

/// `DELETE /jira/subscriptions/{id}`: unlinks one of the site's groups.
pub async fn unlink(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Response {
    let (install, user) = match context_user(&state, &headers).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    if let Err(r) = require_jira_admin(&state, &install, &user).await {
        return r;
    }
    let sub = match state.store.subscription(id).await {
        Ok(Some(s)) if s.client_key == install.client_key => s,
        Ok(_) => return error(StatusCode::NOT_FOUND, "no such linked group on this site"),
        Err(e) => return storage_unavailable(&e, "read a subscription"),
    };
    match state.linker().unlink(&sub, state.clock.now_ms()).await {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => link_error(&e),
    }
}
