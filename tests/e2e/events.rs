//! Every GitLab event kind end to end: merge requests, pipelines (builds), deployments and feature
//! flags, from the GitLab simulator's webhooks to the Jira simulator's panel, in both Jira connection
//! modes (Connect and OAuth credentials) on both databases.

use gfj_sim::gitlab::Plan;
use gfj_sim::gitlab::ci::JobSpec;
use gfj_store::test_on_both_databases;
use gfj_store::testing::TestDatabase;
use gitlab_for_jira::commands::link::{self, HookMode, LinkRequest};
use gitlab_for_jira::commands::{sites, status};
use serde_json::json;

use crate::helpers::{TestApp, World, now_ms};

/// Links a Free group with one project to the Jira site, in Connect or OAuth-credentials mode.
async fn linked(app: &TestApp, oauth: bool) -> World {
    let site = if oauth {
        app.add_oauth_site().await;
        app.jira.base_url.clone()
    } else {
        app.install().await;
        app.jira.client_key().to_owned()
    };
    let w = app.world(Plan::Free, 40, 1);
    let req = LinkRequest {
        site,
        group: "acme".into(),
        gitlab_url: app.gitlab.base_url.clone(),
        gitlab_token: w.token.clone(),
        gitlab_connection: None,
        hook_mode: HookMode::Auto,
    };
    link::link(&app.settings, &app.store, req, now_ms())
        .await
        .unwrap();
    app.backfilled().await;
    w
}

async fn every_event_kind_reaches_the_panel(app: &TestApp, w: &World) {
    let p = w.projects[0];

    // A merge request: keys from its title/description and (by default) its source branch name.
    app.gitlab
        .push(p, "feature/MR-1-login", &["start the login form"], w.user)
        .await;
    let mr = app
        .gitlab
        .open_merge_request(
            p,
            "feature/MR-1-login",
            "main",
            "Login form",
            "Implements MR-2.",
            w.user,
        )
        .await;
    app.drained().await;
    for key in ["MR-1", "MR-2"] {
        let prs = app.jira.issue(key).pull_requests;
        assert_eq!(prs.len(), 1, "{key}");
        assert_eq!(prs[0]["id"], mr.id.to_string());
        assert_eq!(prs[0]["displayId"], format!("acme/p0!{}", mr.iid));
        assert_eq!(prs[0]["status"], "OPEN");
    }
    assert_eq!(
        app.jira.issue("MR-2").branches.len(),
        1,
        "the open MR's branch carries its keys"
    );
    // A later push to the branch keeps the keys the open MR gave it.
    let polished = app
        .gitlab
        .push(p, "feature/MR-1-login", &["polish"], w.user)
        .await;
    app.drained().await;
    let branches = app.jira.issue("MR-2").branches;
    assert_eq!(
        branches.len(),
        1,
        "the push did not take MR-2 off the branch"
    );
    assert_eq!(branches[0]["lastCommit"]["id"], polished[0].as_str());
    app.gitlab.merge_merge_request(p, mr.iid, w.user).await;
    app.drained().await;
    assert_eq!(app.jira.issue("MR-2").pull_requests[0]["status"], "MERGED");

    // A pipeline with a deployment job: a build, then a deployment.
    app.gitlab
        .push(p, "main", &["BLD-7 ship the login form"], w.user)
        .await;
    app.gitlab.add_environment(p, "production", "production");
    let pipeline = app
        .gitlab
        .run_pipeline(
            p,
            "main",
            &[
                JobSpec::new("test", "test"),
                JobSpec::deploy("deploy", "production", "production", false),
            ],
        )
        .await;
    for job in &pipeline.job_ids {
        app.gitlab.set_job_status(p, *job, "running").await;
        app.gitlab.set_job_status(p, *job, "success").await;
    }
    app.drained().await;
    let builds = app.jira.issue("BLD-7").builds;
    assert_eq!(builds.len(), 1, "one Jira pipeline per project and ref");
    assert_eq!(builds[0]["buildNumber"], pipeline.iid);
    assert_eq!(builds[0]["state"], "successful");
    assert_eq!(builds[0]["testInfo"]["numberPassed"], 2);
    let deployments = app.jira.issue("BLD-7").deployments;
    assert_eq!(deployments.len(), 1);
    let d = &deployments[0];
    assert_eq!(d["state"], "successful");
    assert_eq!(d["environment"]["type"], "production");
    assert_eq!(d["pipeline"]["id"], pipeline.id.to_string());
    let deployed = app.gitlab.deployments_of(p);
    assert_eq!(d["deploymentSequenceNumber"], deployed[0].1);

    // A feature flag: created silently, then toggled (the only change GitLab reports).
    app.gitlab
        .create_feature_flag(
            p,
            "new_login",
            "Rolls out FF-3",
            false,
            vec![json!({"name": "flexibleRollout", "parameters": {"groupId": "default", "rollout": "25", "stickiness": "default"}, "scopes": [{"environment_scope": "production"}]})],
        )
        .await;
    assert!(app.jira.issue("FF-3").feature_flags.is_empty());
    app.gitlab
        .update_feature_flag(p, "new_login", None, Some(true))
        .await;
    app.drained().await;
    let flags = app.jira.issue("FF-3").feature_flags;
    assert_eq!(flags.len(), 1);
    assert_eq!(flags[0]["key"], "new_login");
    assert_eq!(flags[0]["summary"]["status"]["enabled"], true);
    assert_eq!(flags[0]["details"][0]["environment"]["type"], "production");

    // Every body Jira accepted passed its OpenAPI validation; nothing was refused.
    assert!(app.store.rejections().await.unwrap().is_empty());

    // Unlinking deletes from Jira everything the subscription sent, in every API.
    link::unlink(
        &app.settings,
        &app.store,
        &app.jira.base_url,
        "acme",
        now_ms(),
    )
    .await
    .unwrap();
    app.drained().await;
    for key in ["MR-1", "MR-2", "BLD-7", "FF-3"] {
        let v = app.jira.issue(key);
        assert!(
            v.commits.is_empty()
                && v.branches.is_empty()
                && v.pull_requests.is_empty()
                && v.builds.is_empty()
                && v.deployments.is_empty()
                && v.feature_flags.is_empty(),
            "{key} still shows {v:?}"
        );
    }
}

