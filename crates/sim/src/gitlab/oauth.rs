//! GitLab as an OAuth 2 provider (Doorkeeper): authorization code with PKCE (S256), refresh-token
//! rotation, token expiry on the simulator clock, token info and revocation, and the API scope check.
//!
//! The signed-in browser user is whoever's personal access token sits in the `_gitlab_session` cookie, a
//! test convenience that stands in for GitLab's login; consent is given at once, as for a trusted app.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use serde_json::{Value, json};

use super::{GitLabSim, Shared};

/// Doorkeeper's default, which GitLab keeps.
const DEFAULT_LIFETIME_SECS: i64 = 7200;
const CODE_LIFETIME: time::Duration = time::Duration::minutes(10);
const SCOPES: &[&str] = &[
    "api",
    "read_api",
    "read_user",
    "read_repository",
    "write_repository",
    "openid",
    "profile",
    "email",
];
const INVALID_GRANT: &str = "The provided authorization grant is invalid, expired, revoked, does not match the redirection URI used in the authorization request, or was issued to another client.";
const EXPIRED: &str = "Token is expired. You can either do re-authorization or token refresh.";
const REVOKED: &str = "Token was revoked. You have to re-authorize from the user.";

struct App {
    client_id: String,
    secret: String,
    redirect_uri: String,
}

struct Code {
    client_id: String,
    user_id: i64,
    redirect_uri: String,
    challenge: Option<String>,
    scopes: String,
    created: time::OffsetDateTime,
}

struct Access {
    user_id: i64,
    client_id: String,
    scopes: String,
    created: time::OffsetDateTime,
    expires_in: i64,
    revoked: bool,
}

struct Refresh {
    access_token: String,
    user_id: i64,
    client_id: String,
    scopes: String,
    revoked: bool,
}

#[derive(Default)]
pub(super) struct OAuth {
    apps: Vec<App>,
    codes: HashMap<String, Code>,
    access: HashMap<String, Access>,
    refresh: HashMap<String, Refresh>,
    /// `None` means Doorkeeper's default of two hours.
    lifetime: Option<i64>,
    grants: Vec<String>,
}

impl OAuth {
    /// The user an OAuth access token authenticates, or the 401 GitLab gives for it.
    pub(super) fn resolve(&self, token: &str, now: time::OffsetDateTime) -> Result<i64, Response> {
        let Some(a) = self.access.get(token) else {
            return Err(super::err(StatusCode::UNAUTHORIZED, "401 Unauthorized"));
        };
        if a.revoked {
            return Err(invalid_token(REVOKED));
        }
        if now >= a.created + time::Duration::seconds(a.expires_in) {
            return Err(invalid_token(EXPIRED));
        }
        Ok(a.user_id)
    }

    fn issue(
        &mut self,
        user_id: i64,
        client_id: &str,
        scopes: &str,
        now: time::OffsetDateTime,
    ) -> Value {
        let access_token = crate::random_hex(32);
        let refresh_token = crate::random_hex(32);
        let expires_in = self.lifetime.unwrap_or(DEFAULT_LIFETIME_SECS);
        self.access.insert(
            access_token.clone(),
            Access {
                user_id,
                client_id: client_id.into(),
                scopes: scopes.into(),
                created: now,
                expires_in,
                revoked: false,
            },
        );
        self.refresh.insert(
            refresh_token.clone(),
            Refresh {
                access_token: access_token.clone(),
                user_id,
                client_id: client_id.into(),
                scopes: scopes.into(),
                revoked: false,
            },
        );
        json!({
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": expires_in,
            "refresh_token": refresh_token,
            "scope": scopes,
            "created_at": now.unix_timestamp(),
        })
    }
}

/// Refresh answers held back after GitLab has rotated the pair ([`GitLabSim::hold_next_refreshes`]): a
/// client whose answer is slow while another presents the refresh token it just used.
pub(super) struct RefreshHold {
    remaining: std::sync::Mutex<usize>,
    held: tokio::sync::watch::Sender<usize>,
    released: tokio::sync::watch::Sender<u64>,
}

impl Default for RefreshHold {
    fn default() -> Self {
        Self {
            remaining: Default::default(),
            held: tokio::sync::watch::channel(0).0,
            released: tokio::sync::watch::channel(0).0,
        }
    }
}

