//! A Jira Cloud site (development information API) and Atlassian's install-key server.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use gfj_core::connect_jwt::{self, BoundRequest, QshRule};
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};

use crate::openapi::RequestSchemas;

/// The key pair the simulated Atlassian signs installs with: generated once per process, so no key
/// ships in the binary.
struct InstallKey {
    private_pem: String,
    public_pem: String,
}

static INSTALL_KEY: std::sync::LazyLock<InstallKey> = std::sync::LazyLock::new(|| {
    use aws_lc_rs::encoding::AsDer;
    let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
        .expect("generating an RSA key");
    let private = pair.as_der().expect("encoding the private key");
    let public = aws_lc_rs::signature::KeyPair::public_key(&pair)
        .as_der()
        .expect("encoding the public key");
    InstallKey {
        private_pem: pem("PRIVATE KEY", private.as_ref()),
        public_pem: pem("PUBLIC KEY", public.as_ref()),
    }
});

fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let text = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = text
        .as_bytes()
        .chunks(64)
        .map(|line| std::str::from_utf8(line).expect("base64 is ASCII"))
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

/// The private key (PKCS#8 PEM) the simulated Atlassian signs installs with, for tests that sign their
/// own install callbacks.
pub fn install_private_key() -> &'static str {
    &INSTALL_KEY.private_pem
}
/// Atlassian's OpenAPI for the Jira Software APIs we call, among the official fixtures.
pub const OFFICIAL_OPENAPI: &str = "jira-software-devops-subset.openapi.json";
/// Atlassian's JSON schema of Connect descriptors, among the official fixtures.
pub const OFFICIAL_CONNECT_SCHEMA: &str = "atlassian-connect-jira-global-schema.json";

/// The key id the simulated key server publishes its public key under.
pub const INSTALL_KID: &str = "sim/install-key-1";

/// A response the site gives instead of processing the next request(s).
#[derive(Debug, Clone)]
pub enum Fault {
    RateLimited {
        retry_after_secs: u64,
    },
    ServerError(u16),
    TooLarge,
    /// Any other status, with a devinfo-shaped error body (e.g. 401, 403).
    Status(u16),
    /// No fault: the request is processed as usual (lets requests through before the faults after it).
    Pass,
}

#[derive(Debug, Clone)]
pub struct JiraSimConfig {
    /// Atlassian's official OpenAPI document, when found: every request body is validated against it too
    /// (the project's own schemas check every body anyway).
    pub official_openapi: Option<PathBuf>,
    /// Atlassian's Connect descriptor JSON schema, when found: `install` refuses apps whose descriptor
    /// fails it.
    pub connect_schema: Option<PathBuf>,
    /// Issue keys that exist on the site; `None` means every well-formed key exists.
    pub known_issue_keys: Option<Vec<String>>,
    /// JSM service ids that exist on the site; `None` means every id exists.
    pub known_services: Option<Vec<String>>,
    /// Requests larger than this get 413 (Jira publishes no number).
    pub max_body_bytes: usize,
    /// A rate limit on the site's API; `None` (the default): unlimited. See [`RateLimit`].
    pub rate_limit: Option<RateLimit>,
}

/// At most `requests` API requests per fixed `window` (aligned to the Unix epoch) for the whole site, as
/// an app's budget on one tenant. Every answer carries `X-RateLimit-Limit`, `X-RateLimit-Remaining`,
/// `X-RateLimit-Reset` (ISO-8601) and, under 20 % left, `X-RateLimit-NearLimit: true`; a request over the
/// limit gets 429 with `Retry-After` (seconds to the next window). Jira documents the headers (per a
/// one-minute window) but publishes no numbers. The install-key server, `/oauth/token` and
/// `/_edge/tenant_info` are not counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub requests: u32,
    pub window: std::time::Duration,
}

impl Default for JiraSimConfig {
    fn default() -> Self {
        Self {
            official_openapi: crate::official_fixture(OFFICIAL_OPENAPI),
            connect_schema: crate::official_fixture(OFFICIAL_CONNECT_SCHEMA),
            known_issue_keys: None,
            known_services: None,
            max_body_bytes: 1024 * 1024,
            rate_limit: None,
        }
    }
}

/// One request the site received, and how it answered.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub status: u16,
    pub body: Option<Value>,
    /// When the answer was decided.
    pub at: std::time::Instant,
}

#[derive(Debug, Clone, Default)]
struct Stored {
    seq: i64,
    entity: Value,
    /// The `properties` of the request that stored it (for delete-by-property).
    properties: Value,
}

#[derive(Debug, Clone, Default)]
struct Repo {
    seq: i64,
    meta: Value,
    entities: BTreeMap<&'static str, BTreeMap<String, Stored>>,
}

#[derive(Debug, Clone)]
struct App {
    key: String,
    /// Where Jira sends the app's callbacks: the descriptor's `baseUrl`, which the install POST reached.
    base_url: String,
    /// The `jiraDeploymentGating` module's callback path, when the descriptor declares the module: Jira
    /// only tells apps that asked about gating decisions.
    gating_callback: Option<String>,
}

/// JSM's gating of deployments (change requests and their decisions).
#[derive(Debug, Default)]
struct Gating {
    /// How many change requests JSM created: keys are `CHG-<n>`, counting from 1 per site.
    change_requests: u64,
    deployments: BTreeMap<(String, String, i64), Gate>,
}

/// One deployment's gating, by (pipeline, environment, deployment number).
#[derive(Debug, Clone, Default)]
struct Gate {
    /// The change request JSM opened for it, when it was submitted with `initiate_deployment_gating`.
    change_request: Option<String>,
    /// `awaiting` once a change request is open, then JSM's (a test's) decision; `None` when nothing set
    /// it, and the status follows the deployment's commands.
    status: Option<String>,
    /// When the status last changed (RFC 3339), as the gating-status API reports it.
    updated: Option<String>,
}

impl Gating {
    /// The deployment gated by this change request, and its gate.
    fn by_change_request(&mut self, key: &str) -> Option<(&(String, String, i64), &mut Gate)> {
        self.deployments
            .iter_mut()
            .find(|(_, gate)| gate.change_request.as_deref() == Some(key))
    }
}

