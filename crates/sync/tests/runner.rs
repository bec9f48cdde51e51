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

test_on_both_databases!(a_panicking_job_is_a_failed_attempt_and_dies_after_the_last);
