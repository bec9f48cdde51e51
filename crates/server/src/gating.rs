//! `POST /jira/gating`: JSM's decision on a deployment we gated, as the Connect `jiraDeploymentGating`
//! callback delivers it. The token must be the site's (HS256 with its shared secret) and bound to this
//! very request (`qsh`, which covers the method and path, not the body); the decision itself is read
//! back from Jira's gating-status API. It is recorded once and applied by a job (`gfj-sync::gating`);
//! a report for a deployment we never gated, or a repeat, is acknowledged and changes nothing.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use gfj_core::connect_jwt::{self, BoundRequest, QshRule};
use gfj_core::jsm::GatingReport;

use crate::AppState;
use crate::jira_config::{error, installation_of, storage_unavailable};

/// A report is a few hundred bytes; anything much larger is not one.
const MAX_REPORT_BYTES: usize = 64 * 1024;

pub async fn callback(
    State(state): State<Arc<AppState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let token = match headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("JWT "))
    {
        Some(t) => t.trim(),
        None => return error(StatusCode::UNAUTHORIZED, "Authorization: JWT required"),
    };
    let install = match installation_of(&state, token).await {
        Ok(i) => i,
        Err(response) => return response,
    };
    let base_path = gfj_core::qsh::split_url(&state.config.base_url)
        .0
        .trim_end_matches('/')
        .to_owned();
    let request = BoundRequest {
        method: "POST",
        path: uri.path(),
        query: uri.query().unwrap_or(""),
        base_path: &base_path,
    };
    if let Err(e) = connect_jwt::verify_hs256(
        token,
        install.shared_secret.as_bytes(),
        &QshRule::Request(request),
        true,
    ) {
        return error(StatusCode::UNAUTHORIZED, &format!("invalid JWT: {e}"));
    }
    if body.len() > MAX_REPORT_BYTES {
        return error(StatusCode::PAYLOAD_TOO_LARGE, "gating report too large");
    }
    let report: GatingReport = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("unreadable gating report: {e}"),
            );
        }
    };
    let gates = match state
        .store
        .gates_by_jira_key(
            &install.client_key,
            &report.pipeline_id,
            &report.environment_id,
            report.deployment_sequence_number,
        )
        .await
    {
        Ok(gates) => gates,
        Err(e) => return storage_unavailable(&e, "read a deployment gate"),
    };
    if gates.is_empty() {
        tracing::info!(site = %install.base_url, pipeline = %report.pipeline_id, environment = %report.environment_id, "a gating report for a deployment this service did not gate; ignored");
        return StatusCode::NO_CONTENT.into_response();
    }
    // The body is not covered by the token's `qsh`: the decision is taken from Jira's own answer, so a
    // captured token replayed with another body decides nothing.
    let site = gfj_sync::jira_out::site_of(install.clone());
    let confirmed = match state
        .jira
        .gating_status(
            &site,
            &report.pipeline_id,
            &report.environment_id,
            report.deployment_sequence_number,
        )
        .await
    {
        Ok(confirmed) => confirmed,
        Err(e) => {
            tracing::warn!(site = %install.base_url, error = %e, "could not confirm a gating report with Jira; Jira delivers it again, and the poll asks too");
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "could not confirm with Jira; retry",
            );
        }
    };
    for gate in &gates {
        if let Err(e) =
            gfj_sync::gating::report(&state.store, gate, &confirmed, state.clock.now_ms()).await
        {
            // Jira delivers again when we do not answer 2xx.
            return storage_unavailable(&e, "record a gating decision");
        }
    }
    StatusCode::NO_CONTENT.into_response()
}