struct Inner {
    app: Option<App>,
    repos: BTreeMap<String, Repo>,
    /// Builds, deployments and feature flags, by API and entity key.
    cicd: BTreeMap<(&'static str, String), Stored>,
    log: Vec<Recorded>,
    faults: VecDeque<Fault>,
}

struct Shared {
    client_key: String,
    shared_secret: String,
    /// OAuth-credentials mode: the site's cloud id and the one set of credentials its admin created.
    cloud_id: String,
    oauth_client_id: String,
    oauth_client_secret: String,
    /// Issued bearer tokens and when they expire.
    tokens: Mutex<std::collections::HashMap<String, std::time::Instant>>,
    config: JiraSimConfig,
    schemas: RequestSchemas,
    inner: Mutex<Inner>,
    /// How many of the next write requests to hold (to catch a client mid-request).
    holds_remaining: Mutex<usize>,
    /// Jira users (account id → group names), for `GET /rest/api/3/user`.
    users: Mutex<BTreeMap<String, Vec<String>>>,
    /// Change requests and gating decisions, by (pipeline, environment, deployment number).
    gating: Mutex<Gating>,
    /// Every gating callback delivery attempt: (change request, the app's HTTP status; 0 when the
    /// connection failed).
    gating_callbacks: Mutex<Vec<(String, u16)>>,
    /// The site's own URL, known once it listens: change requests link to its customer portal.
    base_url: std::sync::OnceLock<String>,
    /// Added to every write before it is answered (latency injection).
    latency: Mutex<std::time::Duration>,
    /// Bumped by `release_held`; held requests wait for it to change.
    release: watch::Sender<u64>,
    held: Notify,
    held_count: Mutex<usize>,
    /// The rate limit in force and the current window: (limit, window index, requests in it).
    rate: Mutex<(Option<RateLimit>, i64, u32)>,
    /// Requests the key server answered, known `kid` or not.
    key_fetches: std::sync::atomic::AtomicUsize,
}

/// What one issue's development panel shows.
#[derive(Debug, Clone, Default)]
pub struct IssueView {
    pub commits: Vec<Value>,
    pub branches: Vec<Value>,
    pub pull_requests: Vec<Value>,
    pub builds: Vec<Value>,
    pub deployments: Vec<Value>,
    pub feature_flags: Vec<Value>,
}

pub struct JiraSim {
    pub base_url: String,
    shared: Arc<Shared>,
    _server: tokio::task::JoinHandle<()>,
}

const ENTITY_TYPES: [(&str, &str); 3] = [
    ("commits", "commit"),
    ("branches", "branch"),
    ("pullRequests", "pull_request"),
];

impl JiraSim {
    pub async fn start(config: JiraSimConfig) -> anyhow::Result<Self> {
        crate::require_official(OFFICIAL_OPENAPI, config.official_openapi.as_deref())?;
        crate::require_official(OFFICIAL_CONNECT_SCHEMA, config.connect_schema.as_deref())?;
        let schemas = RequestSchemas::new(config.official_openapi.as_deref())?;
        let initial_rate = config.rate_limit;
        let shared = Arc::new(Shared {
            client_key: format!("sim-client-{}", crate::random_hex(8)),
            shared_secret: crate::random_hex(32),
            cloud_id: format!("cloud-{}", crate::random_hex(8)),
            oauth_client_id: format!("client-{}", crate::random_hex(8)),
            oauth_client_secret: crate::random_hex(24),
            tokens: Mutex::default(),
            config,
            schemas,
            inner: Mutex::new(Inner {
                app: None,
                repos: BTreeMap::new(),
                cicd: BTreeMap::new(),
                log: Vec::new(),
                faults: VecDeque::new(),
            }),
            holds_remaining: Mutex::new(0),
            release: watch::channel(0).0,
            latency: Mutex::default(),
            users: Mutex::default(),
            gating: Mutex::default(),
            gating_callbacks: Mutex::default(),
            base_url: std::sync::OnceLock::new(),
            held: Notify::new(),
            held_count: Mutex::new(0),
            rate: Mutex::new((initial_rate, 0, 0)),
            key_fetches: Default::default(),
        });
        let router = Router::new()
            .route("/connect-keys/{*kid}", get(key_server))
            .route("/rest/devinfo/0.10/bulk", post(store_devinfo))
            .route("/jira/devinfo/0.1/cloud/{cloud}/bulk", post(store_devinfo))
            .route(
                "/jira/devinfo/0.1/cloud/{cloud}/repository/{repo}",
                get(get_repository).delete(delete_repository),
            )
            .route(
                "/jira/devinfo/0.1/cloud/{cloud}/repository/{repo}/{entity_type}/{entity_id}",
                axum::routing::delete(delete_entity),
            )
            .route("/rest/builds/0.1/bulk", post(submit_builds))
            .route("/rest/deployments/0.1/bulk", post(submit_deployments))
            .route("/rest/featureflags/0.1/bulk", post(submit_flags))
            .route("/jira/builds/0.1/cloud/{cloud}/bulk", post(submit_builds))
            .route(
                "/jira/deployments/0.1/cloud/{cloud}/bulk",
                post(submit_deployments),
            )
            .route(
                "/jira/featureflags/0.1/cloud/{cloud}/bulk",
                post(submit_flags),
            )
            .route("/rest/{api}/{version}/bulkByProperties", axum::routing::delete(delete_by_properties))
            .route("/jira/{api}/0.1/cloud/{cloud}/bulkByProperties", axum::routing::delete(delete_by_properties))
            .route(
                "/rest/deployments/0.1/pipelines/{pipeline}/environments/{environment}/deployments/{number}/gating-status",
                get(gating_status),
            )
            .route(
                "/jira/deployments/0.1/cloud/{cloud}/pipelines/{pipeline}/environments/{environment}/deployments/{number}/gating-status",
                get(gating_status),
            )
            .route("/rest/api/3/user", get(user_info))
            .route("/browse", get(browse_index))
            .route("/browse/{key}", get(browse_issue))
            .route(
                "/rest/devinfo/0.10/existsByProperties",
                get(devinfo_exists_by_properties),
            )
            .route(
                "/jira/devinfo/0.1/cloud/{cloud}/existsByProperties",
                get(devinfo_exists_by_properties),
            )
            .route("/oauth/token", post(oauth_token))
            .route("/_edge/tenant_info", get(tenant_info))
            .route(
                "/rest/devinfo/0.10/repository/{repo}",
                get(get_repository).delete(delete_repository),
            )
            .route(
                "/rest/devinfo/0.10/repository/{repo}/{entity_type}/{entity_id}",
                axum::routing::delete(delete_entity),
            )
            .layer(axum::middleware::from_fn_with_state(
                shared.clone(),
                rate_limit,
            ))
            .with_state(shared.clone());
        let (base_url, server) = crate::serve(router).await?;
        let _ = shared.base_url.set(base_url.clone());
        Ok(Self {
            base_url,
            shared,
            _server: server,
        })
    }

    /// The site's Connect `clientKey`.
    pub fn client_key(&self) -> &str {
        &self.shared.client_key
    }

    /// The OAuth client id and secret a site admin would create for the tool.
    pub fn oauth_credentials(&self) -> (String, String) {
        (
            self.shared.oauth_client_id.clone(),
            self.shared.oauth_client_secret.clone(),
        )
    }

    pub fn cloud_id(&self) -> &str {
        &self.shared.cloud_id
    }

    /// Invalidates every issued bearer token (as a revocation or an early expiry would).
    pub fn revoke_tokens(&self) {
        self.shared.tokens.lock().unwrap().clear();
    }

    /// Base URL of the simulated key server (`GFJ_CONNECT_KEYS_URL`).
    /// How many times the key server was asked for a key.
    pub fn key_fetches(&self) -> usize {
        self.shared
            .key_fetches
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn connect_keys_url(&self) -> String {
        format!("{}/connect-keys", self.base_url)
    }

    /// The URL Jira loads in its iframe for an app page (`path` under the app's base URL) shown to a
    /// user: Jira's context parameters and an HS256 token bound to exactly that request (`qsh`), with
    /// `iss` = clientKey and `sub` = the user's account id, signed with the shared secret.
    pub fn page_url(&self, app_base_url: &str, path: &str, account_id: &str) -> String {
        let query = format!(
            "xdm_e={}&xdm_c=channel-gitlab-for-jira&cp=&lic=none&cv=1001.0.0-SNAPSHOT",
            url::form_urlencoded::byte_serialize(self.base_url.as_bytes()).collect::<String>()
        );
        let base_path = gfj_core::qsh::split_url(app_base_url)
            .0
            .trim_end_matches('/')
            .to_owned();
        let full_path = format!("{base_path}{path}");
        let request = BoundRequest {
            method: "GET",
            path: &full_path,
            query: &query,
            base_path: &base_path,
        };
        let now = unix_now_secs();
        let claims = connect_jwt::Claims {
            iss: self.shared.client_key.clone(),
            iat: now,
            exp: now + 180,
            qsh: Some(request.qsh()),
            sub: Some(account_id.to_owned()),
            aud: None,
        };
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(self.shared.shared_secret.as_bytes()),
        )
        .expect("HS256 signing");
        format!(
            "{}{path}?{query}&jwt={token}",
            app_base_url.trim_end_matches('/')
        )
    }

    /// A context token for a user, as the page gets from `AP.context.getToken()`: `qsh` = `context-qsh`.
    pub fn context_token(&self, account_id: &str) -> String {
        connect_jwt::sign_context_token(
            &self.shared.client_key,
            account_id,
            self.shared.shared_secret.as_bytes(),
            unix_now_secs(),
            connect_jwt::CONTEXT_TOKEN_LIFETIME_SECS,
        )
    }

    /// A context token that expired a while ago.
    pub fn expired_context_token(&self, account_id: &str) -> String {
        connect_jwt::sign_context_token(
            &self.shared.client_key,
            account_id,
            self.shared.shared_secret.as_bytes(),
            unix_now_secs() - 3600,
            60,
        )
    }

    /// Installs the app served at `app_base_url`, as Jira does with signed install: fetch the descriptor,
    /// check it, POST the lifecycle payload with an RS256 token. Returns the app's HTTP status.
    pub async fn install(&self, app_base_url: &str) -> anyhow::Result<u16> {
        self.lifecycle(app_base_url, "installed").await
    }

    pub async fn uninstall(&self, app_base_url: &str) -> anyhow::Result<u16> {
        self.lifecycle(app_base_url, "uninstalled").await
    }

