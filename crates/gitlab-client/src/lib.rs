//! GitLab REST API v4 client: the calls linking and syncing need, against any allow-listed instance.
//!
//! Webhook payload types live in `gfj_core::gitlab`, because the pure mapping consumes them.

pub mod oauth;
mod transport;

use std::sync::Arc;

use reqwest::Method;
use serde::{Deserialize, Serialize, de::DeserializeOwned};

pub use transport::MAX_INLINE_WAIT;

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
    #[error("GitLab refused the OAuth grant: {0}")]
    OAuthRejected(String),
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

/// A webhook as GitLab reports it (`GET /…/hooks/:id`, and the answer to creating one).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct HookInfo {
    pub id: i64,
    #[serde(default)]
    pub url: String,
    /// `executable`, `temporarily_disabled` or `disabled` (auto-disabled after failed deliveries).
    #[serde(default)]
    pub alert_status: Option<String>,
    #[serde(default)]
    pub disabled_until: Option<String>,
    /// Whether GitLab keeps a Standard Webhooks signing token for it (newest GitLab only).
    #[serde(default)]
    pub signing_token_present: bool,
}

impl HookInfo {
    /// GitLab stopped delivering to it (temporarily or for good).
    pub fn is_disabled(&self) -> bool {
        matches!(
            self.alert_status.as_deref(),
            Some("temporarily_disabled" | "disabled")
        )
    }
}

pub use gfj_core::domain::HookScope;

/// The API collection a hook of this scope lives in.
fn hook_collection(scope: HookScope) -> &'static str {
    match scope {
        HookScope::Group => "groups",
        HookScope::Project => "projects",
    }
}

/// The events a hook we register subscribes to. Every flag is sent explicitly, because GitLab's
/// defaults differ between versions.
#[derive(Debug, Clone, Serialize)]
struct HookSpec<'a> {
    url: &'a str,
    token: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    signing_token: Option<&'a str>,
    name: &'a str,
    description: &'a str,
    enable_ssl_verification: bool,
    push_events: bool,
    tag_push_events: bool,
    merge_requests_events: bool,
    pipeline_events: bool,
    job_events: bool,
    deployment_events: bool,
    feature_flag_events: bool,
    issues_events: bool,
    confidential_issues_events: bool,
    note_events: bool,
    confidential_note_events: bool,
    wiki_page_events: bool,
    releases_events: bool,
    /// Group hooks only: new and removed projects and subgroups, and membership changes.
    #[serde(skip_serializing_if = "Option::is_none")]
    project_events: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    subgroup_events: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    member_events: Option<bool>,
}

