//! Backfill on link: a group's whole history reaches Jira as history (no transitions), page by page in
//! few Jira requests, resumable after a crash, within its window, with progress that says where it
//! stands and `resync` for what failed.

use std::sync::Arc;
use std::time::Duration;

use gfj_sim::gitlab::Plan;
use gfj_sim::gitlab::ci::JobSpec;
use gfj_store::backfill::TaskState;
use gfj_store::testing::TestDatabase;
use gfj_store::{Clock, ManualClock, test_on_both_databases};
use gfj_sync::{Runner, RunnerConfig};
use gitlab_for_jira::commands::link::HookMode;
use gitlab_for_jira::commands::resync::{ResyncRequest, resync};
use gitlab_for_jira::commands::{serve, status};
use serde_json::Value;

use crate::helpers::{TestApp, now_ms};

fn runner(app: &TestApp, clock: Arc<dyn Clock>) -> Runner {
    Runner::new(
        app.store.clone(),
        clock.clone(),
        serve::handlers(&app.settings, &app.store, clock),
        RunnerConfig {
            lease_ms: 60_000,
            ..Default::default()
        },
    )
}

async fn run_all(runner: &Runner) {
    while runner.run_due().await > 0 {}
}

/// The devinfo bodies Jira received, after the first `skip` requests.
fn devinfo_bodies(app: &TestApp, skip: usize) -> Vec<Value> {
    app.jira
        .requests()
        .into_iter()
        .skip(skip)
        .filter(|r| r.path.contains("/devinfo/") && r.method == "POST")
        .filter_map(|r| r.body)
        .collect()
}

