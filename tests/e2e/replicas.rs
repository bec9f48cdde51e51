//! Several replicas on one database: work that one of them at a time must own (a subscription's outbox
//! flush, its hook check, the periodic schedules) is decided in the database, not per process. Each
//! "replica" here is a store and handlers of its own, as a second `serve` process would have.

use std::pin::Pin;
use std::sync::Arc;

use gfj_core::jobs::{BackfillFlush, HookCheck, Job};
use gfj_sim::gitlab::Plan;
use gfj_store::queue::{Job as QueuedJob, Lease, NewJob};
use gfj_store::testing::{TEST_KEY, TestDatabase};
use gfj_store::{Clock, ManualClock, Store, SystemClock, test_on_both_databases};
use gfj_sync::upkeep::Upkeep;
use gfj_sync::{Handlers, JobError, JobHandler, Runner, RunnerConfig};
use gitlab_for_jira::commands::link::HookMode;
use gitlab_for_jira::commands::serve;

use crate::helpers::{TestApp, now_ms};
use gfj_sim::jira::JiraSimConfig;
use gfj_sim::proxy::RoundRobin;
use gfj_store::SkewedClock;
use gitlab_for_jira::commands::serve::Service;

/// A second replica of `app`: its own connections to the same database, its own process-wide state.
struct Replica {
    store: Store,
    handlers: Handlers,
}

async fn replica(app: &TestApp) -> Replica {
    let store = Store::open(&app.settings.database_url, Some(TEST_KEY))
        .await
        .unwrap();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    Replica {
        handlers: serve::handlers(&app.settings, &store, clock),
        store,
    }
}

impl Replica {
    /// Runs `job` here, as a worker of this replica that claimed it would.
    async fn run(&self, job: &Job) -> Result<(), JobError> {
        JobHandler::run(&self.handlers, &claimed(job)).await
    }
}

/// `job` as a worker holds it once claimed (the newest of its kind: nothing queued supersedes it).
fn claimed(job: &Job) -> QueuedJob {
    let new = NewJob::of(job, 0);
    QueuedJob {
        id: i64::MAX,
        lease: Lease {
            job_id: i64::MAX,
            worker: "test".into(),
            claim: 1,
        },
        kind: new.kind,
        payload: new.payload,
        attempts: 1,
        max_attempts: new.max_attempts,
        created_at: 0,
        coalesce_key: new.coalesce_key,
        coalesce_seq: new.coalesce_seq,
        accepted_requests: Vec::new(),
    }
}

/// Runs every job but outbox flushes, which it leaves for later.
struct AllButFlushes(Handlers);

impl JobHandler for AllButFlushes {
    fn run<'a>(
        &'a self,
        job: &'a QueuedJob,
    ) -> Pin<Box<dyn Future<Output = Result<(), JobError>> + Send + 'a>> {
        if job.kind == "backfill_flush" {
            return Box::pin(async {
                Err(JobError::Postpone {
                    message: "test: not yet".into(),
                    after_ms: 3_600_000,
                })
            });
        }
        JobHandler::run(&self.0, job)
    }
}

/// Entities (by repository, kind and id) in the devinfo requests Jira received.
fn devinfo_entities(app: &TestApp) -> Vec<String> {
    let mut entities = Vec::new();
    for r in app.jira.requests() {
        if r.method != "POST" || !r.path.contains("/devinfo/") || r.status >= 300 {
            continue;
        }
        let Some(body) = r.body else { continue };
        for repo in body["repositories"].as_array().into_iter().flatten() {
            for kind in ["commits", "branches", "pullRequests"] {
                for e in repo[kind].as_array().into_iter().flatten() {
                    entities.push(format!("{}/{kind}/{}", repo["id"], e["id"]));
                }
            }
        }
    }
    entities
}

