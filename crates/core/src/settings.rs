//! Every `GFJ_*` setting, declared once: name, default, bounds and what the configuration reference says
//! of it. The binary parses them from this table (`src/settings.rs`), the `Default` impls of the crates
//! that take them read their defaults from it ([`default_number`]), and `docs/configuration.md` is this
//! table ([`markdown_table`]; a test fails when the two differ).

/// One setting.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    pub name: &'static str,
    /// The default as an operator would write it; `None` when unset by default.
    pub default: Option<&'static str>,
    /// For whole numbers, the smallest and largest value accepted.
    pub bounds: Option<(i64, i64)>,
    /// How the reference shows the default, where it says more than the value.
    pub shown_default: Option<&'static str>,
    /// What the reference says of it (Markdown, one line).
    pub doc: &'static str,
}

impl Setting {
    /// The reference's "default" cell.
    fn default_cell(&self) -> String {
        match (self.shown_default, self.default) {
            (Some(shown), _) => shown.to_owned(),
            (None, Some(value)) => format!("`{value}`"),
            (None, None) => "—".to_owned(),
        }
    }
}

#[rustfmt::skip]
pub const SETTINGS: &[Setting] = &[
    Setting { name: "GFJ_LISTEN", default: Some("127.0.0.1:8080"), bounds: None, shown_default: None, doc: "bind address" },
    Setting { name: "GFJ_METRICS_LISTEN", default: None, bounds: None, shown_default: None, doc: "when set, `/metrics` (Prometheus text) is served on this address instead of `GFJ_LISTEN`, so that it need not be reachable from outside" },
    Setting { name: "GFJ_BASE_URL", default: Some("http://127.0.0.1:8080"), bounds: None, shown_default: None, doc: "public URL of this service: descriptor `baseUrl`, audience of install tokens, webhook URL registered in GitLab (`<GFJ_BASE_URL>/gitlab/webhook`)" },
    Setting { name: "GFJ_DATABASE_URL", default: Some("sqlite://gitlab-for-jira.db"), bounds: None, shown_default: None, doc: "`sqlite://PATH` (created if missing; WAL; fsync on every commit) or `postgres://...`. SQLite serves one process; use PostgreSQL for several replicas" },
    Setting { name: "GFJ_ENCRYPTION_KEY", default: None, bounds: None, shown_default: None, doc: "base64 of 32 bytes, the AES-256-GCM key for secrets at rest (Jira shared secrets, GitLab tokens). When unset, SQLite uses `<database file>.key`, generated on first start with mode 0600; PostgreSQL requires it. Keep it: without it the stored secrets cannot be read" },
    Setting { name: "GFJ_APP_KEY", default: Some("gitlab-for-jira"), bounds: None, shown_default: None, doc: "Atlassian Connect app key (`iss` of every token sent to Jira)" },
    Setting { name: "GFJ_CONNECT_KEYS_URL", default: Some("https://connect-install-keys.atlassian.com"), bounds: None, shown_default: None, doc: "where signed-install public keys are fetched (`<url>/<kid>`): a key is cached for a day, a `kid` the server does not know for ten minutes, and one process fetches at most 30 keys a minute, so tokens with random `kid`s cannot make it hammer the key server. The lifecycle routes take at most 10 callbacks a second (burst 20) per process; more get 429" },
    Setting { name: "GFJ_GITLAB_URLS", default: Some("https://gitlab.com"), bounds: None, shown_default: None, doc: "comma-separated GitLab base URLs that may be linked; no other GitLab is ever called (matched and stored by canonical origin, like `GFJ_JIRA_URLS`)" },
    Setting { name: "GFJ_JIRA_URLS", default: None, bounds: None, shown_default: Some("— (none)"), doc: "comma-separated Jira base URL patterns (`https://acme.atlassian.net`, or `https://*.atlassian.net` for any site); `*` matches one host label or a port. Until it is set, Connect installs are refused (401) and the log names this setting; `sites add-oauth` needs the site listed too. Every call to Jira (live events, backfill, reconciliation, cleanup, the administrator check) checks its site again, so removing a site here stops all traffic to it. A URL is judged by the origin the HTTP client connects to (parsed as a browser would; user info, backslashes, paths, queries and fragments are refused), and sites are stored as that canonical origin" },
    Setting { name: "GFJ_ATLASSIAN_API_URL", default: Some("https://api.atlassian.com"), bounds: None, shown_default: None, doc: "OAuth-credentials mode: token endpoint `<url>/oauth/token` and APIs `<url>/jira/<api>/0.1/cloud/<cloudId>/…`; tokens are cached until a minute before they expire and fetched again once on a 401" },
    Setting { name: "GFJ_ADMIN_TOKEN", default: None, bounds: None, shown_default: None, doc: "bearer token of the admin page and its API (`GET /admin`, `/admin/api/*`, `POST /gitlab/oauth/start`); without it they are off (404). It must hold at least 32 random bytes (make one with `openssl rand -base64 32`): `serve` refuses a shorter or patterned one. Only its SHA-256 is kept in memory and compared (constant time); after 10 wrong tokens in a minute every admin request gets 429 until the minute is over" },
    Setting { name: "GFJ_GITLAB_OAUTH_APPS", default: None, bounds: None, shown_default: None, doc: "GitLab OAuth applications for signing in to GitLab, comma-separated `<GitLab URL>=<application id>:<secret>`; each URL must be in `GFJ_GITLAB_URLS`. Register the application in GitLab (confidential, scope `api`) with the redirect URI `<GFJ_BASE_URL>/gitlab/oauth/callback`" },
    Setting { name: "GFJ_LOG_FORMAT", default: None, bounds: None, shown_default: Some("`pretty` on a terminal, else `json`"), doc: "log format; `RUST_LOG` filters (default `info`)" },
    Setting { name: "GFJ_WORKER_CONCURRENCY", default: Some("16"), bounds: Some((1, 1024)), shown_default: None, doc: "queue jobs one process runs at once" },
    Setting { name: "GFJ_JIRA_SITE_CONCURRENCY", default: Some("8"), bounds: Some((1, 1024)), shown_default: None, doc: "requests in flight at once to one Jira site, per process" },
    Setting { name: "GFJ_JIRA_SITE_RATE", default: Some("0"), bounds: Some((0, 100000)), shown_default: None, doc: "requests per second to one Jira site, evenly spaced, per process; `0` for no cap other than Jira's own 429s (which always pause the site for every process)" },
    Setting { name: "GFJ_JIRA_BATCH_SIZE", default: Some("100"), bounds: Some((1, 1000)), shown_default: None, doc: "builds, deployments or feature flags per request to Jira (1–1000)" },
    Setting { name: "GFJ_WEBHOOK_MAX_BYTES", default: Some("26214400"), bounds: Some((1024, 1073741824)), shown_default: Some("`26214400` (25 MiB)"), doc: "largest webhook body accepted; a larger one gets 413 and is not queued" },
    Setting { name: "GFJ_HOOK_CHECK_SECS", default: Some("300"), bounds: Some((5, 86400)), shown_default: None, doc: "how often each subscription's webhooks are checked: a hook GitLab auto-disabled is re-enabled (through GitLab's test delivery), a deleted one is registered again, and in project-hook mode projects that joined the group are hooked and those that left are forgotten. Each repaired window is recorded as a gap for reconciliation. The interval is kept in the database: with several replicas each check runs once per interval across all of them, the first when the service first starts, and after downtime longer than the interval at once" },
    Setting { name: "GFJ_MR_KEYS_FROM_BRANCH", default: Some("true"), bounds: None, shown_default: None, doc: "a merge request also carries the issue keys of its source branch name (GitLab's app uses only title and description)" },
    Setting { name: "GFJ_BACKFILL_DAYS", default: Some("180"), bounds: Some((1, 36500)), shown_default: None, doc: "how far back the backfill of a linked group reads history (merge requests and pipelines updated, branches and commits committed, deployments updated since then), or `all`" },
    Setting { name: "GFJ_BACKFILL_TASKS", default: Some("8"), bounds: Some((1, 1024)), shown_default: None, doc: "backfill tasks (one project's merge requests, branches, commits, pipelines, deployments or feature flags) running at once, across all replicas; the rest wait their turn. How fast each runs is set by GitLab's rate limit (`RateLimit-Remaining`, 429) and the Jira site's budget, not by this number, which only keeps workers free for live events. Slots are shared between subscriptions: each free slot goes to the subscription running the fewest backfill tasks, so a large group cannot delay a newly linked one" },
    Setting { name: "GFJ_RECONCILE_SECS", default: Some("900"), bounds: Some((10, 604800)), shown_default: None, doc: "how often each linked project is reconciled with GitLab: branches with new commits, merge requests, pipelines (with their jobs) and deployments (blocked ones included) changed since the project's cursor, and since the start of any recorded gap, are read from GitLab and sent like live events; merge requests sent to Jira but no longer in GitLab's list are deleted from Jira; so are feature flags edited or deleted since (for flags whose id a toggle webhook taught us: GitLab's REST API does not show flag ids). This catches what no webhook reports (pushes of more than three refs, deployments waiting for approval, anything missed while a hook was disabled or the service down). A window reaching back before the link (a project that joined the group) is history: it is sent with `operationType: BACKFILL` and `preventTransitions: true`, so old work does not move issues; live events are `NORMAL`. The interval is kept in the database: with several replicas each pass runs once per interval across all of them, the first one interval after the service first starts" },
    Setting { name: "GFJ_GATING_POLL_SECS", default: Some("30"), bounds: Some((5, 86400)), shown_default: None, doc: "how often each subscription's deployment gates are looked at: blocked deployments to gated tiers that no webhook announced are found, and JSM's gating status of open gates is asked (every 30 s at first, then less often, up to every 10 minutes per gate; the only route for OAuth-credentials sites, a safety net beside the `jiraDeploymentGating` callback for Connect ones). Once per interval across all replicas" },
    Setting { name: "GFJ_GATING_TIMEOUT_SECS", default: Some("86400"), bounds: Some((60, 2592000)), shown_default: None, doc: "how long a gated deployment waits for JSM's decision; then it is treated as `GFJ_GATING_UNDECIDED` says" },
    Setting { name: "GFJ_GATING_UNDECIDED", default: Some("reject"), bounds: None, shown_default: None, doc: "what happens to a gated deployment JSM answers `invalid` for, or does not decide within `GFJ_GATING_TIMEOUT_SECS`: `reject` (rejected in GitLab with a comment saying why) or `leave` (left blocked for people to approve or reject in GitLab)" },
    Setting { name: "GFJ_AUDIT_DAYS", default: Some("30"), bounds: Some((1, 3650)), shown_default: None, doc: "how long the audit trail (every entity sent to Jira, per issue key, with Jira's verdict) is kept; `status --issue` reads it" },
    Setting { name: "GFJ_JOB_LEASE_SECS", default: Some("120"), bounds: Some((1, 86400)), shown_default: None, doc: "how long a claimed job stays with its worker; after a crash, another replica takes the job over once this has passed (with SQLite, a restart resumes it at once)" },
    Setting { name: "GFJ_JOB_DRAIN_SECS", default: Some("10"), bounds: Some((0, 3600)), shown_default: None, doc: "on SIGTERM, how long running jobs may finish; a job still running then is stopped and handed back (its lease released at once), so another replica takes it without waiting for the lease to run out. The process claims nothing new once SIGTERM arrives" },
    Setting { name: "GFJ_HTTP_MAX_CONNECTIONS", default: Some("1024"), bounds: Some((1, 1000000)), shown_default: None, doc: "open HTTP connections at once; more are closed as they arrive" },
    Setting { name: "GFJ_HTTP_MAX_REQUESTS", default: Some("512"), bounds: Some((1, 1000000)), shown_default: None, doc: "requests in flight at once; more get 503 with `Retry-After: 1` (GitLab redelivers)" },
    Setting { name: "GFJ_HTTP_HEADER_TIMEOUT_SECS", default: Some("10"), bounds: Some((1, 3600)), shown_default: None, doc: "time a client has to send a request's headers; then the connection is closed" },
    Setting { name: "GFJ_HTTP_REQUEST_TIMEOUT_SECS", default: Some("60"), bounds: Some((1, 3600)), shown_default: None, doc: "time for a whole request, body and answer included; then 408 and the connection is closed" },
    Setting { name: "GFJ_HTTP_DRAIN_SECS", default: Some("30"), bounds: Some((1, 3600)), shown_default: None, doc: "on SIGTERM, how long requests in flight may finish before their connections are cut; slow clients never hold up a shutdown longer" },
];

