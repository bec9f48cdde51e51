//! `doctor [--json]`: checks the whole installation the way the service would use it — settings, the
//! database and its migrations, the encryption key against the stored secrets, every Jira site (allowed,
//! reachable, credentials accepted), every subscription's GitLab access (credentials, role, hooks), and
//! `GFJ_BASE_URL` — and prints one line per check with the fix. Nothing is changed: hooks found
//! disabled or missing are reported, not repaired (the running service's hook check does that).

use gfj_gitlab_client::{GitLabClient, GitLabError, MAINTAINER};
use gfj_jira_client::{JiraError, SiteAuth};
use gfj_store::installations::Installation;
use gfj_store::subscriptions::Subscription;
use gfj_store::{Store, StoreError};
use serde::Serialize;

use crate::Settings;

/// One check's verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What was checked: `settings`, `database`, `encryption key`, `jira site`, `gitlab`, `base url`.
    pub check: &'static str,
    /// Which one (a site, a linked group), when there are several.
    pub subject: String,
    pub ok: bool,
    pub detail: String,
    /// What to do about it, when it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

/// Every check, in the order they ran.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub ok: bool,
    pub checks: Vec<Check>,
}

impl Report {
    fn pass(&mut self, check: &'static str, subject: impl Into<String>, detail: impl Into<String>) {
        self.checks.push(Check {
            check,
            subject: subject.into(),
            ok: true,
            detail: detail.into(),
            fix: None,
        });
    }

    fn fail(
        &mut self,
        check: &'static str,
        subject: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.checks.push(Check {
            check,
            subject: subject.into(),
            ok: false,
            detail: detail.into(),
            fix: Some(fix.into()),
        });
    }

    /// One line per check (`ok` or `FAIL`, what, the verdict, and the fix), or the report as JSON.
    pub fn render(&self, json: bool) -> String {
        if json {
            return serde_json::to_string_pretty(self).expect("the report serialises");
        }
        let mut out = String::new();
        for c in &self.checks {
            let subject = if c.subject.is_empty() {
                String::new()
            } else {
                format!(" {}", c.subject)
            };
            out.push_str(&format!(
                "{:<4} {}{subject}: {}",
                if c.ok { "ok" } else { "FAIL" },
                c.check,
                c.detail
            ));
            if let Some(fix) = &c.fix {
                out.push_str(&format!("\n       fix: {fix}"));
            }
            out.push('\n');
        }
        let failed = self.checks.iter().filter(|c| !c.ok).count();
        out.push_str(&match failed {
            0 => format!("all {} checks passed", self.checks.len()),
            n => format!("{n} of {} checks failed", self.checks.len()),
        });
        out
    }
}

/// Runs every check that the earlier ones allow (no database, no site checks).
pub async fn doctor(settings: anyhow::Result<Settings>, now_ms: i64) -> Report {
    let mut report = Report::default();
    let settings = match settings {
        Ok(s) => {
            report.pass("settings", "", "valid");
            s
        }
        Err(e) => {
            report.fail(
                "settings",
                "",
                format!("{e:#}"),
                "correct the setting the message names (docs/configuration.md lists each)",
            );
            return finish(report);
        }
    };
    let store = match settings.open_store().await {
        Ok(store) => store,
        Err(e) => {
            let key = format!("{e:#}").contains("encryption");
            report.fail(
                if key { "encryption key" } else { "database" },
                "",
                format!("{e:#}"),
                if key {
                    "set GFJ_ENCRYPTION_KEY to the base64 of the 32-byte key the secrets were stored with (with SQLite and no setting, keep <database file>.key beside the database)"
                } else {
                    "check GFJ_DATABASE_URL, that the database server is up and that this user may reach it; for a migration error see docs/upgrades.md"
                },
            );
            return finish(report);
        }
    };
    match store.ready().await {
        Ok(()) => report.pass("database", "", "reachable, every migration applied"),
        Err(e) => report.fail(
            "database",
            "",
            e.to_string(),
            "start `gitlab-for-jira serve` of this version once: it applies the migrations",
        ),
    }
    let Some((sites, subscriptions)) = secrets_open(&store, &mut report).await else {
        store.close().await;
        return finish(report);
    };
    for install in &sites {
        check_site(&settings, install, &mut report).await;
    }
    for sub in &subscriptions {
        let site = sites
            .iter()
            .find(|s| s.client_key == sub.client_key)
            .map_or(sub.client_key.as_str(), |s| s.base_url.as_str());
        check_subscription(&settings, &store, sub, site, now_ms, &mut report).await;
    }
    check_base_url(&settings, &mut report).await;
    store.close().await;
    finish(report)
}

