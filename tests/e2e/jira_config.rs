//! The configuration page inside Jira and its API: Jira's JWTs (with `qsh`) guard the page, context
//! tokens guard the API, only Jira administrators link, only GitLab Maintainers' groups can be linked,
//! a group links once per site, and a linked group's history arrives with visible progress.

use gfj_sim::gitlab::Plan;
use gfj_store::test_on_both_databases;
use gfj_store::testing::TestDatabase;
use serde_json::{Value, json};

use crate::helpers::{TestApp, World};

const ADMIN: &str = "557058:admin";
const DEVELOPER: &str = "557058:developer";

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Calls the page's API as the page does: `Authorization: JWT <context token>`.
async fn call(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = http()
        .request(method, format!("{}{path}", app.base_url))
        .header("Authorization", format!("JWT {token}"));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Signs the Jira user in to GitLab as the world's user, the way the page does it: the API gives the
/// start URL, the window opens it, GitLab (where the user has a session) redirects to the callback, and
/// the user confirms the connection.
async fn sign_in_to_gitlab(app: &TestApp, w: &World, token: &str) {
    let (status, started) = call(
        app,
        reqwest::Method::POST,
        "/jira/gitlab/sign-in",
        token,
        Some(json!({ "gitlab_url": app.gitlab.base_url })),
    )
    .await;
    assert_eq!(status, 200, "{started}");
    let done = crate::sign_in::Browser::of(w)
        .sign_in(app, started["start_url"].as_str().unwrap())
        .await;
    assert!(
        done.contains("go back to Jira"),
        "the sign-in belongs to the Jira user"
    );
}

async fn setup(db: TestDatabase, access_level: i64) -> (TestApp, World) {
    let app = TestApp::start(db).await;
    app.install().await;
    app.jira
        .add_user(ADMIN, &["site-admins", "jira-software-users"]);
    app.jira.add_user(DEVELOPER, &["jira-software-users"]);
    let w = app.world(Plan::Free, access_level, 2);
    (app, w)
}

/// The page is served only for a request Jira signed (with the right `qsh`), and carries no secret.
async fn the_page_needs_jiras_jwt_bound_to_it(db: TestDatabase) {
    let (app, _) = setup(db, 40).await;
    let url = app.jira.page_url(&app.base_url, "/jira/config", ADMIN);
    let page = http().get(&url).send().await.unwrap();
    assert_eq!(page.status().as_u16(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("frame-ancestors"), "{csp}");
    let html = page.text().await.unwrap();
    assert!(html.contains("Sign in to GitLab"));
    assert!(
        html.contains(&app.gitlab.base_url),
        "the instance to choose"
    );
    let install = app
        .store
        .installation(app.jira.client_key())
        .await
        .unwrap()
        .unwrap();
    assert!(
        !html.contains(&install.shared_secret),
        "no secret in the page"
    );

    let without = http()
        .get(format!("{}/jira/config", app.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(without.status().as_u16(), 401);
    // The same token on another request (other query): its qsh does not match.
    let tampered = url.replace("lic=none", "lic=active");
    assert_eq!(
        http()
            .get(&tampered)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        401
    );
    // A context token is not a page token.
    let context = app.jira.context_token(ADMIN);
    let with_context = format!("{}/jira/config?jwt={context}", app.base_url);
    assert_eq!(
        http()
            .get(&with_context)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        401
    );
    app.stop().await;
}

/// The whole journey through the API: sign in to GitLab, see the groups, link one, see its history
/// arrive with progress, refuse a second link (422), unlink.
async fn a_jira_admin_links_and_unlinks_a_group_from_the_page(db: TestDatabase) {
    let (app, w) = setup(db, 40).await;
    app.gitlab
        .push(
            w.projects[0],
            "main",
            &["CFG-1 from before the link"],
            w.user,
        )
        .await;
    let token = app.jira.context_token(ADMIN);

    let (status, before) = call(
        &app,
        reqwest::Method::GET,
        &format!("/jira/gitlab/groups?gitlab_url={}", app.gitlab.base_url),
        &token,
        None,
    )
    .await;
    assert_eq!(
        (status, before["error"].as_str()),
        (409, Some("sign in to GitLab first"))
    );
    sign_in_to_gitlab(&app, &w, &token).await;
    let (status, groups) = call(
        &app,
        reqwest::Method::GET,
        &format!("/jira/gitlab/groups?gitlab_url={}", app.gitlab.base_url),
        &token,
        None,
    )
    .await;
    assert_eq!(status, 200, "{groups}");
    assert_eq!(groups["username"], "user40");
    let paths: Vec<&str> = groups["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["full_path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["acme"]);

    let (status, linked) = call(
        &app,
        reqwest::Method::POST,
        "/jira/subscriptions",
        &token,
        Some(json!({ "namespace_path": "acme" })),
    )
    .await;
    assert_eq!(status, 201, "{linked}");
    assert_eq!(linked["group_path"], "acme");
    let sub = app.store.subscriptions().await.unwrap()[0].clone();
    assert!(
        sub.gitlab_connection_id.is_some(),
        "linked as the user's own GitLab sign-in"
    );
    app.drained().await;
    assert_eq!(
        app.jira.issue("CFG-1").commits.len(),
        1,
        "the history arrived"
    );
    let page = http()
        .get(app.jira.page_url(&app.base_url, "/jira/config", ADMIN))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("data-subscription=\"acme\"") && page.contains("data-state=\"done\""),
        "the page is served with the linked group and its state: {page}"
    );
    let (status, list) = call(
        &app,
        reqwest::Method::GET,
        "/jira/subscriptions",
        &token,
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(list[0]["group_path"], "acme");
    assert_eq!(list[0]["backfill"]["state"], "done", "{list}");
    assert_eq!(
        list[0]["backfill"]["progress"]["tasks"], 12,
        "two projects, six kinds"
    );

    let (status, again) = call(
        &app,
        reqwest::Method::POST,
        "/jira/subscriptions",
        &token,
        Some(json!({ "namespace_path": "acme" })),
    )
    .await;
    assert_eq!(status, 422, "{again}");
    assert!(again["error"].as_str().unwrap().contains("already linked"));

    let (status, _) = call(
        &app,
        reqwest::Method::DELETE,
        &format!("/jira/subscriptions/{}", sub.id),
        &token,
        None,
    )
    .await;
    assert_eq!(status, 204);
    assert!(app.store.subscriptions().await.unwrap().is_empty());
    assert!(
        app.gitlab.hooks().is_empty(),
        "the webhooks were removed from GitLab"
    );
    app.stop().await;
}

/// A Jira user who is not an administrator, or whose groups Jira does not tell, gets 403 with GitLab's
/// wording; a forged or expired token gets 401.
async fn linking_needs_a_jira_admin_and_a_genuine_token(db: TestDatabase) {
    let (app, w) = setup(db, 40).await;
    let developer = app.jira.context_token(DEVELOPER);
    sign_in_to_gitlab(&app, &w, &developer).await;
    let body = json!({ "namespace_path": "acme" });
    let (status, refused) = call(
        &app,
        reqwest::Method::POST,
        "/jira/subscriptions",
        &developer,
        Some(body.clone()),
    )
    .await;
    assert_eq!(
        (status, refused["error"].as_str()),
        (403, Some("Failed to link group. Please try again."))
    );
    let stranger = app.jira.context_token("557058:nobody-jira-knows");
    let (status, refused) = call(
        &app,
        reqwest::Method::POST,
        "/jira/subscriptions",
        &stranger,
        Some(body.clone()),
    )
    .await;
    assert_eq!(
        (status, refused["error"].as_str()),
        (403, Some("Failed to link group. Please try again.")),
        "groups Jira would not tell"
    );

    let expired = app.jira.expired_context_token(ADMIN);
    let (status, _) = call(
        &app,
        reqwest::Method::POST,
        "/jira/subscriptions",
        &expired,
        Some(body.clone()),
    )
    .await;
    assert_eq!(status, 401);
    let genuine = app.jira.context_token(ADMIN);
    let mut forged = genuine.clone();
    forged.truncate(forged.len() - 4);
    forged.push_str("AAAA");
    let (status, _) = call(
        &app,
        reqwest::Method::POST,
        "/jira/subscriptions",
        &forged,
        Some(body.clone()),
    )
    .await;
    assert_eq!(status, 401);
    // A page token (bound to the page's URL) is not a context token.
    let page_url = app.jira.page_url(&app.base_url, "/jira/config", ADMIN);
    let page_token = page_url.rsplit("jwt=").next().unwrap();
    let (status, _) = call(
        &app,
        reqwest::Method::POST,
        "/jira/subscriptions",
        page_token,
        Some(body),
    )
    .await;
    assert_eq!(status, 401);
    assert!(app.store.subscriptions().await.unwrap().is_empty());
    app.stop().await;
}

/// A GitLab user below Maintainer sees no group to link and is refused with the reason.
async fn a_gitlab_developer_is_refused_with_the_reason(db: TestDatabase) {
    let (app, w) = setup(db, 30).await;
    let token = app.jira.context_token(ADMIN);
    sign_in_to_gitlab(&app, &w, &token).await;
    let (status, groups) = call(
        &app,
        reqwest::Method::GET,
        &format!("/jira/gitlab/groups?gitlab_url={}", app.gitlab.base_url),
        &token,
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert!(groups["groups"].as_array().unwrap().is_empty(), "{groups}");
    let (status, refused) = call(
        &app,
        reqwest::Method::POST,
        "/jira/subscriptions",
        &token,
        Some(json!({ "namespace_path": "acme" })),
    )
    .await;
    assert_eq!(status, 403);
    let why = refused["error"].as_str().unwrap();
    assert!(why.contains("needs Maintainer (40) or higher"), "{why}");
    app.stop().await;
}

test_on_both_databases!(
    the_page_needs_jiras_jwt_bound_to_it,
    a_jira_admin_links_and_unlinks_a_group_from_the_page,
    linking_needs_a_jira_admin_and_a_genuine_token,
    a_gitlab_developer_is_refused_with_the_reason,
);