async fn every_event_kind_reaches_a_connect_site(db: TestDatabase) {
    let app = TestApp::start(db).await;
    let w = linked(&app, false).await;
    every_event_kind_reaches_the_panel(&app, &w).await;
    app.stop().await;
}

async fn every_event_kind_reaches_an_oauth_site(db: TestDatabase) {
    let app = TestApp::start(db).await;
    let w = linked(&app, true).await;
    every_event_kind_reaches_the_panel(&app, &w).await;
    assert!(
        app.jira
            .requests()
            .iter()
            .filter(|r| r.path.contains("/0.1/"))
            .all(|r| r
                .path
                .contains(&format!("/0.1/cloud/{}/", app.jira.cloud_id()))),
        "every API call went through the OAuth paths"
    );
    app.stop().await;
}

/// GitLab puts only the newest 20 commits in a push; the rest are read from GitLab, so none is lost.
async fn a_push_of_more_than_twenty_commits_sends_them_all(db: TestDatabase) {
    let app = TestApp::start(db).await;
    let w = linked(&app, false).await;
    let messages: Vec<String> = (1..=25).map(|n| format!("BIG-{n} step {n}")).collect();
    let refs: Vec<&str> = messages.iter().map(String::as_str).collect();
    let shas = app.gitlab.push(w.projects[0], "main", &refs, w.user).await;
    assert_eq!(shas.len(), 25);
    app.drained().await;
    for (n, sha) in shas.iter().enumerate() {
        let commits = app.jira.issue(&format!("BIG-{}", n + 1)).commits;
        assert_eq!(commits.len(), 1, "BIG-{}", n + 1);
        assert_eq!(commits[0]["id"], sha.as_str());
    }
    // And on a new branch, the commits not on the default branch.
    let more: Vec<String> = (1..=22).map(|n| format!("NEW-{n} more {n}")).collect();
    let refs: Vec<&str> = more.iter().map(String::as_str).collect();
    app.gitlab.push(w.projects[0], "topic", &refs, w.user).await;
    app.drained().await;
    assert_eq!(app.jira.issue("NEW-1").commits.len(), 1);
    assert_eq!(app.jira.issue("NEW-22").commits.len(), 1);
    app.stop().await;
}

/// A site that names its Jira projects gets only their issue keys: `UTF-8` is not an issue.
async fn a_sites_project_keys_drop_look_alike_keys(db: TestDatabase) {
    let app = TestApp::start(db).await;
    let w = linked(&app, false).await;
    let bad = sites::set_project_keys(&app.store, &app.jira.base_url, "PROJ,utf")
        .await
        .unwrap_err();
    assert!(bad.to_string().contains("\"utf\""), "{bad}");
    let said = sites::set_project_keys(&app.store, &app.jira.base_url, "PROJ")
        .await
        .unwrap();
    assert!(said.contains("only issue keys of PROJ"), "{said}");
    let shas = app
        .gitlab
        .push(
            w.projects[0],
            "main",
            &["Switch to UTF-8 for PROJ-4", "Use SHA-256 everywhere"],
            w.user,
        )
        .await;
    app.drained().await;
    let commits = app.jira.issue("PROJ-4").commits;
    assert_eq!(commits.len(), 1);
    assert_eq!(commits[0]["id"], shas[0].as_str());
    assert_eq!(commits[0]["issueKeys"], json!(["PROJ-4"]));
    assert!(app.jira.issue("UTF-8").commits.is_empty());
    assert!(app.jira.issue("SHA-256").commits.is_empty());

    // Cleared, every key is sent again.
    sites::set_project_keys(&app.store, &app.jira.base_url, "")
        .await
        .unwrap();
    app.gitlab
        .push(w.projects[0], "main", &["Adopt ISO-8601 dates"], w.user)
        .await;
    app.drained().await;
    assert_eq!(app.jira.issue("ISO-8601").commits.len(), 1);
    app.stop().await;
}

