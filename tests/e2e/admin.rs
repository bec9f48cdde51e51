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

async fn admin_get(app: &TestApp, path: &str) -> (u16, Value) {
    call(app, reqwest::Method::GET, path, Some(ADMIN_TOKEN), None).await
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

/// The admin page's two questions: why an issue key is (not) in Jira — the same report as
/// `status --issue` — and, per linked group, each project's backfill tasks with their failure reasons.
async fn the_admin_page_answers_why_a_key_is_missing_and_what_failed_per_project(db: TestDatabase) {
    let app = TestApp::start(db).await;
    app.install().await;
    let w = app.world(Plan::Free, 40, 2);
    app.gitlab
        .push(w.projects[0], "main", &["WHY-1 first"], w.user)
        .await;
    app.gitlab.fail_next_on("/repository/branches", 403, false);
    let linked = app
        .link(
            "acme",
            &w.token,
            gitlab_for_jira::commands::link::HookMode::Auto,
        )
        .await
        .unwrap();

    let (status, report) = admin_get(&app, "/admin/api/issues/why-1").await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["issue_key"], "WHY-1");
    assert_eq!(report["sent"][0]["entity_type"], "commit");
    assert_eq!(report["sent"][0]["verdict"], "accepted");
    let cli = gitlab_for_jira::commands::status::issue(&app.store, "WHY-1", 30, true)
        .await
        .unwrap();
    assert_eq!(
        report,
        serde_json::from_str::<Value>(&cli).unwrap(),
        "the page shows what status --issue shows"
    );
    for bad in ["WHY", "why-1%20OPS-2", "..%2Fadmin", "A-1"] {
        let (status, answer) = admin_get(&app, &format!("/admin/api/issues/{bad}")).await;
        assert_eq!(status, 400, "{bad}: {answer}");
    }
    let (status, _) = call(
        &app,
        reqwest::Method::GET,
        "/admin/api/issues/WHY-1",
        None,
        None,
    )
    .await;
    assert_eq!(status, 401);

    let (status, backfill) = admin_get(
        &app,
        &format!("/admin/api/subscriptions/{}/backfill", linked.id),
    )
    .await;
    assert_eq!(status, 200, "{backfill}");
    assert_eq!(backfill["state"], "failed");
    let projects = backfill["projects"].as_array().unwrap();
    assert_eq!(projects.len(), 2);
    let failed: Vec<&Value> = projects
        .iter()
        .flat_map(|p| p["tasks"].as_array().unwrap())
        .filter(|t| t["state"] == "failed")
        .collect();
    assert_eq!(failed.len(), 1, "{backfill}");
    assert_eq!(failed[0]["entity"], "branches");
    assert!(failed[0]["error"].as_str().unwrap().contains("403"));
    let (status, _) = admin_get(&app, "/admin/api/subscriptions/999/backfill").await;
    assert_eq!(status, 404);
    app.stop().await;
}

test_on_both_databases!(
    the_admin_page_answers_why_a_key_is_missing_and_what_failed_per_project,
    the_admin_page_shows_what_needs_attention_and_retries_dead_jobs,
    an_operator_links_an_oauth_site_from_the_admin_page,
    wrong_admin_tokens_are_throttled,
);
