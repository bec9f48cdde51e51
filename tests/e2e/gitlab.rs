//! The GitLab side: signed and oversized deliveries, a client that respects GitLab's rate limits and
//! pagination, and hooks kept healthy when GitLab disables or loses them.

use std::time::Duration;

use gfj_core::standard_webhooks;
use gfj_sim::gitlab::{AlertStatus, Plan};
use gfj_sim::jira::JiraSimConfig;
use gfj_store::test_on_both_databases;
use gfj_store::testing::TestDatabase;
use gitlab_for_jira::commands::link::HookMode;

use crate::helpers::{TestApp, now_ms};

async fn post_webhook(
    app: &TestApp,
    token: &str,
    body: &[u8],
    signature: Option<(&str, i64, String)>,
) -> u16 {
    let mut r = reqwest::Client::new()
        .post(format!("{}/gitlab/webhook", app.base_url))
        .header("X-Gitlab-Event", "Push Hook")
        .header("X-Gitlab-Token", token)
        .header("Content-Type", "application/json")
        .body(body.to_vec());
    if let Some((id, ts, sig)) = signature {
        r = r
            .header("webhook-id", id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", sig);
    }
    r.send().await.unwrap().status().as_u16()
}

/// A push body that passes intake's checks.
fn push_body(project_id: i64) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "object_kind": "push", "before": "0000000000000000000000000000000000000000",
        "after": "1111111111111111111111111111111111111111", "ref": "refs/heads/PROJ-1-x",
        "project_id": project_id,
        "project": {"id": project_id, "name": "p0", "web_url": "http://gitlab.example/acme/p0"},
        "commits": [], "total_commits_count": 0
    }))
    .unwrap()
}

async fn signed_deliveries_are_verified_where_gitlab_keeps_a_signing_secret(db: TestDatabase) {
    let app = TestApp::start(db).await;
    let w = app.linked_world(1).await;
    let sub = &app.store.subscriptions().await.unwrap()[0];
    let key = app
        .store
        .subscription_signing_key(sub)
        .await
        .unwrap()
        .expect("GitLab kept the signing secret, so deliveries must be signed");
    let hook = app.gitlab.hooks()[0].clone();
    assert_eq!(
        standard_webhooks::secret_key(&app.gitlab.hook_signing_token(hook.id).unwrap()).unwrap(),
        key,
        "the secret registered in GitLab is the one stored"
    );

    // GitLab's own signed deliveries are accepted and reach Jira.
    app.gitlab
        .push(w.projects[0], "main", &["PROJ-5 signed"], w.user)
        .await;
    app.drained().await;
    assert_eq!(app.jira.issue("PROJ-5").commits.len(), 1);

    // The right token is not enough without a valid signature.
    let token = app.gitlab.hook_token(hook.id).unwrap();
    let body = push_body(w.projects[0]);
    let now = now_ms() / 1000;
    let jobs_before = app.store.queue_stats(now_ms()).await.unwrap();
    assert_eq!(post_webhook(&app, &token, &body, None).await, 401);
    let forged = standard_webhooks::sign(b"another key", "msg_1", now, &body);
    assert_eq!(
        post_webhook(&app, &token, &body, Some(("msg_1", now, forged))).await,
        401
    );
    let stale = standard_webhooks::sign(&key, "msg_1", now - 3600, &body);
    assert_eq!(
        post_webhook(&app, &token, &body, Some(("msg_1", now - 3600, stale))).await,
        401,
        "an old signed delivery is a replay"
    );
    let tampered = standard_webhooks::sign(&key, "msg_1", now, b"{}");
    assert_eq!(
        post_webhook(&app, &token, &body, Some(("msg_1", now, tampered))).await,
        401
    );
    assert_eq!(
        app.store.queue_stats(now_ms()).await.unwrap().ready,
        jobs_before.ready,
        "nothing queued for refused deliveries"
    );
    let good = standard_webhooks::sign(&key, "msg_1", now, &body);
    assert_eq!(
        post_webhook(&app, &token, &body, Some(("msg_1", now, good))).await,
        202
    );
    app.stop().await;
}

