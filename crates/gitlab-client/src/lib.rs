//! GitLab REST API v4 client: the calls linking and syncing need, against any allow-listed instance.
//!
//! Webhook payload types live in `gfj_core::gitlab`, because the pure mapping consumes them.

use std::time::Duration;

use serde::{Deserialize, Serialize, de::DeserializeOwned};

pub use gfj_core::gitlab as hooks;

/// GitLab's access level for Maintainer; linking needs at least this on the group.
pub const MAINTAINER: i64 = 40;
pub const OWNER: i64 = 50;

#[derive(Debug, thiserror::Error)]
pub enum GitLabError {
    #[error("GitLab rejected the token (401)")]
    Unauthorized,
    #[error("GitLab refused the request (403): {0}")]
    Forbidden(String),
    #[error("not found in GitLab (404): {0}")]
    NotFound(String),
    #[error("GitLab rate limit; retry after {retry_after_ms} ms")]
    RateLimited { retry_after_ms: i64 },
    #[error("GitLab is unavailable: {0}")]
    Transient(String),
    #[error("GitLab answered {status}: {message}")]
    Other { status: u16, message: String },
}

impl GitLabError {
    /// Worth retrying later (outage, rate limit), as opposed to a request that will never succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::RateLimited { .. } | Self::Transient(_))
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct User {
    pub id: i64,
    pub username: String,
    #[serde(default)]
    pub is_admin: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Group {
    pub id: i64,
    pub full_path: String,
    #[serde(default)]
    pub name: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Member {
    pub id: i64,
    pub access_level: i64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ProjectSummary {
    pub id: i64,
    pub path_with_namespace: String,
    #[serde(default)]
    pub web_url: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct HookCreated {
    pub id: i64,
}

/// The events a hook we register subscribes to.
#[derive(Debug, Clone, Serialize)]
struct HookSpec<'a> {
    url: &'a str,
    token: &'a str,
    name: &'a str,
    enable_ssl_verification: bool,
    push_events: bool,
    tag_push_events: bool,
    merge_requests_events: bool,
    pipeline_events: bool,
    job_events: bool,
    deployment_events: bool,
    feature_flag_events: bool,
    issues_events: bool,
    note_events: bool,
}

impl<'a> HookSpec<'a> {
    fn new(url: &'a str, token: &'a str) -> Self {
        Self {
            url,
            token,
            name: "gitlab-for-jira",
            enable_ssl_verification: true,
            push_events: true,
            tag_push_events: false,
            merge_requests_events: true,
            pipeline_events: true,
            job_events: true,
            deployment_events: true,
            feature_flag_events: true,
            issues_events: false,
            note_events: false,
        }
    }
}

/// A commit from `GET /projects/:id/repository/commits/:sha`.
#[derive(Debug, Clone, Deserialize)]
struct RestCommit {
    id: String,
    message: String,
    #[serde(default)]
    title: String,
    authored_date: String,
    author_name: String,
    #[serde(default)]
    author_email: String,
    web_url: String,
}

#[derive(Clone)]
pub struct GitLabClient {
    http: reqwest::Client,
    api: String,
    token: String,
}

impl std::fmt::Debug for GitLabClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitLabClient")
            .field("api", &self.api)
            .finish_non_exhaustive()
    }
}

/// The HTTP client every GitLab call shares: timeouts, no redirects (a redirect could leave the allow-list).
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("gitlab-for-jira/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("static client configuration")
}

fn encode_path(p: &str) -> String {
    url::form_urlencoded::byte_serialize(p.as_bytes()).collect()
}

impl GitLabClient {
    /// `base_url` is the instance (e.g. `https://gitlab.com`); callers check it against `GFJ_GITLAB_URLS`.
    pub fn new(http: reqwest::Client, base_url: &str, token: &str) -> Self {
        Self {
            http,
            api: format!("{}/api/v4", base_url.trim_end_matches('/')),
            token: token.to_owned(),
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response, GitLabError> {
        let resp = req
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| GitLabError::Transient(e.without_url().to_string()))?;
        let status = resp.status().as_u16();
        if resp.status().is_success() {
            return Ok(resp);
        }
        let retry_after_ms = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<i64>().ok())
            .map(|s| s * 1000);
        let body = resp.text().await.unwrap_or_default();
        let message = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("message").or(v.get("error")).map(|m| m.to_string()))
            .unwrap_or(body);
        Err(match status {
            401 => GitLabError::Unauthorized,
            403 => GitLabError::Forbidden(message),
            404 => GitLabError::NotFound(message),
            429 => GitLabError::RateLimited {
                retry_after_ms: retry_after_ms.unwrap_or(60_000),
            },
            500..=599 => GitLabError::Transient(format!("{status} {message}")),
            _ => GitLabError::Other { status, message },
        })
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, GitLabError> {
        let resp = self
            .send(self.http.get(format!("{}{path}", self.api)))
            .await?;
        resp.json()
            .await
            .map_err(|e| GitLabError::Transient(format!("unreadable response: {e}")))
    }

    /// Like `get`, with 404 as `None`.
    async fn get_optional<T: DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<Option<T>, GitLabError> {
        match self.get(path).await {
            Ok(v) => Ok(Some(v)),
            Err(GitLabError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every page of a list (offset pagination, 100 per page, following `x-next-page`).
    async fn get_all<T: DeserializeOwned>(&self, path: &str) -> Result<Vec<T>, GitLabError> {
        let mut all = Vec::new();
        let mut page = "1".to_owned();
        let sep = if path.contains('?') { '&' } else { '?' };
        loop {
            let url = format!("{}{path}{sep}per_page=100&page={page}", self.api);
            let resp = self.send(self.http.get(url)).await?;
            let next = resp
                .headers()
                .get("x-next-page")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .trim()
                .to_owned();
            let items: Vec<T> = resp
                .json()
                .await
                .map_err(|e| GitLabError::Transient(format!("unreadable response: {e}")))?;
            all.extend(items);
            if next.is_empty() {
                return Ok(all);
            }
            page = next;
        }
    }

    pub async fn current_user(&self) -> Result<User, GitLabError> {
        self.get("/user").await
    }

    /// A group by numeric id or full path.
    pub async fn group(&self, id_or_path: &str) -> Result<Group, GitLabError> {
        self.get(&format!("/groups/{}", encode_path(id_or_path)))
            .await
    }

    /// The user's effective membership (inherited included), or `None` when not a member.
    pub async fn group_member(
        &self,
        group_id: i64,
        user_id: i64,
    ) -> Result<Option<Member>, GitLabError> {
        self.get_optional(&format!("/groups/{group_id}/members/all/{user_id}"))
            .await
    }

    /// Every project of the group and its subgroups (not projects shared into it).
    pub async fn group_projects(&self, group_id: i64) -> Result<Vec<ProjectSummary>, GitLabError> {
        self.get_all(&format!("/groups/{group_id}/projects?include_subgroups=true&with_shared=false&archived=false&order_by=id&sort=asc"))
            .await
    }

    pub async fn create_group_hook(
        &self,
        group_id: i64,
        url: &str,
        token: &str,
    ) -> Result<i64, GitLabError> {
        self.create_hook(&format!("/groups/{group_id}/hooks"), url, token)
            .await
    }

    pub async fn create_project_hook(
        &self,
        project_id: i64,
        url: &str,
        token: &str,
    ) -> Result<i64, GitLabError> {
        self.create_hook(&format!("/projects/{project_id}/hooks"), url, token)
            .await
    }

    async fn create_hook(&self, path: &str, url: &str, token: &str) -> Result<i64, GitLabError> {
        let r = self
            .http
            .post(format!("{}{path}", self.api))
            .json(&HookSpec::new(url, token));
        let h: HookCreated = self
            .send(r)
            .await?
            .json()
            .await
            .map_err(|e| GitLabError::Transient(format!("unreadable response: {e}")))?;
        Ok(h.id)
    }

    /// Deletes a hook; one that is already gone counts as deleted.
    pub async fn delete_hook(
        &self,
        scope: &str,
        target_id: i64,
        hook_id: i64,
    ) -> Result<(), GitLabError> {
        let kind = if scope == "group" {
            "groups"
        } else {
            "projects"
        };
        match self
            .send(
                self.http
                    .delete(format!("{}/{kind}/{target_id}/hooks/{hook_id}", self.api)),
            )
            .await
        {
            Ok(_) | Err(GitLabError::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// One commit, in the shape push hooks use.
    pub async fn commit(&self, project_id: i64, sha: &str) -> Result<hooks::Commit, GitLabError> {
        let c: RestCommit = self
            .get(&format!(
                "/projects/{project_id}/repository/commits/{}",
                encode_path(sha)
            ))
            .await?;
        Ok(hooks::Commit {
            id: c.id,
            message: c.message,
            title: c.title,
            timestamp: c.authored_date,
            url: c.web_url,
            author: hooks::CommitAuthor {
                name: c.author_name,
                email: c.author_email,
            },
            added: vec![],
            modified: vec![],
            removed: vec![],
        })
    }
}

impl GitLabClient {
    /// `user` or `group` for a namespace path, `None` when it does not exist.
    pub async fn namespace_kind(&self, path: &str) -> Result<Option<String>, GitLabError> {
        #[derive(Deserialize)]
        struct Namespace {
            kind: String,
        }
        let ns: Option<Namespace> = self
            .get_optional(&format!("/namespaces/{}", encode_path(path)))
            .await?;
        Ok(ns.map(|n| n.kind))
    }

    pub async fn project_exists(&self, path: &str) -> Result<bool, GitLabError> {
        let p: Option<ProjectSummary> = self
            .get_optional(&format!("/projects/{}", encode_path(path)))
            .await?;
        Ok(p.is_some())
    }
}
