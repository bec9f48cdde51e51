//! Reconciliation catches what no webhook reports: a push of more than three refs, a deployment
//! waiting for approval, and events GitLab held back while a hook was disabled.

use gfj_core::domain::{ProjectId, SubscriptionId};
use gfj_sim::gitlab::Plan;
use gfj_sim::gitlab::ci::JobSpec;
use gfj_store::test_on_both_databases;
use gfj_store::testing::TestDatabase;

use crate::helpers::{TestApp, now_ms};
use gitlab_for_jira::commands::link::HookMode;

async fn reconcile(app: &TestApp) {
    gfj_sync::reconcile::schedule_reconciles(&app.store, now_ms(), 900_000)
        .await
        .unwrap();
    app.drained().await;
}

async fn what_webhooks_never_say_is_reconciled(db: TestDatabase) {
    let app = TestApp::start(db).await;
    let w = app.linked_world(1).await;
    let p = w.projects[0];
    let deliveries = app.gitlab.deliveries().len();

    // One push of four branches: GitLab sends no webhook at all.
    let messages = [
        ["REF-1 one"],
        ["REF-2 two"],
        ["REF-3 three"],
        ["REF-4 four"],
    ];
    let updates: Vec<(&str, &[&str])> = ["a", "b", "c", "d"]
        .into_iter()
        .zip(messages.iter().map(|m| &m[..]))
        .collect();
    let shas = app.gitlab.push_refs(p, &updates, w.user).await;
    assert_eq!(
        app.gitlab.deliveries().len(),
        deliveries,
        "GitLab stayed silent"
    );

    // A deployment to a protected environment waits for approval: blocked, and no deployment hook; the
    // Job Hook of its waiting job tells the service, which reads the deployment.
    app.gitlab
        .push(p, "main", &["DEP-9 release the login form"], w.user)
        .await;
    app.gitlab.add_environment(p, "production", "production");
    let approver = app.gitlab.add_user("approver", "glpat-approver");
    app.gitlab
        .protect_environment(p, "production", &[approver], 1);
    app.gitlab
        .run_pipeline(
            p,
            "main",
            &[JobSpec::deploy("deploy", "production", "production", false)],
        )
        .await;
    assert!(
        app.gitlab
            .deployments_of(p)
            .iter()
            .any(|d| d.2 == "blocked")
    );
    app.drained().await;
    assert!(app.jira.issue("REF-1").commits.is_empty());
    let deployments = app.jira.issue("DEP-9").deployments;
    assert_eq!(deployments.len(), 1);
    assert_eq!(deployments[0]["state"], "pending", "waiting for approval");

    reconcile(&app).await;
    for (n, sha) in shas.iter().enumerate() {
        let commits = app.jira.issue(&format!("REF-{}", n + 1)).commits;
        assert_eq!(commits.len(), 1, "REF-{}", n + 1);
        assert_eq!(commits[0]["id"], sha[0].as_str());
    }
    let deployments = app.jira.issue("DEP-9").deployments;
    assert_eq!(deployments.len(), 1);
    assert_eq!(deployments[0]["state"], "pending", "still waiting");
    app.stop().await;
}

async fn a_window_gitlab_held_back_is_reconciled_and_the_gap_closed(db: TestDatabase) {
    let app = TestApp::start(db).await;
    let w = app.linked_world(1).await;
    let sub = app.store.subscriptions().await.unwrap()[0].clone();
    let hook = app.store.subscription_hooks(sub.id).await.unwrap()[0].clone();
    // A first pass sets the cursor.
    reconcile(&app).await;
    app.gitlab.disable_hook(hook.hook_id);
    let shas = app
        .gitlab
        .push(w.projects[0], "topic", &["HELD-1 while disabled"], w.user)
        .await;
    assert!(
        app.gitlab.deliveries().last().unwrap().skipped,
        "GitLab did not deliver while the hook was disabled"
    );
    app.drained().await;
    assert!(app.jira.issue("HELD-1").commits.is_empty());

    // The hook check re-enables the hook and records the gap; the next pass fills it.
    gfj_sync::hooks::schedule_hook_checks(&app.store, now_ms(), 300_000)
        .await
        .unwrap();
    app.drained().await;
    assert_eq!(app.store.open_gaps(sub.id).await.unwrap().len(), 1);
    assert!(
        app.jira.issue("HELD-1").commits.is_empty(),
        "GitLab's test delivery (the default branch) did not carry it"
    );
    reconcile(&app).await;
    let commits = app.jira.issue("HELD-1").commits;
    assert_eq!(commits.len(), 1);
    assert_eq!(commits[0]["id"], shas[0].as_str());
    assert!(
        app.store.open_gaps(sub.id).await.unwrap().is_empty(),
        "the gap is reconciled"
    );
    app.stop().await;
}