/// Finding: the outbox flush lock was per process, so two replicas sent the same rows. Now, while one
/// replica's flush is sending, another's flush of the same subscription sends nothing and comes back
/// later; every entity reaches Jira once.
async fn one_replica_at_a_time_sends_a_subscriptions_outbox(db: TestDatabase) {
    let app = TestApp::start_with(db, false).await;
    app.install().await;
    let w = app.world(Plan::Free, 40, 2);
    for (n, p) in w.projects.iter().enumerate() {
        let messages: Vec<String> = (0..30).map(|i| format!("OUT-{n}{i:02} work")).collect();
        let refs: Vec<&str> = messages.iter().map(String::as_str).collect();
        app.gitlab.push(*p, "main", &refs, w.user).await;
    }
    app.link_only("acme", &w.token, HookMode::Auto)
        .await
        .unwrap();
    // The history is read into the outbox; nothing is sent yet.
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let reader = Runner::with_handler(
        app.store.clone(),
        clock.clone(),
        Arc::new(AllButFlushes(serve::handlers(
            &app.settings,
            &app.store,
            clock.clone(),
        ))),
        RunnerConfig::default(),
    );
    while reader.run_due().await > 0 {}
    let sub = app.store.subscriptions().await.unwrap()[0].id;
    let waiting = app.store.outbox_state(sub).await.unwrap().entities;
    assert!(waiting >= 60, "{waiting} entities in the outbox");
    assert!(devinfo_entities(&app).is_empty());

    let first = replica(&app).await;
    let second = replica(&app).await;
    let flush = Job::BackfillFlush(BackfillFlush {
        subscription_id: sub,
    });
    app.jira.hold_next_writes(1);
    let sending = {
        let flush = flush.clone();
        tokio::spawn(async move { first.run(&flush).await })
    };
    app.jira.wait_until_held(1).await;
    // The first replica's request is in flight: the second finds the outbox taken.
    match second.run(&flush).await {
        Err(JobError::Postpone { message, .. }) => {
            assert!(message.contains("another worker"), "{message}")
        }
        other => panic!("the second flush went ahead: {other:?}"),
    }
    app.jira.release_held();
    sending.await.unwrap().unwrap();
    // Released, the lock lets the next flush in at once (it finds nothing left to send).
    second.run(&flush).await.unwrap();

    let sent = devinfo_entities(&app);
    let mut distinct = sent.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(sent.len(), distinct.len(), "no entity was sent twice");
    assert_eq!(sent.len() as i64, waiting, "every entity was sent");
    assert_eq!(app.store.outbox_state(sub).await.unwrap().entities, 0);
    second.store.close().await;
    app.stop().await;
}

/// Finding: every replica queued the periodic checks every interval, and the dedup key only held
/// while the job existed, so a replica ticking after another's check had finished ran it again. Now
/// each schedule runs once per interval across replicas, and a restart keeps its place.
async fn periodic_checks_run_once_per_interval_across_replicas(db: TestDatabase) {
    let app = TestApp::start_with(db, false).await;
    app.linked_world(1).await;
    let replicas = [
        replica(&app).await,
        replica(&app).await,
        replica(&app).await,
    ];
    let every = Upkeep {
        hook_check_ms: 300_000,
        reconcile_ms: 900_000,
        gating_ms: 30_000,
        audit_retention_ms: 86_400_000,
        backfill_tasks: 8,
    };
    let start = now_ms();
    for r in &replicas {
        every.prepare(&r.store, start).await.unwrap();
    }
    // The queue runs on the schedules' time, so that each check queued runs before the next tick.
    let clock = ManualClock::starting_at(start);
    let time: Arc<dyn Clock> = Arc::new(clock.clone());
    let worker = Runner::new(
        app.store.clone(),
        time.clone(),
        serve::handlers(&app.settings, &app.store, time),
        RunnerConfig::default(),
    );
    let mut hook_checks = 0;
    let mut reconciles = 0;
    let mut gating_checks = 0;
    // Three replicas tick every ten seconds for 31 minutes; each check that is queued runs at once.
    for step in 0..=186 {
        let now = start + step * 10_000;
        clock.advance_ms(now - clock.now_ms());
        for r in &replicas {
            let ticked = every.tick(&r.store, now).await.unwrap();
            hook_checks += ticked.hook_checks.map_or(0, |n| {
                assert_eq!(n, 1, "one subscription");
                1
            });
            reconciles += ticked.reconciles.map_or(0, |_| 1);
            gating_checks += ticked.gating_checks.map_or(0, |_| 1);
            while worker.run_due().await > 0 {}
            assert_eq!(app.store.jobs().await.unwrap().len(), 0, "each check ran");
        }
        // A replica restarting keeps the schedules where they are.
        if step == 100 {
            every.prepare(&replicas[0].store, now).await.unwrap();
        }
    }
    // Hook checks at 0, 5, 10, … 30 minutes; reconciliation at 15 and 30.
    assert_eq!(hook_checks, 7);
    assert_eq!(reconciles, 2);
    // Gating checks every 30 s from 0 to 31 minutes.
    assert_eq!(gating_checks, 63);
    for r in replicas {
        r.store.close().await;
    }
    app.stop().await;
}

