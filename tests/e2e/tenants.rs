//! Tenants stay apart: a delivery authenticated by one subscription's hook token but naming a project
//! outside its group reaches neither GitLab (beyond one membership check) nor Jira, and is counted.

use gfj_gitlab_client::{GitLabClient, HookScope};
use gfj_sim::gitlab::Plan;
use gfj_store::test_on_both_databases;
use gfj_store::testing::TestDatabase;
use gitlab_for_jira::commands::link::HookMode;
use gitlab_for_jira::commands::status;

use crate::helpers::{TestApp, now_ms};

/// A group the subscription's GitLab user can also read (so its token would see the project), with one
/// project on which a hostile maintainer registered a hook carrying the subscription's hook token.
struct Foreign {
    project: i64,
    hook_id: i64,
    pusher: i64,
}

async fn foreign_project_hooked_with(app: &TestApp, subscriber: i64, hook_token: &str) -> Foreign {
    let other = app.gitlab.add_group("other", None, Plan::Free);
    app.gitlab.add_member(other, subscriber, 40);
    let mallory = app.gitlab.add_user("mallory", "glpat-mallory");
    app.gitlab.add_member(other, mallory, 40);
    let project = app.gitlab.add_project(other, "secret");
    let as_mallory = GitLabClient::new(
        reqwest::Client::new(),
        &app.gitlab.base_url,
        "glpat-mallory",
    );
    let hook = as_mallory
        .create_hook(
            HookScope::Project,
            project,
            &format!("{}/gitlab/webhook", app.base_url),
            hook_token,
            None,
        )
        .await
        .unwrap();
    Foreign {
        project,
        hook_id: hook.id,
        pusher: mallory,
    }
}

/// Push, merge request and pipeline events of the foreign project, all carrying issue keys.
async fn foreign_events(app: &TestApp, f: &Foreign) {
    app.gitlab
        .push(
            f.project,
            "feature/FOR-1-exfiltrate",
            &["FOR-2 secret work"],
            f.pusher,
        )
        .await;
    app.gitlab
        .open_merge_request(
            f.project,
            "feature/FOR-1-exfiltrate",
            "main",
            "FOR-3 secret merge request",
            "",
            f.pusher,
        )
        .await;
    app.gitlab
        .push(f.project, "main", &["FOR-4 on main"], f.pusher)
        .await;
    app.gitlab
        .run_pipeline(
            f.project,
            "main",
            &[gfj_sim::gitlab::ci::JobSpec::new("test", "test")],
        )
        .await;
}

fn nothing_in_jira(app: &TestApp) {
    for key in ["FOR-1", "FOR-2", "FOR-3", "FOR-4"] {
        let v = app.jira.issue(key);
        assert!(
            v.commits.is_empty()
                && v.branches.is_empty()
                && v.pull_requests.is_empty()
                && v.builds.is_empty(),
            "{key} reached Jira through another subscription's token"
        );
    }
}

/// Requests to GitLab about the project (`/api/v4/projects/<id>` and below) since `since`.
fn reads_of(app: &TestApp, project: i64, since: usize) -> Vec<String> {
    let prefix = format!("/api/v4/projects/{project}");
    app.gitlab
        .requests()
        .into_iter()
        .skip(since)
        .filter(|r| r.path == prefix || r.path.starts_with(&format!("{prefix}/")))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

/// Deliveries of the hostile hook that intake accepted (each one a job the worker must drop).
fn accepted_deliveries(app: &TestApp, hook_id: i64) -> usize {
    app.gitlab
        .deliveries()
        .iter()
        .filter(|d| d.hook_id == hook_id && d.status == Some(202))
        .count()
}

async fn dropped_count(app: &TestApp) -> serde_json::Value {
    let json = status::status(&app.store, now_ms(), true, false)
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    v["subscriptions"][0]["foreign_deliveries_dropped"].clone()
}

async fn project_hook_subscriptions_drop_deliveries_of_other_projects(db: TestDatabase) {
    let app = TestApp::start(db).await;
    app.install().await;
    // An instance without signing tokens: the hook token alone authenticates a delivery.
    app.gitlab.set_signing_tokens_supported(false);
    let w = app.world(Plan::Free, 40, 1);
    let linked = app.link("acme", &w.token, HookMode::Auto).await.unwrap();
    assert_eq!(linked.hook_mode, gfj_core::domain::HookScope::Project);
    let token = app.gitlab.hook_token(linked.hooks[0].hook_id).unwrap();
    let foreign = foreign_project_hooked_with(&app, w.user, &token).await;
    let mark = app.gitlab.requests().len();

    foreign_events(&app, &foreign).await;
    app.drained().await;

    let accepted = accepted_deliveries(&app, foreign.hook_id);
    assert!(accepted >= 4, "the hostile hook delivered ({accepted})");
    nothing_in_jira(&app);
    assert_eq!(
        reads_of(&app, foreign.project, mark),
        Vec::<String>::new(),
        "no GitLab read of a project the subscription has no hook on"
    );
    assert_eq!(dropped_count(&app).await, serde_json::json!(accepted));

    // The subscription's own project still syncs.
    app.gitlab
        .push(w.projects[0], "main", &["OWN-1 still synced"], w.user)
        .await;
    app.drained().await;
    assert_eq!(app.jira.issue("OWN-1").commits.len(), 1);
    app.stop().await;
}

async fn group_hook_subscriptions_check_a_new_project_once_and_drop_outsiders(db: TestDatabase) {
    let app = TestApp::start(db).await;
    app.install().await;
    app.gitlab.set_signing_tokens_supported(false);
    let w = app.world(Plan::Premium, 50, 1);
    let web = app.gitlab.add_group("web", Some(w.group), Plan::Premium);
    let linked = app.link("acme", &w.token, HookMode::Auto).await.unwrap();
    assert_eq!(linked.hook_mode, gfj_core::domain::HookScope::Group);
    let token = app.gitlab.hook_token(linked.hooks[0].hook_id).unwrap();
    let foreign = foreign_project_hooked_with(&app, w.user, &token).await;
    let mark = app.gitlab.requests().len();

    // A project of a subgroup, new since the link, is covered.
    let inner = app.gitlab.add_project(web, "inner");
    app.gitlab
        .push(inner, "main", &["GRP-1 in a subgroup"], w.user)
        .await;
    app.drained().await;
    assert_eq!(app.jira.issue("GRP-1").commits.len(), 1);

    foreign_events(&app, &foreign).await;
    app.drained().await;
    nothing_in_jira(&app);
    assert_eq!(
        reads_of(&app, foreign.project, mark),
        [format!("GET /api/v4/projects/{}", foreign.project)],
        "one membership check, remembered for every later delivery"
    );
    let accepted = accepted_deliveries(&app, foreign.hook_id);
    assert!(accepted >= 4, "the hostile hook delivered ({accepted})");
    assert_eq!(dropped_count(&app).await, serde_json::json!(accepted));
    app.stop().await;
}

test_on_both_databases!(
    project_hook_subscriptions_drop_deliveries_of_other_projects,
    group_hook_subscriptions_check_a_new_project_once_and_drop_outsiders,
);
