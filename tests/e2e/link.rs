//! Linking a GitLab group: permission checks, both webhook strategies, and the CLI contract.

use gfj_sim::gitlab::Plan;
use gfj_store::test_on_both_databases;
use gfj_store::testing::TestDatabase;
use gitlab_for_jira::commands::link::{self, HookMode};

use crate::helpers::TestApp;

async fn maintainer_on_free_gets_one_hook_per_project_across_pages(db: TestDatabase) {
    let app = TestApp::start(db).await;
    app.install().await;
    let w = app.world(Plan::Free, 40, 103);
    let sub = app.gitlab.add_group("sub", Some(w.group), Plan::Free);
    let deep = app.gitlab.add_project(sub, "deep");
    let linked = app.link("acme", &w.token, HookMode::Auto).await.unwrap();
    assert_eq!(linked.hook_mode, gfj_core::domain::HookScope::Project);
    assert_eq!(
        linked.hooks.len(),
        104,
        "every project, past the first page and in subgroups"
    );
    let hooks = app.gitlab.hooks();
    assert!(
        hooks
            .iter()
            .all(|h| h.scope == "project" && h.url == format!("{}/gitlab/webhook", app.base_url))
    );
    assert!(hooks.iter().any(|h| h.target_id == deep));
    // The same group cannot be linked twice, and nothing is registered for the refused attempt.
    let err = app
        .link("acme", &w.token, HookMode::Auto)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("already linked"), "{err}");
    assert_eq!(app.gitlab.hooks().len(), 104);

    // Unlink removes the hooks and the subscription.
    link::unlink(&app.settings, &app.store, &app.jira.base_url, "acme", 1)
        .await
        .unwrap();
    assert!(app.gitlab.hooks().is_empty());
    assert!(app.store.subscriptions().await.unwrap().is_empty());
    app.stop().await;
}

async fn owner_on_premium_gets_a_group_hook_and_maintainer_falls_back(db: TestDatabase) {
    let app = TestApp::start(db).await;
    app.install().await;
    let w = app.world(Plan::Premium, 50, 2);
    let linked = app.link("acme", &w.token, HookMode::Auto).await.unwrap();
    assert_eq!(
        (linked.hook_mode.as_str(), linked.hooks.len()),
        ("group", 1)
    );
    assert_eq!(linked.hooks[0].target_id, w.group);

    let m = app.gitlab.add_user("maint", "glpat-maint");
    let g2 = app.gitlab.add_group("beta", None, Plan::Premium);
    app.gitlab.add_member(g2, m, 40);
    app.gitlab.add_project(g2, "svc");
    let err = app
        .link("beta", "glpat-maint", HookMode::Group)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("Owner"), "{err}");
    let linked = app
        .link("beta", "glpat-maint", HookMode::Auto)
        .await
        .unwrap();
    assert_eq!(
        (linked.hook_mode.as_str(), linked.hooks.len()),
        ("project", 1)
    );
    app.stop().await;
}

async fn linking_is_refused_without_permission_or_for_non_groups(db: TestDatabase) {
    let app = TestApp::start(db).await;
    app.install().await;
    let w = app.world(Plan::Free, 30, 1);
    let project_path = "acme/p0";
    let cases = [
        ("acme", w.token.as_str(), "Maintainer (40)"),
        ("acme", "glpat-wrong", "rejected the token"),
        ("user30", w.token.as_str(), "personal namespace"),
        (project_path, w.token.as_str(), "is a project"),
        ("nope", w.token.as_str(), "not found"),
    ];
    for (group, token, expected) in cases {
        let err = app
            .link(group, token, HookMode::Auto)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains(expected), "{group}: {err}");
    }
    // A subgroup can be linked by a Maintainer of its parent (inherited membership).
    let maint = app.gitlab.add_user("inherit", "glpat-inherit");
    app.gitlab.add_member(w.group, maint, 40);
    let sub = app.gitlab.add_group("team", Some(w.group), Plan::Free);
    app.gitlab.add_project(sub, "x");
    assert_eq!(
        app.link("acme/team", "glpat-inherit", HookMode::Auto)
            .await
            .unwrap()
            .hooks
            .len(),
        1
    );

    // Only allow-listed GitLab instances are called.
    let mut req = link::LinkRequest {
        site: app.jira.client_key().into(),
        group: "acme".into(),
        gitlab_url: "http://127.0.0.2:1".into(),
        gitlab_token: w.token.clone(),
        gitlab_connection: None,
        hook_mode: HookMode::Auto,
    };
    let err = link::link(&app.settings, &app.store, req, 1)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("GFJ_GITLAB_URLS"), "{err}");
    req = link::LinkRequest {
        site: "unknown-site".into(),
        group: "acme".into(),
        gitlab_url: app.gitlab.base_url.clone(),
        gitlab_token: w.token.clone(),
        gitlab_connection: None,
        hook_mode: HookMode::Auto,
    };
    let err = link::link(&app.settings, &app.store, req, 1)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("no Jira site"), "{err}");
    assert!(app.store.subscriptions().await.unwrap().len() == 1 && app.gitlab.hooks().len() == 1);
    app.stop().await;
}