    async fn lifecycle(&self, app_base_url: &str, event: &str) -> anyhow::Result<u16> {
        let http = reqwest::Client::new();
        let descriptor: Value = http
            .get(format!(
                "{}/atlassian-connect.json",
                app_base_url.trim_end_matches('/')
            ))
            .send()
            .await?
            .json()
            .await?;
        if let Some(schema) = &self.shared.config.connect_schema {
            let errors = validate_descriptor(schema, &descriptor)?;
            anyhow::ensure!(errors.is_empty(), "descriptor refused: {errors:?}");
        }
        let key = descriptor["key"].as_str().unwrap_or_default().to_owned();
        let gating_callback = descriptor["modules"]["jiraDeploymentGating"]["callback"]["url"]
            .as_str()
            .map(str::to_owned);
        let base = descriptor["baseUrl"]
            .as_str()
            .unwrap_or_default()
            .trim_end_matches('/')
            .to_owned();
        let path = descriptor["lifecycle"][event]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let body = json!({
            "key": key,
            "clientKey": self.shared.client_key,
            "sharedSecret": self.shared.shared_secret,
            "baseUrl": self.base_url,
            "displayUrl": self.base_url,
            "productType": "jira",
            "description": "Simulated Jira Cloud site",
            "serverVersion": "100000",
            "pluginsVersion": "1001.0.0-SNAPSHOT",
            "eventType": event,
        });
        let base_path = gfj_core::qsh::split_url(&base).0.to_owned();
        let full_path = format!("{base_path}{path}");
        let token = connect_jwt::sign_rs256_install(
            install_private_key().as_bytes(),
            INSTALL_KID,
            &self.shared.client_key,
            &base,
            &BoundRequest {
                method: "POST",
                path: &full_path,
                query: "",
                base_path: &base_path,
            },
            now_secs(),
        )?;
        let resp = http
            .post(format!("{base}{path}"))
            .header("Authorization", format!("JWT {token}"))
            .json(&body)
            .send()
            .await?;
        let status = resp.status().as_u16();
        if (200..300).contains(&status) {
            self.shared.inner.lock().unwrap().app = if event == "installed" {
                Some(App {
                    key,
                    base_url: base.clone(),
                    gating_callback,
                })
            } else {
                None
            };
            if event == "uninstalled" {
                // Jira deletes an app's data when it is uninstalled.
                let mut inner = self.shared.inner.lock().unwrap();
                inner.repos.clear();
                inner.cicd.clear();
            }
        }
        Ok(status)
    }

    /// Sets or lifts the site's rate limit (see [`RateLimit`]); the count starts again.
    pub fn set_rate_limit(&self, limit: Option<RateLimit>) {
        *self.shared.rate.lock().unwrap() = (limit, 0, 0);
    }

    /// Answers the next requests with these faults, in order.
    pub fn inject(&self, faults: impl IntoIterator<Item = Fault>) {
        self.shared.inner.lock().unwrap().faults.extend(faults);
    }

    /// The next `n` write requests wait, unprocessed, until [`JiraSim::release_held`].
    pub fn hold_next_writes(&self, n: usize) {
        *self.shared.holds_remaining.lock().unwrap() = n;
    }

    /// Adds a Jira user with these groups (`site-admins` makes a site admin).
    pub fn add_user(&self, account_id: &str, groups: &[&str]) {
        self.shared.users.lock().unwrap().insert(
            account_id.to_owned(),
            groups.iter().map(|g| g.to_string()).collect(),
        );
    }

    /// Decides a gated deployment (`allowed`, `prevented`, `awaiting`, `invalid`), as JSM's change workflow would,
    /// without telling the app (for the polling path; see [`JiraSim::decide_change_request`] for the callback).
    pub fn set_gating_status(
        &self,
        pipeline_id: &str,
        environment_id: &str,
        number: i64,
        status: &str,
    ) {
        let mut gating = self.shared.gating.lock().unwrap();
        let gate = gating
            .deployments
            .entry((pipeline_id.to_owned(), environment_id.to_owned(), number))
            .or_default();
        gate.status = Some(status.to_owned());
        gate.updated = Some(rfc3339_now());
    }

    /// Every change request JSM opened for a gated deployment, as (change request key, pipelineId,
    /// environmentId, deploymentSequenceNumber, gating status), ordered by key number.
    pub fn change_requests(&self) -> Vec<(String, String, String, i64, String)> {
        let gating = self.shared.gating.lock().unwrap();
        let mut all: Vec<_> = gating
            .deployments
            .iter()
            .filter_map(|((pipeline, environment, number), gate)| {
                let key = gate.change_request.clone()?;
                let status = gate.status.clone().unwrap_or_else(|| "awaiting".into());
                Some((key, pipeline.clone(), environment.clone(), *number, status))
            })
            .collect();
        all.sort_by_key(|(key, ..)| change_request_number(key));
        all
    }

    /// Decides a change request (`allowed`, `prevented`, `awaiting`, `invalid`), as JSM's change workflow
    /// would: its deployment's gating status changes and, on a Connect install whose descriptor declares
    /// `jiraDeploymentGating`, the app gets the callback (see [`JiraSim::send_gating_callback`]); returns
    /// once that delivery, retries included, is over. Panics on an unknown change request, a test bug.
    pub async fn decide_change_request(&self, change_request: &str, status: &str) {
        {
            let mut gating = self.shared.gating.lock().unwrap();
            let Some((_, gate)) = gating.by_change_request(change_request) else {
                panic!("no change request {change_request}");
            };
            gate.status = Some(status.to_owned());
            gate.updated = Some(rfc3339_now());
        }
        let installed = self.shared.inner.lock().unwrap().app.is_some();
        if installed {
            self.send_gating_callback(change_request).await;
        }
    }

    /// Delivers the `jiraDeploymentGating` callback for this change request with its current status, as
    /// Jira does on a decision and, as a duplicate, when its retry policy sends one again: `POST` to the
    /// module's callback URL with an HS256 token (`qsh` bound), retried up to 4 more times (100, 200, 400,
    /// 800 ms apart: Jira's policy, fast) while the app answers other than 2xx or cannot be reached. Every
    /// attempt lands in [`JiraSim::gating_callbacks`]; returns once the delivery is over. Only loopback
    /// apps are called. Panics on an unknown change request or without an installed app, test bugs.
    pub async fn send_gating_callback(&self, change_request: &str) {
        self.deliver_gating_callback(change_request, None).await;
    }

    /// Delivers a callback whose body claims `status` while JSM's own status stays as it is: what a
    /// captured token replayed with another body looks like (`qsh` covers the method and path only).
    pub async fn send_forged_gating_callback(&self, change_request: &str, status: &str) {
        self.deliver_gating_callback(change_request, Some(status))
            .await;
    }

    async fn deliver_gating_callback(&self, change_request: &str, claimed_status: Option<&str>) {
        let (deployment, gate) = {
            let mut gating = self.shared.gating.lock().unwrap();
            let Some((deployment, gate)) = gating.by_change_request(change_request) else {
                panic!("no change request {change_request}");
            };
            (deployment.clone(), gate.clone())
        };
        let app = self.shared.inner.lock().unwrap().app.clone();
        let Some(app) = app else {
            panic!("no app is installed to send the gating callback of {change_request} to");
        };
        let Some(path) = app.gating_callback else {
            tracing::warn!(
                change_request,
                "the app declares no jiraDeploymentGating module: no callback"
            );
            return;
        };
        let is_loopback = url::Url::parse(&app.base_url).is_ok_and(|u| match u.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(d)) => d == "localhost",
            None => false,
        });
        if !is_loopback {
            tracing::warn!(
                base_url = app.base_url,
                "the simulator only calls loopback apps: no gating callback"
            );
            return;
        }
        let (pipeline, environment, number) = deployment;
        let status = claimed_status
            .map(str::to_owned)
            .or(gate.status)
            .unwrap_or_else(|| "awaiting".into());
        let body = json!({
            "updatedTimestamp": gate.updated.unwrap_or_else(rfc3339_now),
            "gatingStatus": status,
            "details": [change_request_detail(&self.base_url, change_request)],
            "pipelineId": pipeline,
            "environmentId": environment,
            "deploymentSequenceNumber": number,
        });
        let base = app.base_url.trim_end_matches('/').to_owned();
        let base_path = gfj_core::qsh::split_url(&base).0.to_owned();
        let full_path = format!("{base_path}{path}");
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(5))
            .build()
            .expect("building an HTTP client");
        let mut delays = [100u64, 200, 400, 800].into_iter();
        loop {
            // A token per attempt, as Jira signs each delivery: a retry is not replayed with a stale `iat`.
            let now = unix_now_secs();
            let claims = connect_jwt::Claims {
                iss: self.shared.client_key.clone(),
                iat: now,
                exp: now + 180,
                qsh: Some(
                    BoundRequest {
                        method: "POST",
                        path: &full_path,
                        query: "",
                        base_path: &base_path,
                    }
                    .qsh(),
                ),
                sub: None,
                aud: None,
            };
            let token = jsonwebtoken::encode(
                &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
                &claims,
                &jsonwebtoken::EncodingKey::from_secret(self.shared.shared_secret.as_bytes()),
            )
            .expect("HS256 signing");
            let status = http
                .post(format!("{base}{path}"))
                .header("Authorization", format!("JWT {token}"))
                .json(&body)
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0);
            self.shared
                .gating_callbacks
                .lock()
                .unwrap()
                .push((change_request.to_owned(), status));
            if (200..300).contains(&status) {
                return;
            }
            let Some(delay) = delays.next() else {
                return;
            };
            tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
        }
    }

    /// Every gating callback delivery attempt so far, in order: (change request key, the app's HTTP
    /// status; 0 when the connection failed).
    pub fn gating_callbacks(&self) -> Vec<(String, u16)> {
        self.shared.gating_callbacks.lock().unwrap().clone()
    }

    /// Every write waits this long before it is answered, like a slow Jira.
    pub fn set_latency(&self, latency: std::time::Duration) {
        *self.shared.latency.lock().unwrap() = latency;
    }

    /// Lets every held request go on.
    pub fn release_held(&self) {
        self.shared.release.send_modify(|g| *g += 1);
    }

    /// Waits until at least `n` write requests are being held.
    pub async fn wait_until_held(&self, n: usize) {
        loop {
            let notified = self.shared.held.notified();
            if *self.shared.held_count.lock().unwrap() >= n {
                return;
            }
            notified.await;
        }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.inner.lock().unwrap().log.clone()
    }

    /// The development information stored under one issue key.
    pub fn issue(&self, key: &str) -> IssueView {
        self.shared.issue_view(key)
    }

    /// The deployments stored with a JSM service among their associations.
    pub fn service_deployments(&self, service: &str) -> Vec<Value> {
        let inner = self.shared.inner.lock().unwrap();
        inner
            .cicd
            .iter()
            .filter(|((api, _), _)| *api == "deployments")
            .map(|(_, stored)| &stored.entity)
            .filter(|d| {
                d["associations"].as_array().into_iter().flatten().any(|a| {
                    a["associationType"] == "serviceIdOrKeys"
                        && a["values"]
                            .as_array()
                            .is_some_and(|v| v.iter().any(|v| v == service))
                })
            })
            .cloned()
            .collect()
    }

    /// Every issue key with data (development information, builds, deployments, flags), sorted.
    pub fn issue_keys(&self) -> Vec<String> {
        self.shared.issue_keys()
    }
}

