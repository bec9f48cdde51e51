//! The store's behaviour, identical on SQLite and PostgreSQL.

use gfj_core::domain::{HookScope, HookState, ProjectId, SubscriptionId};
use std::sync::Arc;

use gfj_store::installations::Installation;
use gfj_store::intake::Intake;
use gfj_store::queue::NewJob;
use gfj_store::subscriptions::{Hook, NewSubscription};
use gfj_store::testing::TestDatabase;
use gfj_store::{Clock, ManualClock, StoreError, test_on_both_databases};

fn job(payload: &str, dedup: Option<&str>, run_at: i64) -> NewJob {
    NewJob {
        kind: "test".into(),
        payload: payload.into(),
        dedup_key: dedup.map(Into::into),
        run_at,
        max_attempts: 3,
        coalesce_key: None,
        coalesce_seq: None,
    }
}

fn install(key: &str, secret: &str) -> Installation {
    Installation {
        client_key: key.into(),
        base_url: "https://acme.atlassian.net".into(),
        display_url: None,
        shared_secret: secret.into(),
        oauth: None,
    }
}

fn subscription(client_key: &str, group_id: i64, webhook_token: &str) -> NewSubscription {
    NewSubscription {
        client_key: client_key.into(),
        gitlab_url: "https://gitlab.example".into(),
        group_id,
        group_path: format!("g{group_id}"),
        gitlab_token: "glpat-secret-token".into(),
        webhook_token: webhook_token.into(),
        hook_mode: HookScope::Project,
        hooks: vec![Hook {
            scope: HookScope::Project,
            target_id: 7,
            hook_id: 70,
        }],
        webhook_signing_secret: None,
        gitlab_connection_id: None,
    }
}

async fn installations_are_encrypted_replaced_and_removed_with_their_subscriptions(
    db: TestDatabase,
) {
    let s = db.open().await;
    s.upsert_installation(&install("k1", "first-secret"), 1)
        .await
        .unwrap();
    s.upsert_installation(&install("k1", "second-secret"), 2)
        .await
        .unwrap();
    let got = s.installation("k1").await.unwrap().unwrap();
    assert_eq!(got.shared_secret, "second-secret");
    assert_eq!(
        s.find_installation("https://acme.atlassian.net/")
            .await
            .unwrap()
            .unwrap()
            .client_key,
        "k1"
    );
    assert_eq!(s.installations().await.unwrap().len(), 1);

    // Nothing secret is stored in plain text.
    let other = gfj_store::Store::open(
        &db.url,
        Some("AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="),
    )
    .await
    .unwrap();
    assert!(
        matches!(other.installation("k1").await, Err(StoreError::Crypto(_))),
        "wrong key cannot read the secret"
    );

    let sub = s
        .create_subscription(&subscription("k1", 5, "h1"), 3)
        .await
        .unwrap();
    assert_eq!(
        s.subscription_gitlab_token(&sub).await.unwrap(),
        "glpat-secret-token"
    );
    assert_eq!(
        s.subscription_by_token_hash(&gfj_core::gitlab::webhook_token_hash(b"h1"))
            .await
            .unwrap()
            .unwrap()
            .id,
        sub.id
    );
    assert!(s.subscription_by_token_hash("h1").await.unwrap().is_none());
    assert_eq!(s.subscription_hooks(sub.id).await.unwrap().len(), 1);
    // The hook secrets come back for re-registration; no signing secret was confirmed.
    assert_eq!(
        s.subscription_hook_secrets(&sub).await.unwrap(),
        Some(("h1".to_owned(), None))
    );
    assert_eq!(s.subscription_signing_key(&sub).await.unwrap(), None);
    let signed = NewSubscription {
        webhook_signing_secret: Some(gfj_core::standard_webhooks::format_secret(&[9; 32])),
        ..subscription("k1", 6, "h3")
    };
    let signed = s.create_subscription(&signed, 3).await.unwrap();
    assert_eq!(
        s.subscription_signing_key(&signed).await.unwrap(),
        Some(vec![9; 32])
    );

    // Hook health: state changes, a re-registered hook replaces the old one, gaps are kept.
    let hook = Hook {
        scope: HookScope::Project,
        target_id: 7,
        hook_id: 70,
    };
    s.set_hook_state(sub.id, &hook, HookState::Disabled, 10)
        .await
        .unwrap();
    let st = s.subscription_hook_status(sub.id).await.unwrap();
    assert_eq!(
        (st[0].state.as_str(), st[0].checked_at),
        ("disabled", Some(10))
    );
    let replaced = Hook {
        hook_id: 71,
        ..hook.clone()
    };
    s.put_subscription_hook(sub.id, &replaced, 11)
        .await
        .unwrap();
    let st = s.subscription_hook_status(sub.id).await.unwrap();
    assert_eq!(st.len(), 1);
    assert_eq!((st[0].hook.hook_id, st[0].state.as_str()), (71, "ok"));
    s.record_gap(
        sub.id,
        HookScope::Project,
        7,
        5,
        11,
        "hook deleted in GitLab",
    )
    .await
    .unwrap();
    let gaps = s.open_gaps(sub.id).await.unwrap();
    assert_eq!(
        (
            gaps.len(),
            gaps[0].since_ms,
            gaps[0].until_ms,
            gaps[0].target_id
        ),
        (1, 5, 11, 7)
    );
    s.remove_subscription_hook(sub.id, HookScope::Project, 7)
        .await
        .unwrap();
    assert!(s.subscription_hooks(sub.id).await.unwrap().is_empty());
    assert!(matches!(
        s.create_subscription(&subscription("k1", 5, "h2"), 4).await,
        Err(StoreError::Conflict(_))
    ));

    assert!(s.delete_installation("k1").await.unwrap());
    assert!(s.installation("k1").await.unwrap().is_none());
    assert!(s.subscription(sub.id).await.unwrap().is_none());
    assert!(s.subscription_hooks(sub.id).await.unwrap().is_empty());
    assert!(!s.delete_installation("k1").await.unwrap());
    s.ready().await.unwrap();
    db.drop_database().await;
}