test_on_both_databases!(
    maintainer_on_free_gets_one_hook_per_project_across_pages,
    owner_on_premium_gets_a_group_hook_and_maintainer_falls_back,
    linking_is_refused_without_permission_or_for_non_groups,
);

/// The binary's contract: JSON on success, exit 1 with one line on failure, exit 2 on bad usage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_link_prints_json_and_uses_the_documented_exit_codes() {
    let db = TestDatabase::sqlite().await;
    let app = TestApp::start(db).await;
    app.install().await;
    let w = app.world(Plan::Free, 40, 2);
    let run = |args: Vec<String>| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_gitlab-for-jira"));
        cmd.args(args)
            .env_clear()
            .env("GFJ_DATABASE_URL", &app.settings.database_url)
            .env("GFJ_ENCRYPTION_KEY", gfj_store::testing::TEST_KEY)
            .env("GFJ_BASE_URL", &app.base_url)
            .env("GFJ_GITLAB_URLS", &app.gitlab.base_url)
            .env("GFJ_JIRA_URLS", "http://127.0.0.1:*")
            .env("GFJ_LOG_FORMAT", "json");
        async move {
            tokio::task::spawn_blocking(move || cmd.output().unwrap())
                .await
                .unwrap()
        }
    };
    let args = |group: &str, token: &str| {
        [
            "link",
            "--site",
            &app.jira.base_url,
            "--group",
            group,
            "--gitlab-url",
            &app.gitlab.base_url,
            "--gitlab-token",
            token,
        ]
        .map(String::from)
        .to_vec()
    };
    let out = run(args("acme", &w.token)).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["group_path"], "acme");
    assert_eq!(printed["hooks"].as_array().unwrap().len(), 2);

    let out = run(args("acme", "glpat-wrong")).await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().last().unwrap();
    assert!(
        last.starts_with("gitlab-for-jira: ") && last.contains("rejected the token"),
        "{stderr}"
    );

    let out = run(vec!["link".into(), "--group".into(), "acme".into()]).await;
    assert_eq!(out.status.code(), Some(2));
    let out = run(vec![
        "link".into(),
        "--site".into(),
        "x".into(),
        "--group".into(),
        "g".into(),
        "--gitlab-url".into(),
        "u".into(),
        "--gitlab-token".into(),
        "t".into(),
        "--hook-mode".into(),
        "sometimes".into(),
    ])
    .await;
    assert_eq!(out.status.code(), Some(2));
    app.stop().await;
}

