//! Jira Software Cloud client for the development-information API, in both connection modes:
//!
//! - Connect: each request goes to the site and carries a fresh JWT bound to that exact request.
//! - OAuth credentials: each request goes to `<GFJ_ATLASSIAN_API_URL>/jira/<api>/0.1/cloud/<cloudId>/…` with a
//!   bearer token from `<GFJ_ATLASSIAN_API_URL>/oauth/token`, cached until shortly before it expires and
//!   fetched again once when Jira answers 401.
//!
//! Callers write Connect paths (`/rest/devinfo/0.10/bulk`); the client maps them for OAuth.

use gfj_core::connect_jwt::{self, BoundRequest};
use gfj_core::jira::{BuildsRequest, DeploymentsRequest, DevinfoRequest, FeatureFlagsRequest};
use gfj_core::url_pattern::UrlAllowList;
use gfj_core::{metric_names, server_time};
use serde::Deserialize;

/// Lifetime of each outgoing token; short, since a token is made per request.
const TOKEN_TTL_SECS: i64 = 60;

/// Where and as whom to call one Jira site.
#[derive(Clone)]
pub struct Site {
    pub base_url: String,
    pub auth: SiteAuth,
}

#[derive(Clone)]
pub enum SiteAuth {
    /// Atlassian Connect: HS256 JWTs with the install's shared secret.
    Connect { shared_secret: String },
    /// OAuth 2.0 client credentials created by a site admin.
    OAuth {
        cloud_id: String,
        client_id: String,
        client_secret: String,
    },
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
    /// The site is not (or no longer) in `GFJ_JIRA_URLS`; nothing was sent.
    #[error("Jira site {0} is not in GFJ_JIRA_URLS; nothing was sent")]
    SiteNotAllowed(String),
}

impl JiraError {
    /// Worth retrying as it is: the same request may succeed later.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::RateLimited { .. } | Self::Unavailable { .. } | Self::Transport(_)
        )
    }

    /// The HTTP status Jira answered with, when it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::RateLimited { .. } => Some(429),
            Self::Unauthorized => Some(401),
            Self::Forbidden => Some(403),
            Self::TooLarge => Some(413),
            Self::BadRequest(_) => Some(400),
            Self::Unavailable { status, .. } | Self::Other { status, .. } => Some(*status),
            Self::Transport(_) | Self::SiteNotAllowed(_) => None,
        }
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
    limits: SiteLimits,
    /// Per-site gates, by base URL.
    gates: std::sync::Arc<
        std::sync::Mutex<std::collections::HashMap<String, std::sync::Arc<SiteGate>>>,
    >,
    app_key: String,
    /// `GFJ_ATLASSIAN_API_URL`.
    api_url: String,
    /// `GFJ_JIRA_URLS`: every call checks its site against it, whatever job or page makes the call.
    allowed_sites: UrlAllowList,
    /// OAuth access tokens by client id, with their expiry (epoch seconds).
    tokens: std::sync::Arc<tokio::sync::Mutex<std::collections::HashMap<String, (String, i64)>>>,
}

/// How hard this process may call one Jira site. Jira's own 429s are honoured whatever these say; with
/// several replicas each applies its own caps.
#[derive(Debug, Clone, Copy)]
pub struct SiteLimits {
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Requests per second, evenly spaced; `None` for no limit.
    pub rate_per_sec: Option<std::num::NonZeroU32>,
}

impl Default for SiteLimits {
    fn default() -> Self {
        use gfj_core::settings::default_number;
        Self {
            concurrency: default_number("GFJ_JIRA_SITE_CONCURRENCY") as usize,
            rate_per_sec: std::num::NonZeroU32::new(default_number("GFJ_JIRA_SITE_RATE") as u32),
        }
    }
}

struct SiteGate {
    permits: tokio::sync::Semaphore,
    rate: Option<governor::DefaultDirectRateLimiter>,
    waiting: std::sync::atomic::AtomicUsize,
}

