//! JSM settings from the pages: the admin page (bearer token) for any linked group, the configuration
//! page inside Jira (a Jira administrator) for its site's linked groups. Both go through
//! `gfj-sync::jsm_settings`, like `jsm set`; the gating token goes in and is never sent back.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use gfj_sync::jsm_settings::{self, JsmError, JsmUpdate, Target, Within};
use serde::Deserialize;

use crate::AppState;
use crate::admin::guard;
use crate::jira_config::{context_user, error, require_jira_admin, storage_unavailable};

/// A change: `project` or `group` (full path), and the settings to set (absent ones stay as they are).
#[derive(Deserialize)]
pub struct JsmBody {
    project: Option<String>,
    group: Option<String>,
    service_ids: Option<String>,
    gating_tiers: Option<String>,
    gating_token: Option<String>,
    play_after_approval: Option<bool>,
}

impl JsmBody {
    /// `None` unless exactly one of `project` and `group` is given.
    fn target(&self) -> Option<Target> {
        match (&self.project, &self.group) {
            (Some(p), None) => Some(Target::Project(p.trim().to_owned())),
            (None, Some(g)) => Some(Target::Group(g.trim().to_owned())),
            _ => None,
        }
    }

    fn update(&self) -> JsmUpdate {
        JsmUpdate {
            service_ids: self.service_ids.clone(),
            gating_tiers: self.gating_tiers.clone(),
            gating_token: self.gating_token.clone(),
            play_after_approval: self.play_after_approval,
        }
    }
}

fn no_target() -> Response {
    error(
        StatusCode::BAD_REQUEST,
        "name either a project or a group (its full path)",
    )
}

fn jsm_error(e: &JsmError) -> Response {
    let status = match e {
        JsmError::Invalid(_) | JsmError::GitLab(_) => StatusCode::UNPROCESSABLE_ENTITY,
        JsmError::NotFound(_) => StatusCode::NOT_FOUND,
        JsmError::Store(e) => return storage_unavailable(e, "change JSM settings"),
    };
    error(status, &e.to_string())
}

async fn set(state: &AppState, subscription_id: i64, body: &JsmBody) -> Response {
    let Some(target) = body.target() else {
        return no_target();
    };
    match jsm_settings::set(
        &state.store,
        &state.gitlab,
        Within::Subscription(subscription_id),
        &target,
        &body.update(),
        state.clock.now_ms(),
    )
    .await
    {
        Ok(change) => axum::Json(change).into_response(),
        Err(e) => jsm_error(&e),
    }
}

async fn clear(state: &AppState, subscription_id: i64, body: &JsmBody) -> Response {
    let Some(target) = body.target() else {
        return no_target();
    };
    match jsm_settings::clear(&state.store, Within::Subscription(subscription_id), &target).await {
        Ok((scope, removed)) => {
            axum::Json(serde_json::json!({ "target": scope, "removed": removed })).into_response()
        }
        Err(e) => jsm_error(&e),
    }
}

async fn overview(state: &AppState, client_key: Option<&str>) -> Response {
    match jsm_settings::overview(&state.store, client_key).await {
        Ok(all) => axum::Json(all).into_response(),
        Err(e) => storage_unavailable(&e, "read JSM settings"),
    }
}

/// `GET /admin/api/jsm`: every linked group's JSM settings and what is in force per project.
pub async fn admin_overview(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Some(r) = guard(&state, &headers) {
        return r;
    }
    overview(&state, None).await
}

/// `PUT /admin/api/subscriptions/{id}/jsm`.
pub async fn admin_set(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    axum::Json(body): axum::Json<JsmBody>,
) -> Response {
    if let Some(r) = guard(&state, &headers) {
        return r;
    }
    set(&state, id, &body).await
}

/// `POST /admin/api/subscriptions/{id}/jsm/clear`.
pub async fn admin_clear(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    axum::Json(body): axum::Json<JsmBody>,
) -> Response {
    if let Some(r) = guard(&state, &headers) {
        return r;
    }
    clear(&state, id, &body).await
}

/// The subscription `id` when it belongs to the site of the Jira administrator calling.
async fn own_subscription(
    state: &AppState,
    headers: &HeaderMap,
    id: Option<i64>,
) -> Result<String, Response> {
    let (install, user) = context_user(state, headers).await?;
    require_jira_admin(state, &install, &user).await?;
    if let Some(id) = id {
        match state.store.subscription(id).await {
            Ok(Some(s)) if s.client_key == install.client_key => {}
            Ok(_) => {
                return Err(error(
                    StatusCode::NOT_FOUND,
                    "no such linked group on this site",
                ));
            }
            Err(e) => return Err(storage_unavailable(&e, "read a subscription")),
        }
    }
    Ok(install.client_key)
}

/// `GET /jira/jsm`: the site's linked groups' JSM settings.
pub async fn page_overview(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    match own_subscription(&state, &headers, None).await {
        Ok(client_key) => overview(&state, Some(&client_key)).await,
        Err(r) => r,
    }
}

/// `PUT /jira/subscriptions/{id}/jsm`.
pub async fn page_set(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    axum::Json(body): axum::Json<JsmBody>,
) -> Response {
    match own_subscription(&state, &headers, Some(id)).await {
        Ok(_) => set(&state, id, &body).await,
        Err(r) => r,
    }
}

/// `POST /jira/subscriptions/{id}/jsm/clear`.
pub async fn page_clear(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    axum::Json(body): axum::Json<JsmBody>,
) -> Response {
    match own_subscription(&state, &headers, Some(id)).await {
        Ok(_) => clear(&state, id, &body).await,
        Err(r) => r,
    }
}