fn finish(mut report: Report) -> Report {
    report.ok = report.checks.iter().all(|c| c.ok);
    report
}

/// The stored sites and subscriptions, once every stored secret opened with the configured key.
async fn secrets_open(
    store: &Store,
    report: &mut Report,
) -> Option<(Vec<Installation>, Vec<Subscription>)> {
    let wrong_key = |e: &StoreError| matches!(e, StoreError::Crypto(_));
    let fix = "set GFJ_ENCRYPTION_KEY to the key the secrets were stored with (every replica the same); \
               without it they cannot be read";
    let read = async {
        let sites = store.installations().await?;
        let subscriptions = store.subscriptions().await?;
        let mut opened = sites.len();
        for sub in subscriptions
            .iter()
            .filter(|s| s.gitlab_connection_id.is_none())
        {
            store.subscription_gitlab_token(sub).await?;
            opened += 1;
        }
        for sub in &subscriptions {
            if store.subscription_hook_secrets(sub).await?.is_some() {
                opened += 1;
            }
        }
        Ok::<_, StoreError>((sites, subscriptions, opened))
    };
    match read.await {
        Ok((sites, subscriptions, opened)) => {
            report.pass(
                "encryption key",
                "",
                format!("opens all {opened} stored secrets"),
            );
            Some((sites, subscriptions))
        }
        Err(e) if wrong_key(&e) => {
            report.fail("encryption key", "", e.to_string(), fix);
            None
        }
        Err(e) => {
            report.fail(
                "database",
                "",
                e.to_string(),
                "check that the database is reachable and not modified by hand",
            );
            None
        }
    }
}

async fn check_site(settings: &Settings, install: &Installation, report: &mut Report) {
    let subject = install.base_url.clone();
    if settings
        .jira_urls
        .allowed_origin(&install.base_url)
        .is_none()
    {
        report.fail(
            "jira site",
            subject,
            "not in GFJ_JIRA_URLS: nothing is sent to it",
            format!(
                "add {} to GFJ_JIRA_URLS, or unlink its groups if the site is no longer used",
                install.base_url
            ),
        );
        return;
    }
    let oauth = install.oauth.is_some();
    let site = gfj_sync::jira_out::site_of(install.clone());
    let how = match &site.auth {
        SiteAuth::OAuth { .. } => "OAuth token fetched and accepted",
        SiteAuth::Connect { .. } => "signed Connect request accepted",
    };
    match settings.jira_client().check_access(&site).await {
        Ok(()) => report.pass("jira site", subject, format!("reachable; {how}")),
        Err(e @ (JiraError::Unauthorized | JiraError::Forbidden)) => {
            let fix = if oauth {
                format!(
                    "create new OAuth credentials in the site's admin settings (Apps → OAuth credentials) and run `gitlab-for-jira sites add-oauth --url {} --client-id … --client-secret-file FILE` again",
                    install.base_url
                )
            } else {
                format!(
                    "reinstall the app on the site from {}/atlassian-connect.json (docs/connect-jira.md); new sites should use OAuth credentials",
                    settings.base_url
                )
            };
            report.fail("jira site", subject, e.to_string(), fix);
        }
        Err(e) => report.fail(
            "jira site",
            subject,
            e.to_string(),
            "check that this host reaches the site over HTTPS (DNS, proxy, firewall); `gitlab-for-jira status` shows whether Jira paused the site",
        ),
    }
}

