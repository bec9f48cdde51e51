//! A GitLab push reaches the Jira development panel: the walking skeleton, end to end, plus what must
//! hold when Jira or our own process misbehave.

use std::sync::Arc;

use gfj_sim::gitlab::Plan;
use gfj_sim::jira::Fault;
use gfj_store::testing::TestDatabase;
use gfj_store::{ManualClock, test_on_both_databases};
use gfj_sync::{Runner, RunnerConfig};
use gitlab_for_jira::commands::link::HookMode;
use gitlab_for_jira::commands::serve;
use serde_json::Value;

use crate::helpers::TestApp;

fn ids(list: &[Value], field: &str) -> Vec<String> {
    let mut v: Vec<String> = list
        .iter()
        .map(|e| e[field].as_str().unwrap().to_owned())
        .collect();
    v.sort();
    v
}

async fn push_reaches_the_development_panel(db: TestDatabase) {
    let app = TestApp::start(db).await;
    let w = app.linked_world(1).await;
    let shas = app
        .gitlab
        .push(
            w.projects[0],
            "feature/PROJ-7-login",
            &["Add the login form", "PROJ-8 check passwords"],
            w.user,
        )
        .await;
    assert!(
        app.gitlab
            .deliveries()
            .iter()
            .all(|d| d.status == Some(202)),
        "{:?}",
        app.gitlab.deliveries()
    );
    app.drained().await;

    let proj7 = app.jira.issue("PROJ-7");
    assert_eq!(ids(&proj7.branches, "name"), ["feature/PROJ-7-login"]);
    assert_eq!(
        proj7.branches[0]["id"],
        gfj_core::mapping::branch_id("feature/PROJ-7-login")
    );
    assert_eq!(proj7.branches[0]["lastCommit"]["id"], shas[1].as_str());
    let mut both = shas.clone();
    both.sort();
    assert_eq!(ids(&proj7.commits, "id"), both);
    // Files with line counts, read from GitLab (the push lists paths only).
    let c = &app.jira.issue("PROJ-8").commits[0];
    assert_eq!(c["fileCount"], 2);
    let files: Vec<(String, String, i64, i64)> = c["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_owned(),
                f["changeType"].as_str().unwrap().to_owned(),
                f["linesAdded"].as_i64().unwrap(),
                f["linesRemoved"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(files.len(), 2, "{files:?}");
    assert!(
        files[0].0.starts_with("src/file")
            && (files[0].1.as_str(), files[0].2, files[0].3) == ("ADDED", 1, 0),
        "{files:?}"
    );
    assert_eq!(
        files[1],
        ("README.md".to_owned(), "MODIFIED".to_owned(), 1, 0)
    );
    assert_eq!(
        ids(&app.jira.issue("PROJ-8").commits, "id"),
        [shas[1].clone()]
    );
    assert_eq!(app.jira.issue_keys(), ["PROJ-7", "PROJ-8"]);

    // Every request was JWT-verified and schema-valid: the simulator accepted each one (202).
    let requests = app.jira.requests();
    assert!(!requests.is_empty());
    assert!(requests.iter().all(|r| r.status == 202), "{requests:?}");
    let repo = &requests[0].body.as_ref().unwrap()["repositories"][0];
    assert_eq!(repo["id"], w.projects[0].to_string());

    // Deleting the branch deletes it in Jira; the commits stay.
    app.gitlab
        .delete_branch(w.projects[0], "feature/PROJ-7-login", w.user)
        .await;
    app.drained().await;
    assert!(app.jira.issue("PROJ-7").branches.is_empty());
    assert_eq!(app.jira.issue("PROJ-7").commits.len(), 2);
    let last = app.jira.requests().pop().unwrap();
    assert_eq!((last.method.as_str(), last.status), ("DELETE", 202));
    assert!(
        last.path.contains(&format!(
            "/rest/devinfo/0.10/repository/{}/branch/",
            w.projects[0]
        )),
        "{}",
        last.path
    );
    app.stop().await;
}

async fn new_branch_without_commits_fetches_its_tip_from_gitlab(db: TestDatabase) {
    let app = TestApp::start(db).await;
    let w = app.linked_world(1).await;
    app.gitlab
        .push(w.projects[0], "PROJ-9-empty", &[], w.user)
        .await;
    app.drained().await;
    let view = app.jira.issue("PROJ-9");
    assert_eq!(view.branches.len(), 1);
    assert_eq!(view.branches[0]["lastCommit"]["message"], "Initial commit");
    app.stop().await;
}

async fn webhooks_need_the_subscriptions_token_and_are_queued_once(db: TestDatabase) {
    let app = TestApp::start_with(db, false).await;
    app.install().await;
    let w = app.world(Plan::Free, 40, 1);
    // An instance without signing tokens: the token alone authenticates (signatures: tests/e2e/gitlab.rs).
    app.gitlab.set_signing_tokens_supported(false);
    let linked = app.link("acme", &w.token, HookMode::Auto).await.unwrap();
    let token = app.gitlab.hook_token(linked.hooks[0].hook_id).unwrap();
    let url = format!("{}/gitlab/webhook", app.base_url);
    let http = reqwest::Client::new();
    let send = |token: Option<&str>, key: &str, body: &str| {
        let mut r = http
            .post(&url)
            .header("X-Gitlab-Event", "Push Hook")
            .header("Idempotency-Key", key)
            .body(body.to_owned());
        if let Some(t) = token {
            r = r.header("X-Gitlab-Token", t);
        }
        async move { r.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(send(None, "a", "{}").await, 401);
    assert_eq!(send(Some("not-the-token"), "a", "{}").await, 401);
    assert_eq!(send(Some(&token[..token.len() - 1]), "a", "{}").await, 401);
    assert!(
        app.store.jobs().await.unwrap().is_empty(),
        "nothing queued for unauthenticated deliveries"
    );
    assert_eq!(send(Some(&token), "a", "not json").await, 400);
    // Strict where it matters: the kind must match the header and the ids must be there.
    assert_eq!(
        send(Some(&token), "a", r#"{"object_kind":"push"}"#).await,
        400
    );
    assert_eq!(
        send(
            Some(&token),
            "a",
            r#"{"object_kind":"merge_request","project":{"id":1}}"#
        )
        .await,
        400
    );
    assert!(
        app.store.jobs().await.unwrap().is_empty(),
        "nothing queued for refused bodies"
    );
    let push = format!(
        r#"{{"object_kind":"push","before":"{z}","after":"{z}","ref":"refs/heads/x","project_id":{p},"project":{{"id":{p},"name":"p0","web_url":"http://gl/acme/p0"}},"unknown_field":1}}"#,
        z = "0".repeat(40),
        p = w.projects[0]
    );
    assert_eq!(send(Some(&token), "k1", &push).await, 202);
    assert_eq!(send(Some(&token), "k1", &push).await, 202);
    assert_eq!(
        app.store.jobs().await.unwrap().len(),
        1,
        "a redelivery with the same Idempotency-Key is queued once"
    );
    // Kinds the service does not act on are acknowledged and not queued.
    for event in ["Tag Push Hook", "Member Hook", "System Hook"] {
        let answer = http
            .post(&url)
            .header("X-Gitlab-Event", event)
            .header("X-Gitlab-Token", &token)
            .body(push.clone())
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(answer.as_u16(), 200, "{event}");
    }
    assert_eq!(
        app.store.jobs().await.unwrap().len(),
        1,
        "nothing more queued"
    );
    app.stop().await;
}

async fn jira_rate_limits_and_outages_delay_but_lose_nothing(db: TestDatabase) {
    let app = TestApp::start(db).await;
    let w = app.linked_world(1).await;
    app.jira.inject([
        Fault::RateLimited {
            retry_after_secs: 1,
        },
        Fault::ServerError(503),
        Fault::ServerError(500),
    ]);
    app.gitlab
        .push(w.projects[0], "main", &["OPS-1 tune the pool"], w.user)
        .await;
    app.drained().await;
    let statuses: Vec<u16> = app.jira.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [429, 503, 500, 202]);
    assert_eq!(app.jira.issue("OPS-1").commits.len(), 1);
    app.stop().await;
}

async fn after_a_429_no_worker_calls_the_site_until_retry_after_has_passed(db: TestDatabase) {
    let app = TestApp::start_with(db, false).await;
    let w = app.linked_world(3).await;
    for (n, p) in w.projects.iter().enumerate() {
        app.gitlab
            .push(*p, "main", &[&format!("RL-{n} work")], w.user)
            .await;
    }
    // Two workers, as if in two processes sharing the database; one job at a time each, so that what
    // reaches Jira depends only on the shared pause, not on which request happens to be in flight.
    let clock = ManualClock::starting_at(crate::helpers::now_ms());
    let config = RunnerConfig {
        concurrency: 1,
        ..Default::default()
    };
    let worker = || {
        let clock: Arc<dyn gfj_store::Clock> = Arc::new(clock.clone());
        Runner::new(
            app.store.clone(),
            clock.clone(),
            serve::handlers(&app.settings, &app.store, clock),
            config.clone(),
        )
    };
    let (a, b) = (worker(), worker());
    app.jira.inject([Fault::RateLimited {
        retry_after_secs: 2,
    }]);
    assert_eq!(a.run_due().await, 1);
    assert_eq!(
        app.jira
            .requests()
            .iter()
            .map(|r| r.status)
            .collect::<Vec<_>>(),
        [429]
    );
    // Both workers see the pause: the jobs they claim are put back without calling Jira.
    assert_eq!(b.run_due().await, 1);
    assert_eq!(a.run_due().await, 1);
    clock.advance_ms(1_999);
    assert_eq!(b.run_due().await, 0, "every job waits for the pause to end");
    assert_eq!(
        app.jira.requests().len(),
        1,
        "nothing reached Jira during Retry-After"
    );
    clock.advance_ms(1);
    while a.run_due().await + b.run_due().await > 0 {}
    for n in 0..3 {
        assert_eq!(
            app.jira.issue(&format!("RL-{n}")).commits.len(),
            1,
            "RL-{n} arrived"
        );
    }
    assert_eq!(
        app.jira
            .requests()
            .iter()
            .filter(|r| r.status == 202)
            .count(),
        3
    );
    assert!(app.store.jobs().await.unwrap().is_empty());
    let states = app.store.site_states().await.unwrap();
    assert_eq!(
        states[0].pause_reason.as_deref(),
        Some("429; Retry-After 2000 ms")
    );
    app.stop().await;
}

async fn rejected_credentials_flag_the_site_instead_of_retrying_hot(db: TestDatabase) {
    let app = TestApp::start(db).await;
    let w = app.linked_world(1).await;
    app.jira.inject([Fault::Status(401)]);
    app.gitlab
        .push(w.projects[0], "main", &["AUTH-1 work"], w.user)
        .await;
    let ck = app.jira.client_key().to_owned();
    // The flag is set during the attempt; the job is put back right after it.
    crate::helpers::eventually("the site is flagged and the job put back", || async {
        let flagged = app
            .store
            .site_states()
            .await
            .unwrap()
            .iter()
            .any(|s| s.client_key == ck && s.attention.is_some());
        flagged
            && app
                .store
                .jobs()
                .await
                .unwrap()
                .iter()
                .all(|j| j.attempts == 0)
    })
    .await;
    let jobs = app.store.jobs().await.unwrap();
    assert_eq!(jobs.len(), 1, "the job is kept");
    assert_eq!(
        jobs[0].attempts, 0,
        "waiting for an operator does not use up attempts"
    );
    assert!(
        jobs[0].run_at - crate::helpers::now_ms() > 60_000,
        "and it waits minutes before trying again"
    );
    assert_eq!(app.jira.requests().len(), 1);
    let status = gitlab_for_jira::commands::status::status(
        &app.store,
        crate::helpers::now_ms(),
        false,
        false,
    )
    .await
    .unwrap();
    assert!(status.contains("NEEDS ATTENTION"), "{status}");
    app.stop().await;
}

async fn too_large_requests_are_split_until_they_fit_and_what_never_fits_is_recorded(
    db: TestDatabase,
) {
    let config = gfj_sim::jira::JiraSimConfig {
        max_body_bytes: 1_200,
        ..Default::default()
    };
    let app = TestApp::start_custom(db, true, config).await;
    let w = app.linked_world(1).await;
    let long = format!("BIG-1 {}", "x".repeat(1_500));
    let mut messages: Vec<&str> = vec![&long];
    let short: Vec<String> = (0..6).map(|n| format!("BIG-1 part {n}")).collect();
    messages.extend(short.iter().map(String::as_str));
    let shas = app
        .gitlab
        .push(w.projects[0], "main", &messages, w.user)
        .await;
    app.drained().await;

    let view = app.jira.issue("BIG-1");
    let mut stored: Vec<String> = view
        .commits
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect();
    stored.sort();
    let mut expected = shas[1..].to_vec();
    expected.sort();
    assert_eq!(stored, expected, "every commit that fits alone arrived");
    let statuses: Vec<u16> = app.jira.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses[0], 413);
    assert!(statuses.contains(&202));
    let rejected = app.store.rejections().await.unwrap();
    assert_eq!(rejected.len(), 1);
    assert_eq!(
        (
            rejected[0].entity_type.as_str(),
            rejected[0].entity_id.as_str()
        ),
        ("commit", shas[0].as_str())
    );
    assert!(rejected[0].reason.contains("413"), "{}", rejected[0].reason);
    assert!(
        app.store.jobs().await.unwrap().is_empty(),
        "the job completed"
    );
    app.stop().await;
}

async fn keys_jira_does_not_know_are_recorded_and_slow_jira_is_waited_for(db: TestDatabase) {
    let config = gfj_sim::jira::JiraSimConfig {
        known_issue_keys: Some(vec!["PROJ-7".into()]),
        ..Default::default()
    };
    let app = TestApp::start_custom(db, true, config).await;
    app.install().await;
    app.jira.set_latency(std::time::Duration::from_millis(300));
    let w = app.world(Plan::Free, 40, 1);
    app.link("acme", &w.token, HookMode::Auto).await.unwrap();
    app.gitlab
        .push(
            w.projects[0],
            "main",
            &["PROJ-7 and TYPO-1 and PROJ-99"],
            w.user,
        )
        .await;
    app.drained().await;
    assert_eq!(app.jira.issue("PROJ-7").commits.len(), 1);
    let ck = app.jira.client_key().to_owned();
    let mut unknown = app.store.unknown_keys(&ck).await.unwrap();
    unknown.sort();
    assert_eq!(unknown, ["PROJ-99", "TYPO-1"]);
    let status = gitlab_for_jira::commands::status::status(
        &app.store,
        crate::helpers::now_ms(),
        false,
        false,
    )
    .await
    .unwrap();
    assert!(status.contains("issue keys Jira does not know"), "{status}");
    assert_eq!(
        app.jira.requests().len(),
        1,
        "a slow answer is not a failure: no retry"
    );
    app.stop().await;
}

async fn keys_beyond_jiras_limit_are_sent_up_to_the_limit_and_recorded(db: TestDatabase) {
    let app = TestApp::start(db).await;
    let w = app.linked_world(1).await;
    let many: String = (1..=510).map(|n| format!("K{n}-1 ")).collect();
    let shas = app
        .gitlab
        .push(w.projects[0], "main", &[&many], w.user)
        .await;
    app.drained().await;
    assert_eq!(app.jira.issue("K1-1").commits.len(), 1);
    assert!(
        app.jira.issue("K510-1").commits.is_empty(),
        "the 510th key is beyond the limit"
    );
    let rejected = app.store.rejections().await.unwrap();
    assert_eq!(rejected.len(), 1);
    assert_eq!(
        (
            rejected[0].entity_type.as_str(),
            rejected[0].entity_id.as_str()
        ),
        ("commit", shas[0].as_str())
    );
    assert!(
        rejected[0]
            .reason
            .starts_with("at least 10 issue keys beyond"),
        "{}",
        rejected[0].reason
    );
    app.stop().await;
}

/// A commit message of megabytes (generated, or hostile) is queued shortened, and Jira still gets what
/// the whole message names: its displayed beginning and its first 500 keys, with the rest recorded.
async fn a_huge_commit_message_sends_what_the_whole_message_would(db: TestDatabase) {
    let app = TestApp::start(db).await;
    let w = app.linked_world(1).await;
    let opening = format!("Regenerate fixtures for BIG-1 {}", "é".repeat(2_000));
    let keys: String = (1..=700).map(|n| format!("Q{n}-1 ")).collect();
    // The keys lie beyond what a shortened text keeps of its beginning, within what extraction searches.
    let message = format!(
        "{opening}{}{keys}{}",
        " ".repeat(100_000),
        " ".repeat(3 << 20)
    );
    let shas = app
        .gitlab
        .push(w.projects[0], "main", &[&message], w.user)
        .await;
    assert_eq!(app.gitlab.deliveries()[0].status, Some(202));
    app.drained().await;
    let commits = app.jira.issue("BIG-1").commits;
    assert_eq!(commits.len(), 1);
    assert_eq!(
        commits[0]["message"].as_str().unwrap(),
        gfj_core::jira::cap(&message, gfj_core::jira::MAX_MESSAGE_CHARS),
        "the displayed message is the original's beginning"
    );
    let sent: Vec<String> = commits[0]["issueKeys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_owned())
        .collect();
    let want: Vec<String> = std::iter::once("BIG-1".to_owned())
        .chain((1..=499).map(|n| format!("Q{n}-1")))
        .collect();
    assert_eq!(sent, want, "the first 500 keys of the whole message");
    let rejected = app.store.rejections().await.unwrap();
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert_eq!(rejected[0].entity_id, shas[0]);
    assert!(
        rejected[0].reason.contains("beyond Jira's limit of 500"),
        "{}",
        rejected[0].reason
    );
    app.stop().await;
}

async fn a_worker_killed_mid_job_is_replaced_and_the_job_completes_once(db: TestDatabase) {
    let app = TestApp::start_with(db, false).await;
    let w = app.linked_world(1).await;
    app.gitlab
        .push(w.projects[0], "feature/PROJ-3", &["PROJ-3 first"], w.user)
        .await;
    assert_eq!(app.store.jobs().await.unwrap().len(), 1);

    let clock = ManualClock::starting_at(crate::helpers::now_ms());
    let config = RunnerConfig {
        concurrency: 4,
        lease_ms: 60_000,
        ..Default::default()
    };
    let worker = |clock: &ManualClock| {
        let clock: Arc<dyn gfj_store::Clock> = Arc::new(clock.clone());
        Runner::new(
            app.store.clone(),
            clock.clone(),
            serve::handlers(&app.settings, &app.store, clock),
            config.clone(),
        )
    };

    // Worker A gets as far as sending to Jira, then dies.
    app.jira.hold_next_writes(1);
    let (_stop_a, stop_rx) = tokio::sync::watch::channel(false);
    let a = tokio::spawn(worker(&clock).run(stop_rx));
    app.jira.wait_until_held(1).await;
    a.abort();
    assert!(a.await.unwrap_err().is_cancelled());

    assert!(
        app.jira.issue("PROJ-3").commits.is_empty(),
        "A's request never got through"
    );

    // While A's lease lasts nobody else takes the job; after it, worker B does and completes it.
    let b = worker(&clock);
    assert_eq!(
        b.run_due().await,
        0,
        "the job is still leased to the dead worker"
    );
    clock.advance_ms(60_001);
    assert_eq!(b.run_due().await, 1);
    assert!(app.store.jobs().await.unwrap().is_empty(), "completed");
    assert_eq!(b.run_due().await, 0, "and not run again");
    let stored = app.jira.issue("PROJ-3");
    assert_eq!((stored.commits.len(), stored.branches.len()), (1, 1));
    assert_eq!(
        app.jira
            .requests()
            .iter()
            .filter(|r| r.status == 202)
            .count(),
        1
    );
    app.jira.release_held();
    app.stop().await;
}

/// Messages of `n` commits, each naming its own key `BIG-<i>`: a push Jira takes in two requests
/// (at most 400 commits each).
fn big_push_messages(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("BIG-{i} step {i}")).collect()
}

/// How many times Jira accepted each commit of the requests answered after the first `skip`.
fn commits_accepted(app: &TestApp, skip: usize) -> std::collections::BTreeMap<String, usize> {
    let mut times = std::collections::BTreeMap::new();
    for r in app.jira.requests().into_iter().skip(skip) {
        if r.status != 202 {
            continue;
        }
        let Some(body) = r.body else { continue };
        for repo in body["repositories"].as_array().into_iter().flatten() {
            for c in repo["commits"].as_array().into_iter().flatten() {
                *times
                    .entry(c["id"].as_str().unwrap().to_owned())
                    .or_default() += 1;
            }
        }
    }
    times
}

/// A job of several requests that Jira fails partway (a 503 on the second) runs again and sends only
/// what Jira had not accepted.
async fn a_job_that_fails_partway_resends_only_what_jira_had_not_accepted(db: TestDatabase) {
    let app = TestApp::start(db).await;
    let w = app.linked_world(1).await;
    let before = app.jira.requests().len();
    app.jira.inject([Fault::Pass, Fault::ServerError(503)]);
    let messages = big_push_messages(450);
    let messages: Vec<&str> = messages.iter().map(String::as_str).collect();
    app.gitlab
        .push(w.projects[0], "main", &messages, w.user)
        .await;
    app.drained().await;
    let statuses: Vec<u16> = app.jira.requests()[before..]
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(
        statuses,
        [202, 503, 202],
        "the first request is not sent again"
    );
    let accepted = commits_accepted(&app, before);
    assert_eq!(accepted.len(), 450);
    assert!(accepted.values().all(|&n| n == 1), "{accepted:?}");
    assert_eq!(app.jira.issue("BIG-449").commits.len(), 1);
    app.stop().await;
}

/// A worker killed between two requests of a job: the worker that takes the job over sends only the
/// request Jira had not answered.
async fn a_job_killed_between_its_requests_resends_none_that_jira_accepted(db: TestDatabase) {
    let app = TestApp::start_with(db, false).await;
    let w = app.linked_world(1).await;
    let before = app.jira.requests().len();
    let messages = big_push_messages(450);
    let messages: Vec<&str> = messages.iter().map(String::as_str).collect();
    app.gitlab
        .push(w.projects[0], "main", &messages, w.user)
        .await;

    let clock = ManualClock::starting_at(crate::helpers::now_ms());
    let config = RunnerConfig {
        lease_ms: 60_000,
        ..Default::default()
    };
    let worker = |clock: &ManualClock| {
        let clock: Arc<dyn gfj_store::Clock> = Arc::new(clock.clone());
        Runner::new(
            app.store.clone(),
            clock.clone(),
            serve::handlers(&app.settings, &app.store, clock),
            config.clone(),
        )
    };
    // Worker A's first request goes through; it dies while its second is in flight.
    app.jira.hold_next_writes(2);
    let (_stop_a, stop_rx) = tokio::sync::watch::channel(false);
    let a = tokio::spawn(worker(&clock).run(stop_rx));
    app.jira.wait_until_held(1).await;
    app.jira.release_held();
    crate::helpers::eventually("Jira answers A's first request", || async {
        app.jira.requests().len() == before + 1
    })
    .await;
    app.jira.wait_until_held(1).await;
    a.abort();
    assert!(a.await.unwrap_err().is_cancelled());

    clock.advance_ms(60_001);
    assert_eq!(worker(&clock).run_due().await, 1);
    assert!(app.store.jobs().await.unwrap().is_empty(), "completed");
    let statuses: Vec<u16> = app.jira.requests()[before..]
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, [202, 202], "A's first request, then B's one");
    let accepted = commits_accepted(&app, before);
    assert_eq!(accepted.len(), 450);
    assert!(accepted.values().all(|&n| n == 1), "{accepted:?}");
    app.jira.release_held();
    app.stop().await;
}

test_on_both_databases!(
    push_reaches_the_development_panel,
    new_branch_without_commits_fetches_its_tip_from_gitlab,
    webhooks_need_the_subscriptions_token_and_are_queued_once,
    jira_rate_limits_and_outages_delay_but_lose_nothing,
    a_worker_killed_mid_job_is_replaced_and_the_job_completes_once,
    after_a_429_no_worker_calls_the_site_until_retry_after_has_passed,
    rejected_credentials_flag_the_site_instead_of_retrying_hot,
    too_large_requests_are_split_until_they_fit_and_what_never_fits_is_recorded,
    keys_jira_does_not_know_are_recorded_and_slow_jira_is_waited_for,
    keys_beyond_jiras_limit_are_sent_up_to_the_limit_and_recorded,
    a_huge_commit_message_sends_what_the_whole_message_would,
    a_job_that_fails_partway_resends_only_what_jira_had_not_accepted,
    a_job_killed_between_its_requests_resends_none_that_jira_accepted,
);
