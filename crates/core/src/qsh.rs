//! Atlassian Connect "query string hash" (`qsh`): the SHA-256 of a canonical form of a request.
//!
//! Written by hand because no maintained crate implements it. The algorithm (method, path relative to the
//! app's base path, sorted RFC 3986-encoded query without `jwt`) is checked against Atlassian's 79
//! official vectors in `tests/jwt_vectors.rs`.

use sha2::{Digest, Sha256};

/// The literal `qsh` of context JWTs (`apiMigrations.context-qsh`); never a valid hash of a URL.
pub const CONTEXT_QSH: &str = "context-qsh";

/// `METHOD&PATH&QUERY` for a request. `path` is the raw request path (not decoded); `base_path` is the
/// path part of the receiving app's base URL, which is removed from the front of `path`; `query` is the raw
/// query string without `?`.
pub fn canonical_request(method: &str, path: &str, base_path: &str, query: &str) -> String {
    format!(
        "{}&{}&{}",
        method.to_ascii_uppercase(),
        canonical_path(path, base_path),
        canonical_query(query)
    )
}

/// The canonical request of an absolute or origin-relative URL such as `https://h/p?q` or `/p?q`.
pub fn canonical_request_for_url(method: &str, url: &str, base_path: &str) -> String {
    let (path, query) = split_url(url);
    canonical_request(method, path, base_path, query)
}

/// Lower-case hex SHA-256 of the canonical request.
pub fn qsh(canonical: &str) -> String {
    hex(&Sha256::digest(canonical.as_bytes()))
}

/// Splits a URL into its raw path and raw query, without decoding either (the `url` crate would
/// re-encode some path characters, which would change the hash).
pub fn split_url(url: &str) -> (&str, &str) {
    let without_fragment = url.split('#').next().unwrap_or("");
    let after_scheme = match without_fragment.find("://") {
        Some(i) => {
            let rest = &without_fragment[i + 3..];
            match rest.find(['/', '?']) {
                Some(j) => &rest[j..],
                None => "",
            }
        }
        None => without_fragment,
    };
    match after_scheme.split_once('?') {
        Some((p, q)) => (p, q),
        None => (after_scheme, ""),
    }
}

fn canonical_path(path: &str, base_path: &str) -> String {
    let base = base_path.trim_end_matches('/');
    let mut p = if !base.is_empty() && path.starts_with(base) {
        &path[base.len()..]
    } else {
        path
    }
    .to_owned();
    if !p.starts_with('/') {
        p.insert(0, '/');
    }
    if p.len() > 1 && p.ends_with('/') {
        p.pop();
    }
    p.replace('&', "%26")
}

fn canonical_query(query: &str) -> String {
    let mut params: Vec<(String, Vec<String>)> = Vec::new();
    for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
        if name == "jwt" {
            continue;
        }
        match params.iter_mut().find(|(n, _)| *n == name) {
            Some((_, values)) => values.push(value.into_owned()),
            None => params.push((name.into_owned(), vec![value.into_owned()])),
        }
    }
    let mut encoded: Vec<(String, String)> = params
        .into_iter()
        .map(|(name, mut values)| {
            values.sort();
            let joined = values
                .iter()
                .map(|v| encode(v))
                .collect::<Vec<_>>()
                .join(",");
            (encode(&name), joined)
        })
        .collect();
    encoded.sort();
    encoded
        .iter()
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// RFC 3986 percent-encoding: everything but `A-Z a-z 0-9 - . _ ~`, with upper-case hex.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Lower-case hex of bytes. (Every webhook delivery hashes its token: one allocation, not one per byte.)
pub fn hex(bytes: &[u8]) -> String {
    ::hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let cases = [
            (
                "POST",
                "https://x.atlassian.net/rest/devinfo/0.10/bulk",
                "",
                "POST&/rest/devinfo/0.10/bulk&",
            ),
            (
                "get",
                "http://localhost:2990/path/to/service?zee_last=param&repeated=parameter 1&first=param&repeated=parameter 2",
                "",
                "GET&/path/to/service&first=param&repeated=parameter%201,parameter%202&zee_last=param",
            ),
            (
                "POST",
                "https://g.example/-/jira_connect/events/installed",
                "/-/jira_connect",
                "POST&/events/installed&",
            ),
            ("GET", "https://example.com", "", "GET&/&"),
            ("GET", "/a/?b=1&jwt=x", "", "GET&/a&b=1"),
        ];
        for (method, url, base, want) in cases {
            assert_eq!(canonical_request_for_url(method, url, base), want, "{url}");
        }
        assert_eq!(
            qsh("foo"),
            "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"
        );
        assert_eq!(
            qsh(&canonical_request(
                "POST",
                "/rest/devinfo/0.10/bulk",
                "",
                ""
            )),
            "8cc25e28719a5c3212595a135795bfe0a0e54b0395b1291f91d8b8c47373672c"
        );
    }
}
