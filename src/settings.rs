//! `GFJ_*` settings: from the environment, or from a TOML file given with `--config` (the environment
//! wins). Each is declared once, with its default, bounds and documentation, in
//! `gfj_core::settings::SETTINGS`; `docs/configuration.md` is made from it.

use std::collections::BTreeMap;

use gfj_core::settings::{SETTINGS, setting};
use gfj_core::url_pattern::{UrlAllowList, normalize_base_url};
use gfj_gitlab_client::oauth::OAuthApp;
use gfj_sync::gitlab_access::GitLabAccess;

/// Where GitLab sends a signed-in browser back to.
pub const GITLAB_OAUTH_CALLBACK: &str = "/gitlab/oauth/callback";

/// `GFJ_GITLAB_OAUTH_APPS`: comma-separated `<GitLab URL>=<application id>:<secret>`, each URL allow-listed.
fn parse_oauth_apps(
    value: &str,
    gitlab_urls: &UrlAllowList,
    base_url: &str,
) -> anyhow::Result<Vec<OAuthApp>> {
    value
        .split(',')
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(|entry| {
            let (url, creds) = entry.split_once('=').ok_or_else(|| {
                anyhow::anyhow!(
                    "GFJ_GITLAB_OAUTH_APPS: expected <GitLab URL>=<application id>:<secret>"
                )
            })?;
            let (client_id, client_secret) = creds.split_once(':').ok_or_else(|| {
                anyhow::anyhow!(
                    "GFJ_GITLAB_OAUTH_APPS: expected <application id>:<secret> after {url}="
                )
            })?;
            let url = gitlab_urls.allowed_origin(url).ok_or_else(|| {
                anyhow::anyhow!(
                    "GFJ_GITLAB_OAUTH_APPS: {} is not in GFJ_GITLAB_URLS",
                    url.trim()
                )
            })?;
            anyhow::ensure!(
                !client_id.trim().is_empty() && !client_secret.trim().is_empty(),
                "GFJ_GITLAB_OAUTH_APPS: empty application id or secret for {url}"
            );
            Ok(OAuthApp {
                gitlab_url: url,
                client_id: client_id.trim().to_owned(),
                client_secret: client_secret.trim().to_owned(),
                redirect_uri: format!("{base_url}{GITLAB_OAUTH_CALLBACK}"),
            })
        })
        .collect()
}

#[derive(Clone)]
pub struct Settings {
    pub listen: String,
    /// Where `/metrics` is served instead of `listen`, when set.
    pub metrics_listen: Option<String>,
    pub base_url: String,
    pub database_url: String,
    pub encryption_key: Option<String>,
    pub app_key: String,
    pub connect_keys_url: String,
    pub gitlab_urls: UrlAllowList,
    pub jira_urls: UrlAllowList,
    pub atlassian_api_url: String,
    pub admin_token: Option<String>,
    pub log_format: Option<String>,
    /// Jobs one process runs at once.
    pub worker_concurrency: usize,
    /// How long a claimed job stays with its worker before another may take it over.
    pub job_lease_secs: i64,
    /// On SIGTERM, how long running jobs may finish before they are handed back.
    pub job_drain_secs: i64,
    /// Requests in flight at once to one Jira site, from this process.
    pub jira_site_concurrency: usize,
    /// Requests per second to one Jira site, from this process; 0 for no limit but Jira's own 429s.
    pub jira_site_rate: u32,
    /// Builds, deployments or feature flags per request.
    pub jira_batch_size: usize,
    /// Largest webhook body accepted; larger ones get 413.
    pub webhook_max_bytes: usize,
    /// How often each subscription's hooks are checked (and, in project-hook mode, the group polled
    /// for new projects).
    pub hook_check_secs: i64,
    /// OAuth applications registered in GitLab instances, for signing in to GitLab.
    pub gitlab_oauth_apps: Vec<OAuthApp>,
    /// Whether a merge request also carries the issue keys of its source branch name.
    pub mr_keys_from_branch: bool,
    /// How long the audit trail of what was sent to Jira is kept.
    pub audit_days: i64,
    /// How often each subscription's projects are reconciled with GitLab.
    pub reconcile_secs: i64,
    /// How often deployment gates are looked after.
    pub gating_poll_secs: i64,
    /// How long a gated deployment waits for JSM.
    pub gating_timeout_secs: i64,
    /// What happens to a gate JSM found invalid or did not decide in time.
    pub gating_undecided: gfj_core::jsm::Undecided,
    /// How far back a backfill reads history; `None` for all of it.
    pub backfill_window_ms: Option<i64>,
    /// Backfill tasks (project × kind of history) running at once.
    pub backfill_tasks: usize,
    /// Caps and timeouts of the HTTP edge (`GFJ_HTTP_*`).
    pub http: gfj_server::edge::EdgeLimits,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("listen", &self.listen)
            .field("base_url", &self.base_url)
            .field("database_url", &redact_url(&self.database_url))
            .field("app_key", &self.app_key)
            .finish_non_exhaustive()
    }
}

