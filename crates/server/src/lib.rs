//! The HTTP edge: GitLab webhooks in (durably queued before 2xx), Atlassian Connect lifecycle and
//! descriptor, the configuration page inside Jira with its linking API, the standalone admin page,
//! health. Handlers stay thin: they authenticate, validate, and hand over to the store.

mod admin;
mod descriptor;
pub mod edge;
mod gating;
mod gitlab_oauth;
mod health;
pub mod jira_config;
mod jsm;
mod lifecycle;
pub mod metrics;
mod webhook;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::routing::{delete, get, post, put};
use gfj_core::url_pattern::UrlAllowList;
use gfj_store::intake::Intake;
use gfj_store::{Clock, Store};

pub use admin::ADMIN_FAILURES_PER_MINUTE;
pub use descriptor::descriptor;

/// Settings the HTTP edge needs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// `GFJ_BASE_URL`: descriptor `baseUrl`, install-token audience.
    pub base_url: String,
    /// `GFJ_APP_KEY`.
    pub app_key: String,
    /// `GFJ_JIRA_URLS`: which Jira sites may install.
    pub jira_urls: UrlAllowList,
    /// `GFJ_CONNECT_KEYS_URL`: where signed-install public keys are fetched.
    pub connect_keys_url: String,
    /// `GFJ_WEBHOOK_MAX_BYTES`: larger webhook bodies get 413 and are not queued.
    pub webhook_max_bytes: usize,
    /// SHA-256 (hex) of `GFJ_ADMIN_TOKEN`: admin routes are off without it. Only the digest is kept.
    pub admin_token_digest: Option<String>,
    /// `GFJ_GITLAB_OAUTH_APPS`, for signing in to GitLab.
    pub gitlab_oauth_apps: Vec<gfj_gitlab_client::oauth::OAuthApp>,
    /// `GFJ_BACKFILL_TASKS`: backfill tasks running at once (a resync starts up to this many).
    pub backfill_tasks: i64,
    /// Connection and request caps and timeouts of the HTTP edge.
    pub edge: edge::EdgeLimits,
    /// Whether `/metrics` is served by [`router`]; `false` when `GFJ_METRICS_LISTEN` gives it an address
    /// of its own ([`metrics_router`]).
    pub metrics_on_main_listener: bool,
}

/// Shared by every handler.
pub struct AppState {
    pub store: Store,
    pub intake: Intake,
    pub config: ServerConfig,
    pub clock: Arc<dyn Clock>,
    /// For fetching Connect install keys; no redirects.
    pub http: reqwest::Client,
    /// GitLab as a subscription or a signed-in user (linking from the pages).
    pub gitlab: gfj_sync::gitlab_access::GitLabAccess,
    /// Jira, for the user groups behind the administrator check.
    pub jira: gfj_jira_client::JiraClient,
    install_keys: Mutex<HashMap<String, lifecycle::CachedKey>>,
    lifecycle_limits: lifecycle::LifecycleLimits,
    admin_throttle: admin::AdminThrottle,
    requests_in_flight: Arc<tokio::sync::Semaphore>,
    large_bodies: webhook::LargeBodies,
    webhook_tokens: webhook::TokenCache,
    sequence: webhook::SequenceClock,
}

impl AppState {
    pub fn new(
        store: Store,
        intake: Intake,
        config: ServerConfig,
        clock: Arc<dyn Clock>,
        http: reqwest::Client,
        gitlab: gfj_sync::gitlab_access::GitLabAccess,
        jira: gfj_jira_client::JiraClient,
    ) -> Arc<Self> {
        let requests_in_flight =
            Arc::new(tokio::sync::Semaphore::new(config.edge.max_requests.max(1)));
        // Installed before the first request, so that nothing recorded is lost.
        metrics::handle();
        Arc::new(Self {
            store,
            intake,
            config,
            clock,
            http,
            gitlab,
            jira,
            install_keys: Mutex::default(),
            lifecycle_limits: Default::default(),
            admin_throttle: Default::default(),
            requests_in_flight,
            large_bodies: Default::default(),
            webhook_tokens: Default::default(),
            sequence: Default::default(),
        })
    }
}

impl AppState {
    /// Linking and unlinking, as the pages do it.
    pub(crate) fn linker(&self) -> gfj_sync::linking::Linker<'_> {
        gfj_sync::linking::Linker {
            store: &self.store,
            access: &self.gitlab,
            base_url: &self.config.base_url,
        }
    }
}

