//! The runner against jobs that misbehave.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use gfj_store::queue::{Job, NewJob};
use gfj_store::testing::TestDatabase;
use gfj_store::{Clock, ManualClock, test_on_both_databases};
use gfj_sync::{JobError, JobHandler, Runner, RunnerConfig};

/// A handler that panics on every job, as a handler bug reached by a hostile payload would.
struct Panics;

impl JobHandler for Panics {
    fn run<'a>(
        &'a self,
        _job: &'a Job,
    ) -> Pin<Box<dyn Future<Output = Result<(), JobError>> + Send + 'a>> {
        Box::pin(async { panic!("poison payload reached a handler bug") })
    }
}

async fn a_panicking_job_is_a_failed_attempt_and_dies_after_the_last(db: TestDatabase) {
    let store = db.open().await;
    let clock = ManualClock::starting_at(1_000_000);
    let max_attempts = 3;
    store
        .enqueue(
            &[NewJob {
                kind: "poison".into(),
                payload: "{}".into(),
                dedup_key: None,
                run_at: clock.now_ms(),
                max_attempts,
                coalesce_key: None,
                coalesce_seq: None,
            }],
            clock.now_ms(),
        )
        .await
        .unwrap();
    let runner = Runner::with_handler(
        store.clone(),
        Arc::new(clock.clone()),
        Arc::new(Panics),
        RunnerConfig::default(),
    );
    for attempt in 1..=max_attempts {
        assert_eq!(runner.run_due().await, 1, "attempt {attempt} runs");
        let job = store.jobs().await.unwrap().remove(0);
        assert_eq!(job.attempts, attempt);
        assert!(
            job.last_error
                .as_deref()
                .is_some_and(|e| e.contains("poison payload reached a handler bug")),
            "attempt {attempt}: the panic is recorded as the job's error, got {:?}",
            job.last_error
        );
        if attempt < max_attempts {
            assert!(job.dead_at.is_none(), "attempt {attempt}: not dead yet");
            assert!(
                job.run_at > clock.now_ms(),
                "attempt {attempt}: retried later, with backoff"
            );
            assert_eq!(runner.run_due().await, 0, "not due before its backoff");
            clock.advance_ms(job.run_at - clock.now_ms());
        } else {
            assert!(job.dead_at.is_some(), "dead after the last attempt");
        }
    }
    clock.advance_ms(24 * 3600 * 1000);
    assert_eq!(runner.run_due().await, 0, "a dead job is never run again");
    assert_eq!(store.queue_stats(clock.now_ms()).await.unwrap().dead, 1);
    db.drop_database().await;
}

/// A handler that never finishes on its own and says when it is stopped.
struct RunsUntilStopped {
    started: tokio::sync::mpsc::UnboundedSender<()>,
    stopped: tokio::sync::mpsc::UnboundedSender<()>,
}

struct SaysWhenDropped(tokio::sync::mpsc::UnboundedSender<()>);

impl Drop for SaysWhenDropped {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

impl JobHandler for RunsUntilStopped {
    fn run<'a>(
        &'a self,
        _job: &'a Job,
    ) -> Pin<Box<dyn Future<Output = Result<(), JobError>> + Send + 'a>> {
        let guard = SaysWhenDropped(self.stopped.clone());
        let _ = self.started.send(());
        Box::pin(async move {
            let _guard = guard;
            std::future::pending::<()>().await;
            Ok(())
        })
    }
}

