//! OAuth-credentials mode: a site registered without Connect gets the same development information.

use gfj_sim::gitlab::Plan;
use gfj_store::test_on_both_databases;
use gfj_store::testing::TestDatabase;
use gitlab_for_jira::commands::link::HookMode;
use gitlab_for_jira::commands::sites;

use crate::helpers::{TestApp, now_ms};

async fn oauth_site_gets_the_same_development_panel(db: TestDatabase) {
    let app = TestApp::start(db).await;
    let (id, secret) = app.jira.oauth_credentials();

    // Checked against Atlassian before anything is stored.
    let err = sites::add_oauth(
        &app.settings,
        &app.store,
        &app.jira.base_url,
        &id,
        "wrong",
        now_ms(),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("rejected the client id and secret"),
        "{err}"
    );
    let err = sites::add_oauth(
        &app.settings,
        &app.store,
        &app.gitlab.base_url,
        &id,
        &secret,
        now_ms(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("not a Jira Cloud site"), "{err}");
    let err = sites::add_oauth(
        &app.settings,
        &app.store,
        "https://evil.example.com",
        &id,
        &secret,
        now_ms(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("GFJ_JIRA_URLS"), "{err}");
    assert!(app.store.installations().await.unwrap().is_empty());

    let printed = sites::add_oauth(
        &app.settings,
        &app.store,
        &app.jira.base_url,
        &id,
        &secret,
        now_ms(),
    )
    .await
    .unwrap();
    let site: serde_json::Value = serde_json::from_str(&printed).unwrap();
    assert_eq!(site["site"], format!("oauth:{}", app.jira.cloud_id()));
    let stored = app
        .store
        .installation(site["site"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (stored.mode(), stored.shared_secret.as_str()),
        ("oauth", secret.as_str())
    );

    let w = app.world(Plan::Free, 40, 1);
    let req = gitlab_for_jira::commands::link::LinkRequest {
        site: app.jira.base_url.clone(),
        group: "acme".into(),
        gitlab_url: app.gitlab.base_url.clone(),
        gitlab_token: w.token.clone(),
        gitlab_connection: None,
        hook_mode: HookMode::Auto,
    };
    gitlab_for_jira::commands::link::link(&app.settings, &app.store, req, now_ms())
        .await
        .unwrap();
    app.backfilled().await;
    let shas = app
        .gitlab
        .push(w.projects[0], "feature/OA-1-login", &["OA-2 first"], w.user)
        .await;
    app.drained().await;
    assert_eq!(app.jira.issue("OA-1").branches.len(), 1);
    assert_eq!(app.jira.issue("OA-2").commits[0]["id"], shas[0].as_str());
    let requests = app.jira.requests();
    assert!(requests.iter().all(|r| {
        r.status == 202
            && r.path
                .starts_with(&format!("/jira/devinfo/0.1/cloud/{}/", app.jira.cloud_id()))
    }));

    // A revoked token is replaced once, and the update still arrives.
    app.jira.revoke_tokens();
    app.gitlab
        .delete_branch(w.projects[0], "feature/OA-1-login", w.user)
        .await;
    app.drained().await;
    assert!(app.jira.issue("OA-1").branches.is_empty());
    let statuses: Vec<u16> = app
        .jira
        .requests()
        .iter()
        .skip(requests.len())
        .map(|r| r.status)
        .collect();
    assert_eq!(
        statuses,
        [401, 202],
        "one 401 with the revoked token, then the fresh token works"
    );
    app.stop().await;
}

test_on_both_databases!(oauth_site_gets_the_same_development_panel);
