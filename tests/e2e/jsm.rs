//! Jira Service Management: service IDs on deployments, set per project or inherited from a group.

use gfj_sim::gitlab::ci::JobSpec;
use gfj_sim::jira::JiraSimConfig;
use gfj_store::test_on_both_databases;
use gfj_store::testing::TestDatabase;
use gitlab_for_jira::commands::jsm::{self, SetRequest, Target};
use gitlab_for_jira::commands::link::HookMode;
use gitlab_for_jira::commands::status;
use serde_json::Value;

use crate::helpers::{TestApp, World, now_ms};

/// A site whose JSM knows `grp1`, `svcA` and `s0`…`s99`, but not `svcB`.
fn jsm_site() -> JiraSimConfig {
    let mut known: Vec<String> = ["grp1", "svcA"].map(String::from).to_vec();
    known.extend((0..100).map(|n| format!("s{n}")));
    JiraSimConfig {
        known_services: Some(known),
        ..JiraSimConfig::default()
    }
}

async fn set(app: &TestApp, target: Target, ids: &str) -> anyhow::Result<String> {
    let req = SetRequest {
        target,
        service_ids: Some(ids.to_owned()),
        ..SetRequest::default()
    };
    jsm::set(&app.settings, &app.store, &req, now_ms()).await
}

/// Pushes `message` to main and deploys it to production through a pipeline that succeeds.
async fn deploy(app: &TestApp, w: &World, project: i64, message: &str) {
    app.gitlab.push(project, "main", &[message], w.user).await;
    let pipeline = app
        .gitlab
        .run_pipeline(
            project,
            "main",
            &[JobSpec::deploy("deploy", "production", "production", false)],
        )
        .await;
    for job in &pipeline.job_ids {
        app.gitlab.set_job_status(project, *job, "running").await;
        app.gitlab.set_job_status(project, *job, "success").await;
    }
    app.drained().await;
}