/// Shortest `GFJ_ADMIN_TOKEN`: 32 random bytes in base64 (`openssl rand -base64 32`) are 44 characters.
pub const ADMIN_TOKEN_MIN_CHARS: usize = 43;

/// `serve` refuses an admin token that cannot hold 32 random bytes: too short, or made of too few
/// different characters to be random (`aaaa…`, `1234…`).
pub fn check_admin_token(token: &str) -> anyhow::Result<()> {
    let distinct = token
        .chars()
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    anyhow::ensure!(
        token.chars().count() >= ADMIN_TOKEN_MIN_CHARS && distinct >= 12,
        "GFJ_ADMIN_TOKEN must hold at least 32 random bytes (at least {ADMIN_TOKEN_MIN_CHARS} characters, \
         not a word or a pattern); make one with `openssl rand -base64 32`"
    );
    Ok(())
}

/// A database URL without its password, for logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            let user = creds.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..s + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// Every setting's name ([`gfj_core::settings::SETTINGS`], where each is declared).
pub fn names() -> impl Iterator<Item = &'static str> {
    SETTINGS.iter().map(|s| s.name)
}

/// Parses the settings file. A syntax error says where, never what: the line may hold a secret
/// (`admin_token = "…` with its closing quote missing), and errors end up in logs.
fn parse_toml(text: &str) -> Result<toml::Table, String> {
    toml::from_str(text).map_err(|e: toml::de::Error| {
        let at = e.span().map_or(0, |span| span.start).min(text.len());
        let before = &text.as_bytes()[..at];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let column = before.iter().rev().take_while(|&&b| b != b'\n').count() + 1;
        format!("TOML syntax error at line {line}, column {column} (the line is not shown: it may hold a secret)")
    })
}

