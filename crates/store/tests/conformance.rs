//! The store's behaviour, identical on SQLite and PostgreSQL.

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
        hook_mode: "project".into(),
        hooks: vec![Hook {
            scope: "project".into(),
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
        scope: "project".into(),
        target_id: 7,
        hook_id: 70,
    };
    s.set_hook_state(sub.id, &hook, "disabled", 10)
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
    s.record_gap(sub.id, "project", 7, 5, 11, "hook deleted in GitLab")
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
    s.remove_subscription_hook(sub.id, "project", 7)
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
                mine.extend(got.into_iter().map(|j| j.id));
            }
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.unwrap());
    }
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
    // The first owner lost its lease: it can neither complete nor fail the job.
    for w in 0..8 {
        assert!(!s.complete(again[0].id, &format!("w{w}")).await.unwrap());
        assert!(
            !s.fail(again[0].id, &format!("w{w}"), "x", now, true, now)
                .await
                .unwrap()
        );
    }
    assert!(s.complete(again[1].id, "late").await.unwrap());
    assert!(
        !s.complete(again[1].id, "late").await.unwrap(),
        "completed once"
    );
    db.drop_database().await;
}

async fn failures_back_off_postpone_and_die(db: TestDatabase) {
    let s = db.open().await;
    let now = 5_000_000;
    s.enqueue(&[job("x", None, now)], now).await.unwrap();
    let j = s.claim("w", now, 1_000, 1).await.unwrap().remove(0);
    assert!(
        s.fail(j.id, "w", "boom", now + 10_000, false, now)
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
        s.postpone(j.id, "w", now + 20_000, "rate limited")
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
        s.fail(j.id, "w", "boom 2", now + 30_000, false, now)
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
        s.fail(j.id, "w", "boom 3", now + 40_000, false, now)
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
        s.fail(j.id, "w", "bad request", now, true, now)
            .await
            .unwrap()
    );
    assert_eq!(s.queue_stats(now).await.unwrap().dead, 1);
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
    assert_eq!(s.jobs().await.unwrap().len(), 202);
    db.drop_database().await;
}

async fn gitlab_sign_ins_are_single_use_and_token_swaps_are_compare_and_swap(db: TestDatabase) {
    use gfj_store::gitlab_connections::PENDING_TTL_MS;
    let s = db.open().await;
    let jira_user = gfj_store::gitlab_connections::JiraUser {
        client_key: "site-1".into(),
        account_id: "user-7".into(),
    };
    s.put_oauth_pending("st1", "https://gl.example", "verifier-1", None, 1_000)
        .await
        .unwrap();
    s.put_oauth_pending("st2", "https://gl.example", "verifier-2", None, 1_000)
        .await
        .unwrap();
    s.put_oauth_pending(
        "st3",
        "https://gl.example",
        "verifier-3",
        Some(&jira_user),
        1_000,
    )
    .await
    .unwrap();
    let taken = s.take_oauth_pending("st1", 2_000).await.unwrap().unwrap();
    assert_eq!(
        (
            taken.gitlab_url.as_str(),
            taken.verifier.as_str(),
            taken.jira_user
        ),
        ("https://gl.example", "verifier-1", None)
    );
    assert!(
        s.take_oauth_pending("st1", 2_000).await.unwrap().is_none(),
        "single use"
    );
    let taken = s.take_oauth_pending("st3", 2_000).await.unwrap().unwrap();
    assert_eq!(
        taken.jira_user.as_ref(),
        Some(&jira_user),
        "a sign-in started from Jira keeps its Jira user"
    );
    assert!(
        s.take_oauth_pending("st2", 1_000 + PENDING_TTL_MS + 1)
            .await
            .unwrap()
            .is_none(),
        "expired"
    );
    assert!(
        s.take_oauth_pending("unknown", 2_000)
            .await
            .unwrap()
            .is_none()
    );

    let conn = s
        .upsert_gitlab_connection("https://gl.example", 7, "ada", r#"{"v":1}"#, 10)
        .await
        .unwrap();
    let again = s
        .upsert_gitlab_connection("https://gl.example", 7, "ada", r#"{"v":2}"#, 11)
        .await
        .unwrap();
    assert_eq!(again.id, conn.id, "signing in again replaces the pair");
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
    s.remember_feature_flag(a.id, 7, "rollout", 11)
        .await
        .unwrap();
    assert!(s.known_feature_flags(b.id, 7).await.unwrap().is_empty());
    s.remember_feature_flag(b.id, 7, "rollout", 99)
        .await
        .unwrap();
    s.forget_feature_flag(b.id, 7, "rollout").await.unwrap();
    assert_eq!(
        s.known_feature_flags(a.id, 7).await.unwrap(),
        [("rollout".to_owned(), 11)]
    );
    assert!(s.known_feature_flags(b.id, 7).await.unwrap().is_empty());

    s.remember_project_coverage(a.id, 8, true, 3).await.unwrap();
    s.remember_project_coverage(b.id, 8, false, 3)
        .await
        .unwrap();
    assert_eq!(s.project_coverage(a.id, 8, 3).await.unwrap(), Some(true));
    assert_eq!(s.project_coverage(b.id, 8, 3).await.unwrap(), Some(false));
    assert_eq!(s.project_coverage(a.id, 9, 3).await.unwrap(), None);
    assert_eq!(
        s.project_coverage(a.id, 8, 4).await.unwrap(),
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
    assert_eq!(s.known_feature_flags(a.id, 7).await.unwrap().len(), 1);
    assert_eq!(s.project_coverage(a.id, 8, 3).await.unwrap(), Some(true));
}

test_on_both_databases!(
    per_project_state_belongs_to_one_subscription,
    gitlab_sign_ins_are_single_use_and_token_swaps_are_compare_and_swap,
    installations_are_encrypted_replaced_and_removed_with_their_subscriptions,
    claims_are_exclusive_and_leases_expire,
    failures_back_off_postpone_and_die,
    duplicates_are_queued_once_and_intake_commits_in_groups,
);