/// The declaration of `name`. Names are the constants of this table, so an unknown one is a bug in the
/// caller, which the tests of each caller's defaults catch.
pub fn setting(name: &str) -> &'static Setting {
    SETTINGS
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("{name} is not a declared setting"))
}

/// The default of a whole-number setting, for the `Default` impls of the crates that take it.
pub fn default_number(name: &str) -> i64 {
    let declared = setting(name);
    declared
        .default
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} has no whole-number default"))
}

/// The settings table of `docs/configuration.md`.
pub fn markdown_table() -> String {
    let mut table = String::from("| name | default | meaning |\n|---|---|---|\n");
    for s in SETTINGS {
        table.push_str(&format!(
            "| `{}` | {} | {} |\n",
            s.name,
            s.default_cell(),
            s.doc
        ));
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_numeric_defaults_lie_within_their_bounds() {
        let mut names: Vec<&str> = SETTINGS.iter().map(|s| s.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), SETTINGS.len());
        for s in SETTINGS.iter().filter(|s| s.bounds.is_some()) {
            let (min, max) = s.bounds.unwrap();
            let n = default_number(s.name);
            assert!((min..=max).contains(&n), "{}", s.name);
        }
    }

    #[test]
    fn the_readme_cell_shows_the_value_or_what_the_declaration_says() {
        assert_eq!(setting("GFJ_LISTEN").default_cell(), "`127.0.0.1:8080`");
        assert_eq!(setting("GFJ_ADMIN_TOKEN").default_cell(), "—");
        assert_eq!(setting("GFJ_JIRA_URLS").default_cell(), "— (none)");
        assert_eq!(default_number("GFJ_WORKER_CONCURRENCY"), 16);
    }
}