/// A signed delivery replayed within the signature's five minutes, with another (unsigned)
/// `Idempotency-Key`, is queued once: deduplication uses the signed `webhook-id`.
async fn signed_deliveries_are_deduplicated_on_their_signed_id(db: TestDatabase) {
    let app = TestApp::start_with(db, false).await;
    let w = app.linked_world(1).await;
    let sub = &app.store.subscriptions().await.unwrap()[0];
    let key = app
        .store
        .subscription_signing_key(sub)
        .await
        .unwrap()
        .unwrap();
    let token = app.gitlab.hook_token(app.gitlab.hooks()[0].id).unwrap();
    let body = push_body(w.projects[0]);
    let now = now_ms() / 1000;
    let signature = standard_webhooks::sign(&key, "msg_replayed", now, &body);
    let deliver = |idempotency_key: &'static str| {
        reqwest::Client::new()
            .post(format!("{}/gitlab/webhook", app.base_url))
            .header("X-Gitlab-Event", "Push Hook")
            .header("X-Gitlab-Token", &token)
            .header("Idempotency-Key", idempotency_key)
            .header("webhook-id", "msg_replayed")
            .header("webhook-timestamp", now.to_string())
            .header("webhook-signature", &signature)
            .body(body.clone())
            .send()
    };
    let events = || app.queued("gitlab_event");
    let before = events().await;
    for key in ["first", "changed-by-a-replayer", "another"] {
        assert_eq!(deliver(key).await.unwrap().status().as_u16(), 202);
    }
    assert_eq!(events().await, before + 1, "queued once");
    app.stop().await;
}

async fn oversized_webhook_bodies_get_413_and_hook_checks_are_queued_once(db: TestDatabase) {
    let app = TestApp::start_with_settings(
        db,
        false,
        JiraSimConfig::default(),
        &[("GFJ_WEBHOOK_MAX_BYTES", "2048")],
    )
    .await;
    app.install().await;
    let w = app.world(Plan::Free, 40, 1);
    // Without a signing secret (an older GitLab), the token alone authenticates.
    app.gitlab.set_signing_tokens_supported(false);
    let linked = app.link("acme", &w.token, HookMode::Auto).await.unwrap();
    let token = app.gitlab.hook_token(linked.hooks[0].hook_id).unwrap();
    let mut big = push_body(w.projects[0]);
    let padding = format!(",\"padding\":\"{}\"}}", "x".repeat(4096));
    big.truncate(big.len() - 1);
    big.extend_from_slice(padding.as_bytes());
    let events = || app.queued("gitlab_event");
    assert_eq!(post_webhook(&app, &token, &big, None).await, 413);
    assert_eq!(events().await, 0);
    assert_eq!(
        post_webhook(&app, &token, &push_body(w.projects[0]), None).await,
        202
    );
    assert_eq!(events().await, 1);

    // Replicas ticking together queue a subscription's hook check once per interval.
    let now = now_ms();
    let schedule = || gfj_sync::hooks::schedule_hook_checks(&app.store, now, 300_000);
    assert_eq!(schedule().await.unwrap(), 1);
    assert_eq!(schedule().await.unwrap(), 0);
    app.stop().await;
}