async fn check_subscription(
    settings: &Settings,
    store: &Store,
    sub: &Subscription,
    site: &str,
    now_ms: i64,
    report: &mut Report,
) {
    let subject = format!(
        "{} on {} (subscription {}, site {site})",
        sub.group_path, sub.gitlab_url, sub.id
    );
    let credentials = if sub.gitlab_connection_id.is_some() {
        "the GitLab sign-in"
    } else {
        "the GitLab token"
    };
    let renew = if sub.gitlab_connection_id.is_some() {
        "sign in to GitLab again from the admin page or the Jira configuration page, then unlink and link the group with the new sign-in"
    } else {
        "create a new access token (scope api, Maintainer or higher on the group), then unlink and link the group with it (`gitlab-for-jira link … --gitlab-token-file FILE`; the backfill sends its history again)"
    };
    let client: GitLabClient = match settings
        .gitlab_access()
        .client_for(store, sub, now_ms)
        .await
    {
        Ok(c) => c,
        Err(e) => {
            report.fail("gitlab", subject, format!("{credentials}: {e}"), renew);
            return;
        }
    };
    let user = match client.current_user().await {
        Ok(u) => u,
        Err(GitLabError::Unauthorized) => {
            report.fail(
                "gitlab",
                subject,
                format!("GitLab refused {credentials} (401: revoked or expired)"),
                renew,
            );
            return;
        }
        Err(e) => {
            report.fail(
                "gitlab",
                subject,
                format!("cannot reach GitLab: {e}"),
                format!(
                    "check that this host reaches {} and that it is in GFJ_GITLAB_URLS",
                    sub.gitlab_url
                ),
            );
            return;
        }
    };
    if !user.is_admin {
        match client.group_member(sub.group_id, user.id).await {
            Ok(member) => {
                let level = member.map_or(0, |m| m.access_level);
                if level < MAINTAINER {
                    report.fail(
                        "gitlab",
                        subject,
                        format!(
                            "@{} now has access level {level} on {}; Maintainer (40) or higher is needed",
                            user.username, sub.group_path
                        ),
                        format!(
                            "give @{} Maintainer or higher on {} again, or unlink and link with a Maintainer's token",
                            user.username, sub.group_path
                        ),
                    );
                    return;
                }
            }
            Err(e) => {
                report.fail(
                    "gitlab",
                    subject,
                    format!("cannot read the group's members: {e}"),
                    "check that the group still exists and the token's user can see it",
                );
                return;
            }
        }
    }
    let hooks = match store.subscription_hook_status(sub.id).await {
        Ok(h) => h,
        Err(e) => {
            report.fail("gitlab", subject, e.to_string(), "check the database");
            return;
        }
    };
    let mut broken = Vec::new();
    for status in &hooks {
        let h = &status.hook;
        let place = format!("{} {}", h.scope, h.target_id);
        match client.hook(h.scope, h.target_id, h.hook_id).await {
            Ok(Some(info)) if !info.is_disabled() => {}
            Ok(Some(_)) => broken.push(format!("the hook of {place} is disabled by GitLab")),
            Ok(None) => broken.push(format!("the hook of {place} is missing")),
            Err(e) => broken.push(format!("the hook of {place} cannot be read: {e}")),
        }
    }
    if broken.is_empty() {
        report.pass(
            "gitlab",
            subject,
            format!(
                "@{} may act on the group; {} webhook(s) present and enabled",
                user.username,
                hooks.len()
            ),
        );
    } else {
        report.fail(
            "gitlab",
            subject,
            broken.join("; "),
            format!(
                "while `serve` runs, the hook check (every GFJ_HOOK_CHECK_SECS) re-enables disabled hooks and registers missing ones, and reconciliation sends what was missed; a hook GitLab disables again cannot deliver: check that GitLab reaches {}/gitlab/webhook",
                settings.base_url
            ),
        );
    }
}

async fn check_base_url(settings: &Settings, report: &mut Report) {
    let url = format!("{}/healthz", settings.base_url);
    let fix = format!(
        "run `serve` and make GFJ_BASE_URL ({}) the URL at which Jira and GitLab reach it (ingress, proxy, TLS)",
        settings.base_url
    );
    match gfj_http::client().get(&url).send().await {
        Ok(resp) if resp.status().is_success() => {
            report.pass("base url", settings.base_url.clone(), "/healthz answers")
        }
        Ok(resp) => report.fail(
            "base url",
            settings.base_url.clone(),
            format!("/healthz answered {}", resp.status().as_u16()),
            fix,
        ),
        Err(e) => report.fail(
            "base url",
            settings.base_url.clone(),
            format!("/healthz does not answer: {}", e.without_url()),
            fix,
        ),
    }
}
