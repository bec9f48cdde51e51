//! Jira Software Cloud client for the development-information API, signing each request with a fresh
//! Connect JWT bound to that exact request.

use std::time::Duration;

use gfj_core::connect_jwt::{self, BoundRequest};
use gfj_core::jira::DevinfoRequest;
use serde::Deserialize;

/// Lifetime of each outgoing token; short, since a token is made per request.
const TOKEN_TTL_SECS: i64 = 60;

/// Where and as whom to call one Jira site.
#[derive(Clone)]
pub struct Site {
    pub base_url: String,
    pub shared_secret: String,
}

impl std::fmt::Debug for Site {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Site")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JiraError {
    #[error("Jira rate limit; retry after {retry_after_ms} ms")]
    RateLimited { retry_after_ms: i64 },
    #[error("Jira rejected the app's token (401)")]
    Unauthorized,
    #[error("Jira refused: the app lacks the module or scope (403)")]
    Forbidden,
    #[error("Jira says the payload is too large (413)")]
    TooLarge,
    #[error("Jira rejected the request (400): {0}")]
    BadRequest(String),
    #[error("Jira is unavailable ({status}): {message}")]
    Unavailable {
        status: u16,
        message: String,
        retry_after_ms: Option<i64>,
    },
    #[error("cannot reach Jira: {0}")]
    Transport(String),
    #[error("Jira answered {status}: {message}")]
    Other { status: u16, message: String },
}

impl JiraError {
    /// Worth retrying as it is: the same request may succeed later.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::RateLimited { .. } | Self::Unavailable { .. } | Self::Transport(_)
        )
    }
}

/// Jira's answer to a devinfo bulk store (202).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DevinfoResult {
    #[serde(default)]
    pub accepted_devinfo_entities: serde_json::Value,
    #[serde(default)]
    pub failed_devinfo_entities: serde_json::Value,
    #[serde(default)]
    pub unknown_issue_keys: Vec<String>,
}

impl DevinfoResult {
    /// The entities Jira refused, as `(repository id, entity type, entity id, reason)`; a repository-level
    /// error is reported with entity type `repository`.
    pub fn failures(&self) -> Vec<(String, String, String, String)> {
        let mut out = Vec::new();
        let reasons = |v: &serde_json::Value| {
            v["errorMessages"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|m| m["message"].as_str())
                .collect::<Vec<_>>()
                .join("; ")
        };
        for (repo, failed) in self
            .failed_devinfo_entities
            .as_object()
            .into_iter()
            .flatten()
        {
            let repo_reason = reasons(failed);
            if !repo_reason.is_empty() {
                out.push((
                    repo.clone(),
                    "repository".to_owned(),
                    repo.clone(),
                    repo_reason,
                ));
            }
            for (field, kind) in [
                ("commits", "commit"),
                ("branches", "branch"),
                ("pullRequests", "pull_request"),
            ] {
                for e in failed[field].as_array().into_iter().flatten() {
                    let id = e["id"].as_str().unwrap_or_default().to_owned();
                    out.push((repo.clone(), kind.to_owned(), id, reasons(e)));
                }
            }
        }
        out
    }
}

#[derive(Clone)]
pub struct JiraClient {
    http: reqwest::Client,
    app_key: String,
}

/// The HTTP client every Jira call shares.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("gitlab-for-jira/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("static client configuration")
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl JiraClient {
    pub fn new(http: reqwest::Client, app_key: &str) -> Self {
        Self {
            http,
            app_key: app_key.to_owned(),
        }
    }

    /// Sends `method path?query` to the site with a JWT bound to it.
    async fn call(
        &self,
        site: &Site,
        method: reqwest::Method,
        path_and_query: &str,
        body: Option<&DevinfoRequest>,
    ) -> Result<reqwest::Response, JiraError> {
        let base = site.base_url.trim_end_matches('/');
        let base_path = gfj_core::qsh::split_url(base).0;
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        let token = connect_jwt::sign_hs256(
            &self.app_key,
            site.shared_secret.as_bytes(),
            &BoundRequest {
                method: method.as_str(),
                path: &format!("{base_path}{path}"),
                query,
                base_path,
            },
            now_secs(),
            TOKEN_TTL_SECS,
        );
        let mut req = self
            .http
            .request(method, format!("{base}{path_and_query}"))
            .header("Authorization", format!("JWT {token}"))
            .header("Accept", "application/json");
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| JiraError::Transport(e.without_url().to_string()))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        Err(error_of(resp).await)
    }

    /// `POST /rest/devinfo/0.10/bulk`.
    pub async fn store_devinfo(
        &self,
        site: &Site,
        body: &DevinfoRequest,
    ) -> Result<DevinfoResult, JiraError> {
        let resp = self
            .call(
                site,
                reqwest::Method::POST,
                "/rest/devinfo/0.10/bulk",
                Some(body),
            )
            .await?;
        resp.json()
            .await
            .map_err(|e| JiraError::Transport(format!("unreadable devinfo response: {e}")))
    }

    /// `DELETE /rest/devinfo/0.10/repository/{repositoryId}/branch/{branchId}`; only data with an
    /// `updateSequenceId` up to `seq` is removed, so a later re-creation of the branch survives.
    pub async fn delete_branch(
        &self,
        site: &Site,
        repository_id: &str,
        branch_id: &str,
        seq: i64,
    ) -> Result<(), JiraError> {
        let path = format!(
            "/rest/devinfo/0.10/repository/{repository_id}/branch/{branch_id}?_updateSequenceId={seq}"
        );
        self.call(site, reqwest::Method::DELETE, &path, None)
            .await
            .map(|_| ())
    }
}