/// A cached OAuth token is not used in its last minute.
const TOKEN_MARGIN_SECS: i64 = 60;

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    /// Seconds; Atlassian's default lifetime when absent or unreadable.
    #[serde(default, deserialize_with = "gfj_core::server_time::lenient_seconds")]
    expires_in: Option<i64>,
}

/// Atlassian's access-token lifetime.
const DEFAULT_EXPIRES_IN_SECS: i64 = 3600;

/// `/rest/<api>/<version>/<rest>` → `/jira/<api>/0.1/cloud/<cloudId>/<rest>`.
fn oauth_path(connect_path: &str, cloud_id: &str) -> String {
    let mut parts = connect_path.trim_start_matches('/').splitn(4, '/');
    let (_rest, api, _version, tail) = (
        parts.next(),
        parts.next().unwrap_or(""),
        parts.next(),
        parts.next().unwrap_or(""),
    );
    format!("/jira/{api}/0.1/cloud/{cloud_id}/{tail}")
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl JiraClient {
    /// A client that calls only the sites `allowed_sites` (`GFJ_JIRA_URLS`) allows.
    pub fn new(
        http: reqwest::Client,
        app_key: &str,
        api_url: &str,
        allowed_sites: UrlAllowList,
    ) -> Self {
        Self::with_limits(http, app_key, api_url, allowed_sites, SiteLimits::default())
    }

    pub fn with_limits(
        http: reqwest::Client,
        app_key: &str,
        api_url: &str,
        allowed_sites: UrlAllowList,
        limits: SiteLimits,
    ) -> Self {
        Self {
            http,
            limits,
            gates: Default::default(),
            app_key: app_key.to_owned(),
            api_url: api_url.trim_end_matches('/').to_owned(),
            allowed_sites,
            tokens: Default::default(),
        }
    }

    /// The canonical origin of `base_url` if `GFJ_JIRA_URLS` allows it: the only form ever called.
    fn allowed_origin(&self, base_url: &str) -> Result<String, JiraError> {
        self.allowed_sites
            .allowed_origin(base_url)
            .ok_or_else(|| JiraError::SiteNotAllowed(base_url.to_owned()))
    }

    /// An OAuth access token for these credentials, from the cache or the token endpoint.
    pub async fn oauth_token(
        &self,
        client_id: &str,
        client_secret: &str,
        fresh: bool,
    ) -> Result<String, JiraError> {
        let mut cache = self.tokens.lock().await;
        let now = now_secs();
        if !fresh
            && let Some((token, expires)) = cache.get(client_id)
            && *expires - TOKEN_MARGIN_SECS > now
        {
            return Ok(token.clone());
        }
        let body = serde_json::json!({
            "audience": "api.atlassian.com",
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": client_secret,
        });
        let resp = self
            .http
            .post(format!("{}/oauth/token", self.api_url))
            .json(&body)
            .send()
            .await
            .map_err(|e| JiraError::Transport(e.without_url().to_string()))?;
        if !resp.status().is_success() {
            return Err(error_of(resp).await);
        }
        let t: TokenResponse = resp
            .json()
            .await
            .map_err(|e| JiraError::Transport(format!("unreadable token response: {e}")))?;
        cache.insert(
            client_id.to_owned(),
            (
                t.access_token.clone(),
                now.saturating_add(server_time::token_lifetime_secs(
                    t.expires_in.unwrap_or(DEFAULT_EXPIRES_IN_SECS),
                )),
            ),
        );
        Ok(t.access_token)
    }

    /// The cloud id of a site, from `<site>/_edge/tenant_info`.
    pub async fn cloud_id(&self, base_url: &str) -> Result<String, JiraError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct TenantInfo {
            cloud_id: String,
        }
        let origin = self.allowed_origin(base_url)?;
        let resp = self
            .http
            .get(format!("{origin}/_edge/tenant_info"))
            .send()
            .await
            .map_err(|e| JiraError::Transport(e.without_url().to_string()))?;
        if !resp.status().is_success() {
            return Err(error_of(resp).await);
        }
        let info: TenantInfo = resp
            .json()
            .await
            .map_err(|e| JiraError::Transport(format!("unreadable tenant_info: {e}")))?;
        Ok(info.cloud_id)
    }

    fn gate(&self, site: &Site) -> std::sync::Arc<SiteGate> {
        let mut gates = self.gates.lock().expect("gate map lock");
        gates
            .entry(site.base_url.clone())
            .or_insert_with(|| {
                std::sync::Arc::new(SiteGate {
                    permits: tokio::sync::Semaphore::new(self.limits.concurrency.max(1)),
                    rate: self.limits.rate_per_sec.map(|r| {
                        governor::RateLimiter::direct(
                            governor::Quota::per_second(r).allow_burst(std::num::NonZeroU32::MIN),
                        )
                    }),
                    waiting: Default::default(),
                })
            })
            .clone()
    }

    /// Requests waiting for the site's concurrency or rate cap right now.
    pub fn waiting_for(&self, site: &Site) -> usize {
        self.gate(site)
            .waiting
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Sends `method path?query` (a Connect path) to the site, authenticated as its mode requires, within
    /// the site's concurrency and rate caps.
    async fn call<B: serde::Serialize + ?Sized>(
        &self,
        site: &Site,
        method: reqwest::Method,
        path_and_query: &str,
        body: Option<&B>,
    ) -> Result<reqwest::Response, JiraError> {
        let gate = self.gate(site);
        gate.waiting
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let permit = gate.permits.acquire().await;
        if let Some(rate) = &gate.rate {
            rate.until_ready().await;
        }
        gate.waiting
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        let _permit = permit.map_err(|_| JiraError::Transport("client shutting down".into()))?;
        let started = std::time::Instant::now();
        let result = self
            .send_authenticated(site, method, path_and_query, body)
            .await;
        let api = metric_names::jira_api(path_and_query);
        let status = match &result {
            Ok(resp) => resp.status().as_u16().to_string(),
            Err(e) => e.status().map_or("error".to_owned(), |s| s.to_string()),
        };
        metrics::counter!(metric_names::JIRA_REQUESTS, "api" => api, "status" => status)
            .increment(1);
        metrics::histogram!(metric_names::JIRA_REQUEST_SECONDS, "api" => api)
            .record(started.elapsed());
        result
    }

    async fn send_authenticated<B: serde::Serialize + ?Sized>(
        &self,
        site: &Site,
        method: reqwest::Method,
        path_and_query: &str,
        body: Option<&B>,
    ) -> Result<reqwest::Response, JiraError> {
        // Checked on every call, not once at install: the operator may have removed the site since.
        let origin = self.allowed_origin(&site.base_url)?;
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        let (url, authorization) = match &site.auth {
            SiteAuth::Connect { shared_secret } => {
                let base = origin.as_str();
                let base_path = gfj_core::qsh::split_url(base).0;
                let token = connect_jwt::sign_hs256(
                    &self.app_key,
                    shared_secret.as_bytes(),
                    &BoundRequest {
                        method: method.as_str(),
                        path: &format!("{base_path}{path}"),
                        query,
                        base_path,
                    },
                    now_secs(),
                    TOKEN_TTL_SECS,
                );
                (format!("{base}{path_and_query}"), format!("JWT {token}"))
            }
            SiteAuth::OAuth {
                cloud_id,
                client_id,
                client_secret,
            } => {
                let token = self.oauth_token(client_id, client_secret, false).await?;
                let q = if query.is_empty() {
                    String::new()
                } else {
                    format!("?{query}")
                };
                (
                    format!("{}{}{q}", self.api_url, oauth_path(path, cloud_id)),
                    format!("Bearer {token}"),
                )
            }
        };
        let send = |authorization: String| {
            let mut req = self
                .http
                .request(method.clone(), &url)
                .header("Authorization", authorization)
                .header("Accept", "application/json");
            if let Some(b) = body {
                req = req.json(b);
            }
            req.send()
        };
        let mut resp = send(authorization)
            .await
            .map_err(|e| JiraError::Transport(e.without_url().to_string()))?;
        if resp.status() == reqwest::StatusCode::UNAUTHORIZED
            && let SiteAuth::OAuth {
                client_id,
                client_secret,
                ..
            } = &site.auth
        {
            // The token may have been revoked or expired early: fetch a new one and try once more.
            let token = self.oauth_token(client_id, client_secret, true).await?;
            resp = send(format!("Bearer {token}"))
                .await
                .map_err(|e| JiraError::Transport(e.without_url().to_string()))?;
        }
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

    /// `DELETE /rest/devinfo/0.10/repository/{repositoryId}/{entityType}/{entityId}`; only data with an
    /// `updateSequenceId` up to `seq` is removed, so a later re-creation of the entity survives.
    pub async fn delete_devinfo_entity(
        &self,
        site: &Site,
        repository_id: &str,
        entity: DevinfoEntity,
        entity_id: &str,
        seq: i64,
    ) -> Result<(), JiraError> {
        let path = format!(
            "/rest/devinfo/0.10/repository/{}/{}/{}?_updateSequenceId={seq}",
            encode(repository_id),
            entity.path_segment(),
            encode(entity_id)
        );
        self.call::<()>(site, reqwest::Method::DELETE, &path, None)
            .await
            .map(|_| ())
    }

    /// `DELETE /rest/devinfo/0.10/repository/{id}`: the repository and everything in it (up to `seq` when
    /// given).
    pub async fn delete_repository(
        &self,
        site: &Site,
        repository_id: &str,
        seq: Option<i64>,
    ) -> Result<(), JiraError> {
        let q = seq
            .map(|s| format!("?_updateSequenceId={s}"))
            .unwrap_or_default();
        let path = format!("/rest/devinfo/0.10/repository/{}{q}", encode(repository_id));
        self.call::<()>(site, reqwest::Method::DELETE, &path, None)
            .await
            .map(|_| ())
    }

    /// `DELETE /rest/<api>/bulkByProperties`: everything of that API stored with all these properties.
    pub async fn delete_by_properties(
        &self,
        site: &Site,
        api: JiraApi,
        properties: &[(&str, &str)],
        seq: Option<i64>,
    ) -> Result<(), JiraError> {
        let mut query: Vec<String> = properties
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect();
        if let Some(s) = seq {
            query.push(format!("_updateSequenceId={s}"));
        }
        let path = format!("{}/bulkByProperties?{}", api.prefix(), query.join("&"));
        self.call::<()>(site, reqwest::Method::DELETE, &path, None)
            .await
            .map(|_| ())
    }

    /// JSM's gating decision on a deployment (`allowed`, `prevented`, `awaiting` or `invalid`) and the
    /// change request deciding it.
    pub async fn gating_status(
        &self,
        site: &Site,
        pipeline_id: &str,
        environment_id: &str,
        deployment_sequence_number: i64,
    ) -> Result<gfj_core::jsm::GatingReport, JiraError> {
        let path = format!(
            "/rest/deployments/0.1/pipelines/{}/environments/{}/deployments/{deployment_sequence_number}/gating-status",
            encode(pipeline_id),
            encode(environment_id)
        );
        self.call::<()>(site, reqwest::Method::GET, &path, None)
            .await?
            .json()
            .await
            .map_err(|e| JiraError::Transport(format!("unreadable gating status: {e}")))
    }

    /// Whether the site takes the app's credentials, by a read that changes nothing
    /// (`GET /rest/devinfo/0.10/existsByProperties`); with OAuth credentials a new token is fetched first,
    /// so revoked credentials show at once rather than when the cached token expires.
    pub async fn check_access(&self, site: &Site) -> Result<(), JiraError> {
        if let SiteAuth::OAuth {
            client_id,
            client_secret,
            ..
        } = &site.auth
        {
            self.oauth_token(client_id, client_secret, true).await?;
        }
        self.call::<()>(
            site,
            reqwest::Method::GET,
            "/rest/devinfo/0.10/existsByProperties?gitlabForJiraSubscription=0",
            None,
        )
        .await?;
        Ok(())
    }

    /// The groups of a Jira user (`GET /rest/api/3/user?accountId=…&expand=groups`), `None` when Jira does not
    /// answer 200. Connect sites only: OAuth credentials carry no user API.
    pub async fn user_groups(
        &self,
        site: &Site,
        account_id: &str,
    ) -> Result<Option<Vec<String>>, JiraError> {
        if matches!(site.auth, SiteAuth::OAuth { .. }) {
            return Ok(None);
        }
        let path = format!(
            "/rest/api/3/user?accountId={}&expand=groups",
            encode(account_id)
        );
        let resp = match self
            .call::<()>(site, reqwest::Method::GET, &path, None)
            .await
        {
            Ok(r) => r,
            Err(JiraError::Other { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let v: serde_json::Value = resp
            .json()
            .await
            .map_err(|e| JiraError::Transport(format!("unreadable user: {e}")))?;
        Ok(Some(
            v["groups"]["items"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|g| g["name"].as_str().map(str::to_owned))
                .collect(),
        ))
    }

    async fn bulk<B: serde::Serialize>(
        &self,
        site: &Site,
        path: &str,
        body: &B,
    ) -> Result<BulkResult, JiraError> {
        let resp = self
            .call(site, reqwest::Method::POST, path, Some(body))
            .await?;
        let value = resp
            .json()
            .await
            .map_err(|e| JiraError::Transport(format!("unreadable response: {e}")))?;
        Ok(BulkResult(value))
    }

    /// `POST /rest/{builds,deployments,featureflags}/0.1/bulk`, as the request's type says.
    pub async fn submit<B: BulkRequest>(
        &self,
        site: &Site,
        body: &B,
    ) -> Result<BulkResult, JiraError> {
        self.bulk(site, B::PATH, body).await
    }
}

/// A request to one of Jira's bulk APIs for builds, deployments and feature flags.
pub trait BulkRequest: serde::Serialize + Sync {
    const PATH: &'static str;
}

impl BulkRequest for BuildsRequest {
    const PATH: &'static str = "/rest/builds/0.1/bulk";
}

impl BulkRequest for DeploymentsRequest {
    const PATH: &'static str = "/rest/deployments/0.1/bulk";
}

impl BulkRequest for FeatureFlagsRequest {
    const PATH: &'static str = "/rest/featureflags/0.1/bulk";
}

/// The kinds of development information Jira deletes one by one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DevinfoEntity {
    Branch,
    Commit,
    PullRequest,
}

impl DevinfoEntity {
    fn path_segment(self) -> &'static str {
        match self {
            DevinfoEntity::Branch => "branch",
            DevinfoEntity::Commit => "commit",
            DevinfoEntity::PullRequest => "pull_request",
        }
    }
}

/// The four DevOps APIs, for calls that exist on each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JiraApi {
    Devinfo,
    Builds,
    Deployments,
    FeatureFlags,
}

impl JiraApi {
    pub const ALL: [JiraApi; 4] = [
        Self::Devinfo,
        Self::Builds,
        Self::Deployments,
        Self::FeatureFlags,
    ];

    fn prefix(self) -> &'static str {
        match self {
            Self::Devinfo => "/rest/devinfo/0.10",
            Self::Builds => "/rest/builds/0.1",
            Self::Deployments => "/rest/deployments/0.1",
            Self::FeatureFlags => "/rest/featureflags/0.1",
        }
    }
}

fn encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// Jira's answer to a builds, deployments or feature-flags bulk submission (202).
#[derive(Debug, Clone, Default)]
pub struct BulkResult(pub serde_json::Value);

impl BulkResult {
    /// Entities Jira refused, as `(entity key as JSON, reason)`.
    pub fn rejected(&self) -> Vec<(String, String)> {
        let reasons = |errors: &serde_json::Value| {
            errors
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|m| m["message"].as_str())
                .collect::<Vec<_>>()
                .join("; ")
        };
        let mut out = Vec::new();
        for field in ["rejectedBuilds", "rejectedDeployments"] {
            for r in self.0[field].as_array().into_iter().flatten() {
                out.push((r["key"].to_string(), reasons(&r["errors"])));
            }
        }
        for (id, errors) in self.0["failedFlags"].as_object().into_iter().flatten() {
            out.push((id.clone(), reasons(errors)));
        }
        out
    }

    /// Associations Jira could not resolve (e.g. JSM service ids), as `<associationType>:<value>`.
    pub fn unknown_associations(&self) -> Vec<String> {
        let mut out = Vec::new();
        for a in self.0["unknownAssociations"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let kind = a["associationType"].as_str().unwrap_or("association");
            for v in a["values"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str())
            {
                out.push(format!("{kind}:{v}"));
            }
        }
        out
    }

    pub fn unknown_issue_keys(&self) -> Vec<String> {
        self.0["unknownIssueKeys"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|k| k.as_str().map(str::to_owned))
            .collect()
    }
}