async fn claims_are_exclusive_and_leases_expire(db: TestDatabase) {
    let s = db.open().await;
    let clock = ManualClock::starting_at(1_000_000);
    let now = clock.now_ms();
    let jobs: Vec<NewJob> = (0..40).map(|n| job(&n.to_string(), None, now)).collect();
    assert_eq!(s.enqueue(&jobs, now).await.unwrap(), 40);

    // Eight workers claim concurrently: every job goes to exactly one of them.
    let mut handles = Vec::new();
    for w in 0..8 {
        let s = s.clone();
        handles.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let got = s.claim(&format!("w{w}"), now, 60_000, 3).await.unwrap();
                if got.is_empty() {
                    return mine;
                }
                mine.extend(got.into_iter().map(|j| j.lease));
            }
        }));
    }
    let mut leases = Vec::new();
    for h in handles {
        leases.extend(h.await.unwrap());
    }
    let claimed_first: std::collections::HashMap<i64, gfj_store::queue::Lease> =
        leases.iter().map(|l| (l.job_id, l.clone())).collect();
    let mut all: Vec<i64> = leases.iter().map(|l| l.job_id).collect();
    all.sort();
    let before = all.len();
    all.dedup();
    assert_eq!(
        (before, all.len()),
        (40, 40),
        "no job claimed twice, none missed"
    );

    // Leased jobs are invisible until the lease runs out, then claimable again.
    assert!(
        s.claim("late", now + 59_999, 60_000, 100)
            .await
            .unwrap()
            .is_empty()
    );
    let again = s.claim("late", now + 60_001, 60_000, 100).await.unwrap();
    assert_eq!(again.len(), 40);
    assert_eq!(again[0].attempts, 2);
    // The first owners lost their leases: they can neither complete, fail, postpone, extend nor hand
    // back the job, even a worker of the same name, since each claim has its own number.
    let first = &claimed_first[&again[0].id];
    assert_eq!(first.claim + 1, again[0].lease.claim);
    let same_name = gfj_store::queue::Lease {
        worker: "late".into(),
        ..first.clone()
    };
    for stale in [first, &same_name] {
        assert!(!s.complete(stale).await.unwrap());
        assert!(!s.fail(stale, "x", now, true, now).await.unwrap());
        assert!(!s.postpone(stale, now, "x").await.unwrap());
        assert!(!s.extend_lease(stale, now + 1_000_000).await.unwrap());
        assert!(!s.release(stale).await.unwrap());
    }
    assert!(s.complete(&again[1].lease).await.unwrap());
    assert!(
        !s.complete(&again[1].lease).await.unwrap(),
        "completed once"
    );
    // Handing a job back frees it at once, without using up an attempt.
    assert!(s.release(&again[2].lease).await.unwrap());
    let back = s.claim("next", now + 60_001, 60_000, 100).await.unwrap();
    assert_eq!(back.len(), 1);
    assert_eq!((back[0].id, back[0].attempts), (again[2].id, 2));
    db.drop_database().await;
}

async fn failures_back_off_postpone_and_die(db: TestDatabase) {
    let s = db.open().await;
    let now = 5_000_000;
    s.enqueue(&[job("x", None, now)], now).await.unwrap();
    let j = s.claim("w", now, 1_000, 1).await.unwrap().remove(0);
    assert!(
        s.fail(&j.lease, "boom", now + 10_000, false, now)
            .await
            .unwrap()
    );
    assert!(
        s.claim("w", now + 9_999, 1_000, 1)
            .await
            .unwrap()
            .is_empty(),
        "not before its retry time"
    );
    let stats = s.queue_stats(now).await.unwrap();
    assert_eq!((stats.ready, stats.scheduled, stats.dead), (0, 1, 0));

    // Postponing (HTTP 429) does not use up an attempt.
    let j = s
        .claim("w", now + 10_000, 1_000, 1)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(j.attempts, 2);
    assert!(
        s.postpone(&j.lease, now + 20_000, "rate limited")
            .await
            .unwrap()
    );
    let j = s
        .claim("w", now + 20_000, 1_000, 1)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(j.attempts, 2);
    assert!(
        s.fail(&j.lease, "boom 2", now + 30_000, false, now)
            .await
            .unwrap()
    );
    let j = s
        .claim("w", now + 30_000, 1_000, 1)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(j.attempts, 3);
    assert!(
        s.fail(&j.lease, "boom 3", now + 40_000, false, now)
            .await
            .unwrap()
    );
    // max_attempts reached: dead, kept with its last error, never claimed.
    assert!(
        s.claim("w", now + 1_000_000, 1_000, 1)
            .await
            .unwrap()
            .is_empty()
    );
    let info = s.jobs().await.unwrap();
    assert_eq!(info.len(), 1);
    assert_eq!(info[0].last_error.as_deref(), Some("boom 3"));
    assert!(info[0].dead_at.is_some());
    assert_eq!(s.retry_dead(now + 50_000).await.unwrap(), 1);
    assert_eq!(s.claim("w", now + 50_000, 1_000, 1).await.unwrap().len(), 1);

    // A permanent failure is dead at once.
    s.enqueue(&[job("y", None, now)], now).await.unwrap();
    let j = s
        .claim("w", now, 1_000, 1)
        .await
        .unwrap()
        .into_iter()
        .find(|j| j.payload == "y")
        .unwrap();
    assert!(
        s.fail(&j.lease, "bad request", now, true, now)
            .await
            .unwrap()
    );
    assert_eq!(s.queue_stats(now).await.unwrap().dead, 1);
    db.drop_database().await;
}