fn scalar(v: &toml::Value) -> Option<String> {
    match v {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

impl Settings {
    /// Reads the environment, over the TOML file when one is given.
    pub fn load(config_file: Option<&std::path::Path>) -> anyhow::Result<Self> {
        let mut values: BTreeMap<String, String> = BTreeMap::new();
        if let Some(path) = config_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("config file {}: {e}", path.display()))?;
            let table = parse_toml(&text)
                .map_err(|e| anyhow::anyhow!("config file {}: {e}", path.display()))?;
            for (k, v) in table {
                let key = k.to_ascii_uppercase();
                let key = if key.starts_with("GFJ_") {
                    key
                } else {
                    format!("GFJ_{key}")
                };
                anyhow::ensure!(
                    names().any(|n| n == key),
                    "config file {}: unknown setting {k:?}",
                    path.display()
                );
                let v = match v {
                    toml::Value::Array(a) => a
                        .iter()
                        .map(scalar)
                        .collect::<Option<Vec<_>>>()
                        .map(|v| v.join(",")),
                    other => scalar(&other),
                };
                let v = v.ok_or_else(|| {
                    anyhow::anyhow!(
                        "config file {}: {k} must be a string, number, boolean or list of strings",
                        path.display()
                    )
                })?;
                values.insert(key, v);
            }
        }
        for name in names() {
            if let Ok(v) = std::env::var(name) {
                values.insert(name.to_owned(), v);
            }
        }
        Self::from_map(&values)
    }

    pub fn from_map(values: &BTreeMap<String, String>) -> anyhow::Result<Self> {
        // The value given, else the declared default ("" for a setting unset by default).
        let get = |k: &str| {
            values
                .get(k)
                .filter(|v| !v.trim().is_empty())
                .map(|v| v.trim().to_owned())
                .unwrap_or_else(|| setting(k).default.unwrap_or_default().to_owned())
        };
        let opt = |k: &str| {
            values
                .get(k)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let list = |k: &str| UrlAllowList::parse(&get(k)).map_err(|e| anyhow::anyhow!("{k}: {e}"));
        let base_url = normalize_base_url(&get("GFJ_BASE_URL"));
        anyhow::ensure!(
            base_url.starts_with("http://") || base_url.starts_with("https://"),
            "GFJ_BASE_URL must be an http(s) URL, got {base_url:?}"
        );
        let log_format = opt("GFJ_LOG_FORMAT");
        if let Some(f) = &log_format {
            anyhow::ensure!(
                f == "json" || f == "pretty",
                "GFJ_LOG_FORMAT must be json or pretty, got {f:?}"
            );
        }
        // A whole number within the declared bounds.
        let number = |k: &str| -> anyhow::Result<i64> {
            let (min, max) = setting(k).bounds.unwrap_or((i64::MIN, i64::MAX));
            let v = get(k);
            let n: i64 = v
                .parse()
                .map_err(|_| anyhow::anyhow!("{k} must be a whole number, got {v:?}"))?;
            anyhow::ensure!(
                (min..=max).contains(&n),
                "{k} must be between {min} and {max}, got {n}"
            );
            Ok(n)
        };
        let gitlab_urls = list("GFJ_GITLAB_URLS")?;
        let gitlab_oauth_apps =
            parse_oauth_apps(&get("GFJ_GITLAB_OAUTH_APPS"), &gitlab_urls, &base_url)?;
        let gating_undecided = match get("GFJ_GATING_UNDECIDED").as_str() {
            "reject" => gfj_core::jsm::Undecided::Reject,
            "leave" => gfj_core::jsm::Undecided::Leave,
            other => anyhow::bail!("GFJ_GATING_UNDECIDED must be reject or leave, got {other:?}"),
        };
        let mr_keys_from_branch = match get("GFJ_MR_KEYS_FROM_BRANCH").as_str() {
            "true" | "1" | "yes" => true,
            "false" | "0" | "no" => false,
            other => anyhow::bail!("GFJ_MR_KEYS_FROM_BRANCH must be true or false, got {other:?}"),
        };
        let backfill_window_ms = match get("GFJ_BACKFILL_DAYS").trim() {
            "all" => None,
            days => {
                let d: i64 = days.parse().map_err(|_| {
                    anyhow::anyhow!(
                        "GFJ_BACKFILL_DAYS must be a number of days or all, got {days:?}"
                    )
                })?;
                let (min, max) = setting("GFJ_BACKFILL_DAYS").bounds.unwrap_or((1, i64::MAX));
                anyhow::ensure!(
                    (min..=max).contains(&d),
                    "GFJ_BACKFILL_DAYS must be between {min} and {max}, or all, got {d}"
                );
                Some(d * 86_400_000)
            }
        };
        let secs = |k: &str| number(k).map(|n| std::time::Duration::from_secs(n as u64));
        let http = gfj_server::edge::EdgeLimits {
            max_connections: number("GFJ_HTTP_MAX_CONNECTIONS")? as usize,
            max_requests: number("GFJ_HTTP_MAX_REQUESTS")? as usize,
            header_timeout: secs("GFJ_HTTP_HEADER_TIMEOUT_SECS")?,
            request_timeout: secs("GFJ_HTTP_REQUEST_TIMEOUT_SECS")?,
            drain_timeout: secs("GFJ_HTTP_DRAIN_SECS")?,
        };
        Ok(Self {
            http,
            gitlab_oauth_apps,
            mr_keys_from_branch,
            backfill_window_ms,
            backfill_tasks: number("GFJ_BACKFILL_TASKS")? as usize,
            worker_concurrency: number("GFJ_WORKER_CONCURRENCY")? as usize,
            job_lease_secs: number("GFJ_JOB_LEASE_SECS")?,
            job_drain_secs: number("GFJ_JOB_DRAIN_SECS")?,
            jira_site_concurrency: number("GFJ_JIRA_SITE_CONCURRENCY")? as usize,
            jira_site_rate: number("GFJ_JIRA_SITE_RATE")? as u32,
            jira_batch_size: number("GFJ_JIRA_BATCH_SIZE")? as usize,
            webhook_max_bytes: number("GFJ_WEBHOOK_MAX_BYTES")? as usize,
            hook_check_secs: number("GFJ_HOOK_CHECK_SECS")?,
            audit_days: number("GFJ_AUDIT_DAYS")?,
            reconcile_secs: number("GFJ_RECONCILE_SECS")?,
            gating_poll_secs: number("GFJ_GATING_POLL_SECS")?,
            gating_timeout_secs: number("GFJ_GATING_TIMEOUT_SECS")?,
            gating_undecided,
            listen: get("GFJ_LISTEN"),
            metrics_listen: opt("GFJ_METRICS_LISTEN"),
            base_url,
            database_url: get("GFJ_DATABASE_URL"),
            encryption_key: opt("GFJ_ENCRYPTION_KEY"),
            app_key: get("GFJ_APP_KEY"),
            connect_keys_url: normalize_base_url(&get("GFJ_CONNECT_KEYS_URL")),
            gitlab_urls,
            // No default: only the operator's own sites, listed on purpose.
            jira_urls: list("GFJ_JIRA_URLS")?,
            atlassian_api_url: normalize_base_url(&get("GFJ_ATLASSIAN_API_URL")),
            admin_token: opt("GFJ_ADMIN_TOKEN"),
            log_format,
        })
    }

    /// How the service reaches GitLab: the shared client, the allow-list and the OAuth apps.
    pub fn gitlab_access(&self) -> GitLabAccess {
        GitLabAccess {
            http: gfj_http::client(),
            urls: self.gitlab_urls.clone(),
            oauth_apps: self.gitlab_oauth_apps.clone(),
        }
    }

    /// The Jira client: calls only sites in `GFJ_JIRA_URLS`, within the per-site caps.
    pub fn jira_client(&self) -> gfj_jira_client::JiraClient {
        gfj_jira_client::JiraClient::with_limits(
            gfj_http::client(),
            &self.app_key,
            &self.atlassian_api_url,
            self.jira_urls.clone(),
            gfj_jira_client::SiteLimits {
                concurrency: self.jira_site_concurrency,
                rate_per_sec: std::num::NonZeroU32::new(self.jira_site_rate),
            },
        )
    }

    pub async fn open_store(&self) -> anyhow::Result<gfj_store::Store> {
        gfj_store::Store::open(&self.database_url, self.encryption_key.as_deref())
            .await
            .map_err(|e| anyhow::anyhow!("database {}: {e}", redact_url(&self.database_url)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_syntax_errors_never_echo_the_line() {
        let text =
            "base_url = \"http://x\"\nadmin_token = \"kT9vQ2mXw7LrB4nYc8ZpHs3JdF6gA1eU5oR0iWq\n";
        let err = parse_toml(text).unwrap_err();
        assert!(!err.contains("kT9vQ2m"), "{err}");
        assert!(err.contains("line 2"), "{err}");
        assert!(parse_toml("base_url = \"http://x\"").is_ok());
    }

    #[test]
    fn admin_tokens_must_hold_32_random_bytes() {
        for weak in [
            "",
            "test-admin-token",
            "correct horse battery staple",
            &"a".repeat(64),
            &"0123456789".repeat(5),
        ] {
            let err = check_admin_token(weak).unwrap_err().to_string();
            assert!(err.contains("openssl rand -base64 32"), "{err}");
        }
        for strong in [
            "q3Vw1c0H5mJ8yJf2w9oXGk7b8f3Nw2pZl0cY4u6s1xA=",
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        ] {
            check_admin_token(strong).unwrap();
        }
    }

    /// `docs/configuration.md`'s settings table is the declaration's ([`gfj_core::settings::markdown_table`]).
    #[test]
    fn the_configuration_reference_lists_every_setting_as_declared() {
        let reference = include_str!("../docs/configuration.md");
        let table = gfj_core::settings::markdown_table();
        assert!(
            reference.contains(&table),
            "docs/configuration.md's settings table differs from gfj_core::settings::SETTINGS; replace it with:\n{table}"
        );
    }

    #[test]
    fn defaults_and_validation() {
        let s = Settings::from_map(&BTreeMap::new()).unwrap();
        assert_eq!(
            (
                s.listen.as_str(),
                s.base_url.as_str(),
                s.database_url.as_str()
            ),
            (
                "127.0.0.1:8080",
                "http://127.0.0.1:8080",
                "sqlite://gitlab-for-jira.db"
            )
        );
        // No Jira site is allowed until the operator lists theirs.
        assert!(s.jira_urls.is_empty());
        assert!(!s.jira_urls.allows("https://acme.atlassian.net"));
        assert!(s.gitlab_urls.allows("https://gitlab.com"));
        let bad = BTreeMap::from([("GFJ_JIRA_URLS".to_owned(), "acme".to_owned())]);
        assert!(Settings::from_map(&bad).is_err());
        let bad = BTreeMap::from([("GFJ_LOG_FORMAT".to_owned(), "xml".to_owned())]);
        assert!(Settings::from_map(&bad).is_err());
        assert_eq!(
            (
                s.worker_concurrency,
                s.job_lease_secs,
                s.jira_site_concurrency,
                s.jira_site_rate
            ),
            (16, 120, 8, 0)
        );
        for (k, v) in [
            ("GFJ_WORKER_CONCURRENCY", "0"),
            ("GFJ_JOB_LEASE_SECS", "soon"),
        ] {
            assert!(
                Settings::from_map(&BTreeMap::from([(k.to_owned(), v.to_owned())])).is_err(),
                "{k}={v}"
            );
        }
        let apps = BTreeMap::from([(
            "GFJ_GITLAB_OAUTH_APPS".to_owned(),
            "https://gitlab.com/=app-id:gloas-secret".to_owned(),
        )]);
        let s = Settings::from_map(&apps).unwrap();
        assert_eq!(
            (
                s.gitlab_oauth_apps[0].gitlab_url.as_str(),
                s.gitlab_oauth_apps[0].client_id.as_str(),
                s.gitlab_oauth_apps[0].redirect_uri.as_str()
            ),
            (
                "https://gitlab.com",
                "app-id",
                "http://127.0.0.1:8080/gitlab/oauth/callback"
            )
        );
        for bad in [
            "https://gitlab.com",
            "https://gitlab.com=id",
            "https://evil.example=a:b",
        ] {
            let m = BTreeMap::from([("GFJ_GITLAB_OAUTH_APPS".to_owned(), bad.to_owned())]);
            assert!(Settings::from_map(&m).is_err(), "{bad}");
        }
        assert_eq!(redact_url("postgres://u:pw@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact_url("sqlite://x.db"), "sqlite://x.db");
    }
}