impl Shared {
    /// What one issue's development panel shows.
    fn issue_view(&self, key: &str) -> IssueView {
        let inner = self.inner.lock().unwrap();
        let mut view = IssueView::default();
        for repo in inner.repos.values() {
            for (plural, list) in &repo.entities {
                for stored in list.values() {
                    let has = stored.entity["issueKeys"]
                        .as_array()
                        .is_some_and(|k| k.iter().any(|k| k == key));
                    if has {
                        let target = match *plural {
                            "commits" => &mut view.commits,
                            "branches" => &mut view.branches,
                            _ => &mut view.pull_requests,
                        };
                        target.push(stored.entity.clone());
                    }
                }
            }
        }
        for ((api, _), stored) in &inner.cicd {
            if entity_keys(&stored.entity).iter().any(|k| k == key) {
                let target = match *api {
                    "builds" => &mut view.builds,
                    "deployments" => &mut view.deployments,
                    _ => &mut view.feature_flags,
                };
                target.push(stored.entity.clone());
            }
        }
        view
    }

    fn issue_keys(&self) -> Vec<String> {
        let inner = self.inner.lock().unwrap();
        let mut keys: Vec<String> = inner
            .repos
            .values()
            .flat_map(|r| r.entities.values().flat_map(|l| l.values()))
            .flat_map(|s| entity_keys(&s.entity))
            .chain(inner.cicd.values().flat_map(|s| entity_keys(&s.entity)))
            .collect();
        keys.sort();
        keys.dedup();
        keys
    }
}

/// `GET /browse`: every issue key with data, linked to its panel (read-only, for people).
async fn browse_index(State(s): State<Arc<Shared>>) -> Response {
    axum::response::Html(crate::panel::index(&s.issue_keys())).into_response()
}

/// `GET /browse/{key}`: what the issue's development panel shows (read-only, for people).
async fn browse_issue(State(s): State<Arc<Shared>>, Path(key): Path<String>) -> Response {
    axum::response::Html(crate::panel::issue(&key, &s.issue_view(&key))).into_response()
}

/// Validates a Connect descriptor against Atlassian's (2019) schema, extended with what Connect accepts
/// today: the `signed-install` and `context-qsh` API migrations and the `jiraDeploymentGating` module.
pub fn validate_descriptor(
    schema_path: &std::path::Path,
    descriptor: &Value,
) -> anyhow::Result<Vec<String>> {
    let mut schema: Value = serde_json::from_str(&std::fs::read_to_string(schema_path)?)?;
    let migrations = &mut schema["properties"]["apiMigrations"]["properties"];
    migrations["signed-install"] = json!({ "type": "boolean" });
    migrations["context-qsh"] = json!({ "type": "boolean" });
    schema["properties"]["modules"]["properties"]["jiraDeploymentGating"] = json!({
        "type": "object",
        "required": ["key", "name", "callback"],
        "additionalProperties": false,
        "properties": {
            "key": { "type": "string", "pattern": "^[a-zA-Z0-9-]+$" },
            "name": { "$ref": "#/definitions/i18nProperty" },
            "callback": {
                "type": "object",
                "required": ["url"],
                "additionalProperties": false,
                "properties": { "type": { "enum": ["jwt"] }, "url": { "type": "string", "pattern": "^/" } }
            }
        }
    });
    let v = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft4)
        // Connect's "uri" includes references relative to `baseUrl` (lifecycle paths, page URLs).
        .with_format("uri", |s: &str| {
            s.starts_with('/') || url::Url::parse(s).is_ok()
        })
        .build(&schema)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(v.iter_errors(descriptor)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect())
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

async fn key_server(State(s): State<Arc<Shared>>, Path(kid): Path<String>) -> Response {
    s.key_fetches
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    if kid == INSTALL_KID {
        (
            [("content-type", "application/x-pem-file")],
            INSTALL_KEY.public_pem.as_str(),
        )
            .into_response()
    } else {
        StatusCode::NOT_FOUND.into_response()
    }
}

/// The site's rate limit (see [`RateLimit`]), in front of every API route.
async fn rate_limit(
    State(s): State<Arc<Shared>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = req.uri().path();
    let exempt =
        path.starts_with("/connect-keys/") || path == "/oauth/token" || path.starts_with("/_edge/");
    let state = if exempt {
        None
    } else {
        let mut rate = s.rate.lock().unwrap();
        rate.0.map(|limit| {
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0);
            let window_ms = (limit.window.as_millis() as i64).max(1000);
            let index = now_ms / window_ms;
            if rate.1 != index {
                rate.1 = index;
                rate.2 = 0;
            }
            rate.2 = rate.2.saturating_add(1);
            (limit.requests, rate.2, now_ms, (index + 1) * window_ms)
        })
    };
    let Some((limit, used, now_ms, reset_ms)) = state else {
        return next.run(req).await;
    };
    let mut resp = if used > limit {
        let (method, uri) = (req.method().clone(), req.uri().clone());
        let retry_after = ((reset_ms - now_ms + 999) / 1000).max(1);
        let resp = (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", retry_after.to_string())],
            axum::Json(json!({ "errorMessages": [{ "message": "Rate limit exceeded" }] })),
        )
            .into_response();
        s.record(&method, &uri, resp.status(), None);
        resp
    } else {
        next.run(req).await
    };
    let remaining = limit.saturating_sub(used);
    let reset = time::OffsetDateTime::from_unix_timestamp(reset_ms.div_euclid(1000))
        .ok()
        .and_then(|t| {
            t.format(time::macros::format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
            ))
            .ok()
        })
        .unwrap_or_default();
    let h = resp.headers_mut();
    for (name, value) in [
        ("x-ratelimit-limit", limit.to_string()),
        ("x-ratelimit-remaining", remaining.to_string()),
        ("x-ratelimit-reset", reset),
    ] {
        if let Ok(v) = axum::http::HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    }
    if u64::from(remaining) * 5 < u64::from(limit) {
        h.insert(
            "x-ratelimit-nearlimit",
            axum::http::HeaderValue::from_static("true"),
        );
    }
    resp
}

fn devinfo_error(status: StatusCode, messages: &[String]) -> Response {
    let list: Vec<Value> = messages.iter().map(|m| json!({ "message": m })).collect();
    (status, axum::Json(json!({ "errorMessages": list }))).into_response()
}

impl Shared {
    fn record(&self, method: &Method, uri: &Uri, status: StatusCode, body: Option<Value>) {
        self.inner.lock().unwrap().log.push(Recorded {
            method: method.to_string(),
            path: uri.to_string(),
            status: status.as_u16(),
            body,
            at: std::time::Instant::now(),
        });
    }