/// A job whose worker dies on every attempt (it never records an outcome) is not claimed again once its
/// attempts are used up: the next claim marks it dead, with a reason, for `status` to show.
async fn a_job_past_its_attempts_is_never_claimed_again(db: TestDatabase) {
    let s = db.open().await;
    let now = 7_000_000;
    s.enqueue(&[job("crashes its worker", None, now)], now)
        .await
        .unwrap();
    let lease = 1_000;
    let mut at = now;
    for attempt in 1..=3 {
        let claimed = s.claim("w", at, lease, 10).await.unwrap();
        assert_eq!(claimed.len(), 1, "attempt {attempt} is claimed");
        assert_eq!(claimed[0].attempts, attempt);
        at += lease + 1; // the worker died: no outcome, the lease runs out
    }
    let stats = s.queue_stats(at).await.unwrap();
    assert_eq!(
        (stats.ready, stats.dead),
        (0, 1),
        "status shows it failed before any claim"
    );
    assert!(
        s.claim("w", at, lease, 10).await.unwrap().is_empty(),
        "claimed again after its last attempt"
    );
    let stats = s.queue_stats(at).await.unwrap();
    assert_eq!(
        (stats.ready, stats.scheduled, stats.running, stats.dead),
        (0, 0, 0, 1)
    );
    let info = s.jobs().await.unwrap();
    assert!(info[0].dead_at.is_some());
    assert!(
        info[0]
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("attempt")),
        "{:?}",
        info[0].last_error
    );
    db.drop_database().await;
}

/// Backfill slots are shared between subscriptions: a small group linked while a huge one fills every
/// slot gets the next slot that frees, not a place behind the huge one's hundred tasks.
async fn backfill_slots_are_shared_fairly_between_subscriptions(db: TestDatabase) {
    use gfj_store::backfill::{TaskKey, TaskState};
    let s = db.open().await;
    s.upsert_installation(&install("k1", "secret"), 1)
        .await
        .unwrap();
    let huge = s
        .create_subscription(&subscription("k1", 5, "h1"), 1)
        .await
        .unwrap();
    let small = s
        .create_subscription(&subscription("k1", 6, "h2"), 1)
        .await
        .unwrap();
    let projects = |n: i64, first: i64| -> Vec<(i64, String)> {
        (first..first + n)
            .map(|id| (id, format!("g/p{id}")))
            .collect()
    };
    // Six tasks per project: 17 projects make 102 pending tasks; the small group's one project six.
    s.plan_backfill(huge.id, &projects(17, 1000), None, 10)
        .await
        .unwrap();
    let cap = 4;
    assert_eq!(s.start_backfill_tasks(cap, 20).await.unwrap(), 4);
    s.plan_backfill(small.id, &projects(1, 9000), None, 30)
        .await
        .unwrap();
    let running = |tasks: &[gfj_store::backfill::BackfillTask], sub: i64| {
        tasks
            .iter()
            .filter(|t| t.subscription_id == sub && t.state == TaskState::Running)
            .count()
    };
    assert_eq!(
        s.start_backfill_tasks(cap, 40).await.unwrap(),
        0,
        "every slot is taken"
    );
    // Slots free one at a time; each goes to the subscription that runs fewer.
    for (freed, small_running) in [(1, 1), (2, 2), (3, 2), (4, 2)] {
        let tasks = s.backfill_tasks(None).await.unwrap();
        let victim = tasks
            .iter()
            .find(|t| t.subscription_id == huge.id && t.state == TaskState::Running)
            .unwrap();
        s.fail_backfill(
            TaskKey {
                subscription_id: victim.subscription_id,
                project_id: victim.project_id,
                entity: victim.entity,
            },
            victim.started_at.unwrap(),
            "test: finished",
            50,
        )
        .await
        .unwrap();
        assert_eq!(s.start_backfill_tasks(cap, 50).await.unwrap(), 1);
        let tasks = s.backfill_tasks(None).await.unwrap();
        assert_eq!(
            (running(&tasks, small.id), running(&tasks, huge.id)),
            (small_running, cap as usize - small_running),
            "after {freed} slot(s) freed"
        );
    }
    db.drop_database().await;
}

async fn duplicates_are_queued_once_and_intake_commits_in_groups(db: TestDatabase) {
    let s = db.open().await;
    let now = 1_000;
    assert_eq!(
        s.enqueue(
            &[
                job("a", Some("k"), now),
                job("b", Some("k"), now),
                job("c", None, now)
            ],
            now
        )
        .await
        .unwrap(),
        2
    );
    assert_eq!(
        s.enqueue(&[job("d", Some("k"), now)], now).await.unwrap(),
        0
    );
    // More rows than one insert statement takes: all of them, in the order given, which the queue keeps.
    let many: Vec<NewJob> = (0..1_200)
        .map(|n| job(&format!("m{n}"), Some(&format!("m{n}")), now))
        .collect();
    assert_eq!(s.enqueue(&many, now).await.unwrap(), 1_200);
    let claimed: Vec<String> = s
        .claim("w", now, 60_000, 5_000)
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.payload)
        .collect();
    let expected: Vec<String> = ["a", "c"]
        .into_iter()
        .map(str::to_owned)
        .chain((0..1_200).map(|n| format!("m{n}")))
        .collect();
    assert_eq!(claimed, expected);

    let clock: Arc<dyn Clock> = Arc::new(ManualClock::starting_at(now));
    let intake = Intake::start(s.clone(), clock);
    let mut handles = Vec::new();
    for n in 0..200 {
        let intake = intake.clone();
        handles.push(tokio::spawn(async move {
            intake
                .submit(job(&format!("i{n}"), Some(&format!("i{n}")), now))
                .await
        }));
    }
    for h in handles {
        h.await.unwrap().unwrap();
    }
    // Every submission that returned is in the database.
    assert_eq!(s.jobs().await.unwrap().len(), 1_402);
    db.drop_database().await;
}