/// Finding: two hook checks of one subscription at once each registered a lost hook, and the one not
/// recorded delivered every event twice, never to be removed. Now a check on one replica while another
/// holds the subscription's check changes nothing in GitLab; the holder restores the hook once.
async fn a_lost_hook_is_registered_again_once_across_replicas(db: TestDatabase) {
    let app = TestApp::start_with(db, false).await;
    let w = app.linked_world(1).await;
    let sub = app.store.subscriptions().await.unwrap()[0].clone();
    let hook = app.store.subscription_hooks(sub.id).await.unwrap()[0].clone();
    app.gitlab.delete_hook_externally(hook.hook_id);
    let on_project = || {
        app.gitlab
            .hooks()
            .iter()
            .filter(|h| h.scope == "project" && h.target_id == w.projects[0])
            .count()
    };
    assert_eq!(on_project(), 0);

    let other = replica(&app).await;
    let held = other
        .store
        .try_lock(&format!("hook_check:{}", sub.id), now_ms(), 60_000)
        .await
        .unwrap()
        .expect("the other replica holds the check");
    let check = Job::HookCheck(HookCheck {
        subscription_id: sub.id,
        interval: 1,
    });
    let mine = replica(&app).await;
    mine.run(&check).await.unwrap();
    assert_eq!(
        on_project(),
        0,
        "the check held elsewhere registered nothing"
    );
    other.store.unlock(held).await.unwrap();
    other.run(&check).await.unwrap();
    mine.run(&check).await.unwrap();
    assert_eq!(on_project(), 1, "registered again, once");
    let recorded = app.store.subscription_hooks(sub.id).await.unwrap();
    assert_eq!(recorded.len(), 1);
    assert_eq!(
        app.gitlab
            .hooks()
            .iter()
            .find(|h| h.target_id == w.projects[0])
            .unwrap()
            .id,
        recorded[0].hook_id,
        "the hook in GitLab is the one recorded"
    );
    for r in [other, mine] {
        r.store.close().await;
    }
    app.stop().await;
}

/// Finding: the refresh lock of a GitLab sign-in was per process. While one replica's refresh was on
/// its way back (GitLab had already rotated the pair), another presented the same refresh token, was
/// refused, and marked its job permanently failed. Now the second waits for the first replica's pair
/// and uses it: one refresh, both workers act as the user.
async fn a_sign_in_is_refreshed_once_across_replicas_and_the_loser_uses_the_new_pair(
    db: TestDatabase,
) {
    let app = TestApp::start_with(db, false).await;
    app.install().await;
    let w = app.world(Plan::Free, 40, 1);
    // The pair signed in with expires within the refresh margin; the refreshed one lives two hours.
    app.gitlab.set_oauth_token_lifetime(60);
    let start = crate::sign_in::start_from_admin(&app).await;
    let done = crate::sign_in::Browser::of(&w).sign_in(&app, &start).await;
    let connection: i64 = done
        .rsplit("GitLab connection ")
        .next()
        .and_then(|t| t.split('.').next())
        .and_then(|n| n.parse().ok())
        .expect("the page names the connection");
    app.gitlab.set_oauth_token_lifetime(7200);

    let (first, second) = (replica(&app).await, replica(&app).await);
    app.gitlab.hold_next_refreshes(1);
    let first_refresh = tokio::spawn(async move {
        let client = first
            .handlers
            .gitlab
            .client_for_connection(&first.store, connection, now_ms())
            .await;
        (first, client)
    });
    app.gitlab.wait_until_refreshes_held(1).await;
    // GitLab has rotated the pair; the first replica has not heard back yet.
    let second_refresh = {
        let second = &second;
        async move {
            second
                .handlers
                .gitlab
                .client_for_connection(&second.store, connection, now_ms())
                .await
        }
    };
    let mut second_refresh = std::pin::pin!(second_refresh);
    // While the first replica's answer is held, the second cannot finish: it waits for that pair.
    if let Ok(early) =
        tokio::time::timeout(std::time::Duration::from_secs(1), &mut second_refresh).await
    {
        panic!("the second replica went on without the first one's pair: {early:?}");
    }
    app.gitlab.release_refreshes();
    let second_client = second_refresh.await;
    let (first, first_client) = first_refresh.await.unwrap();
    let (first_client, _) = first_client.expect("the first replica refreshed");
    let (second_client, _) = match second_client {
        Ok(client) => client,
        Err(e) => panic!("the second replica did not use the first one's pair: {e:?}"),
    };
    for client in [first_client, second_client] {
        assert_eq!(client.current_user().await.unwrap().id, w.user);
    }
    assert_eq!(
        app.gitlab.oauth_grants(),
        ["authorization_code", "refresh_token"],
        "one refresh"
    );
    first.store.close().await;
    second.store.close().await;
    app.stop().await;
}

