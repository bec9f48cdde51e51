//! The standalone admin page and its API, for sites in OAuth-credentials mode (no page inside Jira):
//! bearer-only, link with a GitLab token, progress to done, resync, unlink.

use gfj_sim::gitlab::Plan;
use gfj_store::test_on_both_databases;
use gfj_store::testing::TestDatabase;
use serde_json::{Value, json};

use crate::helpers::{ADMIN_TOKEN, TestApp};

async fn call(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    bearer: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = reqwest::Client::new().request(method, format!("{}{path}", app.base_url));
    if let Some(b) = bearer {
        req = req.bearer_auth(b);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn an_operator_links_an_oauth_site_from_the_admin_page(db: TestDatabase) {
    let app = TestApp::start(db).await;
    app.add_oauth_site().await;
    let w = app.world(Plan::Free, 40, 1);
    app.gitlab
        .push(w.projects[0], "main", &["ADM-1 before the link"], w.user)
        .await;

    let (status, page) = call(&app, reqwest::Method::GET, "/admin", None, None).await;
    assert_eq!(status, 401, "the page asks for the token");
    assert!(page.as_str().unwrap().contains("Admin token"));
    let (status, page) = call(
        &app,
        reqwest::Method::GET,
        "/admin",
        Some(ADMIN_TOKEN),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        !page.as_str().unwrap().contains(ADMIN_TOKEN),
        "no secret in the page"
    );
    for bearer in [None, Some("wrong")] {
        let (status, _) = call(
            &app,
            reqwest::Method::GET,
            "/admin/api/overview",
            bearer,
            None,
        )
        .await;
        assert_eq!(status, 401);
    }

    let (status, overview) = call(
        &app,
        reqwest::Method::GET,
        "/admin/api/overview",
        Some(ADMIN_TOKEN),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(overview["sites"][0]["mode"], "oauth");
    let site = overview["sites"][0]["client_key"]
        .as_str()
        .unwrap()
        .to_owned();

    let link = json!({
        "site": site,
        "group": "acme",
        "gitlab_url": app.gitlab.base_url,
        "gitlab_token": w.token,
    });
    let (status, _) = call(
        &app,
        reqwest::Method::POST,
        "/admin/api/subscriptions",
        Some("wrong"),
        Some(link.clone()),
    )
    .await;
    assert_eq!(status, 401);
    let (status, linked) = call(
        &app,
        reqwest::Method::POST,
        "/admin/api/subscriptions",
        Some(ADMIN_TOKEN),
        Some(link.clone()),
    )
    .await;
    assert_eq!(status, 201, "{linked}");
    let (status, again) = call(
        &app,
        reqwest::Method::POST,
        "/admin/api/subscriptions",
        Some(ADMIN_TOKEN),
        Some(link),
    )
    .await;
    assert_eq!(status, 422, "{again}");

    app.drained().await;
    assert_eq!(
        app.jira.issue("ADM-1").commits.len(),
        1,
        "the history reached the OAuth site"
    );
    let (_, overview) = call(
        &app,
        reqwest::Method::GET,
        "/admin/api/overview",
        Some(ADMIN_TOKEN),
        None,
    )
    .await;
    let sub = &overview["subscriptions"][0];
    assert_eq!(sub["group_path"], "acme");
    assert_eq!(sub["backfill"]["state"], "done", "{sub}");
    let id = sub["id"].as_i64().unwrap();

    let (status, resync) = call(
        &app,
        reqwest::Method::POST,
        &format!("/admin/api/subscriptions/{id}/resync"),
        Some(ADMIN_TOKEN),
        Some(json!({ "failed": true })),
    )
    .await;
    assert_eq!(
        (status, resync["queued_tasks"].as_i64()),
        (200, Some(0)),
        "nothing failed"
    );
    let (status, resync) = call(
        &app,
        reqwest::Method::POST,
        &format!("/admin/api/subscriptions/{id}/resync"),
        Some(ADMIN_TOKEN),
        None,
    )
    .await;
    assert_eq!(
        (status, resync["queued_tasks"].as_i64()),
        (200, Some(6)),
        "{resync}"
    );
    app.drained().await;

    let (status, _) = call(
        &app,
        reqwest::Method::DELETE,
        &format!("/admin/api/subscriptions/{id}"),
        Some(ADMIN_TOKEN),
        None,
    )
    .await;
    assert_eq!(status, 204);
    assert!(app.store.subscriptions().await.unwrap().is_empty());
    app.stop().await;
}

/// Wrong admin tokens are throttled: after ten in a minute every admin request waits, the right token
/// included, so guessing costs a minute per ten tries. Only the token's digest is compared.
async fn wrong_admin_tokens_are_throttled(db: TestDatabase) {
    let app = TestApp::start(db).await;
    let overview = |token: &str| {
        reqwest::Client::new()
            .get(format!("{}/admin/api/overview", app.base_url))
            .bearer_auth(token.to_owned())
            .send()
    };
    assert_eq!(overview(ADMIN_TOKEN).await.unwrap().status().as_u16(), 200);
    for n in 0..gfj_server::ADMIN_FAILURES_PER_MINUTE {
        let guess = format!("{ADMIN_TOKEN}{n}");
        assert_eq!(overview(&guess).await.unwrap().status().as_u16(), 401);
    }
    for token in ["one more guess", ADMIN_TOKEN] {
        let throttled = overview(token).await.unwrap();
        assert_eq!(throttled.status().as_u16(), 429, "{token}");
        let wait: i64 = throttled.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&wait), "{wait}");
    }
    app.stop().await;
}

/// The admin page lists a job that died with its last error, and runs it again on request; a site
/// flagged by Jira and refused entities are listed too.
async fn the_admin_page_shows_what_needs_attention_and_retries_dead_jobs(db: TestDatabase) {
    let app = TestApp::start_with(db, false).await;
    let (status, clean) = call(
        &app,
        reqwest::Method::GET,
        "/admin/api/attention",
        Some(ADMIN_TOKEN),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(clean["dead_jobs"], json!([]));
    assert_eq!(
        call(
            &app,
            reqwest::Method::GET,
            "/admin/api/attention",
            None,
            None
        )
        .await
        .0,
        401
    );
    // A job no handler can read dies at once, with the reason.
    let now = crate::helpers::now_ms();
    app.store
        .enqueue(
            &[gfj_store::queue::NewJob {
                kind: "no_such_kind".into(),
                payload: "{}".into(),
                dedup_key: None,
                run_at: now,
                max_attempts: 3,
                coalesce_key: None,
                coalesce_seq: None,
            }],
            now,
        )
        .await
        .unwrap();
    app.run_queue_once_through().await;
    app.store
        .flag_site("some-site", "Jira refused the credentials (401)", now)
        .await
        .unwrap();
    let (_, attention) = call(
        &app,
        reqwest::Method::GET,
        "/admin/api/attention",
        Some(ADMIN_TOKEN),
        None,
    )
    .await;
    let dead = &attention["dead_jobs"][0];
    assert_eq!(dead["kind"], "no_such_kind");
    assert!(
        dead["last_error"].as_str().unwrap().contains("unreadable"),
        "{dead}"
    );
    assert_eq!(
        attention["sites"][0]["attention"],
        "Jira refused the credentials (401)"
    );
    let id = dead["id"].as_i64().unwrap();
    let (status, _) = call(
        &app,
        reqwest::Method::POST,
        &format!("/admin/api/jobs/{id}/retry"),
        Some(ADMIN_TOKEN),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let job = app
        .store
        .jobs()
        .await
        .unwrap()
        .into_iter()
        .find(|j| j.id == id)
        .unwrap();
    assert_eq!(
        (job.dead_at, job.attempts),
        (None, 0),
        "due again with all its attempts"
    );
    let (status, _) = call(
        &app,
        reqwest::Method::POST,
        &format!("/admin/api/jobs/{id}/retry"),
        Some(ADMIN_TOKEN),
        None,
    )
    .await;
    assert_eq!(status, 404, "not dead any more");
    app.stop().await;
}

test_on_both_databases!(
    the_admin_page_shows_what_needs_attention_and_retries_dead_jobs,
    an_operator_links_an_oauth_site_from_the_admin_page,
    wrong_admin_tokens_are_throttled,
);