async fn gitlab_sign_ins_are_single_use_and_token_swaps_are_compare_and_swap(db: TestDatabase) {
    use gfj_store::gitlab_connections::{PENDING_TTL_MS, START_TTL_MS};
    let s = db.open().await;
    let jira_user = gfj_store::gitlab_connections::JiraUser {
        client_key: "site-1".into(),
        account_id: "user-7".into(),
    };
    for (state, user, ticket) in [
        ("st1", None, "t1"),
        ("st2", None, "t2"),
        ("st3", Some(&jira_user), "t3"),
    ] {
        s.put_oauth_pending(state, "https://gl.example", "verifier", user, ticket, 1_000)
            .await
            .unwrap();
    }
    assert!(
        s.take_oauth_callback("st1", 2_000).await.unwrap().is_none(),
        "a callback before its start URL was opened is refused"
    );
    let started = s
        .begin_oauth_sign_in("t1", "browser-a", 2_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (started.state.as_str(), started.verifier.as_str()),
        ("st1", "verifier")
    );
    assert!(
        s.begin_oauth_sign_in("t1", "browser-b", 2_000)
            .await
            .unwrap()
            .is_none(),
        "a start URL works once"
    );
    assert!(
        s.begin_oauth_sign_in("t2", "browser-a", 1_000 + START_TTL_MS + 1)
            .await
            .unwrap()
            .is_none(),
        "a start URL expires"
    );
    let taken = s.take_oauth_callback("st1", 3_000).await.unwrap().unwrap();
    assert_eq!(
        (
            taken.gitlab_url.as_str(),
            taken.verifier.as_str(),
            taken.jira_user,
            taken.browser_hash.as_str()
        ),
        ("https://gl.example", "verifier", None, "browser-a")
    );
    assert!(
        s.take_oauth_callback("st1", 3_000).await.unwrap().is_none(),
        "a callback is taken once"
    );
    assert!(
        s.take_staged_sign_in("st1", 3_000).await.unwrap().is_none(),
        "nothing to confirm before the callback parked the pair"
    );
    assert!(
        s.stage_oauth_sign_in("st1", 7, "ada", r#"{"v":0}"#)
            .await
            .unwrap()
    );
    assert!(
        !s.stage_oauth_sign_in("st1", 8, "eve", r#"{"v":9}"#)
            .await
            .unwrap()
    );
    assert_eq!(
        s.staged_sign_in_browser("st1").await.unwrap().as_deref(),
        Some("browser-a")
    );
    let staged = s.take_staged_sign_in("st1", 4_000).await.unwrap().unwrap();
    assert_eq!(
        (
            staged.user_id,
            staged.username.as_str(),
            staged.tokens.as_str()
        ),
        (7, "ada", r#"{"v":0}"#)
    );
    assert!(
        s.take_staged_sign_in("st1", 4_000).await.unwrap().is_none(),
        "a confirmation is taken once"
    );
    s.begin_oauth_sign_in("t3", "browser-c", 2_000)
        .await
        .unwrap()
        .unwrap();
    let taken = s.take_oauth_callback("st3", 2_000).await.unwrap().unwrap();
    assert_eq!(
        taken.jira_user.as_ref(),
        Some(&jira_user),
        "a sign-in started from Jira keeps its Jira user"
    );
    assert!(
        s.take_oauth_callback("st3", 1_000 + PENDING_TTL_MS + 1)
            .await
            .unwrap()
            .is_none(),
        "expired"
    );
    assert!(
        s.take_oauth_callback("unknown", 2_000)
            .await
            .unwrap()
            .is_none()
    );

    let conn = s
        .upsert_gitlab_connection("https://gl.example", 7, "ada", r#"{"v":1}"#, false, 10)
        .await
        .unwrap();
    assert!(!conn.via_admin);
    let again = s
        .upsert_gitlab_connection("https://gl.example", 7, "ada", r#"{"v":2}"#, true, 11)
        .await
        .unwrap();
    assert_eq!(again.id, conn.id, "signing in again replaces the pair");
    assert!(again.via_admin, "a sign-in through the admin flow marks it");
    let after_jira = s
        .upsert_gitlab_connection("https://gl.example", 7, "ada", r#"{"v":2}"#, false, 11)
        .await
        .unwrap();
    assert!(
        after_jira.via_admin,
        "and a later sign-in from Jira keeps the mark"
    );
    let (_, read) = s.gitlab_connection(conn.id).await.unwrap().unwrap();
    assert_eq!(read.tokens, r#"{"v":2}"#);
    assert_eq!(
        s.jira_sign_in(&jira_user, "https://gl.example")
            .await
            .unwrap(),
        None
    );
    s.remember_jira_sign_in(&jira_user, "https://gl.example", conn.id, 12)
        .await
        .unwrap();
    s.remember_jira_sign_in(&jira_user, "https://gl.example", conn.id, 13)
        .await
        .unwrap();
    assert_eq!(
        s.jira_sign_in(&jira_user, "https://gl.example")
            .await
            .unwrap(),
        Some(conn.id)
    );
    assert!(
        s.swap_gitlab_connection_tokens(&conn, &read, r#"{"v":3}"#, 12)
            .await
            .unwrap()
    );
    assert!(
        !s.swap_gitlab_connection_tokens(&conn, &read, r#"{"v":4}"#, 13)
            .await
            .unwrap(),
        "a swap from a pair that was already replaced loses"
    );
    assert_eq!(
        s.gitlab_connection(conn.id)
            .await
            .unwrap()
            .unwrap()
            .1
            .tokens,
        r#"{"v":3}"#
    );
    db.drop_database().await;
}

/// Two subscriptions covering the same project (two Jira sites linking one group) keep their own
/// feature flag ids and project answers: one cannot change or delete what the other reconciles.
async fn per_project_state_belongs_to_one_subscription(db: TestDatabase) {
    let s = db.open().await;
    for key in ["k1", "k2"] {
        s.upsert_installation(&install(key, "secret"), 1)
            .await
            .unwrap();
    }
    let a = s
        .create_subscription(&subscription("k1", 5, "ha"), 2)
        .await
        .unwrap();
    let b = s
        .create_subscription(&subscription("k2", 5, "hb"), 2)
        .await
        .unwrap();
    s.remember_feature_flag(SubscriptionId(a.id), ProjectId(7), "rollout", 11)
        .await
        .unwrap();
    assert!(
        s.known_feature_flags(SubscriptionId(b.id), ProjectId(7))
            .await
            .unwrap()
            .is_empty()
    );
    s.remember_feature_flag(SubscriptionId(b.id), ProjectId(7), "rollout", 99)
        .await
        .unwrap();
    s.forget_feature_flag(SubscriptionId(b.id), ProjectId(7), "rollout")
        .await
        .unwrap();
    assert_eq!(
        s.known_feature_flags(SubscriptionId(a.id), ProjectId(7))
            .await
            .unwrap(),
        [("rollout".to_owned(), 11)]
    );
    assert!(
        s.known_feature_flags(SubscriptionId(b.id), ProjectId(7))
            .await
            .unwrap()
            .is_empty()
    );

    s.remember_project_coverage(SubscriptionId(a.id), ProjectId(8), true, 3)
        .await
        .unwrap();
    s.remember_project_coverage(SubscriptionId(b.id), ProjectId(8), false, 3)
        .await
        .unwrap();
    assert_eq!(
        s.project_coverage(SubscriptionId(a.id), ProjectId(8), 3)
            .await
            .unwrap(),
        Some(true)
    );
    assert_eq!(
        s.project_coverage(SubscriptionId(b.id), ProjectId(8), 3)
            .await
            .unwrap(),
        Some(false)
    );
    assert_eq!(
        s.project_coverage(SubscriptionId(a.id), ProjectId(9), 3)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        s.project_coverage(SubscriptionId(a.id), ProjectId(8), 4)
            .await
            .unwrap(),
        None,
        "an answer older than asked for is checked again"
    );
    s.count_foreign_delivery(b.id).await.unwrap();
    s.count_foreign_delivery(b.id).await.unwrap();
    let dropped = |id| {
        let s = s.clone();
        async move {
            s.subscription(id)
                .await
                .unwrap()
                .unwrap()
                .foreign_deliveries_dropped
        }
    };
    assert_eq!((dropped(a.id).await, dropped(b.id).await), (0, 2));

    // Removing a subscription removes its state, not the other's.
    assert!(s.delete_subscription(b.id).await.unwrap());
    assert_eq!(
        s.known_feature_flags(SubscriptionId(a.id), ProjectId(7))
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        s.project_coverage(SubscriptionId(a.id), ProjectId(8), 3)
            .await
            .unwrap(),
        Some(true)
    );
}

test_on_both_databases!(
    per_project_state_belongs_to_one_subscription,
    gitlab_sign_ins_are_single_use_and_token_swaps_are_compare_and_swap,
    installations_are_encrypted_replaced_and_removed_with_their_subscriptions,
    claims_are_exclusive_and_leases_expire,
    failures_back_off_postpone_and_die,
    a_job_past_its_attempts_is_never_claimed_again,
    backfill_slots_are_shared_fairly_between_subscriptions,
    duplicates_are_queued_once_and_intake_commits_in_groups,
    unknown_keys_are_kept_once_per_site_newest_first,
    locks_and_schedules_have_one_owner_across_replicas,
    the_backfill_cap_holds_when_replicas_start_tasks_at_once,
    replicas_with_wrong_clocks_agree_on_the_databases_time,
    replicas_remember_the_same_feature_flag_at_once,
    the_newer_delivery_supersedes_whatever_its_job_id,
    a_jobs_accepted_requests_outlive_its_runs_and_only_its_holder_adds_to_them,
);

/// `n` stores on one database, as `n` replicas open it.
async fn replicas(db: &TestDatabase, n: usize) -> Vec<gfj_store::Store> {
    let mut stores = Vec::new();
    for _ in 0..n {
        stores.push(db.open().await);
    }
    stores
}

/// Runs `f` on every replica at once.
async fn at_once<T, F, Fut>(replicas: &[gfj_store::Store], f: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(gfj_store::Store) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
{
    let mut set = tokio::task::JoinSet::new();
    for r in replicas {
        set.spawn(f(r.clone()));
    }
    set.join_all().await
}

/// Named locks and schedules decide which of several replicas owns a piece of shared work: many
/// stores on one database (one per replica) ask at once and exactly one wins.
async fn locks_and_schedules_have_one_owner_across_replicas(db: TestDatabase) {
    let replicas = replicas(&db, 4).await;
    let lock_winners = at_once(&replicas, |r| async move {
        r.try_lock("flush:1", 1_000, 500).await.unwrap()
    })
    .await
    .into_iter()
    .flatten()
    .collect::<Vec<_>>();
    assert_eq!(lock_winners.len(), 1, "one replica holds the lock");
    let held = lock_winners.into_iter().next().unwrap();
    let s = &replicas[0];
    assert!(s.try_lock("flush:1", 1_499, 500).await.unwrap().is_none());
    // Other names are other locks.
    assert!(s.try_lock("flush:2", 1_000, 500).await.unwrap().is_some());
    // Renewed, it holds past its first end; run out, another takes it, and the first holder's
    // renewal and release no longer touch it.
    assert!(s.renew_lock(&held, 1_400, 500).await.unwrap());
    assert!(s.try_lock("flush:1", 1_600, 500).await.unwrap().is_none());
    let next = s.try_lock("flush:1", 1_900, 500).await.unwrap().unwrap();
    assert!(!s.renew_lock(&held, 1_900, 500).await.unwrap());
    s.unlock(held).await.unwrap();
    assert!(s.try_lock("flush:1", 2_000, 500).await.unwrap().is_none());
    s.unlock(next).await.unwrap();
    assert!(s.try_lock("flush:1", 2_000, 500).await.unwrap().is_some());

    // Schedules: created once (a second start keeps the next run), claimed once per interval.
    s.ensure_schedule("hook_checks", 10_000).await.unwrap();
    replicas[1]
        .ensure_schedule("hook_checks", 99_000)
        .await
        .unwrap();
    let claims = |now: i64| {
        let replicas = replicas.clone();
        async move {
            at_once(&replicas, move |r| async move {
                r.claim_schedule("hook_checks", now, 5_000).await.unwrap()
            })
            .await
            .into_iter()
            .filter(|won| *won)
            .count()
        }
    };
    assert_eq!(claims(9_999).await, 0, "not due yet");
    assert_eq!(claims(10_000).await, 1);
    assert_eq!(claims(14_999).await, 0, "once per interval");
    assert_eq!(claims(15_000).await, 1);
    // A claimed run that could not be carried out is due again when rescheduled.
    s.reschedule("hook_checks", 15_100).await.unwrap();
    assert_eq!(claims(15_100).await, 1);
    assert!(!s.claim_schedule("unknown", 20_000, 1).await.unwrap());
    for r in replicas {
        r.close().await;
    }
    db.drop_database().await;
}

/// Replicas starting backfill tasks at the same moment never run more than the cap between them.
async fn the_backfill_cap_holds_when_replicas_start_tasks_at_once(db: TestDatabase) {
    use gfj_store::backfill::TaskState;
    let s = db.open().await;
    s.upsert_installation(&install("k1", "secret"), 1)
        .await
        .unwrap();
    let sub = s
        .create_subscription(&subscription("k1", 5, "h1"), 1)
        .await
        .unwrap();
    let projects: Vec<(i64, String)> = (0..10).map(|id| (id, format!("g/p{id}"))).collect();
    s.plan_backfill(sub.id, &projects, None, 10).await.unwrap();
    let replicas = replicas(&db, 6).await;
    for round in 0..5 {
        let cap = 2;
        let started: u64 = at_once(&replicas, move |r| async move {
            r.start_backfill_tasks(cap, 20 + round).await.unwrap()
        })
        .await
        .into_iter()
        .sum();
        let running = s
            .backfill_tasks(None)
            .await
            .unwrap()
            .into_iter()
            .filter(|t| t.state == TaskState::Running)
            .count();
        assert_eq!(running, 2, "round {round}: the cap holds across replicas");
        assert!(started <= 2, "round {round}: {started} started");
    }
    for r in replicas {
        r.close().await;
    }
    db.drop_database().await;
}

async fn unknown_keys_are_kept_once_per_site_newest_first(db: TestDatabase) {
    let s = db.open().await;
    s.upsert_installation(&install("site-1", "secret"), 0)
        .await
        .unwrap();
    s.upsert_installation(&install("site-2", "secret"), 0)
        .await
        .unwrap();
    let keys = |k: &[&str]| k.iter().map(|k| (*k).to_owned()).collect::<Vec<_>>();
    // Repeated keys in one report, and more keys than one statement takes.
    let mut many = keys(&["B-1", "A-1", "B-1"]);
    many.extend((0..1_200).map(|n| format!("M-{n}")));
    s.record_unknown_keys("site-1", &many, 1_000).await.unwrap();
    s.record_unknown_keys("site-1", &keys(&["A-1"]), 2_000)
        .await
        .unwrap();
    s.record_unknown_keys("site-2", &keys(&["C-1"]), 3_000)
        .await
        .unwrap();
    let site_1 = s.unknown_keys("site-1").await.unwrap();
    assert_eq!(site_1.len(), 1_202);
    assert_eq!(site_1[..2], keys(&["A-1", "B-1"]));
    assert_eq!(s.unknown_keys("site-2").await.unwrap(), keys(&["C-1"]));
    db.drop_database().await;
}

/// The SQLite database and its WAL hold every secret (encrypted) and every event: created 0600, and a
/// file left wider by an older version is narrowed at start.
#[tokio::test]
async fn sqlite_files_are_private_to_their_owner() {
    use std::os::unix::fs::PermissionsExt;
    let db = TestDatabase::sqlite().await;
    let path = db.url.trim_start_matches("sqlite://").to_owned();
    let mode = |p: &str| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let store = db.open().await;
    store
        .enqueue(
            &[gfj_store::queue::NewJob {
                kind: "k".into(),
                payload: "{}".into(),
                dedup_key: None,
                run_at: 0,
                max_attempts: 1,
                coalesce_key: None,
                coalesce_seq: None,
            }],
            0,
        )
        .await
        .unwrap();
    assert_eq!(mode(&path), 0o600, "database");
    assert_eq!(mode(&format!("{path}-wal")), 0o600, "WAL");
    store.close().await;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let store = db.open().await;
    assert_eq!(mode(&path), 0o600, "narrowed at start");
    store.close().await;
    db.drop_database().await;
}

/// Leases, locks, schedules and sequence numbers are taken on the database's time: two replicas whose
/// machine clocks are an hour apart read the same time through their `DatabaseClock`, and it never
/// goes backwards.
async fn replicas_with_wrong_clocks_agree_on_the_databases_time(db: TestDatabase) {
    use gfj_store::{DatabaseClock, SkewedClock, SystemClock};
    let store = db.open().await;
    let machine = |skew_ms| -> Arc<dyn Clock> {
        Arc::new(SkewedClock {
            base: Arc::new(SystemClock),
            skew_ms,
        })
    };
    let ahead = DatabaseClock::start(&store, machine(3_600_000))
        .await
        .unwrap();
    let behind = DatabaseClock::start(&store, machine(-3_600_000))
        .await
        .unwrap();
    assert!(
        (ahead.offset_ms() + 3_600_000).abs() < 1_000,
        "{}",
        ahead.offset_ms()
    );
    assert!(
        (behind.offset_ms() - 3_600_000).abs() < 1_000,
        "{}",
        behind.offset_ms()
    );
    let database = store.database_now_ms().await.unwrap();
    for clock in [&ahead, &behind] {
        assert!((clock.now_ms() - database).abs() < 1_000);
    }
    // A lease taken by the replica whose machine is an hour slow is not over for the one an hour fast
    // (read on their machine clocks, the fast one would take the job at once).
    // Due a second ago on the database's clock: the measured offsets are within a millisecond or two
    // of it, not exactly on it, and a job due "now" could be a millisecond early for either replica.
    let due = store.database_now_ms().await.unwrap() - 1_000;
    enqueue_one(&store, due).await;
    let taken = store
        .claim("slow", behind.now_ms(), 60_000, 10)
        .await
        .unwrap();
    assert_eq!(taken.len(), 1);
    assert!(
        store
            .claim("fast", ahead.now_ms(), 60_000, 10)
            .await
            .unwrap()
            .is_empty(),
        "the lease holds on the database's time"
    );
    let mut last = ahead.now_ms();
    for _ in 0..1_000 {
        let now = ahead.now_ms();
        assert!(now >= last, "never backwards");
        last = now;
    }
    store.close().await;
    db.drop_database().await;
}

async fn enqueue_one(store: &gfj_store::Store, run_at: i64) {
    assert_eq!(
        store
            .enqueue(&[job("one", None, run_at)], run_at)
            .await
            .unwrap(),
        1
    );
}

/// SQLite serves one `serve` process: its queue has no leases between processes. The second one on a
/// file is refused with a message that says what to do; a PostgreSQL URL takes no such lock.
#[tokio::test]
async fn one_serve_process_per_sqlite_file() {
    let db = TestDatabase::sqlite().await;
    let first = gfj_store::Store::lock_for_one_process(&db.url).unwrap();
    assert!(first.is_some());
    let refused = gfj_store::Store::lock_for_one_process(&db.url).unwrap_err();
    let message = refused.to_string();
    assert!(message.contains("another `serve` process"), "{message}");
    assert!(message.contains("PostgreSQL"), "{message}");
    drop(first);
    assert!(
        gfj_store::Store::lock_for_one_process(&db.url)
            .unwrap()
            .is_some(),
        "released with the process"
    );
    assert!(
        gfj_store::Store::lock_for_one_process("postgres://postgres@127.0.0.1:5432/x")
            .unwrap()
            .is_none()
    );
    db.drop_database().await;
}

/// A flag's webhook on one replica and a reconciliation pass on another record the same flag id at
/// once: both succeed, and one row holds the newest id (a delete-then-insert let the second fail on
/// the primary key under PostgreSQL's read-committed isolation).
async fn replicas_remember_the_same_feature_flag_at_once(db: TestDatabase) {
    let s = db.open().await;
    s.upsert_installation(&install("k1", "secret"), 1)
        .await
        .unwrap();
    let sub = SubscriptionId(
        s.create_subscription(&subscription("k1", 5, "ha"), 2)
            .await
            .unwrap()
            .id,
    );
    let replicas = replicas(&db, 6).await;
    for round in 0..20 {
        let outcomes = at_once(&replicas, move |r| async move {
            r.remember_feature_flag(sub, ProjectId(7), &format!("flag-{round}"), 40 + round)
                .await
        })
        .await;
        for outcome in outcomes {
            outcome.unwrap();
        }
    }
    let known = s.known_feature_flags(sub, ProjectId(7)).await.unwrap();
    assert_eq!(known.len(), 20);
    for r in replicas {
        r.close().await;
    }
    s.close().await;
    db.drop_database().await;
}

/// Updates of one entity coalesce into the newest delivery. Two replicas commit their batches in any
/// order, so the later delivery (higher sequence number) can get the lower job id: it must still be
/// the one that is sent, and the older one the one skipped.
async fn the_newer_delivery_supersedes_whatever_its_job_id(db: TestDatabase) {
    let s = db.open().await;
    let update = |payload: &str, seq: i64| NewJob {
        coalesce_key: Some("1:mr:9".into()),
        coalesce_seq: Some(seq),
        ..job(payload, None, 0)
    };
    // The merge (sequence 200) is committed first; the open (sequence 100) after it.
    s.enqueue(&[update("merge", 200)], 0).await.unwrap();
    s.enqueue(&[update("open", 100)], 0).await.unwrap();
    // An update queued without a sequence number (older rows) is ordered by id.
    s.enqueue(
        &[NewJob {
            coalesce_key: Some("1:mr:10".into()),
            ..job("unnumbered", None, 0)
        }],
        0,
    )
    .await
    .unwrap();
    s.enqueue(
        &[NewJob {
            coalesce_key: Some("1:mr:10".into()),
            coalesce_seq: Some(1),
            ..job("numbered", None, 0)
        }],
        0,
    )
    .await
    .unwrap();
    let claimed = s.claim("w", 0, 60_000, 10).await.unwrap();
    let by_payload = |p: &str| claimed.iter().find(|j| j.payload == p).unwrap();
    assert!(
        s.superseded(by_payload("open")).await.unwrap(),
        "the older delivery is skipped"
    );
    assert!(
        !s.superseded(by_payload("merge")).await.unwrap(),
        "the newer one is sent"
    );
    assert!(s.superseded(by_payload("unnumbered")).await.unwrap());
    assert!(!s.superseded(by_payload("numbered")).await.unwrap());
    s.close().await;
    db.drop_database().await;
}

/// What Jira accepted for a job is kept across its runs (a failure, a postponement, a hand-back, an
/// expired lease), only the worker holding the job can add to it, and it goes with the job.
async fn a_jobs_accepted_requests_outlive_its_runs_and_only_its_holder_adds_to_them(
    db: TestDatabase,
) {
    let s = db.open().await;
    let now = 1_000_000;
    enqueue_one(&s, now).await;
    let claim = |worker: &'static str, at: i64| {
        let s = s.clone();
        async move {
            let mut got = s.claim(worker, at, 60_000, 10).await.unwrap();
            assert_eq!(got.len(), 1, "{worker} claims the job");
            got.remove(0)
        }
    };
    let digests = |list: &[&str]| list.iter().map(|d| (*d).to_owned()).collect::<Vec<_>>();

    let first = claim("a", now).await;
    assert!(first.accepted_requests.is_empty());
    assert!(
        s.record_accepted_requests(&first.lease, &digests(&["d1", "d2"]))
            .await
            .unwrap()
    );
    assert!(
        s.record_accepted_requests(&first.lease, &digests(&["d3"]))
            .await
            .unwrap()
    );
    assert!(s.fail(&first.lease, "503", now, false, now).await.unwrap());

    let second = claim("b", now).await;
    assert_eq!(second.accepted_requests, digests(&["d1", "d2", "d3"]));
    assert!(
        s.record_accepted_requests(&second.lease, &digests(&["d4"]))
            .await
            .unwrap()
    );
    assert!(s.postpone(&second.lease, now, "429").await.unwrap());

    // A worker that lost the job adds nothing.
    let third = claim("c", now).await;
    assert_eq!(third.accepted_requests, digests(&["d1", "d2", "d3", "d4"]));
    assert!(
        !s.record_accepted_requests(&second.lease, &digests(&["stale"]))
            .await
            .unwrap()
    );
    assert!(s.release(&third.lease).await.unwrap());
    // Nor does one whose lease ran out and was taken over.
    let fourth = claim("d", now).await;
    let fifth = claim("e", now + 60_001).await;
    assert!(
        !s.record_accepted_requests(&fourth.lease, &digests(&["late"]))
            .await
            .unwrap()
    );
    assert_eq!(fifth.accepted_requests, digests(&["d1", "d2", "d3", "d4"]));

    // A finished job takes its record with it: a new job of the same payload starts afresh.
    assert!(s.complete(&fifth.lease).await.unwrap());
    enqueue_one(&s, now).await;
    assert!(claim("f", now + 60_001).await.accepted_requests.is_empty());
    db.drop_database().await;
}

/// The log's checkpoint sequence number (bytes 12..16 of its header), which moves on each time SQLite
/// starts the log over; `None` before the log has a header.
fn sqlite_log_sequence(log: &std::path::Path) -> Option<u32> {
    let bytes = std::fs::read(log).ok()?;
    Some(u32::from_be_bytes(bytes.get(12..16)?.try_into().ok()?))
}

/// Under steady intake the SQLite log starts over, again and again, rather than growing for as long as
/// the load lasts, every commit then appending to an ever larger file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_log_starts_over_under_steady_intake() {
    let db = TestDatabase::sqlite().await;
    let s = db.open().await;
    let log = std::path::PathBuf::from(format!("{}-wal", db.url.trim_start_matches("sqlite://")));
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::starting_at(1_000));
    let intake = Intake::start(s.clone(), clock);
    intake.submit(job("first", None, 1_000)).await.unwrap();
    let first = sqlite_log_sequence(&log).expect("the log has a header after a commit");

    let started_over = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut submitters = Vec::new();
    for n in 0..32 {
        let (intake, log, started_over) = (intake.clone(), log.clone(), started_over.clone());
        submitters.push(tokio::spawn(async move {
            let mut submitted = 0_u64;
            while !started_over.load(std::sync::atomic::Ordering::Relaxed)
                && std::time::Instant::now() < deadline
            {
                intake
                    .submit(job(&format!("{n}-{submitted}"), None, 1_000))
                    .await
                    .unwrap();
                submitted += 1;
                if n == 0 && sqlite_log_sequence(&log).is_some_and(|seq| seq >= first + 3) {
                    started_over.store(true, std::sync::atomic::Ordering::Relaxed);
                }
            }
            submitted
        }));
    }
    let mut submitted = 0;
    for submitter in submitters {
        submitted += submitter.await.unwrap();
    }
    assert!(
        started_over.load(std::sync::atomic::Ordering::Relaxed),
        "the log did not start over three times in {submitted} submissions"
    );
    db.drop_database().await;
}
