//! Signing in to GitLab with OAuth 2 (authorization code + PKCE), bound to the browser that started it.
//!
//! A sign-in is started by a Jira user on the configuration page or by an operator on the admin page,
//! and it hands a GitLab account to whoever started it. So it must complete only in the browser that
//! started it, and the person signing in must see what they connect:
//!
//! 1. The page asks for a sign-in (`POST /jira/gitlab/sign-in` or `POST /gitlab/oauth/start`) and gets a
//!    *start URL* on this service's own origin, carrying a single-use ticket that expires in minutes.
//! 2. The page opens it in a window. `GET /gitlab/oauth/begin` sets a short-lived first-party cookie
//!    (HttpOnly, SameSite=Lax, Secure over TLS) bound to the OAuth `state`, and redirects to GitLab.
//!    The page itself lives in Jira's iframe, where third-party cookies are blocked; this window is not.
//! 3. GitLab returns the browser to `GET /gitlab/oauth/callback`, which accepts the `state` once, and
//!    only from the browser carrying its cookie. It trades the code for tokens, reads the GitLab user,
//!    parks both (encrypted) and asks "Connect GitLab user @x to Jira site Y (Jira user Z)?".
//! 4. `POST /gitlab/oauth/confirm` from that same browser stores the connection; anything else stores
//!    nothing.
//!
//! A start URL sent to someone else therefore either fails (used, expired, or no cookie) or shows them a
//! foreign Jira site to refuse. All state is in the database, so any replica can serve any step.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use gfj_core::digest::{matches_digest, sha256_hex};
use gfj_gitlab_client::GitLabClient;
use gfj_gitlab_client::oauth;
use gfj_store::gitlab_connections::{JiraUser, PENDING_TTL_MS};
use serde::Deserialize;

use crate::AppState;

/// The cookie that binds a sign-in to its browser.
const BROWSER_COOKIE: &str = "gfj_gitlab_sign_in";
/// Where the cookie is sent: the sign-in's own routes, nothing else.
const COOKIE_PATH: &str = "/gitlab/oauth";
pub(crate) const BEGIN_PATH: &str = "/gitlab/oauth/begin";
const CONFIRM_PATH: &str = "/gitlab/oauth/confirm";

#[derive(Deserialize)]
pub struct StartRequest {
    gitlab_url: String,
}

fn random_32() -> Option<[u8; 32]> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).ok()?;
    Some(b)
}

/// `POST /gitlab/oauth/start` (admin) `{"gitlab_url": …}` → `{"start_url": …}`, to open in the browser
/// that signs in.
pub async fn start(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    axum::Json(req): axum::Json<StartRequest>,
) -> Response {
    if let Some(refused) = crate::admin::guard(&state, &headers) {
        return refused;
    }
    match begin_sign_in(&state, &req.gitlab_url, None).await {
        Ok(url) => axum::Json(serde_json::json!({ "start_url": url })).into_response(),
        Err(response) => response,
    }
}

/// Prepares a sign-in to a GitLab instance with its OAuth application: stores the `state` with its PKCE
/// verifier, the Jira user who asked (if one did) and the digest of a single-use ticket, and returns the
/// start URL that carries the ticket.
pub(crate) async fn begin_sign_in(
    state: &AppState,
    gitlab_url: &str,
    jira_user: Option<&JiraUser>,
) -> Result<String, Response> {
    let url = gfj_core::url_pattern::canonical_origin(gitlab_url).unwrap_or_default();
    if state.gitlab.app_for(&url).is_none() {
        return Err((
            StatusCode::BAD_REQUEST,
            format!("no OAuth application for {gitlab_url} in GFJ_GITLAB_OAUTH_APPS"),
        )
            .into_response());
    }
    let (Some(state_bytes), Some(verifier_bytes), Some(ticket_bytes)) =
        (random_32(), random_32(), random_32())
    else {
        return Err((StatusCode::SERVICE_UNAVAILABLE, "no randomness available").into_response());
    };
    let oauth_state = oauth::pkce_verifier(&state_bytes);
    let verifier = oauth::pkce_verifier(&verifier_bytes);
    let ticket = oauth::pkce_verifier(&ticket_bytes);
    if let Err(e) = state
        .store
        .put_oauth_pending(
            &oauth_state,
            &url,
            &verifier,
            jira_user,
            &sha256_hex(ticket.as_bytes()),
            state.clock.now_ms(),
        )
        .await
    {
        tracing::error!(error = %e, "could not store a GitLab sign-in");
        return Err((
            StatusCode::SERVICE_UNAVAILABLE,
            "storage unavailable, retry",
        )
            .into_response());
    }
    Ok(format!(
        "{}{BEGIN_PATH}?ticket={ticket}",
        state.config.base_url
    ))
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// A small page of this flow; `body` is HTML whose variable parts the caller escaped.
fn page_html(status: StatusCode, body: &str) -> Response {
    (
        status,
        Html(format!(
            "<!doctype html><html lang=\"en\"><meta charset=\"utf-8\"><title>gitlab-for-jira: GitLab sign-in</title>\
             <style>body{{font:15px system-ui,sans-serif;margin:2em;max-width:40em}}button{{font:inherit;padding:.4em 1em;margin-right:.5em}}</style>\
             <body>{body}</body></html>"
        )),
    )
        .into_response()
}

fn page(status: StatusCode, message: &str) -> Response {
    page_html(status, &format!("<p>{}</p>", escape(message)))
}

fn cookie_of<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Whether this request comes from the browser that opened the sign-in's start URL.
fn same_browser(headers: &HeaderMap, browser_hash: &str) -> bool {
    cookie_of(headers, BROWSER_COOKIE)
        .is_some_and(|cookie| matches_digest(cookie.as_bytes(), browser_hash))
}

fn browser_cookie(state: &AppState, value: &str, max_age_secs: i64) -> HeaderValue {
    let secure = if state.config.base_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{BROWSER_COOKIE}={value}; Path={COOKIE_PATH}; Max-Age={max_age_secs}; HttpOnly; SameSite=Lax{secure}"
    ))
    .expect("cookie is ASCII")
}

