use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;

use crate::AppState;

pub async fn live() -> &'static str {
    "ok"
}

/// Ready when the database answers and all migrations are applied.
pub async fn ready(State(state): State<Arc<AppState>>) -> (StatusCode, String) {
    match state.store.ready().await {
        Ok(()) => (StatusCode::OK, "ready".into()),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}")),
    }
}
