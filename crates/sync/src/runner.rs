use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use gfj_core::{backoff, metric_names};
use gfj_store::queue::Job;
use gfj_store::{Clock, Store};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::JobError;
use crate::accepted::AcceptedRequests;
use crate::context::Handlers;

#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// Jobs run at once by this process.
    pub concurrency: usize,
    /// How long a claimed job stays ours without completing; after that another worker may take it.
    pub lease_ms: i64,
    /// How often to look for due jobs when nothing woke us (retries, other replicas' jobs).
    pub poll_interval: Duration,
    /// On shutdown, how long running jobs may finish before they are stopped and handed back.
    pub drain: Duration,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        use gfj_core::settings::default_number;
        Self {
            concurrency: default_number("GFJ_WORKER_CONCURRENCY") as usize,
            lease_ms: default_number("GFJ_JOB_LEASE_SECS") * 1000,
            poll_interval: Duration::from_millis(500),
            drain: Duration::from_secs(default_number("GFJ_JOB_DRAIN_SECS") as u64),
        }
    }
}

/// What runs a claimed job: the service's [`Handlers`], or a stand-in where a test needs a job that
/// misbehaves.
pub trait JobHandler: Send + Sync + 'static {
    fn run<'a>(
        &'a self,
        job: &'a Job,
    ) -> Pin<Box<dyn Future<Output = Result<(), JobError>> + Send + 'a>>;
}

impl JobHandler for Handlers {
    fn run<'a>(
        &'a self,
        job: &'a Job,
    ) -> Pin<Box<dyn Future<Output = Result<(), JobError>> + Send + 'a>> {
        Box::pin(Handlers::run(self, job))
    }
}

/// Drains the queue until shut down.
pub struct Runner {
    store: Store,
    clock: Arc<dyn Clock>,
    handlers: Arc<dyn JobHandler>,
    config: RunnerConfig,
    worker_id: String,
}