    /// Jira's checks on every app request: a valid HS256 JWT from the installed app, bound to this request.
    fn authenticate(&self, method: &Method, uri: &Uri, headers: &HeaderMap) -> Result<(), String> {
        let authorization = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if let Some(token) = authorization.strip_prefix("Bearer ") {
            // OAuth-credentials mode: api.atlassian.com paths carrying this site's cloud id.
            let cloud = uri.path().split('/').nth(5).unwrap_or("");
            if !uri.path().starts_with("/jira/") || cloud != self.cloud_id {
                return Err(format!(
                    "bearer tokens are for /jira/<api>/0.1/cloud/{}/…",
                    self.cloud_id
                ));
            }
            let valid = self
                .tokens
                .lock()
                .unwrap()
                .get(token)
                .is_some_and(|exp| *exp > std::time::Instant::now());
            return if valid {
                Ok(())
            } else {
                Err("unknown or expired bearer token".into())
            };
        }
        if uri.path().starts_with("/jira/") {
            return Err("api.atlassian.com paths need a bearer token".into());
        }
        let app = self
            .inner
            .lock()
            .unwrap()
            .app
            .clone()
            .ok_or("app is not installed")?;
        let token = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("JWT "))
            .ok_or("missing Authorization: JWT")?;
        let (_, claims) = connect_jwt::peek(token).map_err(|e| e.to_string())?;
        if claims.iss != app.key {
            return Err(format!("iss {:?} is not the installed app", claims.iss));
        }
        if claims.exp - claims.iat > connect_jwt::MAX_LIFETIME_SECS {
            return Err("token lifetime too long".into());
        }
        let request = BoundRequest {
            method: method.as_str(),
            path: uri.path(),
            query: uri.query().unwrap_or(""),
            base_path: "",
        };
        connect_jwt::verify_hs256(
            token,
            self.shared_secret.as_bytes(),
            &QshRule::Request(request),
            true,
        )
        .map_err(|e| e.to_string())?;
        Ok(())
    }

    /// Jira's checks on every bulk write, in Jira's order, answering with the API's error shape: the app's
    /// token, then (after any injected hold, latency or fault) size, JSON, the OpenAPI schema of `route`, and
    /// the `properties` rules (at most 5; keys not starting with `_` and without `:`).
    async fn accept_write(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
        route: &str,
        error: fn(StatusCode, &[String]) -> Response,
    ) -> Result<Value, Response> {
        self.authenticate(method, uri, headers)
            .map_err(|why| error(StatusCode::UNAUTHORIZED, &[why]))?;
        self.wait_if_held().await;
        if let Some(fault) = self.next_fault_shaped(error) {
            return Err(fault);
        }
        if body.len() > self.config.max_body_bytes {
            return Err(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &["Data is too large.".into()],
            ));
        }
        let doc = serde_json::from_slice::<Value>(body)
            .map_err(|_| error(StatusCode::BAD_REQUEST, &["body is not JSON".into()]))?;
        self.schemas
            .validate("POST", route, &doc)
            .map_err(|errors| error(StatusCode::BAD_REQUEST, &errors))?;
        if doc["properties"]
            .as_object()
            .is_some_and(|p| p.len() > 5 || p.keys().any(|k| k.starts_with('_') || k.contains(':')))
        {
            return Err(error(
                StatusCode::BAD_REQUEST,
                &["invalid properties".into()],
            ));
        }
        Ok(doc)
    }

    /// Holds this request if asked to (see [`JiraSim::hold_next_writes`]), then applies the injected latency.
    async fn wait_if_held(&self) {
        self.hold_if_asked().await;
        let latency = *self.latency.lock().unwrap();
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
    }

    async fn hold_if_asked(&self) {
        let mut rx = self.release.subscribe();
        {
            let mut remaining = self.holds_remaining.lock().unwrap();
            if *remaining == 0 {
                return;
            }
            *remaining -= 1;
        }
        *self.held_count.lock().unwrap() += 1;
        self.held.notify_waiters();
        let _ = rx.changed().await;
        *self.held_count.lock().unwrap() -= 1;
    }

    fn next_fault(&self) -> Option<Response> {
        self.next_fault_shaped(devinfo_error)
    }

    /// The next injected fault, with the error-body shape of the API being called.
    fn next_fault_shaped(&self, error: fn(StatusCode, &[String]) -> Response) -> Option<Response> {
        let fault = self.inner.lock().unwrap().faults.pop_front()?;
        Some(match fault {
            Fault::RateLimited { retry_after_secs } => (
                StatusCode::TOO_MANY_REQUESTS,
                [
                    ("retry-after", retry_after_secs.to_string()),
                    ("x-ratelimit-limit", "100".to_owned()),
                    ("x-ratelimit-remaining", "0".to_owned()),
                ],
                axum::Json(json!({ "errorMessages": [{ "message": "Rate limit exceeded" }] })),
            )
                .into_response(),
            Fault::ServerError(code) => error(
                StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                &["Simulated server error".into()],
            ),
            Fault::Status(code) => error(
                StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                &[format!("Simulated {code}")],
            ),
            Fault::TooLarge => error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &["Data is too large. Submit fewer devinfo entities in each payload.".into()],
            ),
            Fault::Pass => return None,
        })
    }
}

async fn store_devinfo(
    State(s): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let resp = store_devinfo_inner(&s, &method, &uri, &headers, &body).await;
    s.record(
        &method,
        &uri,
        resp.status(),
        serde_json::from_slice(&body).ok(),
    );
    resp
}

async fn store_devinfo_inner(
    s: &Shared,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let doc = match s
        .accept_write(
            method,
            uri,
            headers,
            body,
            "/rest/devinfo/0.10/bulk",
            devinfo_error,
        )
        .await
    {
        Ok(doc) => doc,
        Err(response) => return response,
    };
    if let Err(why) = check_limits(&doc) {
        return devinfo_error(StatusCode::BAD_REQUEST, &[why]);
    }
    let known = s.config.known_issue_keys.clone();
    let mut accepted = serde_json::Map::new();
    let mut unknown: Vec<String> = Vec::new();
    let mut inner = s.inner.lock().unwrap();
    for repo in doc["repositories"].as_array().into_iter().flatten() {
        let id = repo["id"].as_str().unwrap_or_default().to_owned();
        let seq = repo["updateSequenceId"].as_i64().unwrap_or(0);
        let stored = inner.repos.entry(id.clone()).or_default();
        if seq > stored.seq {
            let mut meta = repo.clone();
            for (plural, _) in ENTITY_TYPES {
                meta.as_object_mut().map(|m| m.remove(plural));
            }
            stored.meta = meta;
            stored.seq = seq;
        }
        let mut ids = serde_json::Map::new();
        for (plural, _) in ENTITY_TYPES {
            let mut list_ids = Vec::new();
            for e in repo[plural].as_array().into_iter().flatten() {
                let eid = e["id"].as_str().unwrap_or_default().to_owned();
                let eseq = e["updateSequenceId"].as_i64().unwrap_or(0);
                for k in e["issueKeys"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|k| k.as_str())
                {
                    if known
                        .as_ref()
                        .is_some_and(|known| !known.iter().any(|x| x == k))
                        && !unknown.iter().any(|u| u == k)
                    {
                        unknown.push(k.to_owned());
                    }
                }
                let slot = stored
                    .entities
                    .entry(plural)
                    .or_default()
                    .entry(eid.clone())
                    .or_default();
                // Jira replaces stored data only when the incoming sequence number is higher; stale
                // updates are accepted and ignored.
                if eseq > slot.seq {
                    *slot = Stored {
                        seq: eseq,
                        entity: e.clone(),
                        properties: doc["properties"].clone(),
                    };
                }
                list_ids.push(Value::String(eid));
            }
            if !list_ids.is_empty() {
                ids.insert(plural.to_owned(), Value::Array(list_ids));
            }
        }
        accepted.insert(id, Value::Object(ids));
    }
    (
        StatusCode::ACCEPTED,
        axum::Json(json!({ "acceptedDevinfoEntities": accepted, "failedDevinfoEntities": {}, "unknownIssueKeys": unknown })),
    )
        .into_response()
}

/// Limits Jira documents in prose rather than in the schema.
fn check_limits(doc: &Value) -> Result<(), String> {
    let mut total = 0;
    let mut repo_ids = std::collections::HashSet::new();
    for repo in doc["repositories"].as_array().into_iter().flatten() {
        if !repo_ids.insert(repo["id"].as_str().unwrap_or_default()) {
            return Err("duplicate repository id".into());
        }
        for (plural, _) in ENTITY_TYPES {
            let list = repo[plural]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default();
            let mut seen = std::collections::HashSet::new();
            for e in list {
                if !seen.insert(e["id"].as_str().unwrap_or_default()) {
                    return Err(format!("duplicate {plural} id {}", e["id"]));
                }
            }
            total += list.len();
        }
    }
    if total == 0 {
        return Err("no entities in request".into());
    }
    if total > gfj_core::jira::MAX_ENTITIES_PER_REQUEST {
        return Err(format!("{total} entities; at most 1000 per request"));
    }
    Ok(())
}

async fn get_repository(
    State(s): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path(params): Path<std::collections::HashMap<String, String>>,
) -> Response {
    let repo = params.get("repo").cloned().unwrap_or_default();
    if let Err(why) = s.authenticate(&method, &uri, &headers) {
        return devinfo_error(StatusCode::UNAUTHORIZED, &[why]);
    }
    let inner = s.inner.lock().unwrap();
    let Some(r) = inner.repos.get(&repo) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let mut out = r.meta.clone();
    for (plural, list) in &r.entities {
        let mut items: Vec<&Stored> = list.values().collect();
        items.sort_by_key(|s| std::cmp::Reverse(s.seq));
        out[*plural] = Value::Array(
            items
                .into_iter()
                .take(400)
                .map(|s| s.entity.clone())
                .collect(),
        );
    }
    axum::Json(out).into_response()
}

