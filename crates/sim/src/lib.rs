//! Faithful simulators of the two services this project talks to, for tests and `gitlab-for-jira demo`.
//!
//! - [`jira::JiraSim`]: a Jira Cloud site plus Atlassian's install-key server. It verifies the app's
//!   JWTs (signature, `iss`, `exp`, `qsh`), validates every request body against Atlassian's OpenAPI,
//!   enforces the documented limits, stores entities with the `updateSequenceId` rule, injects 429/5xx/413
//!   on demand, and performs signed installs.
//! - [`gitlab::GitLabSim`]: the GitLab REST endpoints we call, with GitLab's tier and role rules and
//!   pagination headers, and webhook delivery with GitLab's headers and payload shapes.
//!
//! Both listen on `127.0.0.1` only.

// Handlers answer errors as ready responses (`Result<Response, Response>`), as axum allows.
#![allow(clippy::result_large_err)]

pub mod gitlab;
pub mod jira;
pub mod openapi;

/// Where the shared Jira fixtures live: `GFJ_SHARED_DIR`, else `../shared` beside the repository.
pub fn shared_dir() -> std::path::PathBuf {
    std::env::var_os("GFJ_SHARED_DIR")
        .map(Into::into)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"))
}

fn random_hex(bytes: usize) -> String {
    use std::hash::{BuildHasher, Hasher};
    // Test-only identifiers: uniqueness matters, unpredictability does not.
    let mut out = String::new();
    while out.len() < bytes * 2 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_usize(out.len());
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out.truncate(bytes * 2);
    out
}

async fn serve(router: axum::Router) -> std::io::Result<(String, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let handle = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Ok((url, handle))
}