fn another_browser() -> Response {
    page(
        StatusCode::FORBIDDEN,
        "This GitLab sign-in was started in another browser, so nothing was connected. Start the \
         sign-in again from the page where you want to use it (the Jira configuration page or the admin \
         page), in this browser.",
    )
}

fn app_removed() -> Response {
    page(
        StatusCode::BAD_REQUEST,
        "The OAuth application for this GitLab was removed.",
    )
}

fn storage_failed(e: &gfj_store::StoreError) -> Response {
    tracing::error!(error = %e, "could not store a GitLab sign-in");
    page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Storage is unavailable; try again in a moment.",
    )
}

#[derive(Deserialize)]
pub struct Begin {
    ticket: Option<String>,
}

/// `GET /gitlab/oauth/begin?ticket=…`: binds the sign-in to this browser and sends it to GitLab.
pub async fn begin(State(state): State<Arc<AppState>>, Query(q): Query<Begin>) -> Response {
    let Some(ticket) = q.ticket.filter(|t| !t.is_empty() && t.len() <= 128) else {
        return page(StatusCode::BAD_REQUEST, "This sign-in link is incomplete.");
    };
    let Some(browser_bytes) = random_32() else {
        return page(StatusCode::SERVICE_UNAVAILABLE, "No randomness available.");
    };
    let browser_secret = oauth::pkce_verifier(&browser_bytes);
    let started = match state
        .store
        .begin_oauth_sign_in(
            &sha256_hex(ticket.as_bytes()),
            &sha256_hex(browser_secret.as_bytes()),
            state.clock.now_ms(),
        )
        .await
    {
        Ok(Some(s)) => s,
        Ok(None) => {
            return page(
                StatusCode::BAD_REQUEST,
                "This sign-in link was already used or has expired. Start the sign-in again.",
            );
        }
        Err(e) => return storage_failed(&e),
    };
    let Some(app) = state.gitlab.app_for(&started.gitlab_url) else {
        return app_removed();
    };
    let authorize = oauth::authorize_url(app, &started.state, &started.verifier);
    let mut response = (StatusCode::SEE_OTHER, [(header::LOCATION, authorize)]).into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        browser_cookie(&state, &browser_secret, PENDING_TTL_MS / 1000),
    );
    response
}