/// No secret needs to be on a command line (other users can read it): the GitLab token comes from
/// `GFJ_GITLAB_TOKEN` or `--gitlab-token-file`, the Jira client secret from `GFJ_JIRA_CLIENT_SECRET` or
/// `--client-secret-file`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_secrets_come_from_the_environment_or_a_file() {
    let db = TestDatabase::sqlite().await;
    let app = TestApp::start(db).await;
    app.install().await;
    let w = app.world(Plan::Free, 40, 1);
    let dir = std::env::temp_dir().join(format!("gfj-secrets-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let token_file = dir.join("gitlab-token");
    std::fs::write(&token_file, format!("{}\n", w.token)).unwrap();
    let empty_file = dir.join("empty");
    std::fs::write(&empty_file, "\n").unwrap();
    let run = |args: Vec<String>, env: Vec<(&'static str, String)>| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_gitlab-for-jira"));
        cmd.args(args)
            .env_clear()
            .env("GFJ_DATABASE_URL", &app.settings.database_url)
            .env("GFJ_ENCRYPTION_KEY", gfj_store::testing::TEST_KEY)
            .env("GFJ_BASE_URL", &app.base_url)
            .env("GFJ_GITLAB_URLS", &app.gitlab.base_url)
            .env("GFJ_JIRA_URLS", "http://127.0.0.1:*")
            .env("GFJ_ATLASSIAN_API_URL", &app.jira.base_url)
            .env("GFJ_LOG_FORMAT", "json")
            .envs(env);
        async move {
            tokio::task::spawn_blocking(move || cmd.output().unwrap())
                .await
                .unwrap()
        }
    };
    let link = |extra: &[&str]| {
        let mut args = [
            "link",
            "--site",
            &app.jira.base_url,
            "--group",
            "acme",
            "--gitlab-url",
            &app.gitlab.base_url,
        ]
        .map(String::from)
        .to_vec();
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let unlink = ["unlink", "--site", &app.jira.base_url, "--group", "acme"]
        .map(String::from)
        .to_vec();
    let stderr = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).into_owned();

    let out = run(
        link(&["--gitlab-token-file", token_file.to_str().unwrap()]),
        vec![],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = run(unlink.clone(), vec![]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = run(link(&[]), vec![("GFJ_GITLAB_TOKEN", w.token.clone())]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(app.store.subscriptions().await.unwrap().len(), 1);

    let out = run(link(&[]), vec![]).await;
    assert_eq!(out.status.code(), Some(2), "no credential is bad usage");
    let out = run(
        link(&["--gitlab-token-file", empty_file.to_str().unwrap()]),
        vec![],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("GitLab token is empty"),
        "{}",
        stderr(&out)
    );

    // The Jira client secret, likewise.
    let (client_id, client_secret) = app.jira.oauth_credentials();
    let add = |extra: &[&str]| {
        let mut args = [
            "sites",
            "add-oauth",
            "--url",
            &app.jira.base_url,
            "--client-id",
            &client_id,
        ]
        .map(String::from)
        .to_vec();
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let out = run(
        add(&[]),
        vec![("GFJ_JIRA_CLIENT_SECRET", client_secret.clone())],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let secret_file = dir.join("jira-secret");
    std::fs::write(&secret_file, &client_secret).unwrap();
    let out = run(
        add(&["--client-secret-file", secret_file.to_str().unwrap()]),
        vec![],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = run(add(&[]), vec![]).await;
    assert_eq!(out.status.code(), Some(2), "no secret is bad usage");
    let _ = std::fs::remove_dir_all(&dir);
    app.stop().await;
}

/// `link --wait` follows the backfill on stderr (plain lines off a terminal) and exits 1 naming each
/// failed task; `resync --failed --wait` runs them again and exits 0 once all is in Jira.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_wait_follows_the_backfill_and_exits_1_with_the_reasons_of_failed_tasks() {
    let app = TestApp::start(TestDatabase::sqlite().await).await;
    app.install().await;
    let w = app.world(Plan::Free, 40, 2);
    app.gitlab
        .push(w.projects[0], "main", &["WAIT-1 first"], w.user)
        .await;
    // The first branches read: GitLab refuses (403), and that task fails.
    app.gitlab.fail_next_on("/repository/branches", 403, false);
    let run = |args: &[&str]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_gitlab-for-jira"));
        cmd.args(args)
            .env_clear()
            .env("GFJ_DATABASE_URL", &app.settings.database_url)
            .env("GFJ_ENCRYPTION_KEY", gfj_store::testing::TEST_KEY)
            .env("GFJ_BASE_URL", &app.base_url)
            .env("GFJ_GITLAB_URLS", &app.gitlab.base_url)
            .env("GFJ_JIRA_URLS", "http://127.0.0.1:*")
            .env("GFJ_GITLAB_TOKEN", &w.token)
            .env("GFJ_LOG_FORMAT", "json");
        async move {
            let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
                .await
                .unwrap();
            let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
            (out.status.code(), text(&out.stdout), text(&out.stderr))
        }
    };
    let site = app.jira.base_url.clone();
    let gitlab = app.gitlab.base_url.clone();
    let (code, stdout, stderr) = run(&[
        "link",
        "--site",
        &site,
        "--group",
        "acme",
        "--gitlab-url",
        &gitlab,
        "--wait",
    ])
    .await;
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    let linked: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(linked["group_path"], "acme", "stdout keeps the JSON alone");
    assert!(stderr.contains("backfill: "), "progress lines: {stderr}");
    let last = stderr.lines().last().unwrap();
    assert!(
        last.contains("1 failed task(s)") && last.contains(" branches: ") && last.contains("403"),
        "{stderr}"
    );
    assert!(last.contains("resync --failed"), "{last}");

    let (code, stdout, stderr) = run(&[
        "resync", "--site", &site, "--group", "acme", "--failed", "--wait",
    ])
    .await;
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    let resynced: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(resynced["queued_tasks"], 1);
    assert!(
        stderr
            .lines()
            .last()
            .unwrap()
            .starts_with("backfill done: 12 tasks"),
        "{stderr}"
    );
    assert_eq!(app.jira.issue("WAIT-1").commits.len(), 1);
    app.stop().await;
}