impl<'a> HookSpec<'a> {
    fn new(scope: HookScope, url: &'a str, token: &'a str, signing_token: Option<&'a str>) -> Self {
        let group = (scope == HookScope::Group).then_some(true);
        Self {
            url,
            token,
            signing_token,
            name: "gitlab-for-jira",
            description: "Sends development activity to Jira (gitlab-for-jira)",
            enable_ssl_verification: true,
            push_events: true,
            tag_push_events: false,
            merge_requests_events: true,
            pipeline_events: true,
            job_events: true,
            deployment_events: true,
            feature_flag_events: true,
            issues_events: false,
            confidential_issues_events: false,
            note_events: false,
            confidential_note_events: false,
            wiki_page_events: false,
            releases_events: false,
            project_events: group,
            subgroup_events: group,
            member_events: group,
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

/// A merge request as the REST API lists it (`GET /projects/:id/merge_requests`). Lenient like the hook
/// types: anything but the ids may be missing or null.
#[derive(Debug, Clone, Deserialize)]
pub struct MergeRequestDetails {
    pub id: i64,
    pub iid: i64,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// `opened`, `closed`, `merged` or `locked`.
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub source_branch: Option<String>,
    #[serde(default)]
    pub target_branch: Option<String>,
    /// `None` when the fork the merge request came from has been deleted.
    #[serde(default)]
    pub source_project_id: Option<i64>,
    pub target_project_id: i64,
    #[serde(default)]
    pub author: Option<hooks::User>,
    #[serde(default)]
    pub reviewers: Option<Vec<hooks::User>>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub updated_at: Option<String>,
    #[serde(default)]
    pub merged_at: Option<String>,
    #[serde(default)]
    pub web_url: Option<String>,
    #[serde(default)]
    pub draft: Option<bool>,
    #[serde(default)]
    pub merge_commit_sha: Option<String>,
}

/// A pipeline as the REST API lists it (`GET /projects/:id/pipelines`).
#[derive(Debug, Clone, Deserialize)]
pub struct PipelineDetails {
    pub id: i64,
    #[serde(default)]
    pub iid: Option<i64>,
    #[serde(rename = "ref", default)]
    pub git_ref: Option<String>,
    /// Only in a single pipeline's answer; lists leave it out.
    #[serde(default)]
    pub tag: Option<bool>,
    #[serde(default)]
    pub sha: Option<String>,
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub finished_at: Option<String>,
    #[serde(default)]
    pub web_url: Option<String>,
}

/// A job of a pipeline (`GET /projects/:id/pipelines/:id/jobs`).
#[derive(Debug, Clone, Deserialize)]
pub struct PipelineJob {
    pub id: i64,
    #[serde(default)]
    pub stage: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub started_at: Option<String>,
    #[serde(default)]
    pub finished_at: Option<String>,
    #[serde(default)]
    pub allow_failure: Option<bool>,
}

#[derive(Clone)]
pub struct GitLabClient {
    http: reqwest::Client,
    api: String,
    token: String,
    gate: Arc<transport::Gate>,
    /// Retries and in-line rate-limit waits; off for best-effort reads (see `best_effort`).
    patient: bool,
}

impl std::fmt::Debug for GitLabClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitLabClient")
            .field("api", &self.api)
            .finish_non_exhaustive()
    }
}

fn encode_path(p: &str) -> String {
    url::form_urlencoded::byte_serialize(p.as_bytes()).collect()
}

fn unreadable(e: reqwest::Error) -> GitLabError {
    GitLabError::Transient(format!("unreadable response: {}", e.without_url()))
}

impl GitLabClient {
    /// `base_url` is the instance (e.g. `https://gitlab.com`); callers check it against `GFJ_GITLAB_URLS`.
    pub fn new(http: reqwest::Client, base_url: &str, token: &str) -> Self {
        let api = format!("{}/api/v4", base_url.trim_end_matches('/'));
        Self {
            http,
            gate: transport::Gate::of(&api, token),
            api,
            token: token.to_owned(),
            patient: true,
        }
    }