impl RefreshHold {
    /// Waits for a release if this answer is one of those to hold.
    async fn hold_if_asked(&self) {
        let mut released = self.released.subscribe();
        {
            let mut remaining = self.remaining.lock().unwrap();
            if *remaining == 0 {
                return;
            }
            *remaining -= 1;
        }
        self.held.send_modify(|n| *n += 1);
        let _ = released.changed().await;
    }
}

impl GitLabSim {
    /// The next `n` successful refreshes rotate the pair at once but answer only after
    /// [`GitLabSim::release_refreshes`].
    pub fn hold_next_refreshes(&self, n: usize) {
        *self.shared.refresh_hold.remaining.lock().unwrap() = n;
    }

    /// Waits until at least `n` refresh answers are held.
    pub async fn wait_until_refreshes_held(&self, n: usize) {
        let mut held = self.shared.refresh_hold.held.subscribe();
        let _ = held.wait_for(|h| *h >= n).await;
    }

    /// Sends every held refresh answer.
    pub fn release_refreshes(&self) {
        self.shared.refresh_hold.released.send_modify(|g| *g += 1);
    }

    /// Registers a confidential OAuth application; returns its `(client_id, secret)`.
    pub fn add_oauth_application(&self, redirect_uri: &str) -> (String, String) {
        let client_id = crate::random_hex(32);
        // GitLab 17.x prefixes application secrets with `gloas-`.
        let secret = format!("gloas-{}", crate::random_hex(32));
        self.shared.oauth.lock().unwrap().apps.push(App {
            client_id: client_id.clone(),
            secret: secret.clone(),
            redirect_uri: redirect_uri.into(),
        });
        (client_id, secret)
    }

    /// Lifetime of access tokens issued from now on (GitLab's default is 7200 s).
    pub fn set_oauth_token_lifetime(&self, secs: i64) {
        self.shared.oauth.lock().unwrap().lifetime = Some(secs);
    }

    /// The `grant_type` of every successful `POST /oauth/token`, oldest first.
    pub fn oauth_grants(&self) -> Vec<String> {
        self.shared.oauth.lock().unwrap().grants.clone()
    }
}

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/oauth/authorize", get(authorize))
        .route("/oauth/token", post(token))
        .route("/oauth/token/info", get(token_info))
        .route("/oauth/revoke", post(revoke))
}

/// `code_challenge = base64url_nopad(SHA-256(code_verifier))` (RFC 7636, S256).
pub(crate) fn s256_challenge(verifier: &str) -> String {
    use sha2::Digest;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.as_bytes()))
}

fn valid_verifier(v: &str) -> bool {
    (43..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

fn invalid_token(description: &str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(
            header::WWW_AUTHENTICATE,
            format!(
                "Bearer realm=\"Protected by OAuth 2.0\", error=\"invalid_token\", error_description=\"{description}\""
            ),
        )],
        axum::Json(json!({ "error": "invalid_token", "error_description": description })),
    )
        .into_response()
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(json!({ "error": error, "error_description": description })),
    )
        .into_response()
}

fn error_page(message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        format!("<html><body><h1>An error has occurred</h1><p>{message}</p></body></html>"),
    )
        .into_response()
}

fn redirect(location: &str) -> Response {
    (StatusCode::FOUND, [(header::LOCATION, location.to_owned())]).into_response()
}

fn redirect_with(uri: &str, params: &[(&str, &str)]) -> Response {
    let mut url = match url::Url::parse(uri) {
        Ok(u) => u,
        Err(_) => return error_page("The redirect URI included is not valid."),
    };
    {
        let mut q = url.query_pairs_mut();
        for (k, v) in params {
            q.append_pair(k, v);
        }
    }
    redirect(url.as_str())
}

fn session_user(s: &Shared, headers: &HeaderMap) -> Option<i64> {
    let cookies = headers.get(header::COOKIE)?.to_str().ok()?;
    let token = cookies
        .split(';')
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == "_gitlab_session")?
        .1;
    let inner = s.inner.lock().unwrap();
    inner.users.iter().find(|u| u.token == token).map(|u| u.id)
}