pub fn router(state: Arc<AppState>) -> Router {
    let lifecycle_throttle =
        axum::middleware::from_fn_with_state(state.clone(), lifecycle::throttle);
    let metrics_here = state.config.metrics_on_main_listener;
    let app = Router::new()
        .route("/atlassian-connect.json", get(descriptor::serve))
        .route("/static/logo.svg", get(descriptor::logo))
        .route(
            "/jira/events/installed",
            post(lifecycle::installed).layer(lifecycle_throttle.clone()),
        )
        .route(
            "/jira/events/uninstalled",
            post(lifecycle::uninstalled).layer(lifecycle_throttle),
        )
        // The body is read by the handler, after the token check, with the limit.
        .route("/gitlab/webhook", post(webhook::receive))
        .route("/gitlab/oauth/start", post(gitlab_oauth::start))
        .route(gitlab_oauth::BEGIN_PATH, get(gitlab_oauth::begin))
        .route("/gitlab/oauth/callback", get(gitlab_oauth::callback))
        .route("/gitlab/oauth/confirm", post(gitlab_oauth::confirm))
        .route("/jira/config", get(jira_config::page))
        .route("/jira/gating", post(gating::callback))
        .route("/static/page.js", get(page_script))
        .route("/static/config.js", get(jira_config::script))
        .route("/static/config.css", get(jira_config::style))
        .route("/jira/gitlab/sign-in", post(jira_config::sign_in))
        .route("/jira/gitlab/groups", get(jira_config::groups))
        .route(
            "/jira/subscriptions",
            get(jira_config::list).post(jira_config::link),
        )
        .route("/jira/subscriptions/{id}", delete(jira_config::unlink))
        .route("/jira/jsm", get(jsm::page_overview))
        .route("/jira/subscriptions/{id}/jsm", put(jsm::page_set))
        .route("/jira/subscriptions/{id}/jsm/clear", post(jsm::page_clear))
        .route("/admin", get(admin::page))
        .route("/static/admin.js", get(admin::script))
        .route("/admin/api/overview", get(admin::overview))
        .route("/admin/api/subscriptions", post(admin::link))
        .route("/admin/api/subscriptions/{id}", delete(admin::unlink))
        .route("/admin/api/subscriptions/{id}/resync", post(admin::resync))
        .route("/admin/api/jsm", get(jsm::admin_overview))
        .route("/admin/api/attention", get(admin::attention))
        .route("/admin/api/issues/{key}", get(admin::issue))
        .route(
            "/admin/api/subscriptions/{id}/backfill",
            get(admin::backfill),
        )
        .route("/admin/api/jobs/{id}/retry", post(admin::retry_job))
        .route("/admin/api/subscriptions/{id}/jsm", put(jsm::admin_set))
        .route(
            "/admin/api/subscriptions/{id}/jsm/clear",
            post(jsm::admin_clear),
        )
        .route("/healthz", get(health::live))
        .route("/readyz", get(health::ready));
    let app = if metrics_here {
        app.route("/metrics", get(metrics::serve))
    } else {
        app
    };
    with_edge(app, state)
}

/// `/metrics` alone, for `GFJ_METRICS_LISTEN`.
pub fn metrics_router(state: Arc<AppState>) -> Router {
    with_edge(Router::new().route("/metrics", get(metrics::serve)), state)
}

/// The layers every route sits behind: the edge's caps and headers, and a request id (the client's
/// `X-Request-Id` when it is a plain token, else a new one) on the request's log span and its answer.
fn with_edge(app: Router<Arc<AppState>>, state: Arc<AppState>) -> Router {
    use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
    use tower_http::trace::TraceLayer;
    app.layer(axum::middleware::from_fn_with_state(
        state.clone(),
        edge::guard_request,
    ))
    .layer(PropagateRequestIdLayer::x_request_id())
    .layer(
        TraceLayer::new_for_http()
            .make_span_with(edge::request_span)
            .on_failure(()),
    )
    .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
    .layer(axum::middleware::from_fn(edge::drop_foreign_request_id))
    .with_state(state)
}

/// `GET /static/page.js`: what the configuration page's and the admin page's scripts share.
async fn page_script() -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/javascript; charset=utf-8",
        )],
        include_str!("../assets/page.js"),
    )
        .into_response()
}
