//! The Atlassian Connect app descriptor.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::IntoResponse;
use serde_json::{Value, json};

use crate::AppState;

/// The descriptor for an app served at `base_url` under `app_key`.
pub fn descriptor(base_url: &str, app_key: &str) -> Value {
    let base = base_url.trim_end_matches('/');
    let logo = format!("{base}/static/logo.svg");
    let provider = |key: &str, name: &str| json!({ "key": key, "name": { "value": name }, "homeUrl": base, "logoUrl": logo, "documentationUrl": base, "actions": {} });
    json!({
        "key": app_key,
        "name": "GitLab for Jira",
        "description": "Merge requests, branches, commits, pipelines, deployments and feature flags from GitLab in Jira.",
        "vendor": { "name": "gitlab-for-jira", "url": base },
        "baseUrl": base,
        "authentication": { "type": "jwt" },
        "lifecycle": { "installed": "/jira/events/installed", "uninstalled": "/jira/events/uninstalled" },
        "scopes": ["READ", "WRITE", "DELETE"],
        "apiVersion": 1,
        "apiMigrations": { "signed-install": true, "context-qsh": true, "gdpr": true },
        "modules": {
            "postInstallPage": {
                "key": "gitlab-configuration",
                "name": { "value": "GitLab for Jira configuration" },
                "url": "/jira/config",
                "conditions": [{ "condition": "user_is_admin" }]
            },
            "jiraDevelopmentTool": {
                "key": "gitlab-development-tool",
                "name": { "value": "GitLab" },
                "application": { "value": "GitLab" },
                "url": base,
                "logoUrl": logo,
                "capabilities": ["branch", "commit", "pull_request"]
            },
            "jiraBuildInfoProvider": provider("gitlab-ci", "GitLab CI"),
            "jiraDeploymentInfoProvider": provider("gitlab-deployments", "GitLab Deployments"),
            "jiraFeatureFlagInfoProvider": provider("gitlab-feature-flags", "GitLab Feature Flags"),
            "jiraDeploymentGating": {
                "key": "gitlab-deployment-gating",
                "name": { "value": "GitLab deployment gating" },
                "callback": { "type": "jwt", "url": "/jira/gating" }
            }
        }
    })
}

pub async fn serve(State(state): State<Arc<AppState>>) -> Json<Value> {
    Json(descriptor(&state.config.base_url, &state.config.app_key))
}

pub async fn logo() -> impl IntoResponse {
    (
        [
            ("content-type", "image/svg+xml"),
            ("cache-control", "public, max-age=86400"),
        ],
        include_str!("../assets/logo.svg"),
    )
}
