//! Atlassian Connect JWTs: HS256 tokens we sign for Jira, HS256 tokens Jira signs for us, and the RS256
//! signed-install tokens of the lifecycle callbacks. The `qsh` claim binds each token to one request.

use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::qsh;

/// Jira refuses app tokens that live longer than this; we stay well inside it.
pub const MAX_LIFETIME_SECS: i64 = 180;
/// Tokens larger than this are refused before any parsing.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Claims {
    pub iss: String,
    pub iat: i64,
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qsh: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<serde_json::Value>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum JwtError {
    #[error("token is larger than {MAX_TOKEN_BYTES} bytes")]
    TooLarge,
    #[error("token is malformed: {0}")]
    Malformed(String),
    #[error("token algorithm {0} is not accepted here")]
    WrongAlgorithm(String),
    #[error("token key id is missing or malformed")]
    BadKeyId,
    #[error("token signature or claims are invalid: {0}")]
    Invalid(String),
    #[error("token qsh does not match the request")]
    QshMismatch,
    #[error("token iss does not match")]
    IssuerMismatch,
}

/// The request a token must be bound to.
pub struct BoundRequest<'a> {
    pub method: &'a str,
    /// Raw path as received (not decoded).
    pub path: &'a str,
    /// Raw query string without `?`.
    pub query: &'a str,
    /// Path part of the receiver's base URL, removed before hashing.
    pub base_path: &'a str,
}

impl BoundRequest<'_> {
    pub fn qsh(&self) -> String {
        qsh::qsh(&qsh::canonical_request(
            self.method,
            self.path,
            self.base_path,
            self.query,
        ))
    }
}

/// Signs an app → Jira request: `iss` = app key, lifetime `ttl_secs` (≤ [`MAX_LIFETIME_SECS`]).
pub fn sign_hs256(
    app_key: &str,
    secret: &[u8],
    request: &BoundRequest<'_>,
    now_secs: i64,
    ttl_secs: i64,
) -> String {
    let claims = Claims {
        iss: app_key.to_owned(),
        iat: now_secs,
        exp: now_secs + ttl_secs.clamp(1, MAX_LIFETIME_SECS),
        qsh: Some(request.qsh()),
        sub: None,
        aud: None,
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .expect("HS256 signing with an in-memory key cannot fail")
}

/// How long the context tokens this app gives its own pages live, like those of Jira's
/// `AP.context.getToken()`.
pub const CONTEXT_TOKEN_LIFETIME_SECS: i64 = 15 * 60;

/// A context token, as Jira issues them to an app's page (`AP.context.getToken()`): `iss` = the site's
/// clientKey, `sub` = the user's Atlassian account id, `qsh` = `context-qsh`, signed with the site's
/// shared secret. The configuration page gets one from the server when it is rendered, so that it works
/// without Atlassian's script; the API accepts both kinds alike.
pub fn sign_context_token(
    client_key: &str,
    account_id: &str,
    secret: &[u8],
    now_secs: i64,
    ttl_secs: i64,
) -> String {
    let claims = Claims {
        iss: client_key.to_owned(),
        iat: now_secs,
        exp: now_secs + ttl_secs,
        qsh: Some(qsh::CONTEXT_QSH.to_owned()),
        sub: Some(account_id.to_owned()),
        aud: None,
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .expect("HS256 signing with an in-memory key cannot fail")
}

/// Header and claims, read without checking anything: only to find which key verifies the token.
pub fn peek(token: &str) -> Result<(Header, Claims), JwtError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(JwtError::TooLarge);
    }
    let header =
        jsonwebtoken::decode_header(token).map_err(|e| JwtError::Malformed(e.to_string()))?;
    let payload = token
        .split('.')
        .nth(1)
        .ok_or_else(|| JwtError::Malformed("no payload".into()))?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|e| JwtError::Malformed(e.to_string()))?;
    let claims = serde_json::from_slice(&bytes).map_err(|e| JwtError::Malformed(e.to_string()))?;
    Ok((header, claims))
}