/// The service IDs a stored deployment carries, and whether they come before its issue keys.
fn services_of(d: &Value) -> Vec<String> {
    let associations = d["associations"].as_array().unwrap();
    assert_eq!(
        associations[0]["associationType"], "serviceIdOrKeys",
        "services come first: {d}"
    );
    associations[0]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

async fn service_ids_ride_on_deployments_and_projects_inherit_them(db: TestDatabase) {
    let app = TestApp::start_custom(db, true, jsm_site()).await;
    let w = app.linked_world(2).await;
    let (p0, p1) = (w.projects[0], w.projects[1]);
    set(&app, Target::Group("acme".into()), "grp1")
        .await
        .unwrap();
    set(
        &app,
        Target::Project("acme/p1".into()),
        " svcA, svcB,, svcA ",
    )
    .await
    .unwrap();

    // p0 inherits the group's service; its deployment names no issue key and is sent all the same.
    deploy(&app, &w, p0, "tune the pool").await;
    let on_service = app.jira.service_deployments("grp1");
    assert_eq!(on_service.len(), 1, "the keyless deployment is in Jira");
    assert_eq!(services_of(&on_service[0]), ["grp1"]);
    assert_eq!(on_service[0]["associations"].as_array().unwrap().len(), 1);

    // p1's own list replaces the group's: services first, then the issue keys.
    deploy(&app, &w, p1, "DEP-1 ship it").await;
    let d = &app.jira.issue("DEP-1").deployments;
    assert_eq!(d.len(), 1);
    assert_eq!(services_of(&d[0]), ["svcA", "svcB"]);
    assert_eq!(d[0]["associations"][1]["associationType"], "issueKeys");
    assert_eq!(d[0]["associations"][1]["values"][0], "DEP-1");
    // Jira does not know svcB: status says so, apart from unknown issue keys.
    let text = status::status(&app.store, now_ms(), false, false)
        .await
        .unwrap();
    assert!(
        text.contains("JSM services Jira does not know: svcB"),
        "{text}"
    );
    assert!(!text.contains("issue keys Jira does not know"), "{text}");
    let json: Value = serde_json::from_str(
        &status::status(&app.store, now_ms(), true, false)
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(json["sites"][0]["unknown_services"][0], "svcB");

    // 100 service IDs are taken; 101 are refused with GitLab's message, and nothing changes.
    let hundred: Vec<String> = (0..100).map(|n| format!("s{n}")).collect();
    let err = set(
        &app,
        Target::Project("acme/p1".into()),
        &format!("{},s100", hundred.join(",")),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("cannot have more than 100 service IDs"),
        "{err}"
    );
    let shown: Value = serde_json::from_str(&jsm::show(&app.store, true).await.unwrap()).unwrap();
    let p1_in_force = shown[0]["projects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["path"] == "acme/p1")
        .unwrap()["in_force"]
        .clone();
    assert_eq!(
        p1_in_force["service_ids"],
        serde_json::json!(["svcA", "svcB"])
    );
    set(&app, Target::Project("acme/p1".into()), &hundred.join(","))
        .await
        .unwrap();
    deploy(&app, &w, p1, "DEP-2 ship more").await;
    let d = &app.jira.issue("DEP-2").deployments;
    assert_eq!(services_of(&d[0]), hundred);

    // `jsm show` says where each project's services come from.
    let text = jsm::show(&app.store, false).await.unwrap();
    assert!(
        text.contains("in force for acme/p0: service IDs grp1 (from acme)"),
        "{text}"
    );
    assert!(
        text.contains("project acme/p1: service IDs s0,s1,"),
        "{text}"
    );

    // Cleared, p1 inherits the group's again.
    jsm::clear(&app.store, None, &Target::Project("acme/p1".into()))
        .await
        .unwrap();
    deploy(&app, &w, p1, "DEP-3 and again").await;
    assert_eq!(
        services_of(&app.jira.issue("DEP-3").deployments[0]),
        ["grp1"]
    );
    app.stop().await;
}

/// Paths outside the linked groups, unknown projects and bad lists are refused with what to do.
async fn jsm_settings_refuse_what_they_cannot_apply(db: TestDatabase) {
    let app = TestApp::start_custom(db, true, jsm_site()).await;
    app.linked_world(1).await;
    for (target, ids, expected) in [
        (
            Target::Project("other/p0".into()),
            "svcA",
            "is not in a linked group",
        ),
        (
            Target::Project("acme/nope".into()),
            "svcA",
            "is not a project of acme",
        ),
        (Target::Group("acme/sub".into()), "svcA", "nor a subgroup"),
        (Target::Group("acme".into()), "svc a", "is not valid"),
    ] {
        let err = set(&app, target.clone(), ids).await.unwrap_err();
        assert!(err.to_string().contains(expected), "{target:?}: {err}");
    }
    assert_eq!(
        jsm::show(&app.store, false).await.unwrap(),
        "acme → ".to_owned() + &app.jira.base_url + "\n  no JSM settings"
    );
    app.stop().await;
}

/// A group's service IDs set before its backfill runs are on the backfilled deployments.
async fn backfilled_deployments_carry_service_ids(db: TestDatabase) {
    let app = TestApp::start_custom(db, false, jsm_site()).await;
    app.install().await;
    let w = app.world(gfj_sim::gitlab::Plan::Free, 40, 1);
    let p = w.projects[0];
    app.gitlab
        .push(p, "main", &["HIST-1 old work"], w.user)
        .await;
    let pipeline = app
        .gitlab
        .run_pipeline(
            p,
            "main",
            &[JobSpec::deploy("deploy", "production", "production", false)],
        )
        .await;
    for job in &pipeline.job_ids {
        app.gitlab.set_job_status(p, *job, "running").await;
        app.gitlab.set_job_status(p, *job, "success").await;
    }
    app.link_only("acme", &w.token, HookMode::Auto)
        .await
        .unwrap();
    set(&app, Target::Group("acme".into()), "grp1")
        .await
        .unwrap();
    app.run_queue_once_through().await;
    let d = &app.jira.issue("HIST-1").deployments;
    assert_eq!(d.len(), 1, "backfilled");
    assert_eq!(services_of(&d[0]), ["grp1"]);
    app.stop().await;
}

/// A request to the service with an optional `Authorization` header; the answer's status and JSON.
async fn call(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    authorization: Option<String>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = reqwest::Client::new().request(method, format!("{}{path}", app.base_url));
    if let Some(a) = authorization {
        req = req.header("Authorization", a);
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

/// The admin page and the configuration page change JSM settings as `jsm set` does, each within
/// its rights.
async fn the_pages_change_jsm_settings_like_the_command(db: TestDatabase) {
    use reqwest::Method;
    let app = TestApp::start_custom(db, true, jsm_site()).await;
    app.linked_world(2).await;
    let sub = app.store.subscriptions().await.unwrap()[0].id;
    let bearer = Some(format!("Bearer {}", crate::helpers::ADMIN_TOKEN));

    // Admin page: set, read back, refuse, clear.
    let body = serde_json::json!({ "group": "acme", "service_ids": "grp1" });
    let path = format!("/admin/api/subscriptions/{sub}/jsm");
    assert_eq!(
        call(&app, Method::PUT, &path, None, Some(body.clone()))
            .await
            .0,
        401
    );
    let (status, change) = call(&app, Method::PUT, &path, bearer.clone(), Some(body)).await;
    assert_eq!(status, 200, "{change}");
    assert_eq!(
        change["settings"]["service_ids"],
        serde_json::json!(["grp1"])
    );
    let (_, all) = call(&app, Method::GET, "/admin/api/jsm", bearer.clone(), None).await;
    assert_eq!(
        all[0]["projects"][0]["in_force"]["service_ids"],
        serde_json::json!(["grp1"])
    );
    let too_many: Vec<String> = (0..101).map(|n| format!("s{n}")).collect();
    let (status, refused) = call(
        &app,
        Method::PUT,
        &path,
        bearer.clone(),
        Some(serde_json::json!({ "project": "acme/p0", "service_ids": too_many.join(",") })),
    )
    .await;
    assert_eq!(status, 422);
    assert!(
        refused
            .to_string()
            .contains("cannot have more than 100 service IDs"),
        "{refused}"
    );
    let (status, _) = call(
        &app,
        Method::PUT,
        &path,
        bearer.clone(),
        Some(serde_json::json!({ "project": "acme/missing", "service_ids": "x" })),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = call(
        &app,
        Method::PUT,
        &path,
        bearer.clone(),
        Some(serde_json::json!({ "project": "acme/p0", "group": "acme" })),
    )
    .await;
    assert_eq!(status, 400, "one target");

    // Configuration page: a Jira administrator of the site sets a project's own list.
    app.jira.add_user("admin-1", &["site-admins"]);
    app.jira.add_user("dev-1", &["jira-software-users"]);
    let jwt = |account: &str| Some(format!("JWT {}", app.jira.context_token(account)));
    let page_path = format!("/jira/subscriptions/{sub}/jsm");
    let own = serde_json::json!({ "project": "acme/p1", "service_ids": "svcA" });
    assert_eq!(
        call(
            &app,
            Method::PUT,
            &page_path,
            jwt("dev-1"),
            Some(own.clone())
        )
        .await
        .0,
        403
    );
    assert_eq!(
        call(
            &app,
            Method::PUT,
            "/jira/subscriptions/9999/jsm",
            jwt("admin-1"),
            Some(own.clone())
        )
        .await
        .0,
        404
    );
    let (status, change) = call(&app, Method::PUT, &page_path, jwt("admin-1"), Some(own)).await;
    assert_eq!(status, 200, "{change}");
    let (_, mine) = call(&app, Method::GET, "/jira/jsm", jwt("admin-1"), None).await;
    let p1 = mine[0]["projects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["path"] == "acme/p1")
        .unwrap()
        .clone();
    assert_eq!(p1["in_force"]["service_ids"], serde_json::json!(["svcA"]));
    let (status, cleared) = call(
        &app,
        Method::POST,
        &format!("{page_path}/clear"),
        jwt("admin-1"),
        Some(serde_json::json!({ "project": "acme/p1" })),
    )
    .await;
    assert_eq!(
        (status, cleared["removed"].clone()),
        (200, Value::Bool(true))
    );
    app.stop().await;
}

/// An OAuth-credentials site gets the same service IDs (the deployments API path differs).
async fn service_ids_reach_an_oauth_site(db: TestDatabase) {
    let app = TestApp::start_custom(db, true, jsm_site()).await;
    app.add_oauth_site().await;
    let w = app.world(gfj_sim::gitlab::Plan::Free, 40, 1);
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
    set(&app, Target::Group("acme".into()), "grp1")
        .await
        .unwrap();
    deploy(&app, &w, w.projects[0], "OAU-1 ship").await;
    let d = &app.jira.issue("OAU-1").deployments;
    assert_eq!(d.len(), 1);
    assert_eq!(services_of(&d[0]), ["grp1"]);
    assert!(
        app.jira
            .requests()
            .iter()
            .any(|r| r.path.starts_with("/jira/deployments/0.1/cloud/") && r.status == 202),
        "sent through the OAuth API path"
    );
    app.stop().await;
}

test_on_both_databases!(
    service_ids_ride_on_deployments_and_projects_inherit_them,
    jsm_settings_refuse_what_they_cannot_apply,
    backfilled_deployments_carry_service_ids,
    the_pages_change_jsm_settings_like_the_command,
    service_ids_reach_an_oauth_site,
);