/// 350 projects in nested subgroups, linked under GitLab's rate limit: every project is hooked exactly
/// once, the client pauses when `RateLimit-Remaining` reaches 0 instead of running into 429s, and the
/// project list is read with keyset pagination.
async fn a_large_group_is_enumerated_once_within_gitlabs_rate_limit(db: TestDatabase) {
    // Only the link's own requests are looked at: no workers run the backfill it queues.
    let app = TestApp::start_with(db, false).await;
    app.install().await;
    let w = app.world(Plan::Free, 40, 50);
    let mut expected: Vec<i64> = w.projects.clone();
    for a in 0..3 {
        let sub = app
            .gitlab
            .add_group(&format!("team{a}"), Some(w.group), Plan::Free);
        for b in 0..2 {
            let deep = app
                .gitlab
                .add_group(&format!("squad{b}"), Some(sub), Plan::Free);
            for n in 0..50 {
                expected.push(app.gitlab.add_project(deep, &format!("svc{n}")));
            }
        }
    }
    assert_eq!(expected.len(), 350);
    app.gitlab.set_rate_limit(150, Duration::from_secs(2));
    let linked = app
        .link_only("acme", &w.token, HookMode::Auto)
        .await
        .unwrap();
    let mut hooked: Vec<i64> = linked.hooks.iter().map(|h| h.target_id).collect();
    hooked.sort();
    expected.sort();
    assert_eq!(hooked, expected, "each project exactly once");
    let requests = app.gitlab.requests();
    assert!(
        requests.iter().all(|r| r.status != 429),
        "the client waited for the window to reset instead of being throttled"
    );
    let lists: Vec<_> = requests
        .iter()
        .filter(|r| r.path.ends_with("/projects") && r.method == "GET")
        .collect();
    assert_eq!(lists.len(), 4, "350 projects at 100 per page");
    assert!(
        lists[1..].iter().all(|r| r.query.contains("id_after=")),
        "keyset pages: {:?}",
        lists.iter().map(|r| &r.query).collect::<Vec<_>>()
    );
    app.stop().await;
}

/// A 429 with `Retry-After` is waited out, and 5xx answers are retried, without failing the command.
async fn gitlab_throttling_and_outages_are_waited_out(db: TestDatabase) {
    // Only the link's own requests are looked at: no workers run the backfill it queues.
    let app = TestApp::start_with(db, false).await;
    app.install().await;
    let w = app.world(Plan::Free, 40, 1);
    app.gitlab.set_rate_limit(3, Duration::from_secs(2));
    // Another client of the same user spends the window's budget.
    let http = reqwest::Client::new();
    for _ in 0..3 {
        http.get(format!("{}/api/v4/user", app.gitlab.base_url))
            .bearer_auth(&w.token)
            .send()
            .await
            .unwrap();
    }
    app.gitlab.fail_next(1, 429);
    app.gitlab.fail_next(2, 503);
    let linked = app
        .link_only("acme", &w.token, HookMode::Auto)
        .await
        .unwrap();
    assert_eq!(linked.hooks.len(), 1);
    let requests = app.gitlab.requests();
    let statuses: Vec<u16> = requests[3..].iter().map(|r| r.status).collect();
    assert_eq!(&statuses[..3], &[429, 503, 503], "{statuses:?}");
    for pair in requests.windows(2).filter(|p| p[0].status == 429) {
        assert!(
            pair[1].at.duration_since(pair[0].at) >= Duration::from_millis(900),
            "a request followed a 429 after {:?}",
            pair[1].at.duration_since(pair[0].at)
        );
    }
    app.stop().await;
}