/// Found by the chaos test: reconciliation passes of later intervals started while one was still
/// running, each resending the same window, until the queue held a pass per interval and none finished.
/// Now a pass on one replica while another holds the subscription's pass reads nothing from GitLab.
async fn one_reconciliation_pass_per_subscription_runs_at_a_time(db: TestDatabase) {
    let app = TestApp::start_with(db, false).await;
    app.linked_world(2).await;
    let sub = app.store.subscriptions().await.unwrap()[0].clone();
    let pass = |interval| {
        Job::Reconcile(gfj_core::jobs::Reconcile {
            subscription_id: sub.id,
            interval,
        })
    };
    let other = replica(&app).await;
    let held = other
        .store
        .try_lock(&format!("reconcile:{}", sub.id), now_ms(), 60_000)
        .await
        .unwrap()
        .expect("the other replica runs a pass");
    let mine = replica(&app).await;
    let before = app.gitlab.requests().len();
    mine.run(&pass(2)).await.unwrap();
    assert_eq!(
        app.gitlab.requests().len(),
        before,
        "the pass held elsewhere read nothing"
    );
    other.store.unlock(held).await.unwrap();
    mine.run(&pass(3)).await.unwrap();
    assert!(
        app.gitlab.requests().len() > before,
        "once free, a pass reads GitLab"
    );
    for r in [other, mine] {
        r.store.close().await;
    }
    app.stop().await;
}

test_on_both_databases!(
    one_reconciliation_pass_per_subscription_runs_at_a_time,
    a_sign_in_is_refreshed_once_across_replicas_and_the_loser_uses_the_new_pair,
    one_replica_at_a_time_sends_a_subscriptions_outbox,
    periodic_checks_run_once_per_interval_across_replicas,
    a_lost_hook_is_registered_again_once_across_replicas,
);

/// A second `serve` of `app` on a port of its own, on a machine whose clock is `skew_ms` off. It runs
/// no workers: the test runs its queue on its clock ([`ServedBeside::run_queue`]).
struct ServedBeside {
    url: String,
    clock: Arc<dyn Clock>,
    stop: tokio::sync::oneshot::Sender<()>,
    running: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn serve_beside(app: &TestApp, skew_ms: i64) -> ServedBeside {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let machine = Arc::new(SkewedClock {
        base: Arc::new(SystemClock),
        skew_ms,
    });
    let mut service = Service::open_with_clock(app.settings.clone(), machine)
        .await
        .unwrap();
    service.run_workers = false;
    let clock = service.clock.clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(service.run(listener, async move {
        let _ = stopped.await;
    }));
    ServedBeside {
        url,
        clock,
        stop,
        running,
    }
}

impl ServedBeside {
    /// Runs what is due on this replica's clock, as its workers would.
    async fn run_queue(&self, app: &TestApp) {
        let runner = Runner::new(
            app.store.clone(),
            self.clock.clone(),
            serve::handlers(&app.settings, &app.store, self.clock.clone()),
            RunnerConfig::default(),
        );
        while runner.run_due().await > 0 {}
    }

    async fn stop(self) {
        drop(self.stop);
        self.running.await.unwrap().unwrap();
    }
}

/// Finding: each replica numbered deliveries (`updateSequenceId`) from its own clock, so a replica a
/// minute fast won over a later delivery to a correct one, and Jira kept the older state. Now both
/// number on the database's time: the later delivery wins wherever it arrived.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_newer_delivery_wins_when_replica_clocks_differ_by_a_minute() {
    let db = TestDatabase::postgres().await;
    let balancer = RoundRobin::start().await.unwrap();
    let app = TestApp::start_with_settings(
        db,
        false,
        JiraSimConfig::default(),
        &[("GFJ_BASE_URL", balancer.base_url.as_str())],
    )
    .await;
    let fast = serve_beside(&app, 60_000).await;
    balancer.set_backends(vec![app.base_url.clone(), fast.url.clone()]);
    let w = app.linked_world(1).await;
    let p = w.projects[0];
    app.gitlab
        .push(p, "feature/SKEW-1", &["start"], w.user)
        .await;
    app.run_queue_once_through().await;

    balancer.pin(Some(1));
    let mr = app
        .gitlab
        .open_merge_request(p, "feature/SKEW-1", "main", "SKEW-1 older", "", w.user)
        .await;
    fast.run_queue(&app).await;
    balancer.pin(Some(0));
    app.gitlab
        .update_merge_request(p, mr.iid, Some("SKEW-1 newer"), None)
        .await;
    app.run_queue_once_through().await;

    assert!(
        balancer.forwarded()[1] >= 1,
        "the fast replica took a delivery"
    );
    let titles: Vec<_> = app
        .jira
        .issue("SKEW-1")
        .pull_requests
        .iter()
        .map(|pr| pr["title"].clone())
        .collect();
    assert_eq!(titles, ["SKEW-1 newer"]);
    fast.stop().await;
    app.stop().await;
}