/// How long Jira asked us to wait: `Retry-After` (seconds), else `X-RateLimit-Reset` (an ISO-8601
/// instant). A value that is not of that form counts as absent; none is longer than
/// `server_time::MAX_WAIT`.
fn wait_ms(headers: &reqwest::header::HeaderMap, now: std::time::SystemTime) -> Option<i64> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let now_ms = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let wait = header("retry-after")
        .and_then(server_time::delay_seconds)
        .or_else(|| server_time::until_rfc3339(header("x-ratelimit-reset")?, now_ms))?;
    // At most an hour, so the milliseconds fit.
    Some(wait.as_millis() as i64)
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
    fn connect_paths_map_to_oauth_paths() {
        assert_eq!(
            super::oauth_path("/rest/devinfo/0.10/bulk", "c1"),
            "/jira/devinfo/0.1/cloud/c1/bulk"
        );
        assert_eq!(
            super::oauth_path("/rest/devinfo/0.10/repository/7/branch/ab", "c1"),
            "/jira/devinfo/0.1/cloud/c1/repository/7/branch/ab"
        );
        assert_eq!(
            super::oauth_path("/rest/builds/0.1/bulk", "c2"),
            "/jira/builds/0.1/cloud/c2/bulk"
        );
    }

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
    fn hostile_waits_are_capped_and_garbage_is_ignored() {
        use reqwest::header::{HeaderMap, HeaderValue};
        let now = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
        let hour = Some(3_600_000);
        let max = i64::MAX.to_string();
        let umax = u64::MAX.to_string();
        /// Response headers and the wait they ask for.
        type Case<'a> = (&'a [(&'static str, &'a str)], Option<i64>);
        let table: &[Case] = &[
            (&[("retry-after", &max)], hour),
            (&[("retry-after", &umax)], hour),
            (&[("retry-after", "7200")], hour),
            (&[("retry-after", "-5")], None),
            (&[("retry-after", "1e99")], None),
            (&[("x-ratelimit-reset", "9999-12-31T23:59:59Z")], hour),
            (&[("x-ratelimit-reset", "0001-01-01T00:00:00Z")], Some(0)),
            (&[("x-ratelimit-reset", &max)], None),
            (
                &[
                    ("retry-after", "1e99"),
                    ("x-ratelimit-reset", "2027-01-15T08:01Z"),
                ],
                Some(60_000),
            ),
        ];
        for (pairs, expected) in table {
            let mut h = HeaderMap::new();
            for (k, v) in *pairs {
                h.insert(*k, HeaderValue::from_str(v).unwrap());
            }
            assert_eq!(super::wait_ms(&h, now), *expected, "{pairs:?}");
        }
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