/// Finding: a worker that lost its lease kept running beside the new owner. Its handler is stopped at
/// the next heartbeat, and nothing it reports afterwards lands.
async fn a_job_that_lost_its_lease_is_stopped(db: TestDatabase) {
    let store = db.open().await;
    let clock = ManualClock::starting_at(1_000_000);
    store
        .enqueue(
            &[NewJob {
                kind: "slow".into(),
                payload: "{}".into(),
                dedup_key: None,
                run_at: clock.now_ms(),
                max_attempts: 5,
                coalesce_key: None,
                coalesce_seq: None,
            }],
            clock.now_ms(),
        )
        .await
        .unwrap();
    let (started_tx, mut started) = tokio::sync::mpsc::unbounded_channel();
    let (stopped_tx, mut stopped) = tokio::sync::mpsc::unbounded_channel();
    let lease_ms = 300;
    let runner = Runner::with_handler(
        store.clone(),
        Arc::new(clock.clone()),
        Arc::new(RunsUntilStopped {
            started: started_tx,
            stopped: stopped_tx,
        }),
        RunnerConfig {
            lease_ms,
            ..RunnerConfig::default()
        },
    );
    let running = tokio::spawn(async move { runner.run_due().await });
    started.recv().await.expect("the handler starts");
    // Another replica sees the lease run out (this one stalled, or the two disagree on the time) and
    // takes the job over.
    let taken = store
        .claim("other-replica", clock.now_ms() + lease_ms + 1, 60_000, 10)
        .await
        .unwrap();
    assert_eq!(taken.len(), 1, "the lease ran out, so the job is claimable");
    tokio::time::timeout(std::time::Duration::from_secs(20), stopped.recv())
        .await
        .expect("the handler that lost its lease is stopped")
        .expect("stop signal");
    assert_eq!(
        tokio::time::timeout(std::time::Duration::from_secs(20), running)
            .await
            .expect("the old attempt ends")
            .unwrap(),
        1
    );
    // The new owner's claim is intact: it still completes the job.
    assert!(store.complete(&taken[0].lease).await.unwrap());
    db.drop_database().await;
}

/// On shutdown a replica claims nothing more, and a job still running when the drain time is up is
/// stopped and handed back: claimable at once by another replica, its attempt not counted.
async fn a_draining_runner_hands_back_what_it_cannot_finish(db: TestDatabase) {
    let store = db.open().await;
    let clock = ManualClock::starting_at(1_000_000);
    let slow = |n: i64| NewJob {
        kind: "slow".into(),
        payload: n.to_string(),
        dedup_key: None,
        run_at: clock.now_ms(),
        max_attempts: 5,
        coalesce_key: None,
        coalesce_seq: None,
    };
    store.enqueue(&[slow(1)], clock.now_ms()).await.unwrap();
    let (started_tx, mut started) = tokio::sync::mpsc::unbounded_channel();
    let (stopped_tx, mut stopped) = tokio::sync::mpsc::unbounded_channel();
    let runner = Runner::with_handler(
        store.clone(),
        Arc::new(clock.clone()),
        Arc::new(RunsUntilStopped {
            started: started_tx,
            stopped: stopped_tx,
        }),
        RunnerConfig {
            lease_ms: 3_600_000,
            drain: std::time::Duration::ZERO,
            ..RunnerConfig::default()
        },
    );
    let (shutdown, shutdown_rx) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(runner.run(shutdown_rx));
    started.recv().await.expect("the job starts");
    shutdown.send(true).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(20), running)
        .await
        .expect("the runner drains and returns")
        .unwrap();
    stopped.recv().await.expect("the handler was stopped");
    // Queued after the shutdown: left for the other replicas.
    store.enqueue(&[slow(2)], clock.now_ms()).await.unwrap();
    let taken = store
        .claim("other-replica", clock.now_ms(), 60_000, 10)
        .await
        .unwrap();
    let taken: Vec<(String, i64)> = taken.into_iter().map(|j| (j.payload, j.attempts)).collect();
    assert_eq!(
        taken,
        [("1".to_owned(), 1), ("2".to_owned(), 1)],
        "the handed-back job is claimable at once (long before its hour-long lease ends), its attempt not counted"
    );
    db.drop_database().await;
}

test_on_both_databases!(
    a_panicking_job_is_a_failed_attempt_and_dies_after_the_last,
    a_job_that_lost_its_lease_is_stopped,
    a_draining_runner_hands_back_what_it_cannot_finish,
);