/// What a verified token must also satisfy.
pub enum QshRule<'a> {
    /// Bound to exactly this request.
    Request(BoundRequest<'a>),
    /// A context token (`qsh` = `context-qsh`), not bound to a URL.
    Context,
    /// Test vectors only: the claim must be this value.
    #[doc(hidden)]
    Exact(&'a str),
}

fn check_qsh(claims: &Claims, rule: &QshRule<'_>) -> Result<(), JwtError> {
    let want = match rule {
        QshRule::Request(r) => r.qsh(),
        QshRule::Context => qsh::CONTEXT_QSH.to_owned(),
        QshRule::Exact(s) => (*s).to_owned(),
    };
    match &claims.qsh {
        Some(q) if q == &want => Ok(()),
        _ => Err(JwtError::QshMismatch),
    }
}

fn validation(alg: Algorithm, check_exp: bool) -> Validation {
    let mut v = Validation::new(alg);
    v.validate_exp = check_exp;
    v.validate_aud = false;
    v.leeway = 30;
    v.set_required_spec_claims(if check_exp {
        &["exp", "iss"][..]
    } else {
        &["iss"][..]
    });
    v
}

/// Verifies an HS256 token signed with a shared secret (Jira → app, or app → Jira in the simulator).
pub fn verify_hs256(
    token: &str,
    secret: &[u8],
    rule: &QshRule<'_>,
    check_exp: bool,
) -> Result<Claims, JwtError> {
    let (header, _) = peek(token)?;
    if header.alg != Algorithm::HS256 {
        return Err(JwtError::WrongAlgorithm(format!("{:?}", header.alg)));
    }
    let data = jsonwebtoken::decode::<Claims>(
        token,
        &DecodingKey::from_secret(secret),
        &validation(Algorithm::HS256, check_exp),
    )
    .map_err(|e| JwtError::Invalid(e.to_string()))?;
    check_qsh(&data.claims, rule)?;
    Ok(data.claims)
}

/// Whether a signed-install `kid` is safe to put in a key-server URL.
pub fn valid_key_id(kid: &str) -> bool {
    !kid.is_empty()
        && kid.len() <= 256
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'/'))
}

/// Verifies a signed-install RS256 token with the PEM public key of its `kid`: signature, `exp`,
/// `aud` = our base URL (trailing slash ignored), `iss` = the body's `clientKey`, and `qsh`.
pub fn verify_rs256_install(
    token: &str,
    public_key_pem: &[u8],
    audience: &str,
    client_key: &str,
    request: BoundRequest<'_>,
) -> Result<Claims, JwtError> {
    let (header, _) = peek(token)?;
    if header.alg != Algorithm::RS256 {
        return Err(JwtError::WrongAlgorithm(format!("{:?}", header.alg)));
    }
    let key = DecodingKey::from_rsa_pem(public_key_pem)
        .map_err(|e| JwtError::Invalid(format!("public key: {e}")))?;
    let mut v = validation(Algorithm::RS256, true);
    v.validate_aud = false; // compared below, ignoring a trailing slash
    let data = jsonwebtoken::decode::<Claims>(token, &key, &v)
        .map_err(|e| JwtError::Invalid(e.to_string()))?;
    let want_aud = audience.trim_end_matches('/');
    let aud_ok = match &data.claims.aud {
        Some(serde_json::Value::String(a)) => a.trim_end_matches('/') == want_aud,
        Some(serde_json::Value::Array(list)) => list.iter().any(|a| {
            a.as_str()
                .is_some_and(|a| a.trim_end_matches('/') == want_aud)
        }),
        _ => false,
    };
    if !aud_ok {
        return Err(JwtError::Invalid(
            "aud does not match this app's base URL".into(),
        ));
    }
    if data.claims.iss != client_key {
        return Err(JwtError::IssuerMismatch);
    }
    check_qsh(&data.claims, &QshRule::Request(request))?;
    Ok(data.claims)
}

