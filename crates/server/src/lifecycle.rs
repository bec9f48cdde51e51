//! Atlassian Connect lifecycle callbacks, accepted only with a valid signed-install (RS256) token.
//!
//! Order of checks: size and shape of the token, `kid` syntax, the public key of that `kid` (fetched from
//! `GFJ_CONNECT_KEYS_URL` once and cached: a new key always comes with a new `kid`), signature and `exp`,
//! `aud` = our base URL, `iss` = the body's `clientKey`, `qsh` of this request, and finally that the body
//! names our app key and an allow-listed Jira URL. Any failure answers 401 and stores nothing.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use gfj_core::connect_jwt::{self, BoundRequest};
use gfj_core::connect_lifecycle::LifecyclePayload;
use gfj_store::installations::Installation;
use gfj_store::uninstall::{UninstallRefusal, UninstallToken};

use crate::AppState;

pub async fn installed(
    State(state): State<Arc<AppState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    if state.config.jira_urls.is_empty() {
        return refuse(
            "installed",
            "GFJ_JIRA_URLS is not set, so no Jira site may install: set it to your site(s), \
             e.g. GFJ_JIRA_URLS=https://your-site.atlassian.net, and install again",
        );
    }
    let payload = match verify(&state, &uri, &headers, &body).await {
        Ok(p) => p,
        Err(why) => return refuse("installed", &why),
    };
    let Some(secret) = payload.shared_secret.filter(|s| !s.is_empty()) else {
        return refuse("installed", "no sharedSecret in the install payload");
    };
    // The canonical origin is what every later call connects to.
    let Some(base_url) = state.config.jira_urls.allowed_origin(&payload.base_url) else {
        return refuse("installed", "Jira URL is not in GFJ_JIRA_URLS");
    };
    let install = Installation {
        client_key: payload.client_key,
        base_url,
        display_url: payload
            .display_url
            .and_then(|u| gfj_core::url_pattern::canonical_origin(&u).ok()),
        shared_secret: secret,
        oauth: None,
    };
    match state
        .store
        .upsert_installation(&install, state.clock.now_ms())
        .await
    {
        Ok(()) => {
            tracing::info!(site = %install.base_url, client_key = %install.client_key, "Jira site installed the app");
            StatusCode::NO_CONTENT
        }
        Err(e) => {
            tracing::error!(error = %e, "could not store installation");
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }
}

/// A signed uninstall: accepted even for a site the operator has since removed from `GFJ_JIRA_URLS` (the
/// signature proves it is the site leaving), once per token, and never for a token issued before the
/// site's current install. The site's rows go now; its GitLab hooks and sign-ins go by queued jobs.
pub async fn uninstalled(
    State(state): State<Arc<AppState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let signed = match verify_signed(&state, &uri, &headers, &body).await {
        Ok(s) => s,
        Err(why) => return refuse("uninstalled", &why),
    };
    let client_key = &signed.payload.client_key;
    let now = state.clock.now_ms();
    let token = UninstallToken {
        token: &signed.token,
        issued_at_s: signed.claims.iat,
        expires_at_s: signed.claims.exp,
    };
    match state.store.uninstall_site(client_key, &token, now).await {
        Ok(Ok(existed)) => {
            tracing::info!(client_key = %client_key, existed, "Jira site uninstalled the app; its GitLab hooks and sign-ins are being removed");
            StatusCode::NO_CONTENT
        }
        Ok(Err(UninstallRefusal::Replayed)) => {
            refuse("uninstalled", "this uninstall token was already used")
        }
        Ok(Err(UninstallRefusal::BeforeCurrentInstall)) => refuse(
            "uninstalled",
            "the uninstall token was issued before the site's current install",
        ),
        Err(e) => {
            tracing::error!(error = %e, "could not delete installation");
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }
}

fn refuse(event: &str, why: &str) -> StatusCode {
    tracing::warn!(event, reason = why, "lifecycle callback refused");
    StatusCode::UNAUTHORIZED
}

async fn verify(
    state: &AppState,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<LifecyclePayload, String> {
    let payload = verify_signed(state, uri, headers, body).await?.payload;
    if !state.config.jira_urls.allows(&payload.base_url) {
        return Err(format!(
            "Jira URL {} is not in GFJ_JIRA_URLS",
            payload.base_url
        ));
    }
    Ok(payload)
}

/// A lifecycle callback whose signed-install token verified, with the token and its claims.
struct Signed {
    payload: LifecyclePayload,
    claims: connect_jwt::Claims,
    token: String,
}

/// Everything but the allow-list: the signature, the claims, and that the body names our app.
async fn verify_signed(
    state: &AppState,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Signed, String> {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("JWT "))
        .ok_or("no Authorization: JWT header")?
        .trim();
    let (header, _) = connect_jwt::peek(token).map_err(|e| e.to_string())?;
    if header.alg != jsonwebtoken::Algorithm::RS256 {
        return Err(format!(
            "algorithm {:?} is not a signed install",
            header.alg
        ));
    }
    let kid = header
        .kid
        .filter(|k| connect_jwt::valid_key_id(k))
        .ok_or("missing or malformed kid")?;
    let payload: LifecyclePayload =
        serde_json::from_slice(body).map_err(|e| format!("unreadable payload: {e}"))?;
    let pem = install_key(state, &kid).await?;
    let base_path = gfj_core::qsh::split_url(&state.config.base_url)
        .0
        .trim_end_matches('/')
        .to_owned();
    let request = BoundRequest {
        method: "POST",
        path: uri.path(),
        query: uri.query().unwrap_or(""),
        base_path: &base_path,
    };
    let claims = connect_jwt::verify_rs256_install(
        token,
        &pem,
        &state.config.base_url,
        &payload.client_key,
        request,
    )
    .map_err(|e| e.to_string())?;
    if payload.key != state.config.app_key {
        return Err(format!(
            "payload is for app {:?}, not {:?}",
            payload.key, state.config.app_key
        ));
    }
    Ok(Signed {
        payload,
        claims,
        token: token.to_owned(),
    })
}

/// A signed-install key is trusted this long before it is fetched again (Atlassian rotates keys by
/// issuing new `kid`s, and may withdraw one).
const KEY_TTL_MS: i64 = 24 * 3600 * 1000;
/// A `kid` the key server does not know is not asked about again for this long, so tokens with random
/// `kid`s cannot make the service hammer Atlassian's key server.
const UNKNOWN_KEY_TTL_MS: i64 = 10 * 60 * 1000;
/// Cached entries at most; past this the expired ones are dropped, then the cache starts afresh.
const KEY_CACHE_MAX: usize = 10_000;

/// A key server answer, cached: the PEM, or `None` for a `kid` it does not know.
#[derive(Clone)]
pub(crate) struct CachedKey {
    pem: Option<Arc<Vec<u8>>>,
    until_ms: i64,
}

/// How often the lifecycle routes and the key server may be used by one process.
pub(crate) struct LifecycleLimits {
    /// Lifecycle callbacks per second (with a burst), before any verification work.
    requests: governor::DefaultDirectRateLimiter,
    /// Fetches from the key server per minute, whatever the `kid`s.
    key_fetches: governor::DefaultDirectRateLimiter,
}

impl Default for LifecycleLimits {
    fn default() -> Self {
        let n = |v: u32| std::num::NonZeroU32::new(v).expect("non-zero");
        Self {
            requests: governor::RateLimiter::direct(
                governor::Quota::per_second(n(10)).allow_burst(n(20)),
            ),
            key_fetches: governor::RateLimiter::direct(
                governor::Quota::per_minute(n(30)).allow_burst(n(10)),
            ),
        }
    }
}

/// In front of the lifecycle routes: 429 once a process has had more callbacks than Jira ever sends.
pub(crate) async fn throttle(
    State(state): State<Arc<AppState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if state.lifecycle_limits.requests.check().is_err() {
        tracing::warn!(path = %request.uri().path(), "lifecycle callback throttled");
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(axum::http::header::RETRY_AFTER, "1")],
        )
            .into_response();
    }
    next.run(request).await
}

/// The PEM public key of `kid`, from the cache or the key server.
async fn install_key(state: &AppState, kid: &str) -> Result<Arc<Vec<u8>>, String> {
    let now = state.clock.now_ms();
    let cached = state
        .install_keys
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(kid)
        .filter(|c| c.until_ms > now)
        .cloned();
    if let Some(c) = cached {
        return c
            .pem
            .ok_or_else(|| format!("key server does not know kid {kid} (cached)"));
    }
    if state.lifecycle_limits.key_fetches.check().is_err() {
        return Err("key server fetch budget used up; try again in a minute".into());
    }
    let url = format!(
        "{}/{kid}",
        state.config.connect_keys_url.trim_end_matches('/')
    );
    let resp = state
        .http
        .get(&url)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| format!("key server unreachable: {}", e.without_url()))?;
    let remember = |pem: Option<Arc<Vec<u8>>>, ttl_ms: i64| {
        let mut cache = state
            .install_keys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if cache.len() >= KEY_CACHE_MAX {
            cache.retain(|_, c| c.until_ms > now);
            if cache.len() >= KEY_CACHE_MAX {
                cache.clear();
            }
        }
        cache.insert(
            kid.to_owned(),
            CachedKey {
                pem,
                until_ms: now.saturating_add(ttl_ms),
            },
        );
    };
    if resp.status() == reqwest::StatusCode::NOT_FOUND {
        remember(None, UNKNOWN_KEY_TTL_MS);
        return Err(format!("key server does not know kid {kid}"));
    }
    if !resp.status().is_success() {
        return Err(format!(
            "key server answered {} for kid {kid}",
            resp.status()
        ));
    }
    let pem = resp.bytes().await.map_err(|e| format!("key server: {e}"))?;
    if pem.len() > 16 * 1024 || !pem.starts_with(b"-----BEGIN") {
        return Err("key server returned something that is not a PEM key".into());
    }
    let pem = Arc::new(pem.to_vec());
    remember(Some(pem.clone()), KEY_TTL_MS);
    Ok(pem)
}