async fn authorize(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Some(user_id) = session_user(&s, &headers) else {
        return redirect(&format!("{}/users/sign_in", s.base()));
    };
    let get = |k: &str| q.get(k).map(String::as_str).unwrap_or("");
    // Until client and redirect URI are known good, errors stay on GitLab's page: redirecting to an
    // unverified URI would make GitLab an open redirector.
    let (client_id, redirect_uri) = (get("client_id"), get("redirect_uri"));
    {
        let o = s.oauth.lock().unwrap();
        let Some(app) = o.apps.iter().find(|a| a.client_id == client_id) else {
            return error_page(
                "Client authentication failed due to unknown client, no client authentication included, or unsupported authentication method.",
            );
        };
        if app.redirect_uri != redirect_uri {
            return error_page("The redirect URI included is not valid.");
        }
    }
    let state = q.get("state").map(String::as_str);
    let fail = |error: &str, description: &str| {
        let mut p = vec![("error", error), ("error_description", description)];
        if let Some(st) = state {
            p.push(("state", st));
        }
        redirect_with(redirect_uri, &p)
    };
    if get("response_type") != "code" {
        return fail(
            "unsupported_response_type",
            "The authorization server does not support this response type.",
        );
    }
    let scopes = q
        .get("scope")
        .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "api".into());
    if !scopes.split(' ').all(|sc| SCOPES.contains(&sc)) {
        return fail(
            "invalid_scope",
            "The requested scope is invalid, unknown, or malformed.",
        );
    }
    let challenge = q.get("code_challenge").filter(|c| !c.is_empty()).cloned();
    if challenge.is_some() && get("code_challenge_method") != "S256" {
        return fail("invalid_request", "The code_challenge_method must be S256.");
    }
    let code = crate::random_hex(32);
    s.oauth.lock().unwrap().codes.insert(
        code.clone(),
        Code {
            client_id: client_id.into(),
            user_id,
            redirect_uri: redirect_uri.into(),
            challenge,
            scopes,
            created: s.now(),
        },
    );
    let mut p = vec![("code", code.as_str())];
    if let Some(st) = state {
        p.push(("state", st));
    }
    redirect_with(redirect_uri, &p)
}

/// Doorkeeper reads parameters from a form or a JSON body.
fn body_params(headers: &HeaderMap, body: &[u8]) -> HashMap<String, String> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if json {
        serde_json::from_slice::<serde_json::Map<String, Value>>(body)
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| match v {
                Value::String(s) => (k, s),
                other => (k, other.to_string()),
            })
            .collect()
    } else {
        url::form_urlencoded::parse(body).into_owned().collect()
    }
}

/// Client credentials from the body or from HTTP Basic, checked against the registered apps.
fn authenticate_client(
    s: &Shared,
    headers: &HeaderMap,
    p: &HashMap<String, String>,
) -> Result<String, Response> {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|v| base64::engine::general_purpose::STANDARD.decode(v).ok())
        .and_then(|v| String::from_utf8(v).ok())
        .and_then(|v| v.split_once(':').map(|(a, b)| (a.to_owned(), b.to_owned())));
    let (id, secret) = basic.unwrap_or_else(|| {
        (
            p.get("client_id").cloned().unwrap_or_default(),
            p.get("client_secret").cloned().unwrap_or_default(),
        )
    });
    let o = s.oauth.lock().unwrap();
    o.apps
        .iter()
        .find(|a| a.client_id == id && a.secret == secret)
        .map(|a| a.client_id.clone())
        .ok_or_else(|| {
            oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "Client authentication failed due to unknown client, no client authentication included, or unsupported authentication method.",
            )
        })
}

fn missing(name: &str) -> Response {
    oauth_error(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        &format!("Missing required parameter: {name}."),
    )
}