#[derive(serde::Deserialize)]
struct SeqQuery {
    #[serde(rename = "_updateSequenceId")]
    update_sequence_id: Option<String>,
}

fn parse_seq(q: &SeqQuery) -> Result<Option<i64>, Response> {
    match &q.update_sequence_id {
        None => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| {
            devinfo_error(
                StatusCode::BAD_REQUEST,
                &["_updateSequenceId must be a number".into()],
            )
        }),
    }
}

async fn delete_repository(
    State(s): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path(params): Path<std::collections::HashMap<String, String>>,
    axum::extract::Query(q): axum::extract::Query<SeqQuery>,
) -> Response {
    let repo = params.get("repo").cloned().unwrap_or_default();
    let resp = (|| {
        s.authenticate(&method, &uri, &headers)
            .map_err(|why| devinfo_error(StatusCode::UNAUTHORIZED, &[why]))?;
        let upto = parse_seq(&q)?;
        let mut inner = s.inner.lock().unwrap();
        if let Some(r) = inner.repos.get_mut(&repo) {
            for list in r.entities.values_mut() {
                list.retain(|_, e| upto.is_some_and(|u| e.seq > u));
            }
        }
        Ok::<_, Response>(StatusCode::ACCEPTED.into_response())
    })()
    .unwrap_or_else(|r| r);
    s.record(&method, &uri, resp.status(), None);
    resp
}

async fn delete_entity(
    State(s): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path(params): Path<std::collections::HashMap<String, String>>,
    axum::extract::Query(q): axum::extract::Query<SeqQuery>,
) -> Response {
    let param = |k: &str| params.get(k).cloned().unwrap_or_default();
    let (repo, entity_type, entity_id) = (param("repo"), param("entity_type"), param("entity_id"));
    let resp = async {
        s.authenticate(&method, &uri, &headers)
            .map_err(|why| devinfo_error(StatusCode::UNAUTHORIZED, &[why]))?;
        s.wait_if_held().await;
        if let Some(fault) = s.next_fault() {
            return Err(fault);
        }
        let Some((plural, _)) = ENTITY_TYPES
            .iter()
            .find(|(_, singular)| *singular == entity_type)
        else {
            return Err(devinfo_error(
                StatusCode::BAD_REQUEST,
                &[format!("unknown entity type {entity_type}")],
            ));
        };
        let upto = parse_seq(&q)?;
        let mut inner = s.inner.lock().unwrap();
        if let Some(list) = inner
            .repos
            .get_mut(&repo)
            .and_then(|r| r.entities.get_mut(plural))
            && list
                .get(&entity_id)
                .is_some_and(|e| upto.is_none_or(|u| e.seq <= u))
        {
            list.remove(&entity_id);
        }
        Ok(StatusCode::ACCEPTED.into_response())
    }
    .await
    .unwrap_or_else(|r| r);
    s.record(&method, &uri, resp.status(), None);
    resp
}

#[derive(serde::Deserialize)]
struct TokenRequest {
    audience: Option<String>,
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// `POST /oauth/token` of api.atlassian.com, for the client-credentials grant only.
async fn oauth_token(
    State(s): State<Arc<Shared>>,
    axum::Json(req): axum::Json<TokenRequest>,
) -> Response {
    if req.grant_type.as_deref() != Some("client_credentials")
        || req.audience.as_deref() != Some("api.atlassian.com")
    {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({ "error": "invalid_request" })),
        )
            .into_response();
    }
    if req.client_id.as_deref() != Some(&s.oauth_client_id)
        || req.client_secret.as_deref() != Some(&s.oauth_client_secret)
    {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({ "error": "access_denied", "error_description": "Unauthorized" })),
        )
            .into_response();
    }
    let token = crate::random_hex(32);
    let expires_in = 3600;
    s.tokens.lock().unwrap().insert(
        token.clone(),
        std::time::Instant::now() + std::time::Duration::from_secs(expires_in),
    );
    axum::Json(json!({ "access_token": token, "expires_in": expires_in, "token_type": "Bearer", "scope": "manage:jira-data-provider" }))
        .into_response()
}

async fn tenant_info(State(s): State<Arc<Shared>>) -> Response {
    axum::Json(json!({ "cloudId": s.cloud_id })).into_response()
}

/// Builds, deployments and flags answer errors as a bare array of messages (devinfo uses an object).
fn array_error(status: StatusCode, messages: &[String]) -> Response {
    let list: Vec<Value> = messages.iter().map(|m| json!({ "message": m })).collect();
    (status, axum::Json(Value::Array(list))).into_response()
}

/// The issue keys of a build, deployment or flag: `issueKeys`, or `issueKeys`/`issueIdOrKeys` associations.
fn entity_keys(e: &Value) -> Vec<String> {
    let mut keys: Vec<String> = e["issueKeys"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|k| k.as_str().map(str::to_owned))
        .collect();
    for a in e["associations"].as_array().into_iter().flatten() {
        if matches!(
            a["associationType"].as_str(),
            Some("issueKeys" | "issueIdOrKeys")
        ) {
            keys.extend(
                a["values"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|k| k.as_str().map(str::to_owned)),
            );
        }
    }
    keys
}

/// What identifies each kind of entity, and how its updates are ordered.
struct CicdApi {
    name: &'static str,
    route: &'static str,
    list: &'static str,
    sequence: &'static str,
    key: fn(&Value) -> Value,
}

const BUILDS: CicdApi = CicdApi {
    name: "builds",
    route: "/rest/builds/0.1/bulk",
    list: "builds",
    sequence: "updateSequenceNumber",
    key: |e| json!({ "pipelineId": e["pipelineId"], "buildNumber": e["buildNumber"] }),
};
const DEPLOYMENTS: CicdApi = CicdApi {
    name: "deployments",
    route: "/rest/deployments/0.1/bulk",
    list: "deployments",
    sequence: "updateSequenceNumber",
    key: |e| {
        json!({ "pipelineId": e["pipeline"]["id"], "environmentId": e["environment"]["id"],
                "deploymentSequenceNumber": e["deploymentSequenceNumber"] })
    },
};
const FLAGS: CicdApi = CicdApi {
    name: "featureflags",
    route: "/rest/featureflags/0.1/bulk",
    list: "flags",
    sequence: "updateSequenceId",
    key: |e| e["id"].clone(),
};

async fn submit_builds(
    State(s): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    submit_cicd(&s, &BUILDS, &method, &uri, &headers, &body).await
}

async fn submit_deployments(
    State(s): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    submit_cicd(&s, &DEPLOYMENTS, &method, &uri, &headers, &body).await
}

async fn submit_flags(
    State(s): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    submit_cicd(&s, &FLAGS, &method, &uri, &headers, &body).await
}

async fn submit_cicd(
    s: &Shared,
    api: &CicdApi,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let resp = submit_cicd_inner(s, api, method, uri, headers, body).await;
    s.record(
        method,
        uri,
        resp.status(),
        serde_json::from_slice(body).ok(),
    );
    resp
}

async fn submit_cicd_inner(
    s: &Shared,
    api: &CicdApi,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let doc = match s
        .accept_write(method, uri, headers, body, api.route, array_error)
        .await
    {
        Ok(doc) => doc,
        Err(response) => return response,
    };
    let known = s.config.known_issue_keys.clone();
    let mut accepted = Vec::new();
    let mut unknown: Vec<String> = Vec::new();
    let mut unknown_services: Vec<String> = Vec::new();
    let mut inner = s.inner.lock().unwrap();
    for e in doc[api.list].as_array().into_iter().flatten() {
        let key = (api.key)(e);
        for k in entity_keys(e) {
            if known.as_ref().is_some_and(|known| !known.contains(&k)) && !unknown.contains(&k) {
                unknown.push(k);
            }
        }
        for a in e["associations"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| a["associationType"] == "serviceIdOrKeys")
        {
            for v in a["values"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str())
            {
                let exists = s
                    .config
                    .known_services
                    .as_ref()
                    .is_none_or(|known| known.iter().any(|k| k == v));
                if !exists && !unknown_services.iter().any(|u| u == v) {
                    unknown_services.push(v.to_owned());
                }
            }
        }
        let seq = e[api.sequence].as_i64().unwrap_or(0);
        let slot = inner.cicd.entry((api.name, key.to_string())).or_default();
        if seq > slot.seq {
            *slot = Stored {
                seq,
                entity: e.clone(),
                properties: doc["properties"].clone(),
            };
            if api.name == "deployments" && asks_for_gating(e) {
                open_change_request(s, e);
            }
        }
        accepted.push(key);
    }
    let body = match api.name {
        "builds" => {
            json!({ "acceptedBuilds": accepted, "rejectedBuilds": [], "unknownIssueKeys": unknown })
        }
        "deployments" => {
            json!({
                "acceptedDeployments": accepted,
                "rejectedDeployments": [],
                "unknownIssueKeys": unknown,
                "unknownAssociations": if unknown_services.is_empty() {
                    json!([])
                } else {
                    json!([{ "associationType": "serviceIdOrKeys", "values": unknown_services }])
                }
            })
        }
        _ => json!({ "acceptedFlags": accepted, "failedFlags": {}, "unknownIssueKeys": unknown }),
    };
    (StatusCode::ACCEPTED, axum::Json(body)).into_response()
}

