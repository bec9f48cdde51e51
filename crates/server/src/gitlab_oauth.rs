//! Signing in to GitLab with OAuth 2 (authorization code + PKCE). An operator (admin token) starts a
//! sign-in and gets the URL to open; GitLab sends the browser back to the callback, which trades the
//! code for a token pair, identifies the user and stores the pair encrypted as a *connection* that
//! `link --gitlab-connection` (and, later, the Jira configuration page) links groups with.
//!
//! The `state` is a random single-use value kept in the database with the PKCE verifier, so any replica
//! can take the callback, and a callback that was not started here is refused.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use gfj_gitlab_client::GitLabClient;
use gfj_gitlab_client::oauth;
use gfj_store::gitlab_connections::{JiraUser, PendingSignIn};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::AppState;

#[derive(Deserialize)]
pub struct StartRequest {
    gitlab_url: String,
}

fn random_32() -> Option<[u8; 32]> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).ok()?;
    Some(b)
}

/// Whether the request carries `Authorization: Bearer <GFJ_ADMIN_TOKEN>`; compared in constant time.
pub(crate) fn is_admin(state: &AppState, headers: &HeaderMap) -> bool {
    let Some(expected) = state.config.admin_token.as_deref() else {
        return false;
    };
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|given| bool::from(given.as_bytes().ct_eq(expected.as_bytes())))
}

/// `POST /gitlab/oauth/start` `{"gitlab_url": …}` → `{"authorize_url": …}`.
pub async fn start(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    axum::Json(req): axum::Json<StartRequest>,
) -> Response {
    if !is_admin(&state, &headers) {
        return (StatusCode::UNAUTHORIZED, "admin token required").into_response();
    }
    match begin_sign_in(&state, &req.gitlab_url, None).await {
        Ok(url) => axum::Json(serde_json::json!({ "authorize_url": url })).into_response(),
        Err(response) => response,
    }
}

/// Starts a sign-in to a GitLab instance with an OAuth application: stores the single-use `state` with
/// its PKCE verifier (and the Jira user who asked, if one did) and returns the URL to send the browser to.
pub(crate) async fn begin_sign_in(
    state: &AppState,
    gitlab_url: &str,
    jira_user: Option<&JiraUser>,
) -> Result<String, Response> {
    let url = gfj_core::url_pattern::normalize_base_url(gitlab_url);
    let Some(app) = state
        .config
        .gitlab_oauth_apps
        .iter()
        .find(|a| a.gitlab_url == url)
    else {
        return Err((
            StatusCode::BAD_REQUEST,
            format!("no OAuth application for {url} in GFJ_GITLAB_OAUTH_APPS"),
        )
            .into_response());
    };
    let (Some(state_bytes), Some(verifier_bytes)) = (random_32(), random_32()) else {
        return Err((StatusCode::SERVICE_UNAVAILABLE, "no randomness available").into_response());
    };
    let oauth_state = oauth::pkce_verifier(&state_bytes);
    let verifier = oauth::pkce_verifier(&verifier_bytes);
    if let Err(e) = state
        .store
        .put_oauth_pending(
            &oauth_state,
            &url,
            &verifier,
            jira_user,
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
    Ok(oauth::authorize_url(app, &oauth_state, &verifier))
}

#[derive(Deserialize)]
pub struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

fn page(status: StatusCode, message: &str) -> Response {
    let escaped = message
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    (
        status,
        Html(format!(
            "<!doctype html><title>gitlab-for-jira</title><p>{escaped}</p>"
        )),
    )
        .into_response()
}

/// `GET /gitlab/oauth/callback?code=…&state=…`.
pub async fn callback(State(state): State<Arc<AppState>>, Query(q): Query<Callback>) -> Response {
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
    let pending = match state.store.take_oauth_pending(&oauth_state, now).await {
        Ok(Some(p)) => p,
        Ok(None) => {
            return page(
                StatusCode::BAD_REQUEST,
                "this sign-in is unknown, used or expired; start again",
            );
        }
        Err(e) => {
            tracing::error!(error = %e, "could not read a GitLab sign-in");
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage unavailable, retry",
            );
        }
    };
    let PendingSignIn {
        gitlab_url,
        verifier,
        jira_user,
    } = pending;
    let Some(app) = state
        .config
        .gitlab_oauth_apps
        .iter()
        .find(|a| a.gitlab_url == gitlab_url)
    else {
        return page(
            StatusCode::BAD_REQUEST,
            "the OAuth application for this GitLab was removed",
        );
    };
    let http = gfj_gitlab_client::http_client();
    let tokens = match oauth::exchange_code(&http, app, &code, &verifier, now).await {
        Ok(t) => t,
        Err(e) => return page(StatusCode::BAD_GATEWAY, &format!("GitLab: {e}")),
    };
    let user = match GitLabClient::new(http, &gitlab_url, &tokens.access_token)
        .current_user()
        .await
    {
        Ok(u) => u,
        Err(e) => return page(StatusCode::BAD_GATEWAY, &format!("GitLab: {e}")),
    };
    let json = serde_json::to_string(&tokens).expect("tokens serialise");
    match state
        .store
        .upsert_gitlab_connection(&gitlab_url, user.id, &user.username, &json, now)
        .await
    {
        Ok(conn) => {
            tracing::info!(connection = conn.id, user = %user.username, gitlab = %gitlab_url, "signed in to GitLab");
            if let Some(jira_user) = &jira_user {
                if let Err(e) = state
                    .store
                    .remember_jira_sign_in(jira_user, &gitlab_url, conn.id, now)
                    .await
                {
                    tracing::error!(error = %e, "could not store a GitLab sign-in");
                    return page(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "storage unavailable, retry",
                    );
                }
                return page(
                    StatusCode::OK,
                    &format!(
                        "Signed in to {gitlab_url} as @{}. You can close this window and go back to Jira.",
                        user.username
                    ),
                );
            }
            page(
                StatusCode::OK,
                &format!(
                    "Signed in to {gitlab_url} as @{}. GitLab connection {}.",
                    user.username, conn.id
                ),
            )
        }
        Err(e) => {
            tracing::error!(error = %e, "could not store a GitLab sign-in");
            page(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage unavailable, retry",
            )
        }
    }
}