/// How long Jira asked us to wait: `Retry-After` (seconds), else `X-RateLimit-Reset` (an ISO-8601 instant).
fn wait_ms(headers: &reqwest::header::HeaderMap, now: std::time::SystemTime) -> Option<i64> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(secs) = header("retry-after").and_then(|v| v.parse::<i64>().ok()) {
        return Some(secs.max(0) * 1000);
    }
    let reset = header("x-ratelimit-reset")?;
    let reset = time::OffsetDateTime::parse(reset, &time::format_description::well_known::Rfc3339)
        .or_else(|_| {
            time::OffsetDateTime::parse(
                &reset.replace('Z', ":00Z"),
                &time::format_description::well_known::Rfc3339,
            )
        })
        .ok()?;
    let now = time::OffsetDateTime::from(now);
    Some(((reset - now).whole_milliseconds() as i64).max(0))
}

async fn error_of(resp: reqwest::Response) -> JiraError {
    let status = resp.status().as_u16();
    let retry_after_ms = wait_ms(resp.headers(), std::time::SystemTime::now());
    let body = resp.text().await.unwrap_or_default();
    let message = messages(&body).unwrap_or(body);
    match status {
        400 => JiraError::BadRequest(message),
        401 => JiraError::Unauthorized,
        403 => JiraError::Forbidden,
        413 => JiraError::TooLarge,
        429 => JiraError::RateLimited {
            retry_after_ms: retry_after_ms.unwrap_or(10_000),
        },
        500..=599 => JiraError::Unavailable {
            status,
            message,
            retry_after_ms,
        },
        _ => JiraError::Other { status, message },
    }
}

/// The `message`s of Jira's error bodies: `{"errorMessages":[{message}]}` (devinfo) or `[{message}]`.
fn messages(body: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    let list = v.get("errorMessages").unwrap_or(&v).as_array()?;
    let texts: Vec<&str> = list
        .iter()
        .filter_map(|m| m.get("message").and_then(|m| m.as_str()).or(m.as_str()))
        .collect();
    (!texts.is_empty()).then(|| texts.join("; "))
}

#[cfg(test)]
mod tests {
    #[test]
    fn failures_are_read_per_entity() {
        let r: super::DevinfoResult = serde_json::from_value(serde_json::json!({
            "acceptedDevinfoEntities": {},
            "failedDevinfoEntities": { "7": {
                "commits": [{ "id": "abc", "errorMessages": [{ "message": "bad key" }] }],
                "branches": [{ "id": "b1", "errorMessages": [{ "message": "x" }, { "message": "y" }] }]
            }},
            "unknownIssueKeys": []
        }))
        .unwrap();
        assert_eq!(
            r.failures(),
            [
                ("7".into(), "commit".into(), "abc".into(), "bad key".into()),
                ("7".into(), "branch".into(), "b1".into(), "x; y".into())
            ]
        );
        assert!(super::DevinfoResult::default().failures().is_empty());
    }

    #[test]
    fn waits() {
        use reqwest::header::{HeaderMap, HeaderValue};
        let now = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
        let h = |pairs: &[(&'static str, &'static str)]| {
            let mut m = HeaderMap::new();
            for (k, v) in pairs {
                m.insert(*k, HeaderValue::from_static(v));
            }
            m
        };
        assert_eq!(super::wait_ms(&h(&[("retry-after", "2")]), now), Some(2000));
        assert_eq!(
            super::wait_ms(
                &h(&[
                    ("retry-after", "3"),
                    ("x-ratelimit-reset", "2027-01-15T08:01Z")
                ]),
                now
            ),
            Some(3000)
        );
        // 1_800_000_000 s = 2027-01-15T08:00:00Z; Jira's reset is minute-precise.
        assert_eq!(
            super::wait_ms(&h(&[("x-ratelimit-reset", "2027-01-15T08:01Z")]), now),
            Some(60_000)
        );
        assert_eq!(
            super::wait_ms(&h(&[("x-ratelimit-reset", "2027-01-15T08:00:30.5Z")]), now),
            Some(30_500)
        );
        assert_eq!(
            super::wait_ms(&h(&[("x-ratelimit-reset", "yesterday")]), now),
            None
        );
        assert_eq!(super::wait_ms(&h(&[]), now), None);
    }

    #[test]
    fn error_messages() {
        assert_eq!(
            super::messages(r#"{"errorMessages":[{"message":"a"},{"message":"b"}]}"#).as_deref(),
            Some("a; b")
        );
        assert_eq!(
            super::messages(r#"[{"message":"x"}]"#).as_deref(),
            Some("x")
        );
        assert_eq!(super::messages("oops"), None);
    }
}
