//! Faithful simulators of the two services this project talks to, for tests and `gitlab-for-jira demo`.
//!
//! - [`jira::JiraSim`]: a Jira Cloud site plus Atlassian's install-key server. It verifies the app's
//!   JWTs (signature, `iss`, `exp`, `qsh`), validates every request body against the project's own
//!   schemas (`schemas/`, embedded) and, when found, Atlassian's official OpenAPI too,
//!   enforces the documented limits, stores entities with the `updateSequenceId` rule, injects 429/5xx/413
//!   on demand, and performs signed installs.
//! - [`gitlab::GitLabSim`]: the GitLab REST endpoints we call, with GitLab's tier and role rules and
//!   pagination headers, and webhook delivery with GitLab's headers and payload shapes.
//!
//! - [`panel`]: the simulated site's development panel as HTML (`/browse/{key}`), for `demo --serve`.
//! - [`proxy::RoundRobin`]: a load balancer in front of several replicas of the service.
//!
//! All listen on `127.0.0.1` only.

// Handlers answer errors as ready responses (`Result<Response, Response>`), as axum allows.
#![allow(clippy::result_large_err)]

pub mod gitlab;
pub mod jira;
pub mod openapi;
pub mod panel;
pub mod proxy;

/// Where Atlassian's official fixtures may live: `GFJ_SHARED_DIR/jira-fixtures`, else
/// `../shared/jira-fixtures` beside the repository.
pub fn official_fixtures_dir() -> std::path::PathBuf {
    std::env::var_os("GFJ_SHARED_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"))
        .join("jira-fixtures")
}

/// One of Atlassian's official fixtures (`name` in [`official_fixtures_dir`]), an extra cross-check on
/// top of the project's own schemas; `None` when it is not there, for the project runs and tests on its
/// own. See [`require_official`] for CI.
pub fn official_fixture(name: &str) -> Option<std::path::PathBuf> {
    Some(official_fixtures_dir().join(name)).filter(|path| path.is_file())
}

/// Under `CI=true` the official cross-checks are required: a missing fixture is an error there.
pub fn require_official(name: &str, found: Option<&std::path::Path>) -> anyhow::Result<()> {
    if found.is_none() && std::env::var("CI").is_ok_and(|v| v == "true") {
        anyhow::bail!(
            "{} is missing: under CI=true the official cross-checks are required (set GFJ_SHARED_DIR \
             to the folder holding jira-fixtures/)",
            official_fixtures_dir().join(name).display()
        );
    }
    Ok(())
}

/// A port that was free on loopback a moment ago, for a process the caller starts next.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding a loopback port")
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