    /// The same client for reads that only add detail: one attempt, no waiting, so that an
    /// unavailable or throttled GitLab costs nothing but the detail.
    pub fn best_effort(&self) -> Self {
        Self {
            patient: false,
            ..self.clone()
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        json: Option<&serde_json::Value>,
    ) -> Result<reqwest::Response, GitLabError> {
        let call = transport::Call {
            method,
            url: format!("{}{path}", self.api),
            json,
            patient: self.patient,
        };
        transport::send(&self.http, &self.gate, &self.token, call).await
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, GitLabError> {
        self.call(Method::GET, path, None)
            .await?
            .json()
            .await
            .map_err(unreadable)
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

    /// Every page of a list, 100 per page, following GitLab's pagination (offset or keyset). Page
    /// links must stay on this instance.
    async fn get_all<T: DeserializeOwned>(&self, path: &str) -> Result<Vec<T>, GitLabError> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut url = format!("{}{path}{sep}per_page=100", self.api);
        let mut pages = transport::PageGuard::new(&url, transport::MAX_PAGES);
        let mut all = Vec::new();
        loop {
            let call = transport::Call {
                method: Method::GET,
                url: url.clone(),
                json: None,
                patient: self.patient,
            };
            let resp = transport::send(&self.http, &self.gate, &self.token, call).await?;
            let next = transport::next_page_url(resp.headers(), &url);
            let items: Vec<T> = resp.json().await.map_err(unreadable)?;
            let empty = items.is_empty();
            all.extend(items);
            match next {
                Some(n) if !empty => {
                    if !n.starts_with(&format!("{}/", self.api)) {
                        return Err(GitLabError::Other {
                            status: 200,
                            message: format!("pagination link leaves {}: {n}", self.api),
                        });
                    }
                    pages.admit(&n)?;
                    url = n;
                }
                _ => return Ok(all),
            }
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
        // Keyset pagination: stable while projects are added, and not capped at offset 50,000.
        self.get_all(&format!("/groups/{group_id}/projects?include_subgroups=true&with_shared=false&archived=false&pagination=keyset&order_by=id&sort=asc"))
            .await
    }

    /// Registers a hook with our events on a group (Premium, Owner) or project (Maintainer). The signing
    /// token is offered to GitLab; only the newest versions keep it (see `HookInfo::signing_token_present`).
    pub async fn create_hook(
        &self,
        scope: HookScope,
        target_id: i64,
        url: &str,
        token: &str,
        signing_token: Option<&str>,
    ) -> Result<HookInfo, GitLabError> {
        let spec = serde_json::to_value(HookSpec::new(scope, url, token, signing_token))
            .expect("hook spec serialises");
        self.call(
            Method::POST,
            &format!("/{}/{target_id}/hooks", hook_collection(scope)),
            Some(&spec),
        )
        .await?
        .json()
        .await
        .map_err(unreadable)
    }

    /// A hook, or `None` when it no longer exists (deleted in GitLab).
    pub async fn hook(
        &self,
        scope: HookScope,
        target_id: i64,
        hook_id: i64,
    ) -> Result<Option<HookInfo>, GitLabError> {
        self.get_optional(&format!(
            "/{}/{target_id}/hooks/{hook_id}",
            hook_collection(scope)
        ))
        .await
    }

    /// Sends GitLab's test push event through a hook; a 2xx from us re-enables an auto-disabled hook.
    pub async fn test_hook(
        &self,
        scope: HookScope,
        target_id: i64,
        hook_id: i64,
    ) -> Result<(), GitLabError> {
        self.call(
            Method::POST,
            &format!(
                "/{}/{target_id}/hooks/{hook_id}/test/push_events",
                hook_collection(scope)
            ),
            None,
        )
        .await
        .map(drop)
    }

    /// Deletes a hook; one that is already gone counts as deleted.
    pub async fn delete_hook(
        &self,
        scope: HookScope,
        target_id: i64,
        hook_id: i64,
    ) -> Result<(), GitLabError> {
        match self
            .call(
                Method::DELETE,
                &format!("/{}/{target_id}/hooks/{hook_id}", hook_collection(scope)),
                None,
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
        Ok(c.into())
    }

    /// The commits between two revisions (`from` excluded), oldest first, in the shape push hooks
    /// use: a push holds at most 20 commits, this gives the rest.
    pub async fn compare(
        &self,
        project_id: i64,
        from: &str,
        to: &str,
    ) -> Result<Vec<hooks::Commit>, GitLabError> {
        #[derive(Deserialize)]
        struct Compare {
            #[serde(default)]
            commits: Vec<RestCommit>,
        }
        let c: Compare = self
            .get(&format!(
                "/projects/{project_id}/repository/compare?from={}&to={}",
                encode_path(from),
                encode_path(to)
            ))
            .await?;
        Ok(c.commits.into_iter().map(Into::into).collect())
    }
}

impl From<RestCommit> for hooks::Commit {
    fn from(c: RestCommit) -> Self {
        hooks::Commit {
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
        }
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

    /// A project and the full path of the namespace (group or user) it lives in; `None` when the project
    /// does not exist or this token cannot see it.
    pub async fn project_placement(
        &self,
        project_id: i64,
    ) -> Result<Option<(ProjectSummary, String)>, GitLabError> {
        #[derive(Deserialize)]
        struct Namespace {
            full_path: String,
        }
        #[derive(Deserialize)]
        struct Placed {
            #[serde(flatten)]
            project: ProjectSummary,
            namespace: Namespace,
        }
        let p: Option<Placed> = self
            .get_optional(&format!("/projects/{project_id}"))
            .await?;
        Ok(p.map(|p| (p.project, p.namespace.full_path)))
    }

    pub async fn project_exists(&self, path: &str) -> Result<bool, GitLabError> {
        let p: Option<ProjectSummary> = self
            .get_optional(&format!("/projects/{}", encode_path(path)))
            .await?;
        Ok(p.is_some())
    }
}

/// `GET /projects/:id/deployments/:deployment_id`: what the Deployment Hook leaves out (iid, full SHA,
/// the deploying job and its pipeline).
#[derive(Debug, Clone, Deserialize)]
pub struct DeploymentDetails {
    pub id: i64,
    pub iid: i64,
    #[serde(rename = "ref", default)]
    pub git_ref: String,
    #[serde(default)]
    pub sha: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub updated_at: Option<String>,
    pub environment: DeploymentEnvironment,
    #[serde(default)]
    pub deployable: Option<Deployable>,
    /// Approvals given so far (Premium; empty elsewhere).
    #[serde(default)]
    pub approvals: Vec<DeploymentApproval>,
}

/// One user's decision on a deployment that needs approval.
#[derive(Debug, Clone, Deserialize)]
pub struct DeploymentApproval {
    pub user: UserRef,
    /// `approved` or `rejected`.
    pub status: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct UserRef {
    pub id: i64,
}

/// A protected environment (Premium) with the rules of who may approve its deployments.
#[derive(Debug, Clone, Deserialize)]
pub struct ProtectedEnvironment {
    pub name: String,
    #[serde(default)]
    pub approval_rules: Vec<ApprovalRule>,
    /// Who may deploy (and so play the environment's manual jobs); same shape as the approval rules.
    #[serde(default)]
    pub deploy_access_levels: Vec<ApprovalRule>,
}

/// Who may approve (or deploy): one user, the members of one group, or everyone with at least an
/// access level.
#[derive(Debug, Clone, Deserialize)]
pub struct ApprovalRule {
    #[serde(default)]
    pub user_id: Option<i64>,
    #[serde(default)]
    pub group_id: Option<i64>,
    #[serde(default)]
    pub access_level: Option<i64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DeploymentEnvironment {
    pub id: i64,
    pub name: String,
    #[serde(default)]
    pub tier: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Deployable {
    pub id: i64,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub pipeline: Option<DeployablePipeline>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DeployablePipeline {
    pub id: i64,
    #[serde(default)]
    pub iid: i64,
}

/// A commit as the commits and compare APIs list it.
#[derive(Debug, Clone, Deserialize)]
pub struct CommitSummary {
    pub id: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub parent_ids: Vec<String>,
}

/// `GET /projects/:id/feature_flags/:name` (the REST entity has no id; the webhook's id is used).
#[derive(Debug, Clone, Deserialize)]
pub struct FeatureFlagDetails {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub active: bool,
    #[serde(default)]
    pub strategies: Vec<gfj_core::mapping::feature_flag::FlagStrategy>,
    #[serde(default)]
    pub updated_at: Option<String>,
}

/// GitLab's own app reads at most this many commits to find a deployment's issue keys.
pub const DEPLOYMENT_COMMITS_LIMIT: usize = 5_000;

impl GitLabClient {
    pub async fn deployment(
        &self,
        project_id: i64,
        deployment_id: i64,
    ) -> Result<Option<DeploymentDetails>, GitLabError> {
        self.get_optional(&format!(
            "/projects/{project_id}/deployments/{deployment_id}"
        ))
        .await
    }

    /// The project's deployments waiting for approval, newest first.
    pub async fn blocked_deployments(
        &self,
        project_id: i64,
    ) -> Result<Vec<DeploymentDetails>, GitLabError> {
        self.get_all(&format!(
            "/projects/{project_id}/deployments?status=blocked&order_by=id&sort=desc"
        ))
        .await
    }

    /// Approves or rejects a deployment as this client's user (`status` is `approved` or `rejected`).
    pub async fn decide_deployment(
        &self,
        project_id: i64,
        deployment_id: i64,
        status: &str,
        comment: &str,
    ) -> Result<(), GitLabError> {
        let body = serde_json::json!({ "status": status, "comment": comment });
        self.call(
            Method::POST,
            &format!("/projects/{project_id}/deployments/{deployment_id}/approval"),
            Some(&body),
        )
        .await
        .map(drop)
    }

    /// A job's current status (`manual`, `pending`, `running`, …), or `None` when it is gone.
    pub async fn job(
        &self,
        project_id: i64,
        job_id: i64,
    ) -> Result<Option<PipelineJob>, GitLabError> {
        self.get_optional(&format!("/projects/{project_id}/jobs/{job_id}"))
            .await
    }

    /// Starts a manual job.
    pub async fn play_job(&self, project_id: i64, job_id: i64) -> Result<(), GitLabError> {
        self.call(
            Method::POST,
            &format!("/projects/{project_id}/jobs/{job_id}/play"),
            None,
        )
        .await
        .map(drop)
    }

    /// The project's protected environments (Premium: 403 or 404 on Free).
    pub async fn protected_environments(
        &self,
        project_id: i64,
    ) -> Result<Vec<ProtectedEnvironment>, GitLabError> {
        self.get_all(&format!("/projects/{project_id}/protected_environments"))
            .await
    }

    /// The user's effective membership of a project (inherited included), or `None`.
    pub async fn project_member(
        &self,
        project_id: i64,
        user_id: i64,
    ) -> Result<Option<Member>, GitLabError> {
        self.get_optional(&format!("/projects/{project_id}/members/all/{user_id}"))
            .await
    }

    /// The commits a deployment brings to its environment: those after the previous successful
    /// deployment of the same ref there, up to the deployed commit (at most
    /// `DEPLOYMENT_COMMITS_LIMIT`, merges skipped as GitLab's app does). Only the deployed commit when
    /// there is no earlier deployment.
    pub async fn deployment_commits(
        &self,
        project_id: i64,
        d: &DeploymentDetails,
    ) -> Result<Vec<CommitSummary>, GitLabError> {
        let env = encode_path(&d.environment.name);
        let previous: Vec<DeploymentDetails> = self
            .get(&format!(
                "/projects/{project_id}/deployments?environment={env}&status=success&order_by=id&sort=desc&per_page=100"
            ))
            .await?;
        let since = previous
            .iter()
            .find(|p| p.id < d.id && p.git_ref == d.git_ref && !p.sha.is_empty())
            .map(|p| p.sha.clone());
        let commits = match since {
            Some(from) if from != d.sha => {
                #[derive(Deserialize)]
                struct Compare {
                    #[serde(default)]
                    commits: Vec<CommitSummary>,
                }
                let c: Compare = self
                    .get(&format!(
                        "/projects/{project_id}/repository/compare?from={}&to={}",
                        encode_path(&from),
                        encode_path(&d.sha)
                    ))
                    .await?;
                c.commits
            }
            _ => {
                let one: CommitSummary = self
                    .get(&format!(
                        "/projects/{project_id}/repository/commits/{}",
                        encode_path(&d.sha)
                    ))
                    .await?;
                vec![one]
            }
        };
        let mut commits: Vec<CommitSummary> = commits
            .into_iter()
            .filter(|c| c.parent_ids.len() < 2)
            .collect();
        // Newest first matters when capping: the commits closest to the deployment are kept.
        if commits.len() > DEPLOYMENT_COMMITS_LIMIT {
            commits.drain(..commits.len() - DEPLOYMENT_COMMITS_LIMIT);
        }
        Ok(commits)
    }

    /// A feature flag by name; `None` once it was deleted.
    pub async fn feature_flag(
        &self,
        project_id: i64,
        name: &str,
    ) -> Result<Option<FeatureFlagDetails>, GitLabError> {
        self.get_optional(&format!(
            "/projects/{project_id}/feature_flags/{}",
            encode_path(name)
        ))
        .await
    }
}

impl GitLabClient {
    /// Title and description of each open merge request from `branch` (GitLab's branch entity takes
    /// their issue keys too).
    pub async fn open_merge_request_texts(
        &self,
        project_id: i64,
        branch: &str,
    ) -> Result<Vec<String>, GitLabError> {
        let mrs: Vec<OpenMergeRequest> = self
            .get(&format!(
                "/projects/{project_id}/merge_requests?state=opened&source_branch={}&per_page=100",
                encode_path(branch)
            ))
            .await?;
        Ok(mrs.into_iter().flat_map(OpenMergeRequest::texts).collect())
    }

    /// Groups and subgroups where the user is at least `min_access_level` (directly or through a parent
    /// group): what a user may link.
    pub async fn groups_with_access(
        &self,
        min_access_level: i64,
    ) -> Result<Vec<Group>, GitLabError> {
        self.get_all(&format!(
            "/groups?min_access_level={min_access_level}&order_by=name&sort=asc"
        ))
        .await
    }

    /// The titles and descriptions of every open merge request of a project, by source branch (one
    /// list for all branches: what a backfill page of branches needs).
    pub async fn open_merge_request_texts_by_branch(
        &self,
        project_id: i64,
    ) -> Result<std::collections::HashMap<String, Vec<String>>, GitLabError> {
        let mrs: Vec<OpenMergeRequest> = self
            .get_all(&format!(
                "/projects/{project_id}/merge_requests?state=opened"
            ))
            .await?;
        let mut by_branch: std::collections::HashMap<String, Vec<String>> = Default::default();
        for m in mrs {
            by_branch
                .entry(m.source_branch.clone())
                .or_default()
                .extend(m.texts());
        }
        Ok(by_branch)
    }
}

/// An open merge request, for the issue keys its branch carries.
#[derive(Deserialize)]
struct OpenMergeRequest {
    #[serde(default)]
    source_branch: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    description: Option<String>,
}

impl OpenMergeRequest {
    /// Title and description: where GitLab reads the keys.
    fn texts(self) -> [String; 2] {
        [self.title, self.description.unwrap_or_default()]
    }
}

/// A branch as the branches API lists it.
#[derive(Debug, Clone, Deserialize)]
pub struct BranchSummary {
    pub name: String,
    pub commit: BranchTip,
}

#[derive(Debug, Clone, Deserialize)]
pub struct BranchTip {
    pub id: String,
    #[serde(default)]
    pub committed_date: Option<String>,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub authored_date: Option<String>,
    #[serde(default)]
    pub author_name: String,
    #[serde(default)]
    pub author_email: String,
    #[serde(default)]
    pub web_url: String,
}

impl From<BranchTip> for hooks::Commit {
    fn from(c: BranchTip) -> Self {
        hooks::Commit {
            id: c.id,
            message: c.message,
            title: c.title,
            timestamp: c.authored_date.or(c.committed_date).unwrap_or_default(),
            url: c.web_url,
            author: hooks::CommitAuthor {
                name: c.author_name,
                email: c.author_email,
            },
            added: vec![],
            modified: vec![],
            removed: vec![],
        }
    }
}

/// One page of a list, with GitLab's next page number and total count when it gives them (it stops
/// counting above 10,000 records).
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_page: Option<i64>,
    pub total: Option<i64>,
}

/// What a backfill reads: one page at a time, in an order that new records cannot shift (they come
/// last), so that a stored page number is a safe cursor. Times are ISO 8601.
impl GitLabClient {
    async fn get_page<T: DeserializeOwned>(
        &self,
        path: &str,
        page: i64,
    ) -> Result<Page<T>, GitLabError> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let resp = self
            .call(
                Method::GET,
                &format!("{path}{sep}per_page=100&page={page}"),
                None,
            )
            .await?;
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<i64>().ok())
        };
        let next_page = header("x-next-page");
        let total = transport::list_total(header("x-total"));
        let items: Vec<T> = resp.json().await.map_err(unreadable)?;
        Ok(Page {
            next_page: transport::next_page_number(page, next_page).filter(|_| !items.is_empty()),
            items,
            total,
        })
    }

    /// Merge requests in every state, updated since `since` (all when `None`), oldest first.
    pub async fn merge_requests_page(
        &self,
        project_id: i64,
        since: Option<&str>,
        page: i64,
    ) -> Result<Page<MergeRequestDetails>, GitLabError> {
        let since = since
            .map(|s| format!("&updated_after={}", encode_path(s)))
            .unwrap_or_default();
        self.get_page(
            &format!(
                "/projects/{project_id}/merge_requests?state=all&order_by=created_at&sort=asc{since}"
            ),
            page,
        )
        .await
    }

    /// Branches with their tip commits, by name.
    pub async fn branches_page(
        &self,
        project_id: i64,
        page: i64,
    ) -> Result<Page<BranchSummary>, GitLabError> {
        self.get_page(&format!("/projects/{project_id}/repository/branches"), page)
            .await
    }

    /// Commits of every branch, newest first, committed between `since` (the beginning when `None`) and
    /// `until` (which pins the list while it is read).
    pub async fn commits_page(
        &self,
        project_id: i64,
        since: Option<&str>,
        until: &str,
        page: i64,
    ) -> Result<Page<hooks::Commit>, GitLabError> {
        let since = since
            .map(|s| format!("&since={}", encode_path(s)))
            .unwrap_or_default();
        let p: Page<RestCommit> = self
            .get_page(
                &format!(
                    "/projects/{project_id}/repository/commits?all=true&until={}{since}",
                    encode_path(until)
                ),
                page,
            )
            .await?;
        Ok(Page {
            items: p.items.into_iter().map(Into::into).collect(),
            next_page: p.next_page,
            total: p.total,
        })
    }

    /// Pipelines updated since `since` (all when `None`), by id.
    pub async fn pipelines_page(
        &self,
        project_id: i64,
        since: Option<&str>,
        page: i64,
    ) -> Result<Page<PipelineDetails>, GitLabError> {
        let since = since
            .map(|s| format!("&updated_after={}", encode_path(s)))
            .unwrap_or_default();
        self.get_page(
            &format!("/projects/{project_id}/pipelines?order_by=id&sort=asc{since}"),
            page,
        )
        .await
    }

    /// Deployments by id (GitLab sorts by update time whenever a time filter is given, which new updates
    /// would shift; the caller filters by time).
    pub async fn deployments_page(
        &self,
        project_id: i64,
        page: i64,
    ) -> Result<Page<DeploymentDetails>, GitLabError> {
        self.get_page(
            &format!("/projects/{project_id}/deployments?order_by=id&sort=asc"),
            page,
        )
        .await
    }
}

/// What a reconciliation pass reads. Times are ISO 8601, as GitLab's filters take them.
impl GitLabClient {
    /// A project in the shape webhooks describe it.
    pub async fn project(&self, project_id: i64) -> Result<Option<hooks::Project>, GitLabError> {
        self.get_optional(&format!("/projects/{project_id}")).await
    }

    /// Every branch (GitLab sorts them by name and cannot filter by date).
    pub async fn branches(&self, project_id: i64) -> Result<Vec<BranchSummary>, GitLabError> {
        self.get_all(&format!("/projects/{project_id}/repository/branches"))
            .await
    }

    /// Commits on `branch` since a time, oldest first, at most `limit` (the newest kept).
    pub async fn commits_since(
        &self,
        project_id: i64,
        branch: &str,
        since: &str,
        limit: usize,
    ) -> Result<Vec<hooks::Commit>, GitLabError> {
        let mut commits: Vec<RestCommit> = self
            .get_all(&format!(
                "/projects/{project_id}/repository/commits?ref_name={}&since={}",
                encode_path(branch),
                encode_path(since)
            ))
            .await?;
        commits.truncate(limit);
        Ok(commits.into_iter().rev().map(Into::into).collect())
    }

    /// Merge requests updated since a time.
    pub async fn merge_requests_updated_after(
        &self,
        project_id: i64,
        since: &str,
    ) -> Result<Vec<MergeRequestDetails>, GitLabError> {
        self.get_all(&format!(
            "/projects/{project_id}/merge_requests?updated_after={}&order_by=updated_at&sort=asc",
            encode_path(since)
        ))
        .await
    }

    /// The global ids of every merge request of a project, whatever its state (GitLab reports no
    /// deletions; what is missing from this list was deleted).
    pub async fn merge_request_ids(&self, project_id: i64) -> Result<Vec<i64>, GitLabError> {
        #[derive(serde::Deserialize)]
        struct Id {
            id: i64,
        }
        let ids: Vec<Id> = self
            .get_all(&format!("/projects/{project_id}/merge_requests?state=all"))
            .await?;
        Ok(ids.into_iter().map(|m| m.id).collect())
    }

    /// Deployments updated since a time, whatever their status (blocked included).
    pub async fn deployments_updated_after(
        &self,
        project_id: i64,
        since: &str,
    ) -> Result<Vec<DeploymentDetails>, GitLabError> {
        self.get_all(&format!(
            "/projects/{project_id}/deployments?updated_after={}&order_by=updated_at&sort=asc",
            encode_path(since)
        ))
        .await
    }
}

impl GitLabClient {
    /// Every feature flag of a project (without ids: the REST entity has none).
    pub async fn feature_flags(
        &self,
        project_id: i64,
    ) -> Result<Vec<FeatureFlagDetails>, GitLabError> {
        self.get_all(&format!("/projects/{project_id}/feature_flags"))
            .await
    }
}

impl GitLabClient {
    /// Pipelines updated since a time.
    pub async fn pipelines_updated_after(
        &self,
        project_id: i64,
        since: &str,
    ) -> Result<Vec<PipelineDetails>, GitLabError> {
        self.get_all(&format!(
            "/projects/{project_id}/pipelines?updated_after={}&order_by=updated_at&sort=asc",
            encode_path(since)
        ))
        .await
    }

    /// A pipeline's jobs.
    pub async fn pipeline_jobs(
        &self,
        project_id: i64,
        pipeline_id: i64,
    ) -> Result<Vec<PipelineJob>, GitLabError> {
        self.get_all(&format!(
            "/projects/{project_id}/pipelines/{pipeline_id}/jobs"
        ))
        .await
    }
}

impl GitLabClient {
    /// How many parents a commit has, and the files it changed (GitLab's diff, per file).
    pub async fn commit_changes(
        &self,
        project_id: i64,
        sha: &str,
    ) -> Result<(usize, Vec<hooks::DiffFile>), GitLabError> {
        #[derive(Deserialize)]
        struct Parents {
            #[serde(default)]
            parent_ids: Vec<String>,
        }
        let sha = encode_path(sha);
        let c: Parents = self
            .get(&format!("/projects/{project_id}/repository/commits/{sha}"))
            .await?;
        let diffs: Vec<hooks::DiffFile> = self
            .get(&format!(
                "/projects/{project_id}/repository/commits/{sha}/diff?per_page=100"
            ))
            .await?;
        Ok((c.parent_ids.len(), diffs))
    }
}