/// Signs a signed-install RS256 token (used by the Jira simulator, which plays Atlassian's side).
pub fn sign_rs256_install(
    private_key_pem: &[u8],
    kid: &str,
    client_key: &str,
    audience: &str,
    request: &BoundRequest<'_>,
    now_secs: i64,
) -> Result<String, JwtError> {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.to_owned());
    let claims = Claims {
        iss: client_key.to_owned(),
        iat: now_secs,
        exp: now_secs + MAX_LIFETIME_SECS,
        qsh: Some(request.qsh()),
        sub: None,
        aud: Some(serde_json::Value::String(audience.to_owned())),
    };
    let key =
        EncodingKey::from_rsa_pem(private_key_pem).map_err(|e| JwtError::Invalid(e.to_string()))?;
    jsonwebtoken::encode(&header, &claims, &key).map_err(|e| JwtError::Invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(path: &str) -> BoundRequest<'_> {
        BoundRequest {
            method: "POST",
            path,
            query: "",
            base_path: "",
        }
    }

    #[test]
    fn context_tokens_verify_only_as_context_tokens() {
        let now = 1_700_000_000;
        let t = sign_context_token("site-1", "user-7", b"secret", now, 900);
        let c = verify_hs256(&t, b"secret", &QshRule::Context, false).unwrap();
        assert_eq!(
            (c.iss.as_str(), c.sub.as_deref(), c.exp - c.iat),
            ("site-1", Some("user-7"), 900)
        );
        assert_eq!(
            verify_hs256(&t, b"secret", &QshRule::Request(req("/jira/config")), false),
            Err(JwtError::QshMismatch),
            "not accepted where a request-bound token is required"
        );
        assert!(verify_hs256(&t, b"other", &QshRule::Context, false).is_err());
    }

    #[test]
    fn hs256_round_trip_binds_request_and_secret() {
        let now = 1_700_000_000;
        let t = sign_hs256("app", b"secret", &req("/rest/devinfo/0.10/bulk"), now, 60);
        let (_, c) = peek(&t).unwrap();
        assert_eq!((c.iss.as_str(), c.exp - c.iat), ("app", 60));
        let r = QshRule::Request(req("/rest/devinfo/0.10/bulk"));
        assert!(verify_hs256(&t, b"secret", &r, false).is_ok());
        assert!(matches!(
            verify_hs256(&t, b"other", &r, false),
            Err(JwtError::Invalid(_))
        ));
        let other = QshRule::Request(req("/rest/builds/0.1/bulk"));
        assert_eq!(
            verify_hs256(&t, b"secret", &other, false),
            Err(JwtError::QshMismatch)
        );
        assert_eq!(
            verify_hs256(&t, b"secret", &QshRule::Context, false),
            Err(JwtError::QshMismatch)
        );
        // expired long ago
        assert!(matches!(
            verify_hs256(&t, b"secret", &r, true),
            Err(JwtError::Invalid(_))
        ));
        // lifetime is capped
        let long = sign_hs256("app", b"s", &req("/"), now, 10_000);
        let (_, c) = peek(&long).unwrap();
        assert_eq!(c.exp - c.iat, MAX_LIFETIME_SECS);
    }

    #[test]
    fn oversized_and_garbage_tokens_are_refused() {
        assert_eq!(
            peek(&"a".repeat(MAX_TOKEN_BYTES + 1)).unwrap_err(),
            JwtError::TooLarge
        );
        assert!(matches!(peek("not.a.jwt"), Err(JwtError::Malformed(_))));
    }

    #[test]
    fn key_ids() {
        for (kid, ok) in [
            ("abc-123_x/y", true),
            ("", false),
            ("../etc", false),
            ("a?b", false),
            ("a b", false),
        ] {
            assert_eq!(valid_key_id(kid), ok, "{kid}");
        }
    }
}