async fn hooks_gitlab_disabled_or_lost_are_restored_and_the_gaps_recorded(db: TestDatabase) {
    let app = TestApp::start(db).await;
    let w = app.linked_world(3).await;
    let sub = app.store.subscriptions().await.unwrap()[0].clone();
    let hooks = app.store.subscription_hooks(sub.id).await.unwrap();
    let token = app.gitlab.hook_token(hooks[0].hook_id).unwrap();
    app.gitlab.disable_hook(hooks[0].hook_id);
    app.gitlab.delete_hook_externally(hooks[1].hook_id);
    // A project added to the group: on Free no webhook says so.
    let newcomer = app.gitlab.add_project(w.group, "newcomer");
    // A project that left the group, after it sent something to Jira.
    app.gitlab
        .push(w.projects[2], "main", &["GONE-1 soon elsewhere"], w.user)
        .await;
    app.drained().await;
    assert_eq!(app.jira.issue("GONE-1").commits.len(), 1);
    app.gitlab.remove_project(w.projects[2]);

    let interval = 300_000;
    gfj_sync::hooks::schedule_hook_checks(&app.store, now_ms(), interval)
        .await
        .unwrap();
    app.drained().await;

    let disabled = app.gitlab.hook(hooks[0].hook_id).unwrap();
    assert_eq!(disabled.alert_status, AlertStatus::Executable, "re-enabled");
    assert!(
        app.gitlab
            .deliveries()
            .iter()
            .any(|d| d.hook_id == hooks[0].hook_id && d.test && d.status == Some(202)),
        "re-enabled through a test delivery we accepted"
    );
    let sim_hooks = app.gitlab.hooks();
    let on = |project: i64| -> Vec<i64> {
        sim_hooks
            .iter()
            .filter(|h| h.scope == "project" && h.target_id == project)
            .map(|h| h.id)
            .collect()
    };
    let restored = on(w.projects[1]);
    assert_eq!(restored.len(), 1);
    assert_ne!(restored[0], hooks[1].hook_id, "registered again");
    assert_eq!(
        app.gitlab.hook_token(restored[0]).unwrap(),
        token,
        "with the subscription's token"
    );
    assert_eq!(on(newcomer).len(), 1, "the new project is hooked");

    let mut recorded: Vec<(i64, i64)> = app
        .store
        .subscription_hooks(sub.id)
        .await
        .unwrap()
        .iter()
        .map(|h| (h.target_id, h.hook_id))
        .collect();
    recorded.sort();
    let mut want = vec![
        (w.projects[0], hooks[0].hook_id),
        (w.projects[1], restored[0]),
        (newcomer, on(newcomer)[0]),
    ];
    want.sort();
    assert_eq!(recorded, want, "the departed project's hook is forgotten");

    let gaps = app.store.open_gaps(sub.id).await.unwrap();
    let mut reasons: Vec<(i64, &str)> = gaps
        .iter()
        .map(|g| (g.target_id, g.reason.as_str()))
        .collect();
    reasons.sort();
    let mut want = vec![
        (w.projects[0], "hook disabled by GitLab"),
        (w.projects[1], "hook deleted in GitLab"),
    ];
    want.sort();
    assert_eq!(reasons, want);
    let newcomer_tasks = app
        .store
        .backfill_tasks(Some(sub.id))
        .await
        .unwrap()
        .into_iter()
        .filter(|t| t.project_id == newcomer)
        .count();
    assert_eq!(
        newcomer_tasks,
        gfj_core::jobs::BackfillEntity::ALL.len(),
        "the new project's history is backfilled"
    );
    assert!(
        app.jira.issue("GONE-1").commits.is_empty(),
        "the departed project's data left Jira"
    );
    assert!(gaps.iter().all(|g| g.until_ms >= g.since_ms));
    let report = gitlab_for_jira::commands::status::status(&app.store, now_ms(), false, false)
        .await
        .unwrap();
    assert!(
        report.contains("2 window(s) GitLab may not have reported"),
        "{report}"
    );

    // Events flow through the restored hooks again.
    app.gitlab
        .push(w.projects[1], "main", &["PROJ-21 after restore"], w.user)
        .await;
    app.gitlab
        .push(newcomer, "main", &["PROJ-22 in the new project"], w.user)
        .await;
    app.drained().await;
    assert_eq!(app.jira.issue("PROJ-21").commits.len(), 1);
    assert_eq!(app.jira.issue("PROJ-22").commits.len(), 1);

    app.stop().await;
}

