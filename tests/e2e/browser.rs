//! The configuration page and the admin page in a real browser (headless Chromium through
//! chromedriver) against the simulators: sign in to GitLab, link a group, watch its progress reach done.
//! Screenshots are kept in `target/test-artifacts` (or `GFJ_TEST_ARTIFACTS`).

use std::time::Duration;

use gfj_sim::gitlab::Plan;
use gfj_store::testing::TestDatabase;

use crate::helpers::{ADMIN_TOKEN, TestApp};
use crate::webdriver::Browser;

const ADMIN: &str = "557058:browser-admin";
const WAIT: Duration = Duration::from_secs(30);

/// A Jira administrator opens the app's page in Jira, signs in to GitLab in the window it opens, links
/// the group, and sees its history arrive.
async fn the_configuration_page_links_a_group_in_a_browser(db: TestDatabase) {
    let app = TestApp::start(db).await;
    app.install().await;
    app.jira.add_user(ADMIN, &["site-admins"]);
    let w = app.world(Plan::Free, 40, 2);
    app.gitlab
        .push(w.projects[0], "main", &["WEB-1 history to bring"], w.user)
        .await;
    let browser = Browser::start().await;
    // The user has a GitLab session (the simulator's sign-in cookie) in this browser.
    browser
        .goto(&format!("{}/api/v4/version", app.gitlab.base_url))
        .await;
    browser.add_cookie("_gitlab_session", &w.token).await;

    browser
        .goto(&app.jira.page_url(&app.base_url, "/jira/config", ADMIN))
        .await;
    browser.wait_for("#sign-in", WAIT).await;
    browser.screenshot("config-page-signed-out").await;
    browser.select("#instance", &app.gitlab.base_url).await;
    let sign_in = browser.wait_for("#sign-in", WAIT).await;
    browser.click(&sign_in).await;
    // GitLab's window signs the user in and comes back to the callback, which asks whether to connect
    // this GitLab user to this Jira site; the user confirms there, and the page then lists the groups.
    let page_window = browser.current_window().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    let popup = loop {
        let handles = browser.window_handles().await;
        if let Some(h) = handles.into_iter().find(|h| *h != page_window) {
            break h;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "GitLab's sign-in opened in its own window"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    browser.switch_to_window(&popup).await;
    browser.wait_for("#connect", WAIT).await;
    let question = browser.text_of("#question").await;
    assert!(
        question.contains("@user40") && question.contains(&app.jira.base_url),
        "the user sees who is connected to what: {question}"
    );
    browser.screenshot("gitlab-sign-in-confirmation").await;
    let connect = browser.wait_for("#connect", WAIT).await;
    browser.click(&connect).await;
    browser.switch_to_window(&page_window).await;
    let link = browser.wait_for("button[data-link=\"acme\"]", WAIT).await;
    assert!(
        browser.text_of("#signed-in").await.contains("@user40"),
        "{}",
        browser.text_of("body").await
    );
    assert!(
        browser.window_handles().await.len() >= 2,
        "GitLab's sign-in opened in its own window"
    );
    browser.click(&link).await;
    browser
        .wait_for(
            "tr[data-subscription=\"acme\"] td[data-state=\"done\"]",
            WAIT,
        )
        .await;
    let shot = browser.screenshot("config-page-linked").await;
    assert!(shot.exists());
    assert_eq!(app.jira.issue("WEB-1").commits.len(), 1);
    let sub = app.store.subscriptions().await.unwrap()[0].clone();
    assert_eq!(sub.group_path, "acme");

    // Unlink from the page.
    let unlink = browser.wait_for("button[data-unlink=\"acme\"]", WAIT).await;
    browser.click(&unlink).await;
    browser.wait_for("#subscriptions td[colspan]", WAIT).await;
    assert!(app.store.subscriptions().await.unwrap().is_empty());
    browser.close().await;
    app.stop().await;
}

/// An operator opens the admin page, gives the admin token, links a group of an OAuth-credentials site
/// with a GitLab token, and sees its progress reach done.
async fn the_admin_page_links_a_group_in_a_browser(db: TestDatabase) {
    let app = TestApp::start(db).await;
    app.add_oauth_site().await;
    let w = app.world(Plan::Free, 40, 1);
    app.gitlab
        .push(w.projects[0], "main", &["OPS-1 history to bring"], w.user)
        .await;
    let browser = Browser::start().await;
    browser.goto(&format!("{}/admin", app.base_url)).await;
    let token = browser.wait_for("#token", WAIT).await;
    browser.screenshot("admin-page-token").await;
    browser.type_into(&token, ADMIN_TOKEN).await;
    let open = browser.wait_for("#token-submit", WAIT).await;
    browser.click(&open).await;
    browser.wait_for("#sites tr[data-site]", WAIT).await;
    let group = browser.wait_for("#link-group", WAIT).await;
    browser.type_into(&group, "acme").await;
    let gitlab_token = browser.wait_for("#link-token", WAIT).await;
    browser.type_into(&gitlab_token, &w.token).await;
    let submit = browser.wait_for("#link-submit", WAIT).await;
    browser.click(&submit).await;
    browser
        .wait_for(
            "tr[data-subscription=\"acme\"] td[data-state=\"done\"]",
            WAIT,
        )
        .await;
    browser.screenshot("admin-page-linked").await;
    assert_eq!(app.jira.issue("OPS-1").commits.len(), 1);

    // The group's JSM service IDs, set from the page, are in force for its project.
    browser
        .wait_for("#jsm tr[data-jsm-project=\"acme/p0\"]", WAIT)
        .await;
    browser.select("#jsm-kind", "group").await;
    let path = browser.wait_for("#jsm-path", WAIT).await;
    browser.type_into(&path, "acme").await;
    let ids = browser.wait_for("#jsm-service-ids", WAIT).await;
    browser.type_into(&ids, "b:AXJpOmNs=").await;
    let save = browser.wait_for("#jsm-submit", WAIT).await;
    browser.click(&save).await;
    browser
        .wait_for(
            "#jsm tr[data-jsm-project=\"acme/p0\"][data-service-ids=\"b:AXJpOmNs=\"]",
            WAIT,
        )
        .await;
    let shown = browser
        .text_of("#jsm tr[data-jsm-project=\"acme/p0\"]")
        .await;
    assert!(shown.contains("b:AXJpOmNs= (from acme)"), "{shown}");
    browser.screenshot("admin-page-jsm").await;

    // The issue search, from the keyboard (Enter submits): what was sent under the key and Jira's
    // verdict; a key nothing mentioned says so.
    let key = browser.wait_for("#issue-key", WAIT).await;
    browser.type_into(&key, "ops-1\u{E007}").await;
    browser
        .wait_for(
            "#issue-result table[data-issue=\"OPS-1\"] tr[data-entity=\"commit\"][data-verdict=\"accepted\"]",
            WAIT,
        )
        .await;
    browser.screenshot("admin-page-issue").await;
    browser.clear(&key).await;
    browser.type_into(&key, "NOPE-9\u{E007}").await;
    browser
        .wait_for("#issue-result [data-issue-empty=\"NOPE-9\"]", WAIT)
        .await;

    // The drill-down: the group's projects, each kind of history with its state.
    let projects = browser
        .wait_for(
            "button[data-projects=\"acme\"][aria-expanded=\"false\"]",
            WAIT,
        )
        .await;
    browser.click(&projects).await;
    browser
        .wait_for(
            "table[data-backfill=\"acme\"] tr[data-project=\"acme/p0\"] li[data-task=\"commits\"][data-state=\"done\"]",
            WAIT,
        )
        .await;
    browser
        .wait_for(
            "button[data-projects=\"acme\"][aria-expanded=\"true\"]",
            WAIT,
        )
        .await;
    let shown = browser.text_of("table[data-backfill=\"acme\"]").await;
    assert!(shown.contains("commits: done, 2 read, 1 sent"), "{shown}");
    browser.screenshot("admin-page-projects").await;
    browser.close().await;
    app.stop().await;
}

// One database is enough here: the browser drives the same HTTP API the other tests cover on both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_page_in_chromium() {
    the_configuration_page_links_a_group_in_a_browser(TestDatabase::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_page_in_chromium() {
    the_admin_page_links_a_group_in_a_browser(TestDatabase::sqlite().await).await;
}