/// `DELETE /rest/<api>/<version>/bulkByProperties?<k>=<v>…[&_updateSequenceId=n]`: deletes what was stored
/// with all these properties (and, with `_updateSequenceId`, no newer than it).
/// The properties of a `…ByProperties` query and its optional `_updateSequenceId`, refused as Jira
/// refuses them: none given, one given twice, a sequence number that is not a number.
fn property_query(
    uri: &Uri,
    error: fn(StatusCode, &[String]) -> Response,
) -> Result<(BTreeMap<String, String>, Option<i64>), Response> {
    let mut wanted: BTreeMap<String, String> = BTreeMap::new();
    let mut upto = None;
    for (k, v) in url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()) {
        if k == "_updateSequenceId" {
            upto = Some(v.parse::<i64>().map_err(|_| {
                error(
                    StatusCode::BAD_REQUEST,
                    &["_updateSequenceId must be a number".into()],
                )
            })?);
        } else if wanted.insert(k.to_string(), v.to_string()).is_some() {
            return Err(error(
                StatusCode::BAD_REQUEST,
                &[format!("property {k} given twice")],
            ));
        }
    }
    if wanted.is_empty() {
        return Err(error(
            StatusCode::BAD_REQUEST,
            &["at least one property is required".into()],
        ));
    }
    Ok((wanted, upto))
}

/// `GET /rest/devinfo/0.10/existsByProperties`: whether any stored development information carries all
/// the given properties.
async fn devinfo_exists_by_properties(
    State(s): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let resp = (|| {
        s.authenticate(&method, &uri, &headers)
            .map_err(|why| devinfo_error(StatusCode::UNAUTHORIZED, &[why]))?;
        let (wanted, upto) = property_query(&uri, devinfo_error)?;
        let inner = s.inner.lock().unwrap();
        let found = inner.repos.values().any(|repo| {
            repo.entities.values().any(|list| {
                list.values().any(|st| {
                    wanted
                        .iter()
                        .all(|(k, v)| st.properties[k].as_str() == Some(v))
                        && upto.is_none_or(|u| st.seq <= u)
                })
            })
        });
        Ok::<_, Response>(axum::Json(json!({ "hasDataMatchingProperties": found })).into_response())
    })()
    .unwrap_or_else(|r| r);
    s.record(&method, &uri, resp.status(), None);
    resp
}

async fn delete_by_properties(
    State(s): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path(params): Path<std::collections::HashMap<String, String>>,
) -> Response {
    let api = params.get("api").cloned().unwrap_or_default();
    let error: fn(StatusCode, &[String]) -> Response = if api == "devinfo" {
        devinfo_error
    } else {
        array_error
    };
    let resp = (|| {
        s.authenticate(&method, &uri, &headers)
            .map_err(|why| error(StatusCode::UNAUTHORIZED, &[why]))?;
        let (wanted, upto) = property_query(&uri, error)?;
        let matches = |st: &Stored| {
            wanted
                .iter()
                .all(|(k, v)| st.properties[k].as_str() == Some(v))
                && upto.is_none_or(|u| st.seq <= u)
        };
        let mut inner = s.inner.lock().unwrap();
        if api == "devinfo" {
            for repo in inner.repos.values_mut() {
                for list in repo.entities.values_mut() {
                    list.retain(|_, st| !matches(st));
                }
            }
        } else {
            inner
                .cicd
                .retain(|(a, _), st| *a != api.as_str() || !matches(st));
        }
        Ok(StatusCode::ACCEPTED.into_response())
    })()
    .unwrap_or_else(|r| r);
    s.record(&method, &uri, resp.status(), None);
    resp
}

/// `GET …/deployments/{n}/gating-status`: `awaiting` for a deployment submitted with
/// `initiate_deployment_gating` until a test decides it, `invalid` for one that asked for no gating.
async fn gating_status(
    State(s): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path(params): Path<std::collections::HashMap<String, String>>,
) -> Response {
    if let Err(why) = s.authenticate(&method, &uri, &headers) {
        return array_error(StatusCode::UNAUTHORIZED, &[why]);
    }
    let p = |k: &str| params.get(k).cloned().unwrap_or_default();
    let (pipeline, environment) = (p("pipeline"), p("environment"));
    let Ok(number) = p("number").parse::<i64>() else {
        return array_error(
            StatusCode::BAD_REQUEST,
            &["deploymentSequenceNumber must be a number".into()],
        );
    };
    let key = json!({ "pipelineId": pipeline, "environmentId": environment, "deploymentSequenceNumber": number }).to_string();
    let inner = s.inner.lock().unwrap();
    let Some(stored) = inner.cicd.get(&("deployments", key)) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let gated = asks_for_gating(&stored.entity);
    let gate = s
        .gating
        .lock()
        .unwrap()
        .deployments
        .get(&(pipeline.clone(), environment.clone(), number))
        .cloned()
        .unwrap_or_default();
    let status = gate.status.unwrap_or_else(|| {
        if gated {
            "awaiting".into()
        } else {
            "invalid".into()
        }
    });
    let details: Vec<Value> = gate
        .change_request
        .iter()
        .map(|key| change_request_detail(s.base_url.get().map_or("", String::as_str), key))
        .collect();
    axum::Json(json!({
        "deploymentSequenceNumber": number,
        "pipelineId": pipeline,
        "environmentId": environment,
        "updatedTimestamp": gate.updated.as_deref().unwrap_or("2026-11-27T10:00:00.000+00:00"),
        "gatingStatus": status,
        "details": details
    }))
    .into_response()
}

/// Whether a deployment asks JSM to gate it (`commands: [{"command": "initiate_deployment_gating"}]`).
fn asks_for_gating(deployment: &Value) -> bool {
    deployment["commands"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["command"] == "initiate_deployment_gating")
}

/// JSM opens one change request per gated deployment key, `awaiting` a decision; a resubmission of the
/// same deployment keeps the one it has.
fn open_change_request(s: &Shared, deployment: &Value) {
    let (Some(pipeline), Some(environment), Some(number)) = (
        deployment["pipeline"]["id"].as_str(),
        deployment["environment"]["id"].as_str(),
        deployment["deploymentSequenceNumber"].as_i64(),
    ) else {
        return;
    };
    let mut gating = s.gating.lock().unwrap();
    let n = gating.change_requests + 1;
    let gate = gating
        .deployments
        .entry((pipeline.to_owned(), environment.to_owned(), number))
        .or_default();
    if gate.change_request.is_some() {
        return;
    }
    gate.change_request = Some(format!("CHG-{n}"));
    gate.status = Some("awaiting".into());
    gate.updated = Some(rfc3339_now());
    gating.change_requests = n;
}

/// `CHG-12` → 12, to order change requests as JSM numbers them.
fn change_request_number(key: &str) -> u64 {
    key.rsplit('-')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(u64::MAX)
}

/// A change request as gating answers list it: the issue and its page on the site's customer portal.
fn change_request_detail(site_base_url: &str, key: &str) -> Value {
    json!({
        "type": "issue",
        "issueKey": key,
        "issueLink": format!("{}/servicedesk/customer/portal/1/{key}", site_base_url.trim_end_matches('/')),
    })
}

/// Now as Jira's gating APIs write it: `2026-12-04T10:00:00.000+00:00`.
fn rfc3339_now() -> String {
    time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]+00:00"
        ))
        .unwrap_or_default()
}

#[derive(serde::Deserialize)]
struct UserQuery {
    #[serde(rename = "accountId")]
    account_id: String,
}

/// `GET /rest/api/3/user?accountId=…&expand=groups`, for Connect apps.
async fn user_info(
    State(s): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    axum::extract::Query(q): axum::extract::Query<UserQuery>,
) -> Response {
    if let Err(why) = s.authenticate(&method, &uri, &headers) {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({ "errorMessages": [why] })),
        )
            .into_response();
    }
    let users = s.users.lock().unwrap();
    let Some(groups) = users.get(&q.account_id) else {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(json!({ "errorMessages": ["User not found"] })),
        )
            .into_response();
    };
    let items: Vec<Value> = groups.iter().map(|g| json!({ "name": g })).collect();
    axum::Json(json!({ "accountId": q.account_id, "displayName": q.account_id, "groups": { "size": items.len(), "items": items } }))
        .into_response()
}