/// `status --issue` answers "why is (or isn't) this on PROJ-7?" from the audit trail.
async fn status_explains_what_was_sent_under_an_issue_key(db: TestDatabase) {
    let app = TestApp::start_custom(
        db,
        true,
        gfj_sim::jira::JiraSimConfig {
            known_issue_keys: Some(vec!["PROJ-7".into()]),
            ..Default::default()
        },
    )
    .await;
    let w = linked(&app, false).await;
    let shas = app
        .gitlab
        .push(
            w.projects[0],
            "main",
            &["PROJ-7 login form", "PORJ-7 typo"],
            w.user,
        )
        .await;
    app.drained().await;
    let report = status::issue(&app.store, "PROJ-7", 30, false)
        .await
        .unwrap();
    assert!(report.contains("sent to Jira under PROJ-7"), "{report}");
    assert!(report.contains(&shas[0]), "{report}");
    assert!(report.contains("accepted"), "{report}");
    let json: serde_json::Value =
        serde_json::from_str(&status::issue(&app.store, "PROJ-7", 30, true).await.unwrap())
            .unwrap();
    assert_eq!(json["sent"][0]["entity_type"], "commit");
    assert_eq!(json["sent"][0]["verdict"], "accepted");

    let typo = status::issue(&app.store, "PORJ-7", 30, false)
        .await
        .unwrap();
    assert!(typo.contains("does not know PORJ-7"), "{typo}");
    let never = status::issue(&app.store, "NONE-1", 30, false)
        .await
        .unwrap();
    assert!(
        never.contains("nothing was sent to Jira under NONE-1"),
        "{never}"
    );

    // Entries past retention are forgotten.
    assert!(app.store.prune_audit(now_ms() + 1).await.unwrap() >= 2);
    assert!(
        app.store
            .audit_for_issue("PROJ-7", 10)
            .await
            .unwrap()
            .is_empty()
    );
    app.stop().await;
}

/// Queued updates of one merge request coalesce: only the newest is sent.
async fn queued_updates_of_one_entity_coalesce_into_the_newest(db: TestDatabase) {
    let app = TestApp::start_with(db, false).await;
    let w = linked(&app, false).await;
    let p = w.projects[0];
    app.gitlab.push(p, "feature/CO-1", &["start"], w.user).await;
    let mr = app
        .gitlab
        .open_merge_request(p, "feature/CO-1", "main", "CO-1 draft", "", w.user)
        .await;
    for n in 2..=4 {
        app.gitlab
            .update_merge_request(p, mr.iid, Some(&format!("CO-1 take {n}")), None)
            .await;
    }
    let clock: std::sync::Arc<dyn gfj_store::Clock> = std::sync::Arc::new(gfj_store::SystemClock);
    let runner = gfj_sync::Runner::new(
        app.store.clone(),
        clock.clone(),
        gitlab_for_jira::commands::serve::handlers(&app.settings, &app.store, clock),
        gfj_sync::RunnerConfig {
            concurrency: 1,
            ..Default::default()
        },
    );
    while runner.run_due().await > 0 {}
    let titles: Vec<serde_json::Value> = app
        .jira
        .requests()
        .into_iter()
        .filter_map(|r| r.body)
        // Live updates only: the link's backfill sends the merge request as history too.
        .filter(|b| b["operationType"] == "NORMAL")
        .flat_map(|b| {
            b["repositories"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .flat_map(|r| r["pullRequests"].as_array().cloned().unwrap_or_default())
                .map(|pr| pr["title"].clone())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(
        titles,
        [json!("CO-1 take 4")],
        "only the newest update was sent"
    );
    app.stop().await;
}

test_on_both_databases!(
    queued_updates_of_one_entity_coalesce_into_the_newest,
    status_explains_what_was_sent_under_an_issue_key,
    a_sites_project_keys_drop_look_alike_keys,
    a_push_of_more_than_twenty_commits_sends_them_all,
    every_event_kind_reaches_a_connect_site,
    every_event_kind_reaches_an_oauth_site,
);