/// One tenant's exhausted rate limit pauses only that tenant's token: another tenant on the same
/// GitLab instance goes on at once.
#[tokio::test]
async fn one_tenants_exhausted_rate_limit_does_not_pause_another() {
    use gfj_gitlab_client::{GitLabClient, GitLabError};
    let gitlab = gfj_sim::gitlab::GitLabSim::start().await.unwrap();
    gitlab.add_user("ada", "glpat-ada");
    gitlab.add_user("bob", "glpat-bob");
    // The throttle's windows are aligned to the epoch, as GitLab's are: start the simulator's clock at
    // the beginning of one, so that Ada's budget does not come back seconds later (the client waits out a
    // reset that close, and the test then failed when it ran near a ten-minute boundary).
    let window_ms: u64 = 600_000;
    let into_window = now_ms() as u64 % window_ms;
    gitlab.advance_clock(Duration::from_millis(window_ms - into_window));
    gitlab.set_rate_limit(3, Duration::from_millis(window_ms));
    let http = gfj_http::client();
    let ada = GitLabClient::new(http.clone(), &gitlab.base_url, "glpat-ada");
    let bob = GitLabClient::new(http.clone(), &gitlab.base_url, "glpat-bob");
    for _ in 0..3 {
        ada.current_user().await.unwrap();
    }
    // Ada's budget is spent for the next ten minutes (`RateLimit-Remaining: 0`): her client waits...
    assert!(
        matches!(
            ada.current_user().await,
            Err(GitLabError::RateLimited { .. })
        ),
        "the exhausted token is paused"
    );
    // ...and Bob's does not.
    let started = std::time::Instant::now();
    let me = bob.current_user().await;
    assert_eq!(
        me.map(|u| u.username).map_err(|e| e.to_string()),
        Ok("bob".to_owned()),
        "another tenant's token is not paused"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    let answered: Vec<u16> = gitlab.requests().iter().map(|r| r.status).collect();
    assert_eq!(answered, [200, 200, 200, 200], "no request ran into a 429");
}

/// A GitLab whose pages never end (a `Link` to the same page, an `x-next-page` that does not advance)
/// is not followed forever: a whole-list read fails after one repeated page, and a backfill cursor
/// does not stay on its page.
#[tokio::test]
async fn pagination_that_loops_is_not_followed() {
    use gfj_gitlab_client::GitLabClient;
    let gitlab = gfj_sim::gitlab::GitLabSim::start().await.unwrap();
    let user = gitlab.add_user("ada", "glpat-ada");
    let group = gitlab.add_group("acme", None, Plan::Free);
    gitlab.add_member(group, user, 40);
    let project = gitlab.add_project(group, "p0");
    gitlab.set_pagination_loops(true);
    let client = GitLabClient::new(gfj_http::client(), &gitlab.base_url, "glpat-ada");
    let listed = tokio::time::timeout(Duration::from_secs(20), client.group_projects(group))
        .await
        .expect("still paging after 20 s");
    let err = listed.expect_err("a list that never ends is an error, not a partial list");
    assert!(err.to_string().contains("pagination does not end"), "{err}");
    let lists = gitlab
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/projects"))
        .count();
    assert_eq!(lists, 1, "the repeated page is not requested again");

    let page = client.branches_page(project, 1).await.unwrap();
    assert!(!page.items.is_empty(), "the project has its default branch");
    assert_eq!(
        page.next_page, None,
        "x-next-page 1 after page 1 is no next page"
    );
}

/// A token endpoint that claims an absurd lifetime (`expires_in` of i64::MAX, or negative) neither
/// overflows nor makes the token live forever: it is believed for at most a day, and a negative one is
/// due for refresh at once.
#[tokio::test]
async fn hostile_token_lifetimes_are_capped() {
    use gfj_gitlab_client::oauth::{self, OAuthApp};
    let gitlab = gfj_sim::gitlab::GitLabSim::start().await.unwrap();
    gitlab.add_user("ada", "glpat-ada");
    let redirect_uri = "http://127.0.0.1:9/gitlab/oauth/callback";
    let (client_id, client_secret) = gitlab.add_oauth_application(redirect_uri);
    let app = OAuthApp {
        gitlab_url: gitlab.base_url.clone(),
        client_id,
        client_secret,
        redirect_uri: redirect_uri.into(),
    };
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let http = gfj_http::client();
    let day_ms = gfj_core::server_time::MAX_TOKEN_LIFETIME_SECS * 1000;
    for (lifetime, expected_in_ms) in [(i64::MAX, day_ms), (-100, 0)] {
        gitlab.set_oauth_token_lifetime(lifetime);
        let verifier = oauth::pkce_verifier(&[42; 32]);
        let resp = browser
            .get(oauth::authorize_url(&app, "state-1", &verifier))
            .header("Cookie", "_gitlab_session=glpat-ada")
            .send()
            .await
            .unwrap();
        let back = url::Url::parse(resp.headers()["location"].to_str().unwrap()).unwrap();
        let code = back
            .query_pairs()
            .find(|(k, _)| k == "code")
            .map(|(_, v)| v.into_owned())
            .unwrap();
        let now = now_ms();
        let tokens = oauth::exchange_code(&http, &app, &code, &verifier, now)
            .await
            .unwrap();
        assert_eq!(
            tokens.expires_at_ms,
            now + expected_in_ms,
            "expires_in {lifetime}"
        );
        assert_eq!(tokens.needs_refresh(now), expected_in_ms == 0);
    }
}

/// GitLab sign-in: authorization code with PKCE, then a refresh that rotates both tokens. Only the
/// client side so far; storing the pair for subscriptions is the next step.
#[tokio::test]
async fn gitlab_oauth_with_pkce_signs_in_and_refreshes_with_rotation() {
    use gfj_gitlab_client::oauth::{self, OAuthApp};
    use gfj_gitlab_client::{GitLabClient, GitLabError};
    let gitlab = gfj_sim::gitlab::GitLabSim::start().await.unwrap();
    let user = gitlab.add_user("ada", "glpat-ada");
    let redirect_uri = "http://127.0.0.1:9/gitlab/oauth/callback";
    let (client_id, client_secret) = gitlab.add_oauth_application(redirect_uri);
    let app = OAuthApp {
        gitlab_url: gitlab.base_url.clone(),
        client_id,
        client_secret,
        redirect_uri: redirect_uri.into(),
    };
    let verifier = oauth::pkce_verifier(&[42; 32]);
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let resp = browser
        .get(oauth::authorize_url(&app, "state-1", &verifier))
        .header("Cookie", "_gitlab_session=glpat-ada")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 302);
    let back = url::Url::parse(resp.headers()["location"].to_str().unwrap()).unwrap();
    assert!(back.as_str().starts_with(redirect_uri));
    let q: std::collections::HashMap<_, _> = back.query_pairs().into_owned().collect();
    assert_eq!(q["state"], "state-1");
    let http = gfj_http::client();
    let now = now_ms();
    // The wrong verifier is refused: the code is bound to the challenge.
    let wrong = oauth::pkce_verifier(&[7; 32]);
    assert!(matches!(
        oauth::exchange_code(&http, &app, &q["code"], &wrong, now).await,
        Err(GitLabError::OAuthRejected(_))
    ));
    let tokens = oauth::exchange_code(&http, &app, &q["code"], &verifier, now)
        .await
        .unwrap();
    assert!(!tokens.needs_refresh(now));
    let me = GitLabClient::new(http.clone(), &gitlab.base_url, &tokens.access_token)
        .current_user()
        .await
        .unwrap();
    assert_eq!(me.id, user);

    // Two hours later the access token is expired; the refresh rotates both tokens.
    gitlab.advance_clock(Duration::from_secs(7200));
    let later = now + 7_200_000;
    assert!(tokens.needs_refresh(later));
    assert!(matches!(
        GitLabClient::new(http.clone(), &gitlab.base_url, &tokens.access_token)
            .current_user()
            .await,
        Err(GitLabError::Unauthorized)
    ));
    let fresh = oauth::refresh(&http, &app, &tokens, later).await.unwrap();
    assert_ne!(fresh.refresh_token, tokens.refresh_token);
    assert_eq!(
        GitLabClient::new(http.clone(), &gitlab.base_url, &fresh.access_token)
            .current_user()
            .await
            .unwrap()
            .id,
        user
    );
    assert!(
        matches!(
            oauth::refresh(&http, &app, &tokens, later).await,
            Err(GitLabError::OAuthRejected(_))
        ),
        "the rotated-out refresh token no longer works"
    );
    assert_eq!(
        gitlab.oauth_grants(),
        ["authorization_code", "refresh_token"]
    );
}

