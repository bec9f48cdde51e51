//! Allow-lists of base URLs (`GFJ_JIRA_URLS`, `GFJ_GITLAB_URLS`): only hosts that match are ever called.

/// A parsed base URL: scheme, lower-case host, optional port. Paths other than `/` are refused, because
/// Jira Cloud sites and the GitLab instances we link are identified by origin.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Origin {
    scheme: String,
    host: String,
    port: Option<String>,
}

fn parse_origin(url: &str) -> Option<Origin> {
    let (scheme, rest) = url.trim().split_once("://")?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() || rest.contains(['/', '?', '#', '@']) {
        return None;
    }
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !h.contains(']') || h.ends_with(']') => (h, Some(p.to_owned())),
        _ => (rest, None),
    };
    if host.is_empty() || port.as_deref() == Some("") {
        return None;
    }
    Some(Origin {
        scheme: scheme.to_ascii_lowercase(),
        host: host.to_ascii_lowercase(),
        port,
    })
}

/// A comma-separated list of origin patterns; `*` stands for exactly one host label or for a port.
#[derive(Debug, Clone)]
pub struct UrlAllowList {
    patterns: Vec<Origin>,
}

/// A pattern in an allow-list setting could not be read.
#[derive(Debug, thiserror::Error)]
#[error("invalid URL pattern {0:?}: expected scheme://host[:port] with no path")]
pub struct BadPattern(pub String);

impl UrlAllowList {
    pub fn parse(list: &str) -> Result<Self, BadPattern> {
        let patterns = list
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| parse_origin(p).ok_or_else(|| BadPattern(p.to_owned())))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { patterns })
    }

    /// Whether `url` (a base URL with no path) is allowed.
    pub fn allows(&self, url: &str) -> bool {
        let Some(o) = parse_origin(url) else {
            return false;
        };
        self.patterns.iter().any(|p| origin_matches(p, &o))
    }

    /// The patterns as CSP source expressions (for `frame-ancestors`), space-separated. CSP wildcards
    /// only stand for leading labels, so a pattern with `*` in another place is left out.
    pub fn csp_sources(&self) -> String {
        self.patterns
            .iter()
            .filter(|p| !p.host.split('.').skip(1).any(|l| l == "*"))
            .map(|p| match &p.port {
                Some(port) => format!("{}://{}:{port}", p.scheme, p.host),
                None => format!("{}://{}", p.scheme, p.host),
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn origin_matches(p: &Origin, o: &Origin) -> bool {
    if p.scheme != o.scheme {
        return false;
    }
    let port_ok = match (&p.port, &o.port) {
        (Some(pp), Some(op)) => pp == "*" || pp == op,
        (None, None) => true,
        _ => false,
    };
    let pl: Vec<&str> = p.host.split('.').collect();
    let ol: Vec<&str> = o.host.split('.').collect();
    port_ok
        && pl.len() == ol.len()
        && pl
            .iter()
            .zip(&ol)
            .all(|(p, o)| !o.is_empty() && (*p == "*" || p == o))
}

/// A base URL without its trailing slash, the form we store and compare.
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
            ("https://a.b.atlassian.net", false),
            ("https://atlassian.net", false),
            ("https://acme.atlassian.net.evil.com", false),
            ("http://acme.atlassian.net", false),
            ("https://acme.atlassian.net:8443", false),
            ("https://acme.atlassian.net/jira", false),
            ("https://user@acme.atlassian.net", false),
            ("http://127.0.0.1:4321", true),
            ("http://127.0.0.1", false),
            ("http://127.0.0.2:4321", false),
            ("not a url", false),
        ];
        for (url, want) in cases {
            assert_eq!(list.allows(url), want, "{url}");
        }
        assert!(UrlAllowList::parse("gitlab.com").is_err());
        assert!(UrlAllowList::parse("https://gitlab.com/path").is_err());
    }
}