fn random_suffix() -> String {
    let mut b = [0u8; 6];
    let _ = getrandom::fill(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Runner {
    pub fn new(
        store: Store,
        clock: Arc<dyn Clock>,
        handlers: Handlers,
        config: RunnerConfig,
    ) -> Self {
        Self::with_handler(store, clock, Arc::new(handlers), config)
    }

    /// A runner whose jobs are run by `handler` instead of the service's [`Handlers`].
    pub fn with_handler(
        store: Store,
        clock: Arc<dyn Clock>,
        handler: Arc<dyn JobHandler>,
        config: RunnerConfig,
    ) -> Self {
        let worker_id = format!("worker-{}-{}", std::process::id(), random_suffix());
        Self {
            store,
            clock,
            handlers: handler,
            config,
            worker_id,
        }
    }

    pub fn worker_id(&self) -> &str {
        &self.worker_id
    }

    /// Runs until `shutdown` turns true, then claims nothing more and drains: the jobs in flight may
    /// finish within [`RunnerConfig::drain`], and those still running then are stopped and handed back
    /// (their leases released), so that another replica takes them at once.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let (hand_back, hand_back_rx) = watch::channel(false);
        let mut in_flight: JoinSet<()> = JoinSet::new();
        loop {
            if *shutdown.borrow() {
                break;
            }
            let free = self.config.concurrency.saturating_sub(in_flight.len());
            let claimed = if free > 0 {
                self.claim(free).await
            } else {
                Vec::new()
            };
            let got_any = !claimed.is_empty();
            for job in claimed {
                in_flight.spawn(self.execute(job, hand_back_rx.clone()));
            }
            if got_any && in_flight.len() < self.config.concurrency {
                continue; // there may be more due right now
            }
            tokio::select! {
                _ = shutdown.changed() => {}
                Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
                _ = self.store.enqueued() => {}
                _ = tokio::time::sleep(self.config.poll_interval) => {}
            }
        }
        if in_flight.is_empty() {
            return;
        }
        tracing::info!(
            jobs = in_flight.len(),
            "draining: letting running jobs finish"
        );
        let all_done = async { while in_flight.join_next().await.is_some() {} };
        if tokio::time::timeout(self.config.drain, all_done)
            .await
            .is_err()
        {
            tracing::info!(
                jobs = in_flight.len(),
                "handing back the jobs still running"
            );
            let _ = hand_back.send(true);
            while in_flight.join_next().await.is_some() {}
        }
    }

    /// Claims and runs one batch of due jobs, returning how many ran (tests and one-shot commands).
    pub async fn run_due(&self) -> usize {
        let jobs = self.claim(self.config.concurrency).await;
        let n = jobs.len();
        let (_never, hand_back) = watch::channel(false);
        let mut set = JoinSet::new();
        for job in jobs {
            set.spawn(self.execute(job, hand_back.clone()));
        }
        while set.join_next().await.is_some() {}
        n
    }

    async fn claim(&self, limit: usize) -> Vec<Job> {
        match self
            .store
            .claim(
                &self.worker_id,
                self.clock.now_ms(),
                self.config.lease_ms,
                limit as i64,
            )
            .await
        {
            Ok(jobs) => jobs,
            Err(e) => {
                tracing::warn!(error = %e, "could not claim jobs");
                Vec::new()
            }
        }
    }

    /// Runs `job` until it ends, its lease is lost (then it is stopped, and nothing it did is recorded),
    /// or `hand_back` turns true (then it is stopped and its lease released).
    fn execute(
        &self,
        job: Job,
        mut hand_back: watch::Receiver<bool>,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let store = self.store.clone();
        let clock = self.clock.clone();
        let handlers = self.handlers.clone();
        let lease_ms = self.config.lease_ms;
        // `subscription` and `site` are filled in by the handler once it knows them (`context::in_span`).
        let span = tracing::info_span!(
            "job",
            job.id = job.id,
            job.kind = %job.kind,
            job.attempt = job.attempts,
            subscription = tracing::field::Empty,
            site = tracing::field::Empty,
        );
        async move {
            // A long job (a reconciliation pass, a large push) keeps its lease while it runs, so that no
            // other worker starts it again; a crashed worker stops renewing and the lease expires.
            // A worker that lost its lease (it stalled, or could not reach the database for a lease's
            // time) stops the handler at once: another worker owns the job now.
            let heartbeat = async {
                let every = std::time::Duration::from_millis((lease_ms / 3).max(100) as u64);
                loop {
                    tokio::time::sleep(every).await;
                    match store
                        .extend_lease(&job.lease, clock.now_ms() + lease_ms)
                        .await
                    {
                        Ok(true) => {}
                        Ok(false) => return,
                        Err(e) => tracing::warn!(job.id = job.id, error = %e, "could not extend the lease"),
                    }
                }
            };
            let handed_back = async {
                while !*hand_back.borrow_and_update() {
                    if hand_back.changed().await.is_err() {
                        std::future::pending::<()>().await;
                    }
                }
            };
            // The handler runs as its own task, so that a panic (a bug reached by some payload) ends
            // only this attempt: it is recorded as a failure and retried with backoff like any other,
            // and the job dies after its last attempt instead of holding its lease until it expires.
            // The one-task set aborts the handler if this future is dropped.
            let mut handler_task = JoinSet::new();
            // What Jira accepts is kept on the job's row, so that a run after this one sends the rest only.
            let accepted = AcceptedRequests::of(store.clone(), &job);
            {
                let (handlers, job, accepted) = (handlers.clone(), job.clone(), accepted.clone());
                handler_task.spawn(
                    accepted
                        .scope(async move { handlers.run(&job).await })
                        .instrument(tracing::Span::current()),
                );
            }
            let outcome = tokio::select! {
                joined = handler_task.join_next() => match joined {
                    Some(Ok(outcome)) => outcome,
                    Some(Err(e)) => Err(JobError::Retry { message: handler_crash(e), after_ms: None }),
                    None => unreachable!("one task was spawned"),
                },
                () = heartbeat => {
                    handler_task.shutdown().await;
                    tracing::warn!(job.id = job.id, "lease lost while running: stopped, another worker owns the job");
                    return;
                }
                () = handed_back => {
                    handler_task.shutdown().await;
                    accepted.record().await;
                    match store.release(&job.lease).await {
                        Ok(true) => tracing::info!(job.id = job.id, "handed back unfinished"),
                        Ok(false) => {}
                        Err(e) => tracing::warn!(job.id = job.id, error = %e, "could not hand the job back; its lease will run out"),
                    }
                    return;
                }
            };
            if outcome.is_err() {
                accepted.record().await;
            }
            let ended = match &outcome {
                Ok(()) => "done",
                Err(JobError::Postpone { .. }) => "postponed",
                Err(JobError::Retry { .. }) if job.attempts < job.max_attempts => "retried",
                Err(_) => "dead",
            };
            metrics::counter!(metric_names::JOBS_FINISHED, "kind" => job.kind.clone(), "outcome" => ended)
                .increment(1);
            let now = clock.now_ms();
            let lease = &job.lease;
            let recorded = match &outcome {
                Ok(()) => store.complete(lease).await,
                Err(JobError::Postpone { message, after_ms }) => {
                    tracing::info!(job.id = job.id, after_ms, "postponed: {message}");
                    store.postpone(lease, now + after_ms, message).await
                }
                Err(JobError::Retry { message, after_ms }) => {
                    let delay = backoff::Backoff::QUEUE.delay_ms(
                        job.attempts as u32,
                        backoff::jitter(),
                        *after_ms,
                    );
                    tracing::warn!(job.id = job.id, attempt = job.attempts, retry_in_ms = delay, "failed: {message}");
                    store.fail(lease, message, now + delay, false, now).await
                }
                Err(JobError::Permanent(message)) => {
                    tracing::error!(job.id = job.id, "failed permanently: {message}");
                    store.fail(lease, message, now, true, now).await
                }
            };
            match recorded {
                Ok(true) => {}
                Ok(false) => tracing::warn!(job.id = job.id, "lease lost before the outcome was recorded; another worker owns the job"),
                Err(e) => tracing::error!(job.id = job.id, error = %e, "could not record job outcome; the lease will expire and it runs again"),
            }
        }
        .instrument(span)
    }
}

/// What a handler task that did not return leaves as the job's error: its panic message.
fn handler_crash(e: tokio::task::JoinError) -> String {
    if !e.is_panic() {
        return "the job's task was cancelled".to_owned();
    }
    let payload = e.into_panic();
    let message = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("no message");
    format!("the handler panicked: {message}")
}