/// GitLab reports a feature flag only when it is toggled; edits and deletions are found by
/// reconciliation.
async fn feature_flag_edits_and_deletions_are_reconciled(db: TestDatabase) {
    let app = TestApp::start(db).await;
    let w = app.linked_world(1).await;
    let p = w.projects[0];
    let strategy = serde_json::json!({"name": "default", "parameters": {}, "scopes": [{"environment_scope": "*"}]});
    app.gitlab
        .create_feature_flag(p, "new_login", "Rolls out FF-5", false, vec![strategy])
        .await;
    app.gitlab
        .update_feature_flag(p, "new_login", None, Some(true))
        .await;
    app.drained().await;
    assert_eq!(app.jira.issue("FF-5").feature_flags.len(), 1);

    let deliveries = app.gitlab.deliveries().len();
    app.gitlab
        .update_feature_flag(p, "new_login", Some("Rolls out FF-6 now"), None)
        .await;
    assert_eq!(
        app.gitlab.deliveries().len(),
        deliveries,
        "no webhook for an edit"
    );
    reconcile(&app).await;
    let flags = app.jira.issue("FF-6").feature_flags;
    assert_eq!(flags.len(), 1, "the edit reached Jira");
    assert!(app.jira.issue("FF-5").feature_flags.is_empty());

    app.gitlab.delete_feature_flag(p, "new_login").await;
    reconcile(&app).await;
    assert!(
        app.jira.issue("FF-6").feature_flags.is_empty(),
        "the deleted flag left Jira"
    );
    app.stop().await;
}

/// A project that joins the group brings its history: sent as a backfill (`operationType: BACKFILL`,
/// `preventTransitions`), while later live events are NORMAL.
async fn a_new_projects_history_is_backfilled_without_transitions(db: TestDatabase) {
    let app = TestApp::start(db).await;
    let w = app.linked_world(1).await;
    let newcomer = app.gitlab.add_project(w.group, "newcomer");
    app.gitlab
        .push(newcomer, "main", &["HIST-1 work from before"], w.user)
        .await;
    gfj_sync::hooks::schedule_hook_checks(&app.store, now_ms(), 300_000)
        .await
        .unwrap();
    app.drained().await;
    reconcile(&app).await;
    assert_eq!(app.jira.issue("HIST-1").commits.len(), 1);
    let sent_with = |key: &str| {
        app.jira
            .requests()
            .into_iter()
            .filter_map(|r| r.body)
            .find(|b| b.to_string().contains(key))
            .map(|b| (b["operationType"].clone(), b["preventTransitions"].clone()))
    };
    assert_eq!(
        sent_with("HIST-1"),
        Some((serde_json::json!("BACKFILL"), serde_json::json!(true)))
    );

    app.gitlab
        .push(newcomer, "main", &["LIVE-1 new work"], w.user)
        .await;
    app.drained().await;
    assert_eq!(
        sent_with("LIVE-1"),
        Some((serde_json::json!("NORMAL"), serde_json::json!(false)))
    );
    app.stop().await;
}

/// A pipeline that ran while GitLab held the hook's deliveries back reaches Jira as a build.
async fn a_pipeline_gitlab_held_back_is_reconciled(db: TestDatabase) {
    let app = TestApp::start(db).await;
    let w = app.linked_world(1).await;
    let p = w.projects[0];
    let sub = app.store.subscriptions().await.unwrap()[0].clone();
    let hook = app.store.subscription_hooks(sub.id).await.unwrap()[0].clone();
    reconcile(&app).await;
    app.gitlab.disable_hook(hook.hook_id);
    app.gitlab
        .push(p, "main", &["PIPE-1 faster tests"], w.user)
        .await;
    let pipeline = app
        .gitlab
        .run_pipeline(p, "main", &[JobSpec::new("test", "test")])
        .await;
    app.gitlab
        .set_job_status(p, pipeline.job_ids[0], "running")
        .await;
    app.gitlab
        .set_job_status(p, pipeline.job_ids[0], "success")
        .await;
    gfj_sync::hooks::schedule_hook_checks(&app.store, now_ms(), 300_000)
        .await
        .unwrap();
    app.drained().await;
    assert!(
        app.jira.issue("PIPE-1").builds.is_empty(),
        "no webhook said so"
    );
    reconcile(&app).await;
    let builds = app.jira.issue("PIPE-1").builds;
    assert_eq!(builds.len(), 1);
    assert_eq!(builds[0]["state"], "successful");
    assert_eq!(builds[0]["buildNumber"], pipeline.iid);
    assert_eq!(builds[0]["testInfo"]["numberPassed"], 1);
    app.stop().await;
}