/// The whole sign-in: an admin starts it, the user signs in to GitLab, the callback stores the
/// connection, a group is linked as that user, and every later use refreshes the short-lived token,
/// persisting each rotated pair before using it.
async fn a_gitlab_sign_in_links_a_group_and_its_rotated_tokens_are_persisted(db: TestDatabase) {
    let app = TestApp::start(db).await;
    app.install().await;
    let w = app.world(Plan::Free, 40, 2);
    // Tokens that live a minute: every use is within the refresh margin, so each one rotates the pair.
    app.gitlab.set_oauth_token_lifetime(60);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let start = |bearer: &'static str| {
        http.post(format!("{}/gitlab/oauth/start", app.base_url))
            .bearer_auth(bearer)
            .json(&serde_json::json!({ "gitlab_url": app.gitlab.base_url }))
            .send()
    };
    assert_eq!(start("wrong").await.unwrap().status().as_u16(), 401);
    let started: serde_json::Value = start(crate::helpers::ADMIN_TOKEN)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let start_url = started["start_url"].as_str().unwrap();
    let mut browser = crate::sign_in::Browser::of(&w);
    let text = browser.sign_in(&app, start_url).await;
    assert!(text.contains("as @user40"), "{text}");
    let (replay, _) = browser.get(start_url).await;
    assert_eq!(replay, 400, "a sign-in's start URL works once");

    let connection: i64 = text
        .rsplit("GitLab connection ")
        .next()
        .and_then(|t| t.split('.').next())
        .and_then(|n| n.parse().ok())
        .expect("the page names the connection");
    let stored = |app: &TestApp| {
        let store = app.store.clone();
        async move {
            store
                .gitlab_connection(connection)
                .await
                .unwrap()
                .unwrap()
                .1
                .tokens
        }
    };
    let signed_in = stored(&app).await;
    let req = gitlab_for_jira::commands::link::LinkRequest {
        site: app.jira.client_key().to_owned(),
        group: "acme".into(),
        gitlab_url: app.gitlab.base_url.clone(),
        gitlab_token: String::new(),
        gitlab_connection: Some(connection),
        hook_mode: HookMode::Auto,
    };
    let linked = gitlab_for_jira::commands::link::link(&app.settings, &app.store, req, now_ms())
        .await
        .unwrap();
    assert_eq!(
        linked.hooks.len(),
        2,
        "hooks registered as the signed-in user"
    );
    let after_link = stored(&app).await;
    assert_ne!(after_link, signed_in, "the refreshed pair was stored");

    // The hook check acts as the same user: it refreshes again from the stored (rotated) pair.
    gfj_sync::hooks::schedule_hook_checks(&app.store, now_ms(), 300_000)
        .await
        .unwrap();
    app.drained().await;
    assert_ne!(stored(&app).await, after_link);
    // The link's backfill acts as the user too, so there may be more refreshes than these two.
    let grants = app.gitlab.oauth_grants();
    assert_eq!(grants[0], "authorization_code");
    assert!(grants.len() >= 3, "{grants:?}");
    assert!(
        grants[1..].iter().all(|g| g == "refresh_token"),
        "each refresh used the latest refresh token (a stale one would have been refused): {grants:?}"
    );
    let sub = &app.store.subscriptions().await.unwrap()[0];
    assert_eq!(sub.gitlab_connection_id, Some(connection));
    assert!(
        app.store
            .subscription_hook_status(sub.id)
            .await
            .unwrap()
            .iter()
            .all(|h| h.state == gfj_core::domain::HookState::Ok && h.checked_at.is_some())
    );
    app.stop().await;
}

test_on_both_databases!(
    a_gitlab_sign_in_links_a_group_and_its_rotated_tokens_are_persisted,
    signed_deliveries_are_verified_where_gitlab_keeps_a_signing_secret,
    signed_deliveries_are_deduplicated_on_their_signed_id,
    oversized_webhook_bodies_get_413_and_hook_checks_are_queued_once,
    a_large_group_is_enumerated_once_within_gitlabs_rate_limit,
    gitlab_throttling_and_outages_are_waited_out,
    hooks_gitlab_disabled_or_lost_are_restored_and_the_gaps_recorded,
);