async fn status_json(app: &TestApp) -> Value {
    let text = status::status(&app.store, now_ms(), true, false)
        .await
        .unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Everything a group held before the link reaches Jira: commits beyond one GitLab page, branches with
/// their last commit, open and merged merge requests, a subgroup's project with its pipeline and
/// deployment, all as
/// `BACKFILL` without transitions, the pages of all projects sharing Jira requests.
async fn a_linked_groups_history_reaches_jira_as_a_backfill(db: TestDatabase) {
    let app = TestApp::start(db).await;
    app.install().await;
    let w = app.world(Plan::Free, 40, 1);
    let p = w.projects[0];
    let messages: Vec<String> = (1..=150).map(|n| format!("BF-{n} step {n}")).collect();
    let refs: Vec<&str> = messages.iter().map(String::as_str).collect();
    let shas = app.gitlab.push(p, "main", &refs, w.user).await;
    app.gitlab
        .push(p, "feature/BF-900-login", &["no keys here"], w.user)
        .await;
    let open = app
        .gitlab
        .open_merge_request(
            p,
            "feature/BF-900-login",
            "main",
            "BF-901 login",
            "",
            w.user,
        )
        .await;
    app.gitlab.push(p, "fix", &["a fix"], w.user).await;
    let merged = app
        .gitlab
        .open_merge_request(p, "fix", "main", "BF-902 fix", "", w.user)
        .await;
    app.gitlab.merge_merge_request(p, merged.iid, w.user).await;
    let team = app.gitlab.add_group("team", Some(w.group), Plan::Free);
    let nested = app.gitlab.add_project(team, "svc");
    app.gitlab
        .push(nested, "main", &["BF-950 in a subgroup"], w.user)
        .await;
    let jobs = [
        JobSpec::new("test", "test"),
        JobSpec::deploy("deploy", "production", "production", false),
    ];
    let pipeline = app.gitlab.run_pipeline(nested, "main", &jobs).await;
    for job in &pipeline.job_ids {
        for s in ["running", "success"] {
            app.gitlab.set_job_status(nested, *job, s).await;
        }
    }
    let before_link = app.jira.requests().len();

    app.link("acme", &w.token, HookMode::Auto).await.unwrap();

    for (n, sha) in shas.iter().enumerate() {
        let commits = app.jira.issue(&format!("BF-{}", n + 1)).commits;
        assert_eq!(commits.len(), 1, "BF-{}", n + 1);
        assert_eq!(commits[0]["id"], sha.as_str());
    }
    let branches = app.jira.issue("BF-900").branches;
    assert_eq!(branches.len(), 1);
    assert_eq!(branches[0]["name"], "feature/BF-900-login");
    assert_eq!(
        app.jira.issue("BF-901").branches.len(),
        1,
        "the open merge request's keys are on its branch"
    );
    let prs = app.jira.issue("BF-901").pull_requests;
    assert_eq!(prs.len(), 1);
    assert_eq!(prs[0]["id"], open.id.to_string());
    assert_eq!(prs[0]["status"], "OPEN");
    assert_eq!(
        app.jira.issue("BF-902").pull_requests[0]["status"],
        "MERGED"
    );
    assert_eq!(app.jira.issue("BF-950").commits.len(), 1);
    let builds = app.jira.issue("BF-950").builds;
    assert_eq!(builds.len(), 1, "the pipeline, as a build");
    assert_eq!(builds[0]["state"], "successful");
    let deployments = app.jira.issue("BF-950").deployments;
    assert_eq!(deployments.len(), 1, "the deployment");
    assert_eq!(deployments[0]["state"], "successful");
    assert_eq!(deployments[0]["environment"]["type"], "production");

    // History moves no issue, and goes in about one request per GitLab page.
    let bodies = devinfo_bodies(&app, before_link);
    assert!(!bodies.is_empty());
    for b in &bodies {
        assert_eq!(b["operationType"], "BACKFILL", "{b}");
        assert_eq!(b["preventTransitions"], true);
    }
    // Six GitLab pages (two of commits, one of branches, one of merge requests; one each of commits and
    // branches in the subgroup's project) share requests through the outbox: about 160 entities fit in
    // one of Jira's 1,000-entity requests.
    assert!(
        bodies.len() <= 3,
        "{} devinfo requests for six pages of one subscription",
        bodies.len()
    );

    let report = status_json(&app).await;
    let backfill = &report["backfill"][0];
    assert_eq!(backfill["state"], "done", "{backfill}");
    let projects = backfill["projects"].as_array().unwrap();
    assert_eq!(projects.len(), 2, "the subgroup's project too");
    let commits = projects
        .iter()
        .find(|proj| proj["project_id"] == w.projects[0])
        .unwrap()["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["entity"] == "commits")
        .unwrap()
        .clone();
    assert_eq!(commits["state"], "done");
    assert_eq!(
        commits["items_done"], 154,
        "150 on main, one on each branch, the merge commit and the project's first commit"
    );
    assert_eq!(
        commits["items_sent"], 151,
        "those with keys: the 150 and the merge commit, which names BF-902"
    );
    app.stop().await;
}

/// A worker that dies in the middle of the backfill: another takes the page over once the lease
/// expires, and the backfill continues from its stored cursor, reading no page it had finished again.
async fn an_interrupted_backfill_resumes_where_it_stopped(db: TestDatabase) {
    let app = TestApp::start_with(db, false).await;
    app.install().await;
    let w = app.world(Plan::Free, 40, 1);
    let p = w.projects[0];
    let messages: Vec<String> = (1..=250).map(|n| format!("RS-{n} step")).collect();
    let refs: Vec<&str> = messages.iter().map(String::as_str).collect();
    app.gitlab.push(p, "main", &refs, w.user).await;
    app.link_only("acme", &w.token, HookMode::Auto)
        .await
        .unwrap();
    // Deliveries of the push went nowhere (it came before the link); only the backfill can bring it.
    let clock = ManualClock::starting_at(now_ms());
    let shared: Arc<dyn Clock> = Arc::new(clock.clone());
    let first = runner(&app, shared.clone());
    // Plan, then the first page of every task.
    first.run_due().await;
    first.run_due().await;
    let sub = app.store.subscriptions().await.unwrap()[0].clone();
    let commits_task = || async {
        app.store
            .backfill_tasks(Some(sub.id))
            .await
            .unwrap()
            .into_iter()
            .find(|t| t.entity == gfj_core::jobs::BackfillEntity::Commits)
            .unwrap()
    };
    let t = commits_task().await;
    assert_eq!(
        (t.state, t.next_page, t.items_done),
        (TaskState::Running, 2, 100)
    );

    // A worker claims what is due, the second page among it, and dies (SIGKILL: no outcome is ever
    // recorded).
    let claimed = app
        .store
        .claim("doomed", clock.now_ms(), 60_000, 100)
        .await
        .unwrap();
    assert!(
        claimed
            .iter()
            .any(|j| j.kind == "backfill_page" && j.payload.contains("\"page\":2")),
        "{claimed:?}"
    );

    // Once the lease runs out, a new worker finishes the work.
    clock.advance_ms(61_000);
    run_all(&runner(&app, shared)).await;
    let t = commits_task().await;
    assert_eq!(
        (t.state, t.items_done, t.items_sent),
        (TaskState::Done, 251, 250),
        "the project's first commit has no key"
    );
    for n in [1, 100, 101, 250] {
        assert_eq!(
            app.jira.issue(&format!("RS-{n}")).commits.len(),
            1,
            "RS-{n}"
        );
    }
    let page_reads = |page: &str| {
        app.gitlab
            .requests()
            .iter()
            .filter(|r| r.path.ends_with("/repository/commits"))
            .filter(|r| r.query.split('&').any(|kv| kv == format!("page={page}")))
            .count()
    };
    assert_eq!(page_reads("1"), 1, "the finished page was not read again");
    assert_eq!(page_reads("2"), 1, "the dead worker never read it");
    assert_eq!(page_reads("3"), 1);
    app.stop().await;
}

/// History older than the window (`GFJ_BACKFILL_DAYS`) stays out; `resync --since` brings it.
async fn the_window_bounds_the_backfill_and_resync_since_widens_it(db: TestDatabase) {
    let app = TestApp::start_with_settings(
        db,
        false,
        gfj_sim::jira::JiraSimConfig::default(),
        &[("GFJ_BACKFILL_DAYS", "1")],
    )
    .await;
    app.install().await;
    let w = app.world(Plan::Free, 40, 1);
    let p = w.projects[0];
    app.gitlab
        .push(p, "main", &["OLD-1 long ago"], w.user)
        .await;
    app.gitlab
        .push(p, "feature/OLD-2", &["old branch"], w.user)
        .await;
    app.gitlab
        .open_merge_request(p, "feature/OLD-2", "main", "OLD-3 old change", "", w.user)
        .await;
    app.gitlab.advance_clock(Duration::from_secs(3 * 86_400));
    app.gitlab.push(p, "main", &["NEW-1 today"], w.user).await;
    app.gitlab
        .push(p, "feature/NEW-2", &["new branch"], w.user)
        .await;
    app.link_only("acme", &w.token, HookMode::Auto)
        .await
        .unwrap();
    // The service's clock agrees with GitLab's: three days on.
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::starting_at(now_ms() + 3 * 86_400_000));
    run_all(&runner(&app, clock.clone())).await;
    assert_eq!(app.jira.issue("NEW-1").commits.len(), 1);
    assert_eq!(app.jira.issue("NEW-2").branches.len(), 1);
    for old in ["OLD-1", "OLD-2", "OLD-3"] {
        let v = app.jira.issue(old);
        assert!(
            v.commits.is_empty() && v.branches.is_empty() && v.pull_requests.is_empty(),
            "{old} is older than the window"
        );
    }

    let today = gfj_core::gitlab::GitLabTime::from_unix_ms(now_ms())
        .unwrap()
        .rfc3339()[..10]
        .to_owned();
    let req = ResyncRequest {
        site: app.jira.client_key().to_owned(),
        group: "acme".into(),
        project: None,
        since: Some(today),
        only_failed: false,
    };
    let out = resync(&app.settings, &app.store, &req, clock.now_ms())
        .await
        .unwrap();
    let out: Value = serde_json::to_value(&out).unwrap();
    assert_eq!(
        out["queued_tasks"], 6,
        "every kind of history of the project"
    );
    run_all(&runner(&app, clock)).await;
    assert_eq!(app.jira.issue("OLD-1").commits.len(), 1);
    assert_eq!(app.jira.issue("OLD-2").branches.len(), 1);
    assert_eq!(app.jira.issue("OLD-3").pull_requests.len(), 1);
    app.stop().await;
}

/// A task GitLab refuses fails with the reason, shown by `status`; `resync --failed` runs only it again.
async fn a_failed_task_says_why_and_resync_failed_runs_only_it_again(db: TestDatabase) {
    let app = TestApp::start_with(db, false).await;
    app.install().await;
    let w = app.world(Plan::Free, 40, 1);
    app.gitlab
        .push(w.projects[0], "main", &["FAIL-1 work"], w.user)
        .await;
    app.link_only("acme", &w.token, HookMode::Auto)
        .await
        .unwrap();
    let clock: Arc<dyn Clock> = Arc::new(gfj_store::SystemClock);
    let r = runner(&app, clock.clone());
    r.run_due().await; // the plan, which starts the tasks
    app.gitlab.fail_next(1, 403);
    run_all(&r).await;

    let report = status_json(&app).await;
    let tasks: Vec<Value> = report["backfill"][0]["projects"][0]["tasks"]
        .as_array()
        .unwrap()
        .clone();
    let failed: Vec<&Value> = tasks.iter().filter(|t| t["state"] == "failed").collect();
    assert_eq!(failed.len(), 1, "{tasks:?}");
    assert!(
        failed[0]["error"].as_str().unwrap().contains("403"),
        "{}",
        failed[0]["error"]
    );
    assert_eq!(report["backfill"][0]["state"], "failed");
    let text = status::status(&app.store, now_ms(), false, true)
        .await
        .unwrap();
    assert!(text.contains("backfill failed"), "{text}");
    assert!(text.contains("403"), "{text}");

    let req = ResyncRequest {
        site: app.jira.client_key().to_owned(),
        group: "acme".into(),
        project: Some("acme/p0".into()),
        since: None,
        only_failed: true,
    };
    let out = serde_json::to_value(
        resync(&app.settings, &app.store, &req, now_ms())
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(out["queued_tasks"], 1);
    run_all(&r).await;
    assert_eq!(status_json(&app).await["backfill"][0]["state"], "done");
    assert_eq!(app.jira.issue("FAIL-1").commits.len(), 1);

    let unknown = ResyncRequest {
        project: Some("acme/nope".into()),
        ..req
    };
    let err = resync(&app.settings, &app.store, &unknown, now_ms())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("acme/nope"), "{err}");
    app.stop().await;
}

/// A group hook hears `project_create`: the new project's backfill is planned at once, not at the next
/// reconciliation.
async fn a_project_created_in_a_linked_group_is_backfilled_at_once_and_forgotten_when_destroyed(
    db: TestDatabase,
) {
    let app = TestApp::start(db).await;
    app.install().await;
    let w = app.world(Plan::Premium, 50, 1);
    let linked = app.link("acme", &w.token, HookMode::Auto).await.unwrap();
    assert_eq!(linked.hook_mode.as_str(), "group");
    let before = app.store.backfill_tasks(Some(linked.id)).await.unwrap();
    let fresh = app.gitlab.create_project(w.group, "fresh").await;
    app.drained().await;
    let tasks = app.store.backfill_tasks(Some(linked.id)).await.unwrap();
    let of_fresh: Vec<_> = tasks.iter().filter(|t| t.project_id == fresh).collect();
    assert_eq!(of_fresh.len(), 6, "one task per kind of history: {tasks:?}");
    assert!(
        of_fresh.iter().all(|t| t.state == TaskState::Done),
        "{of_fresh:?}"
    );
    assert_eq!(
        tasks.len(),
        before.len() + 6,
        "the other projects' tasks are untouched"
    );
    app.stop().await;
}

test_on_both_databases!(
    a_project_created_in_a_linked_group_is_backfilled_at_once_and_forgotten_when_destroyed,
    a_linked_groups_history_reaches_jira_as_a_backfill,
    an_interrupted_backfill_resumes_where_it_stopped,
    the_window_bounds_the_backfill_and_resync_since_widens_it,
    a_failed_task_says_why_and_resync_failed_runs_only_it_again,
);