fn unix_now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_rate_limit_answers_429_with_jiras_headers_once_the_window_is_used_up() {
        let jira = JiraSim::start(JiraSimConfig {
            rate_limit: Some(RateLimit {
                requests: 2,
                window: std::time::Duration::from_secs(86_400),
            }),
            ..Default::default()
        })
        .await
        .unwrap();
        let http = reqwest::Client::new();
        let api = format!("{}/rest/devinfo/0.10/repository/r1", jira.base_url);
        let keys = format!("{}/{INSTALL_KID}", jira.connect_keys_url());
        let header = |r: &reqwest::Response, name: &str| {
            r.headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        for remaining in ["1", "0"] {
            // Counted whatever the answer (here 401: no token).
            let r = http.get(&api).send().await.unwrap();
            assert_eq!(r.status(), 401);
            assert_eq!(header(&r, "x-ratelimit-limit").as_deref(), Some("2"));
            assert_eq!(
                header(&r, "x-ratelimit-remaining").as_deref(),
                Some(remaining)
            );
            assert!(header(&r, "retry-after").is_none());
        }
        // The key server is Atlassian's, not the site's: not counted.
        assert_eq!(http.get(&keys).send().await.unwrap().status(), 200);

        let r = http.get(&api).send().await.unwrap();
        assert_eq!(r.status(), 429);
        let retry: u64 = header(&r, "retry-after").unwrap().parse().unwrap();
        assert!((1..=86_400).contains(&retry), "{retry}");
        assert_eq!(header(&r, "x-ratelimit-remaining").as_deref(), Some("0"));
        assert_eq!(header(&r, "x-ratelimit-nearlimit").as_deref(), Some("true"));
        let reset = header(&r, "x-ratelimit-reset").unwrap();
        let reset =
            time::OffsetDateTime::parse(&reset, &time::format_description::well_known::Rfc3339)
                .unwrap();
        let wait = reset - time::OffsetDateTime::now_utc();
        assert!(
            wait > time::Duration::ZERO && wait <= time::Duration::days(1),
            "{wait}"
        );
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["errorMessages"][0]["message"], "Rate limit exceeded");
        assert_eq!(jira.requests().last().unwrap().status, 429);

        jira.set_rate_limit(None);
        let r = http.get(&api).send().await.unwrap();
        assert_eq!(r.status(), 401);
        assert!(header(&r, "x-ratelimit-limit").is_none());
    }

    /// A gated deployment gets one change request however often it is resubmitted; deciding it changes
    /// the gating status and calls the installed app back, signed, retrying while the app fails.
    #[tokio::test]
    async fn a_gated_deployment_opens_one_change_request_whose_decision_calls_the_app_back() {
        let jira = JiraSim::start(JiraSimConfig::default()).await.unwrap();
        let http = reqwest::Client::new();
        let (id, secret) = jira.oauth_credentials();
        let token: Value = http
            .post(format!("{}/oauth/token", jira.base_url))
            .json(
                &json!({ "grant_type": "client_credentials", "client_id": id,
                           "client_secret": secret, "audience": "api.atlassian.com" }),
            )
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let bearer = format!("Bearer {}", token["access_token"].as_str().unwrap());
        let cloud = jira.cloud_id().to_owned();
        let submit = |number: i64, seq: i64, gated: bool| {
            let mut d = json!({
                "schemaVersion": "1.0", "deploymentSequenceNumber": number, "updateSequenceNumber": seq,
                "associations": [{ "associationType": "issueIdOrKeys", "values": ["PROJ-1"] }],
                "displayName": "Deploy", "url": "https://gitlab.example/g/p/-/deployments/1",
                "description": "deploy", "lastUpdated": "2026-11-27T10:00:00Z", "state": "pending",
                "pipeline": { "id": "42", "displayName": "Pipeline", "url": "https://gitlab.example/g/p/-/pipelines/1" },
                "environment": { "id": "7", "displayName": "production", "type": "production" },
            });
            if gated {
                d["commands"] = json!([{ "command": "initiate_deployment_gating" }]);
            }
            http.post(format!(
                "{}/jira/deployments/0.1/cloud/{cloud}/bulk",
                jira.base_url
            ))
            .header("Authorization", &bearer)
            .json(&json!({ "deployments": [d], "providerMetadata": { "product": "GitLab 17.0" } }))
            .send()
        };
        for (number, seq, gated) in [(100, 1, true), (100, 2, true), (101, 1, false)] {
            assert_eq!(submit(number, seq, gated).await.unwrap().status(), 202);
        }
        let chg = |status: &str| {
            vec![(
                "CHG-1".to_owned(),
                "42".to_owned(),
                "7".to_owned(),
                100,
                status.to_owned(),
            )]
        };
        assert_eq!(jira.change_requests(), chg("awaiting"));
        let gating = |number: i64| {
            http.get(format!(
                "{}/jira/deployments/0.1/cloud/{cloud}/pipelines/42/environments/7/deployments/{number}/gating-status",
                jira.base_url
            ))
            .header("Authorization", &bearer)
            .send()
        };
        let g: Value = gating(100).await.unwrap().json().await.unwrap();
        assert_eq!(g["gatingStatus"], "awaiting");
        assert_eq!(
            g["details"],
            json!([{ "type": "issue", "issueKey": "CHG-1",
                     "issueLink": format!("{}/servicedesk/customer/portal/1/CHG-1", jira.base_url) }])
        );
        let g: Value = gating(101).await.unwrap().json().await.unwrap();
        assert_eq!(
            (&g["gatingStatus"], &g["details"]),
            (&json!("invalid"), &json!([]))
        );
        assert_eq!(gating(102).await.unwrap().status(), 404);

        // A Connect app that fails the first callback.
        let received: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
        let app = Router::new()
            .route(
                "/atlassian-connect.json",
                get(|State(base): State<Arc<Mutex<String>>>| async move {
                    let base = base.lock().unwrap().clone();
                    axum::Json(json!({
                        "key": "test-app", "baseUrl": base, "authentication": { "type": "jwt" },
                        "lifecycle": { "installed": "/installed", "uninstalled": "/uninstalled" },
                        "modules": { "jiraDeploymentGating": { "key": "g", "name": { "value": "g" },
                                     "callback": { "type": "jwt", "url": "/jira/gating" } } }
                    }))
                }),
            )
            .route("/installed", post(|| async { StatusCode::NO_CONTENT }))
            .route("/uninstalled", post(|| async { StatusCode::NO_CONTENT }));
        let base_slot: Arc<Mutex<String>> = Arc::default();
        let seen = received.clone();
        let gating_route = post(move |headers: HeaderMap, body: axum::Json<Value>| {
            let seen = seen.clone();
            async move {
                let auth = headers["authorization"].to_str().unwrap().to_owned();
                let mut seen = seen.lock().unwrap();
                seen.push((auth, body.0));
                if seen.len() == 1 {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::NO_CONTENT
                }
            }
        });
        let app = app
            .with_state(base_slot.clone())
            .route("/jira/gating", gating_route);
        // Served under a base path, which the token's `qsh` must leave out.
        let (app_url, _server) = crate::serve(Router::new().nest("/app", app)).await.unwrap();
        let app_base = format!("{app_url}/app");
        *base_slot.lock().unwrap() = app_base.clone();
        assert_eq!(jira.install(&app_base).await.unwrap(), 204);

        jira.decide_change_request("CHG-1", "allowed").await;
        assert_eq!(jira.change_requests(), chg("allowed"));
        assert_eq!(
            jira.gating_callbacks(),
            vec![("CHG-1".to_owned(), 503), ("CHG-1".to_owned(), 204)]
        );
        let g: Value = gating(100).await.unwrap().json().await.unwrap();
        assert_eq!(g["gatingStatus"], "allowed");
        let (auth, body) = received.lock().unwrap().last().cloned().unwrap();
        assert_eq!(body["gatingStatus"], "allowed");
        assert_eq!(body["details"], g["details"]);
        assert_eq!(
            (
                &body["pipelineId"],
                &body["environmentId"],
                &body["deploymentSequenceNumber"]
            ),
            (&json!("42"), &json!("7"), &json!(100))
        );
        assert!(
            time::OffsetDateTime::parse(
                body["updatedTimestamp"].as_str().unwrap(),
                &time::format_description::well_known::Rfc3339
            )
            .is_ok()
        );
        // Bound to the callback relative to the app's base path `/app`.
        let claims = connect_jwt::verify_hs256(
            auth.strip_prefix("JWT ").unwrap(),
            jira.shared.shared_secret.as_bytes(),
            &QshRule::Request(BoundRequest {
                method: "POST",
                path: "/app/jira/gating",
                query: "",
                base_path: "/app",
            }),
            true,
        )
        .unwrap();
        assert_eq!(claims.iss, jira.client_key());

        jira.send_gating_callback("CHG-1").await;
        assert_eq!(jira.gating_callbacks().len(), 3);
        assert_eq!(received.lock().unwrap().len(), 3);
    }
}