async fn token(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Response> {
    let p = body_params(&headers, &body);
    let param = |k: &str| p.get(k).filter(|v| !v.is_empty());
    let grant_type = param("grant_type")
        .ok_or_else(|| missing("grant_type"))?
        .clone();
    let now = s.now();
    let issued = match grant_type.as_str() {
        "authorization_code" => {
            let client_id = authenticate_client(&s, &headers, &p)?;
            let code = param("code").ok_or_else(|| missing("code"))?;
            let redirect_uri = param("redirect_uri").ok_or_else(|| missing("redirect_uri"))?;
            let mut o = s.oauth.lock().unwrap();
            let grant = o.codes.get(code).ok_or_else(invalid_grant)?;
            if grant.client_id != client_id
                || &grant.redirect_uri != redirect_uri
                || now >= grant.created + CODE_LIFETIME
            {
                return Err(invalid_grant());
            }
            if let Some(challenge) = &grant.challenge {
                let verifier = param("code_verifier").ok_or_else(|| missing("code_verifier"))?;
                if !valid_verifier(verifier) || &s256_challenge(verifier) != challenge {
                    return Err(invalid_grant());
                }
            }
            // Single use: only a successful exchange consumes the code, as in Doorkeeper.
            let grant = o.codes.remove(code).expect("checked above");
            o.issue(grant.user_id, &client_id, &grant.scopes, now)
        }
        "refresh_token" => {
            let client_id = authenticate_client(&s, &headers, &p)?;
            let refresh = param("refresh_token").ok_or_else(|| missing("refresh_token"))?;
            let mut o = s.oauth.lock().unwrap();
            let old = o
                .refresh
                .get_mut(refresh)
                .filter(|r| !r.revoked && r.client_id == client_id)
                .ok_or_else(invalid_grant)?;
            // Rotation: the presented refresh token and the access token it came with both die now.
            old.revoked = true;
            let (user_id, scopes, old_access) =
                (old.user_id, old.scopes.clone(), old.access_token.clone());
            if let Some(a) = o.access.get_mut(&old_access) {
                a.revoked = true;
            }
            o.issue(user_id, &client_id, &scopes, now)
        }
        _ => {
            return Err(oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "The authorization grant type is not supported by the authorization server.",
            ));
        }
    };
    let refreshed = grant_type == "refresh_token";
    s.oauth.lock().unwrap().grants.push(grant_type);
    if refreshed {
        s.refresh_hold.hold_if_asked().await;
    }
    Ok((
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::PRAGMA, "no-cache"),
        ],
        axum::Json(issued),
    )
        .into_response())
}

fn invalid_grant() -> Response {
    oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", INVALID_GRANT)
}

async fn token_info(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let token = super::request_token(&headers)
        .map(str::to_owned)
        .or_else(|| q.get("access_token").cloned())
        .unwrap_or_default();
    let now = s.now();
    let o = s.oauth.lock().unwrap();
    let Some(a) = o.access.get(&token) else {
        return invalid_token("The access token is invalid");
    };
    if a.revoked {
        return invalid_token(REVOKED);
    }
    let left = (a.created + time::Duration::seconds(a.expires_in) - now).whole_seconds();
    if left <= 0 {
        return invalid_token(EXPIRED);
    }
    let scopes: Vec<&str> = a.scopes.split(' ').collect();
    axum::Json(json!({
        "resource_owner_id": a.user_id,
        "scope": scopes,
        "scopes": scopes,
        "expires_in": left,
        "expires_in_seconds": left,
        "application": { "uid": a.client_id },
        "created_at": a.created.unix_timestamp(),
    }))
    .into_response()
}

/// RFC 7009: always 200 `{}`, whether or not the token existed.
async fn revoke(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Response> {
    let p = body_params(&headers, &body);
    let client_id = authenticate_client(&s, &headers, &p)?;
    let token = p.get("token").ok_or_else(|| missing("token"))?;
    let mut o = s.oauth.lock().unwrap();
    let access = if let Some(r) = o
        .refresh
        .get_mut(token)
        .filter(|r| r.client_id == client_id)
    {
        r.revoked = true;
        Some(r.access_token.clone())
    } else {
        Some(token.clone())
    };
    if let Some(a) = access
        .and_then(|t| o.access.get_mut(&t))
        .filter(|a| a.client_id == client_id)
    {
        a.revoked = true;
    }
    Ok(axum::Json(json!({})).into_response())
}

/// GitLab's scope rules for OAuth tokens on `/api/v4`: `api` may do anything, `read_api` may only read,
/// `read_user` may only read the user endpoints. Personal access tokens are not scoped here.
pub(super) fn check_scope(
    s: &Shared,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
) -> Option<Response> {
    let token = super::request_token(headers)?;
    let scopes = {
        let o = s.oauth.lock().unwrap();
        let a = o.access.get(token)?;
        a.scopes.clone()
    };
    let read = method == Method::GET || method == Method::HEAD;
    let user_path = path == "/api/v4/user"
        || path.starts_with("/api/v4/user/")
        || path.starts_with("/api/v4/users");
    let allowed = scopes.split(' ').any(|sc| match sc {
        "api" => true,
        "read_api" => read,
        "read_user" => read && user_path,
        _ => false,
    });
    (!allowed).then(|| {
        (
            StatusCode::FORBIDDEN,
            axum::Json(json!({
                "error": "insufficient_scope",
                "error_description": "The request requires higher privileges than provided by the access token.",
                "scope": if read { "api read_api" } else { "api" },
            })),
        )
            .into_response()
    })
}
