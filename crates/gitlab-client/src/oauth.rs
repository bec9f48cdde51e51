//! Signing in to GitLab with OAuth 2 (authorization code with PKCE), and keeping the tokens fresh.
//!
//! GitLab (Doorkeeper) access tokens live two hours; a refresh returns a new access *and* refresh token
//! and revokes the old pair, so callers must persist every [`OAuthTokens`] this module returns before
//! using it. Written against GitLab's documented endpoints with the shared reqwest client rather than
//! the `oauth2` crate, whose current release pins an older reqwest and would add a second HTTP stack.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::GitLabError;

/// Scopes the service needs: hooks, approvals and job play need `api`.
pub const SCOPES: &str = "api";

/// Refresh this long before expiry, so that no call races the token's end.
pub const REFRESH_MARGIN_MS: i64 = 5 * 60 * 1000;

/// An OAuth application registered in one GitLab instance.
#[derive(Clone)]
pub struct OAuthApp {
    pub gitlab_url: String,
    pub client_id: String,
    pub client_secret: String,
    pub redirect_uri: String,
}

impl std::fmt::Debug for OAuthApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthApp")
            .field("gitlab_url", &self.gitlab_url)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// A token pair, as stored (encrypted) by the caller.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OAuthTokens {
    pub access_token: String,
    pub refresh_token: String,
    /// Unix milliseconds.
    pub expires_at_ms: i64,
}

impl std::fmt::Debug for OAuthTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthTokens")
            .field("expires_at_ms", &self.expires_at_ms)
            .finish_non_exhaustive()
    }
}

impl OAuthTokens {
    /// Whether the access token should be refreshed before use.
    pub fn needs_refresh(&self, now_ms: i64) -> bool {
        self.expires_at_ms - now_ms <= REFRESH_MARGIN_MS
    }
}

/// PKCE S256: `base64url(SHA-256(verifier))` without padding (RFC 7636).
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// A PKCE verifier (43 characters of the unreserved set) from 32 random bytes supplied by the caller.
pub fn pkce_verifier(random: &[u8; 32]) -> String {
    URL_SAFE_NO_PAD.encode(random)
}

/// Where to send the user's browser to sign in.
pub fn authorize_url(app: &OAuthApp, state: &str, verifier: &str) -> String {
    let mut url = url::Url::parse(&format!(
        "{}/oauth/authorize",
        app.gitlab_url.trim_end_matches('/')
    ))
    .expect("an allow-listed GitLab URL is a valid base");
    url.query_pairs_mut()
        .append_pair("client_id", &app.client_id)
        .append_pair("redirect_uri", &app.redirect_uri)
        .append_pair("response_type", "code")
        .append_pair("state", state)
        .append_pair("scope", SCOPES)
        .append_pair("code_challenge", &pkce_challenge(verifier))
        .append_pair("code_challenge_method", "S256");
    url.into()
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    refresh_token: String,
    /// Seconds; GitLab's default lifetime when absent or unreadable.
    #[serde(default, deserialize_with = "gfj_core::server_time::lenient_seconds")]
    expires_in: Option<i64>,
}

/// GitLab's access-token lifetime.
const DEFAULT_EXPIRES_IN_SECS: i64 = 7200;

/// Posts a form to one of the OAuth application's GitLab endpoints (`/oauth/token`, `/oauth/revoke`).
async fn post_form(
    http: &reqwest::Client,
    app: &OAuthApp,
    path: &str,
    fields: &[(&str, &str)],
) -> Result<reqwest::Response, GitLabError> {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish();
    http.post(format!("{}{path}", app.gitlab_url.trim_end_matches('/')))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .map_err(|e| GitLabError::Transient(e.without_url().to_string()))
}