#[derive(Deserialize)]
pub struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// `GET /gitlab/oauth/callback?code=…&state=…`: from the browser that began the sign-in, trades the code,
/// then asks that browser to confirm what it connects. Stores no connection.
pub async fn callback(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<Callback>,
) -> Response {
    if let Some(error) = q.error {
        let why = q.error_description.unwrap_or(error);
        return page(
            StatusCode::BAD_REQUEST,
            &format!("GitLab did not sign you in: {why}"),
        );
    }
    let (Some(code), Some(oauth_state)) = (q.code, q.state) else {
        return page(StatusCode::BAD_REQUEST, "code and state are required");
    };
    let now = state.clock.now_ms();
    let pending = match state.store.take_oauth_callback(&oauth_state, now).await {
        Ok(Some(p)) => p,
        Ok(None) => {
            return page(
                StatusCode::BAD_REQUEST,
                "This sign-in is unknown, used or expired; start again.",
            );
        }
        Err(e) => return storage_failed(&e),
    };
    // Checked after taking the state: a stranger's attempt uses it up, and the rightful browser starts
    // again, rather than leaving a state to be tried twice.
    if !same_browser(&headers, &pending.browser_hash) {
        tracing::warn!(gitlab = %pending.gitlab_url, "GitLab sign-in callback from a browser that did not start it; refused");
        return another_browser();
    }
    let Some(app) = state.gitlab.app_for(&pending.gitlab_url) else {
        return app_removed();
    };
    let http = state.gitlab.http.clone();
    let tokens = match oauth::exchange_code(&http, app, &code, &pending.verifier, now).await {
        Ok(t) => t,
        Err(e) => return page(StatusCode::BAD_GATEWAY, &format!("GitLab: {e}")),
    };
    let user = match GitLabClient::new(http, &pending.gitlab_url, &tokens.access_token)
        .current_user()
        .await
    {
        Ok(u) => u,
        Err(e) => return page(StatusCode::BAD_GATEWAY, &format!("GitLab: {e}")),
    };
    let json = serde_json::to_string(&tokens).expect("tokens serialise");
    match state
        .store
        .stage_oauth_sign_in(&oauth_state, user.id, &user.username, &json)
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            return page(
                StatusCode::BAD_REQUEST,
                "This sign-in was already completed; start again.",
            );
        }
        Err(e) => return storage_failed(&e),
    }
    let what = match &pending.jira_user {
        Some(user) => {
            let site = match state.store.installation(&user.client_key).await {
                Ok(Some(i)) => i.display_url.unwrap_or(i.base_url),
                Ok(None) => user.client_key.clone(),
                Err(e) => return storage_failed(&e),
            };
            format!(
                "to Jira site <b>{}</b> (Jira user <code>{}</code>)",
                escape(&site),
                escape(&user.account_id)
            )
        }
        None => format!(
            "to the <b>gitlab-for-jira admin page</b> of {}, for linking groups as this user",
            escape(&state.config.base_url)
        ),
    };
    page_html(
        StatusCode::OK,
        &format!(
            "<h1>Connect your GitLab account?</h1>\
             <p id=\"question\">Connect GitLab user <b>@{user}</b> on {gitlab} {what}?</p>\
             <p>Whoever uses that page can then act in GitLab as @{user} on the groups they link \
             (register webhooks, read merge requests, pipelines and deployments). If you did not start \
             this sign-in yourself, or do not recognise the site, choose <i>Cancel</i>.</p>\
             <form method=\"post\" action=\"{CONFIRM_PATH}\">\
             <input type=\"hidden\" name=\"state\" value=\"{state}\">\
             <button id=\"connect\" name=\"decision\" value=\"connect\">Connect</button>\
             <button id=\"cancel\" name=\"decision\" value=\"cancel\">Cancel</button></form>",
            user = escape(&user.username),
            gitlab = escape(&pending.gitlab_url),
            state = escape(&oauth_state),
        ),
    )
}

#[derive(Deserialize)]
pub struct Confirm {
    state: String,
    decision: String,
}

/// `POST /gitlab/oauth/confirm` (form: `state`, `decision=connect|cancel`): stores the connection only on
/// an explicit "connect" from the browser that began the sign-in.
pub async fn confirm(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<Confirm>,
) -> Response {
    let now = state.clock.now_ms();
    // The browser is checked before the sign-in is taken, so a forged post cannot discard it.
    match state.store.staged_sign_in_browser(&form.state).await {
        Ok(Some(hash)) if same_browser(&headers, &hash) => {}
        Ok(Some(_)) => return another_browser(),
        Ok(None) => {
            return page(
                StatusCode::BAD_REQUEST,
                "This sign-in is unknown, already decided or expired; start again.",
            );
        }
        Err(e) => return storage_failed(&e),
    }
    let staged = match state.store.take_staged_sign_in(&form.state, now).await {
        Ok(Some(s)) if same_browser(&headers, &s.browser_hash) => s,
        Ok(Some(_)) => return another_browser(),
        Ok(None) => {
            return page(
                StatusCode::BAD_REQUEST,
                "This sign-in is unknown, already decided or expired; start again.",
            );
        }
        Err(e) => return storage_failed(&e),
    };
    let mut response = decide(&state, staged, form.decision == "connect", now).await;
    response
        .headers_mut()
        .insert(header::SET_COOKIE, browser_cookie(&state, "", 0));
    response
}

async fn decide(
    state: &AppState,
    staged: gfj_store::gitlab_connections::StagedSignIn,
    connect: bool,
    now: i64,
) -> Response {
    if !connect {
        tracing::info!(gitlab = %staged.gitlab_url, user = %staged.username, "GitLab sign-in cancelled by its user");
        return page(
            StatusCode::OK,
            "Nothing was connected. You can close this window.",
        );
    }
    let conn = match state
        .store
        .upsert_gitlab_connection(
            &staged.gitlab_url,
            staged.user_id,
            &staged.username,
            &staged.tokens,
            staged.jira_user.is_none(),
            now,
        )
        .await
    {
        Ok(conn) => conn,
        Err(e) => return storage_failed(&e),
    };
    tracing::info!(connection = conn.id, user = %conn.username, gitlab = %conn.gitlab_url, "signed in to GitLab");
    match &staged.jira_user {
        Some(jira_user) => {
            if let Err(e) = state
                .store
                .remember_jira_sign_in(jira_user, &staged.gitlab_url, conn.id, now)
                .await
            {
                return storage_failed(&e);
            }
            page(
                StatusCode::OK,
                &format!(
                    "Connected: signed in to {} as @{}. You can close this window and go back to Jira.",
                    staged.gitlab_url, staged.username
                ),
            )
        }
        None => page(
            StatusCode::OK,
            &format!(
                "Connected: signed in to {} as @{}. GitLab connection {}.",
                staged.gitlab_url, staged.username, conn.id
            ),
        ),
    }
}
