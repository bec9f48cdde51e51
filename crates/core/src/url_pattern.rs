//! Allow-lists of base URLs (`GFJ_JIRA_URLS`, `GFJ_GITLAB_URLS`): only hosts that match are ever called.
//!
//! A URL is judged by the origin the HTTP client will actually connect to, never by its spelling: it is
//! parsed with `url::Url` (the WHATWG rules reqwest follows), so `https://2852039166\.atlassian.net`, which
//! a string match would take for a host under `atlassian.net`, is seen for what it is (a backslash, then
//! the IPv4 address 169.254.169.254) and refused. What is stored and compared is the canonical origin.

use url::{Host, Url};

/// A URL that cannot name a Jira site or GitLab instance.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadUrl {
    #[error("{0:?} is not a URL")]
    Unparsable(String),
    #[error("{0:?}: only http and https are allowed")]
    Scheme(String),
    #[error("{0:?}: a base URL names a host only (no user, password, path, query or fragment)")]
    NotAnOrigin(String),
}

/// The canonical origin (`scheme://host[:port]`, lower case, default port left out, IDNA and percent
/// escapes of the host resolved) of a base URL, which must name nothing but an origin: userinfo,
/// backslashes, paths other than `/`, queries and fragments are refused.
pub fn canonical_origin(url: &str) -> Result<String, BadUrl> {
    let url_text = url.trim();
    // Browsers and `url` read `\` as `/` in http(s) URLs; a base URL has no reason to hold one.
    if url_text.contains('\\')
        || url_text
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(BadUrl::NotAnOrigin(url_text.to_owned()));
    }
    let parsed = Url::parse(url_text).map_err(|_| BadUrl::Unparsable(url_text.to_owned()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(BadUrl::Scheme(url_text.to_owned()));
    }
    if !parsed.username().is_empty()
        || parsed.password().is_some()
        || !matches!(parsed.path(), "" | "/")
        || parsed.query().is_some()
        || parsed.fragment().is_some()
        || url_text.ends_with('?')
        || url_text.ends_with('#')
    {
        return Err(BadUrl::NotAnOrigin(url_text.to_owned()));
    }
    let host = parsed
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| BadUrl::NotAnOrigin(url_text.to_owned()))?;
    Ok(match parsed.port() {
        Some(port) => format!("{}://{host}:{port}", parsed.scheme()),
        None => format!("{}://{host}", parsed.scheme()),
    })
}

/// One pattern of an allow-list: a scheme, host labels where `*` stands for exactly one label, a port.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    scheme: String,
    labels: Vec<String>,
    port: PortPattern,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PortPattern {
    /// The scheme's default port.
    Default,
    /// Any explicitly given port (`host:*`).
    Any,
    Exact(u16),
}

/// A comma-separated list of origin patterns; `*` stands for exactly one host label or for a port.
#[derive(Debug, Clone, Default)]
pub struct UrlAllowList {
    patterns: Vec<Pattern>,
}

/// A pattern in an allow-list setting could not be read.
#[derive(Debug, thiserror::Error)]
#[error("invalid URL pattern {0:?}: expected scheme://host[:port] with no path")]
pub struct BadPattern(pub String);

/// Patterns are written by the operator; they are read by hand because `*` is not part of URL syntax.
fn parse_pattern(text: &str) -> Option<Pattern> {
    let (scheme, rest) = text.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, "*")) => (host, PortPattern::Any),
        Some((host, port)) => {
            let port: u16 = port.parse().ok()?;
            let default = if scheme == "https" { 443 } else { 80 };
            (
                host,
                if port == default {
                    PortPattern::Default
                } else {
                    PortPattern::Exact(port)
                },
            )
        }
        None => (rest, PortPattern::Default),
    };
    let labels: Vec<String> = host.split('.').map(str::to_ascii_lowercase).collect();
    let label_ok = |l: &String| {
        l == "*"
            || (!l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
    };
    if labels.is_empty() || !labels.iter().all(label_ok) {
        return None;
    }
    Some(Pattern {
        scheme,
        labels,
        port,
    })
}