async fn token_request(
    http: &reqwest::Client,
    app: &OAuthApp,
    form: &[(&str, &str)],
    now_ms: i64,
) -> Result<OAuthTokens, GitLabError> {
    let mut fields = vec![
        ("client_id", app.client_id.as_str()),
        ("client_secret", app.client_secret.as_str()),
        ("redirect_uri", app.redirect_uri.as_str()),
    ];
    fields.extend_from_slice(form);
    let resp = post_form(http, app, "/oauth/token", &fields).await?;
    let status = resp.status().as_u16();
    if !resp.status().is_success() {
        let body: serde_json::Value = resp.json().await.unwrap_or_default();
        let reason = body
            .get("error_description")
            .or(body.get("error"))
            .and_then(|v| v.as_str())
            .unwrap_or("no reason given")
            .to_owned();
        return Err(match status {
            400 | 401 => GitLabError::OAuthRejected(reason),
            429 | 500..=599 => GitLabError::Transient(format!("{status} {reason}")),
            _ => GitLabError::Other {
                status,
                message: reason,
            },
        });
    }
    let t: TokenResponse = resp.json().await.map_err(|e| {
        GitLabError::Transient(format!("unreadable token response: {}", e.without_url()))
    })?;
    Ok(OAuthTokens {
        access_token: t.access_token,
        refresh_token: t.refresh_token,
        expires_at_ms: gfj_core::server_time::token_expiry_ms(
            now_ms,
            t.expires_in.unwrap_or(DEFAULT_EXPIRES_IN_SECS),
        ),
    })
}

/// Trades the code from the redirect (and the verifier kept since `authorize_url`) for tokens.
pub async fn exchange_code(
    http: &reqwest::Client,
    app: &OAuthApp,
    code: &str,
    verifier: &str,
    now_ms: i64,
) -> Result<OAuthTokens, GitLabError> {
    token_request(
        http,
        app,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("code_verifier", verifier),
        ],
        now_ms,
    )
    .await
}

/// A new pair for the refresh token; the old pair stops working the moment GitLab answers.
pub async fn refresh(
    http: &reqwest::Client,
    app: &OAuthApp,
    tokens: &OAuthTokens,
    now_ms: i64,
) -> Result<OAuthTokens, GitLabError> {
    token_request(
        http,
        app,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", tokens.refresh_token.as_str()),
        ],
        now_ms,
    )
    .await
}

/// Revokes a token at GitLab (RFC 7009, `POST /oauth/revoke`, authenticated as the application).
/// GitLab revokes the whole pair whichever of its tokens is given, and answers 200 even for a token it
/// does not know, so a revocation can be repeated.
pub async fn revoke(
    http: &reqwest::Client,
    app: &OAuthApp,
    token: &str,
) -> Result<(), GitLabError> {
    let fields = [
        ("token", token),
        ("client_id", app.client_id.as_str()),
        ("client_secret", app.client_secret.as_str()),
    ];
    let resp = post_form(http, app, "/oauth/revoke", &fields).await?;
    let status = resp.status().as_u16();
    match status {
        200..=299 => Ok(()),
        429 | 500..=599 => Err(GitLabError::Transient(format!("revoke answered {status}"))),
        _ => Err(GitLabError::Other {
            status,
            message: "GitLab refused to revoke the token".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_matches_gitlabs_documented_example() {
        assert_eq!(
            pkce_challenge("ks02i3jdikdo2k0dkfodf3m39rjfjsdk0wk349rj3jrhf"),
            "2i0WFA-0AerkjQm4X4oDEhqA17QIAKNjXpagHBXmO_U"
        );
        let v = pkce_verifier(&[255; 32]);
        assert_eq!(v.len(), 43);
        assert!(
            v.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c))
        );
    }

    #[test]
    fn authorize_url_carries_pkce_and_state() {
        let app = OAuthApp {
            gitlab_url: "https://gitlab.example/".into(),
            client_id: "cid".into(),
            client_secret: "secret".into(),
            redirect_uri: "https://gfj.example/gitlab/oauth/callback".into(),
        };
        let url = url::Url::parse(&authorize_url(&app, "st4te", "verifier")).unwrap();
        assert_eq!(url.path(), "/oauth/authorize");
        let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
        assert_eq!(q["client_id"], "cid");
        assert_eq!(q["state"], "st4te");
        assert_eq!(q["code_challenge"], pkce_challenge("verifier"));
        assert_eq!(q["code_challenge_method"], "S256");
        assert_eq!(q["redirect_uri"], app.redirect_uri);
        assert!(!format!("{app:?}").contains("secret"));
        let t = OAuthTokens {
            access_token: "a".into(),
            refresh_token: "r".into(),
            expires_at_ms: 10 * 60 * 1000,
        };
        assert!(!t.needs_refresh(0));
        assert!(t.needs_refresh(5 * 60 * 1000));
        assert!(!format!("{t:?}").contains("\"a\""));
    }
}