/// GitLab sends no webhook when a merge request is deleted: reconciliation finds it missing from
/// GitLab's list and deletes it from Jira, leaving the other merge requests alone.
async fn a_deleted_merge_request_leaves_jira(db: TestDatabase) {
    let app = TestApp::start(db).await;
    let w = app.linked_world(1).await;
    let p = w.projects[0];
    for branch in ["gone", "kept"] {
        app.gitlab
            .push(p, branch, &["work without keys"], w.user)
            .await;
    }
    let gone = app
        .gitlab
        .open_merge_request(p, "gone", "main", "DEL-1 a mistake", "", w.user)
        .await;
    app.gitlab
        .open_merge_request(p, "kept", "main", "DEL-2 the real change", "", w.user)
        .await;
    app.drained().await;
    assert_eq!(app.jira.issue("DEL-1").pull_requests.len(), 1);

    let deliveries = app.gitlab.deliveries().len();
    app.gitlab.delete_merge_request(p, gone.iid);
    assert_eq!(app.gitlab.deliveries().len(), deliveries, "no webhook");
    reconcile(&app).await;
    assert!(
        app.jira.issue("DEL-1").pull_requests.is_empty(),
        "the deleted merge request left Jira"
    );
    assert_eq!(app.jira.issue("DEL-2").pull_requests.len(), 1);
    let sub = app.store.subscriptions().await.unwrap()[0].clone();
    assert_eq!(
        app.store
            .sent_merge_requests(SubscriptionId(sub.id), ProjectId(p))
            .await
            .unwrap()
            .len(),
        1,
        "only the remaining one is remembered"
    );
    app.stop().await;
}

/// GitLab tells group hooks nothing when a project moves between groups. A project moved into the linked
/// group has its history backfilled on its first delivery; one moved out is forgotten by the next
/// reconciliation and its data leaves Jira; a removed subgroup's projects leave at once.
async fn projects_that_move_in_or_out_of_a_linked_group_follow_it(db: TestDatabase) {
    let app = TestApp::start(db).await;
    app.install().await;
    let w = app.world(Plan::Premium, 50, 2);
    let (leaving, in_subgroup) = (w.projects[0], w.projects[1]);
    let team = app.gitlab.add_group("team", Some(w.group), Plan::Premium);
    app.gitlab.transfer_project(in_subgroup, team);
    // History from before the link, so that only the backfill sends it.
    app.gitlab
        .push(leaving, "main", &["LEAVE-1 history"], w.user)
        .await;
    app.gitlab
        .push(in_subgroup, "main", &["SUB-1 history"], w.user)
        .await;
    let linked = app.link("acme", &w.token, HookMode::Auto).await.unwrap();
    assert_eq!(linked.hook_mode.as_str(), "group");
    app.drained().await;
    assert_eq!(app.jira.issue("LEAVE-1").commits.len(), 1);
    assert_eq!(app.jira.issue("SUB-1").commits.len(), 1);

    let elsewhere = app.gitlab.add_group("elsewhere", None, Plan::Premium);
    app.gitlab.add_member(elsewhere, w.user, 50);
    let arriving = app.gitlab.add_project(elsewhere, "arriving");
    app.gitlab
        .push(
            arriving,
            "main",
            &["MOVE-1 work from before the move"],
            w.user,
        )
        .await;
    app.gitlab.transfer_project(arriving, w.group);
    app.gitlab
        .push(
            arriving,
            "main",
            &["MOVE-2 the first work after it"],
            w.user,
        )
        .await;
    app.drained().await;
    assert_eq!(app.jira.issue("MOVE-2").commits.len(), 1);
    assert_eq!(
        app.jira.issue("MOVE-1").commits.len(),
        1,
        "backfilled on its first delivery"
    );

    app.gitlab.transfer_project(leaving, elsewhere);
    reconcile(&app).await;
    assert!(
        app.jira.issue("LEAVE-1").commits.is_empty(),
        "its data left Jira"
    );
    let tasks = app.store.backfill_tasks(Some(linked.id)).await.unwrap();
    assert!(tasks.iter().all(|t| t.project_id != leaving), "{tasks:?}");
    assert!(tasks.iter().any(|t| t.project_id == arriving));

    app.gitlab.remove_project(in_subgroup);
    app.gitlab
        .deliver_group_event(
            team,
            "Subgroup Hook",
            serde_json::json!({
                "event_name": "subgroup_destroy", "name": "team", "path": "team",
                "full_path": "acme/team", "group_id": team, "parent_group_id": w.group,
                "parent_name": "acme", "parent_path": "acme", "parent_full_path": "acme",
            }),
        )
        .await;
    app.drained().await;
    assert!(
        app.jira.issue("SUB-1").commits.is_empty(),
        "its data left Jira"
    );
    assert_eq!(app.jira.issue("MOVE-2").commits.len(), 1, "the others stay");
    app.stop().await;
}

test_on_both_databases!(
    projects_that_move_in_or_out_of_a_linked_group_follow_it,
    a_deleted_merge_request_leaves_jira,
    a_pipeline_gitlab_held_back_is_reconciled,
    a_new_projects_history_is_backfilled_without_transitions,
    feature_flag_edits_and_deletions_are_reconciled,
    what_webhooks_never_say_is_reconciled,
    a_window_gitlab_held_back_is_reconciled_and_the_gap_closed,
);