impl UrlAllowList {
    pub fn parse(list: &str) -> Result<Self, BadPattern> {
        let patterns = list
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| parse_pattern(p).ok_or_else(|| BadPattern(p.to_owned())))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { patterns })
    }

    /// Whether the list names no pattern at all (nothing is allowed).
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether `url` (a base URL with no path) is allowed.
    pub fn allows(&self, url: &str) -> bool {
        self.allowed_origin(url).is_some()
    }

    /// The canonical origin of `url` when the list allows it: the form to store and to call.
    pub fn allowed_origin(&self, url: &str) -> Option<String> {
        let origin = canonical_origin(url).ok()?;
        let parsed = Url::parse(&origin).ok()?;
        let host = parsed.host()?;
        let allowed = self
            .patterns
            .iter()
            .any(|p| pattern_matches(p, parsed.scheme(), &host, parsed.port()));
        allowed.then_some(origin)
    }

    /// The patterns as CSP source expressions (for `frame-ancestors`), space-separated. CSP wildcards
    /// only stand for leading labels, so a pattern with `*` in another place is left out.
    pub fn csp_sources(&self) -> String {
        self.patterns
            .iter()
            .filter(|p| !p.labels.iter().skip(1).any(|l| l == "*"))
            .map(|p| {
                let host = p.labels.join(".");
                match p.port {
                    PortPattern::Default => format!("{}://{host}", p.scheme),
                    PortPattern::Any => format!("{}://{host}:*", p.scheme),
                    PortPattern::Exact(port) => format!("{}://{host}:{port}", p.scheme),
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn pattern_matches(p: &Pattern, scheme: &str, host: &Host<&str>, port: Option<u16>) -> bool {
    let port_ok = match (p.port, port) {
        (PortPattern::Default, None) => true,
        (PortPattern::Any, Some(_)) => true,
        (PortPattern::Exact(want), Some(got)) => want == got,
        _ => false,
    };
    if p.scheme != scheme || !port_ok {
        return false;
    }
    match host {
        // A wildcard never stands for part of an address: `*.0.0.1` must not admit 10.0.0.1.
        Host::Ipv4(ip) => p.labels.join(".") == ip.to_string(),
        Host::Ipv6(_) => false,
        Host::Domain(domain) => {
            let labels: Vec<&str> = domain.split('.').collect();
            labels.len() == p.labels.len()
                && p.labels
                    .iter()
                    .zip(&labels)
                    .all(|(p, o)| !o.is_empty() && (p == "*" || p == o))
        }
    }
}

/// A base URL without its trailing slash: for this service's own URLs (`GFJ_BASE_URL`, API endpoints),
/// which may carry a path. Jira sites and GitLab instances use [`canonical_origin`].
pub fn normalize_base_url(url: &str) -> String {
    url.trim().trim_end_matches('/').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_become_csp_sources_where_csp_can_say_them() {
        let list = UrlAllowList::parse(
            "https://*.atlassian.net, http://127.0.0.1:*, https://jira.*.example",
        )
        .unwrap();
        assert_eq!(
            list.csp_sources(),
            "https://*.atlassian.net http://127.0.0.1:*"
        );
    }

    #[test]
    fn table() {
        let list = UrlAllowList::parse("https://*.atlassian.net, http://127.0.0.1:*").unwrap();
        let cases = [
            ("https://acme.atlassian.net", true),
            ("https://acme.atlassian.net/", true),
            ("https://ACME.atlassian.net", true),
            ("https://acme.atlassian.net:443", true),
            ("https://a.b.atlassian.net", false),
            ("https://atlassian.net", false),
            ("https://acme.atlassian.net.evil.com", false),
            ("https://acme.atlassian.net.", false),
            ("http://acme.atlassian.net", false),
            ("https://acme.atlassian.net:8443", false),
            ("https://acme.atlassian.net/jira", false),
            ("https://user@acme.atlassian.net", false),
            ("https://:pw@acme.atlassian.net", false),
            ("https://acme.atlassian.net?x=1", false),
            ("https://acme.atlassian.net?", false),
            ("https://acme.atlassian.net#frag", false),
            ("http://127.0.0.1:4321", true),
            ("http://127.0.0.1", false),
            ("http://127.0.0.2:4321", false),
            ("not a url", false),
            // What reqwest would connect to decides, not the spelling.
            ("https://2852039166\\.atlassian.net", false),
            ("https://2852039166/.atlassian.net", false),
            ("https://169.254.169.254\\@acme.atlassian.net", false),
            ("https://acme.atlassian.net\\@169.254.169.254", false),
            ("https://acme.atlassian.net@169.254.169.254", false),
            ("https://acme%2Eatlassian.net", true), // the host is acme.atlassian.net
            ("https://evil.com%2F.atlassian.net", false),
            ("https://acme.atlassian.net\t", true), // trimmed
            ("https://ac me.atlassian.net", false),
            ("http://0x7f.0.0.1:4321", true), // the host is 127.0.0.1
            ("http://2130706433:4321", true), // the host is 127.0.0.1
            ("ftp://acme.atlassian.net", false),
            ("javascript://acme.atlassian.net", false),
        ];
        for (url, want) in cases {
            assert_eq!(list.allows(url), want, "{url}");
        }
        assert!(UrlAllowList::parse("gitlab.com").is_err());
        assert!(UrlAllowList::parse("https://gitlab.com/path").is_err());
        assert!(UrlAllowList::parse("https://git lab.com").is_err());
        assert!(UrlAllowList::parse("https://user@gitlab.com").is_err());
        assert!(UrlAllowList::parse("").unwrap().is_empty());
        assert!(
            !UrlAllowList::parse("")
                .unwrap()
                .allows("https://acme.atlassian.net")
        );
    }

    #[test]
    fn wildcards_never_admit_addresses() {
        let list = UrlAllowList::parse("http://*.0.0.1:*, https://*.*.*.*").unwrap();
        for url in [
            "http://10.0.0.1:80",
            "http://127.0.0.1:8080",
            "https://169.254.169.254",
            "https://[::1]",
        ] {
            assert!(!list.allows(url), "{url}");
        }
        assert!(list.allows("https://a.b.c.d"));
    }

    #[test]
    fn canonical_origins() {
        let cases = [
            ("https://ACME.Atlassian.net/", "https://acme.atlassian.net"),
            (
                "https://acme.atlassian.net:443",
                "https://acme.atlassian.net",
            ),
            ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
            ("https://bücher.example", "https://xn--bcher-kva.example"),
            ("https://2852039166", "https://169.254.169.254"),
            ("https://[::1]:8443", "https://[::1]:8443"),
        ];
        for (url, want) in cases {
            assert_eq!(canonical_origin(url).as_deref(), Ok(want), "{url}");
        }
        for bad in [
            "https://x\\y",
            "https://u:p@x.example",
            "https://x.example/path",
            "https://x.example/?q",
            "https://x.example/#f",
            "file:///etc/passwd",
            "https://",
        ] {
            assert!(canonical_origin(bad).is_err(), "{bad}");
        }
        let list = UrlAllowList::parse("https://*.atlassian.net").unwrap();
        assert_eq!(
            list.allowed_origin("https://ACME.atlassian.net/")
                .as_deref(),
            Some("https://acme.atlassian.net")
        );
    }
}
