//! `doctor`: all checks pass on a healthy installation (a Connect site, an OAuth-credentials site, a
//! linked group), and each kind of breakage is named with its subject and a fix.

use gfj_store::test_on_both_databases;
use gfj_store::testing::TestDatabase;
use gitlab_for_jira::commands::doctor::{self, Check, Report};

use crate::helpers::{TestApp, now_ms};

fn failed(report: &Report) -> Vec<&Check> {
    report.checks.iter().filter(|c| !c.ok).collect()
}

async fn doctor_passes_a_healthy_setup_and_names_what_breaks(db: TestDatabase) {
    let app = TestApp::start(db).await;
    let w = app.linked_world(1).await;
    app.add_oauth_site().await;

    let healthy = doctor::doctor(Ok(app.settings.clone()), now_ms()).await;
    assert!(healthy.ok, "{}", healthy.render(false));
    let passed: Vec<&str> = healthy.checks.iter().map(|c| c.check).collect();
    assert_eq!(
        passed,
        [
            "settings",
            "database",
            "encryption key",
            "jira site",
            "jira site",
            "gitlab",
            "base url"
        ]
    );
    let text = healthy.render(false);
    assert!(text.contains("signed Connect request accepted"), "{text}");
    assert!(text.contains("OAuth token fetched and accepted"), "{text}");
    assert!(text.ends_with("all 7 checks passed"), "{text}");
    // Both sites were really asked, each in its own mode.
    let asked: Vec<String> = app
        .jira
        .requests()
        .iter()
        .filter(|r| r.path.contains("existsByProperties"))
        .map(|r| format!("{} {}", r.status, r.path.split('?').next().unwrap()))
        .collect();
    assert_eq!(asked.len(), 2, "{asked:?}");
    assert!(asked.iter().all(|a| a.starts_with("200 ")), "{asked:?}");

    // A hook deleted in GitLab.
    let hook = app.gitlab.hooks()[0].id;
    app.gitlab.delete_hook_externally(hook);
    let report = doctor::doctor(Ok(app.settings.clone()), now_ms()).await;
    assert!(!report.ok);
    let [broken] = failed(&report)[..] else {
        panic!("one failure expected:\n{}", report.render(false));
    };
    assert_eq!(broken.check, "gitlab");
    assert!(broken.subject.starts_with("acme on "), "{}", broken.subject);
    assert!(
        broken
            .detail
            .contains(&format!("the hook of project {} is missing", w.projects[0])),
        "{}",
        broken.detail
    );
    assert!(broken.fix.as_deref().unwrap().contains("hook check"));
    assert!(
        app.gitlab.hooks().iter().all(|h| h.id != hook),
        "doctor repairs nothing"
    );

    // The token revoked: named before the hooks, which it can no longer read.
    app.gitlab.revoke_token(w.user);
    let report = doctor::doctor(Ok(app.settings.clone()), now_ms()).await;
    let [broken] = failed(&report)[..] else {
        panic!("one failure expected:\n{}", report.render(false));
    };
    assert_eq!(broken.check, "gitlab");
    assert!(broken.detail.contains("401"), "{}", broken.detail);
    assert!(broken.fix.as_deref().unwrap().contains("new access token"));
    let json: serde_json::Value = serde_json::from_str(&report.render(true)).unwrap();
    assert_eq!(json["ok"], false);
    assert_eq!(json["checks"][5]["ok"], false);
    assert!(json["checks"][5]["fix"].is_string());
    app.stop().await;
}

async fn doctor_names_a_wrong_key_a_site_taken_off_the_allow_list_and_an_unreachable_base_url(
    db: TestDatabase,
) {
    let app = TestApp::start(db).await;
    app.linked_world(1).await;

    let mut elsewhere = app.settings.clone();
    elsewhere.jira_urls =
        gfj_core::url_pattern::UrlAllowList::parse("https://*.atlassian.net").unwrap();
    elsewhere.base_url = format!("http://127.0.0.1:{}", gfj_sim::free_port());
    let report = doctor::doctor(Ok(elsewhere), now_ms()).await;
    let failures: Vec<(&str, &str)> = failed(&report)
        .iter()
        .map(|c| (c.check, c.detail.as_str()))
        .collect();
    assert_eq!(failures.len(), 2, "{}", report.render(false));
    assert_eq!(failures[0].0, "jira site");
    assert!(failures[0].1.contains("GFJ_JIRA_URLS"));
    assert_eq!(failures[1].0, "base url");

    let mut wrong_key = app.settings.clone();
    wrong_key.encryption_key = Some("QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=".into());
    let report = doctor::doctor(Ok(wrong_key), now_ms()).await;
    let last = report.checks.last().unwrap();
    assert_eq!(
        (last.check, last.ok),
        ("encryption key", false),
        "{}",
        report.render(false)
    );
    assert!(last.fix.as_deref().unwrap().contains("GFJ_ENCRYPTION_KEY"));

    let report = doctor::doctor(
        Err(anyhow::anyhow!("GFJ_BASE_URL must be an http(s) URL")),
        now_ms(),
    )
    .await;
    assert!(!report.ok);
    assert_eq!(report.checks.len(), 1);
    assert_eq!(report.checks[0].check, "settings");
    app.stop().await;
}

/// The command: one line per check on stdout, exit 0 when all pass, 1 otherwise (bad settings included).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_doctor_command_exits_0_when_all_pass_and_1_otherwise() {
    let app = TestApp::start(TestDatabase::sqlite().await).await;
    app.linked_world(1).await;
    let run = |base_url: String| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_gitlab-for-jira"));
        cmd.arg("doctor")
            .env_clear()
            .env("GFJ_DATABASE_URL", &app.settings.database_url)
            .env("GFJ_ENCRYPTION_KEY", gfj_store::testing::TEST_KEY)
            .env("GFJ_BASE_URL", base_url)
            .env("GFJ_GITLAB_URLS", &app.gitlab.base_url)
            .env("GFJ_JIRA_URLS", "http://127.0.0.1:*")
            .env("GFJ_LOG_FORMAT", "json");
        async move {
            tokio::task::spawn_blocking(move || cmd.output().unwrap())
                .await
                .unwrap()
        }
    };
    let healthy = run(app.base_url.clone()).await;
    let out = String::from_utf8_lossy(&healthy.stdout).into_owned();
    assert_eq!(healthy.status.code(), Some(0), "{out}");
    assert_eq!(
        out.lines().filter(|l| l.starts_with("ok ")).count(),
        6,
        "{out}"
    );
    assert!(out.trim_end().ends_with("all 6 checks passed"), "{out}");

    let broken = run("ftp://nowhere".into()).await;
    let out = String::from_utf8_lossy(&broken.stdout).into_owned();
    assert_eq!(broken.status.code(), Some(1), "{out}");
    assert!(out.starts_with("FAIL settings: GFJ_BASE_URL"), "{out}");
    assert!(out.contains("fix: "), "{out}");
    app.stop().await;
}

test_on_both_databases!(
    doctor_passes_a_healthy_setup_and_names_what_breaks,
    doctor_names_a_wrong_key_a_site_taken_off_the_allow_list_and_an_unreachable_base_url,
);
