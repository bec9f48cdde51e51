//! Group commit for webhook intake.
//!
//! Each delivery must be durable (committed with fsync) before we answer 2xx, but one fsync per delivery
//! caps intake near two thousand per second on this class of machine. So deliveries are handed to a single
//! writer task that takes everything waiting, inserts it in one transaction, commits once, and then
//! answers every delivery in the batch. Under load batches grow by themselves; when idle a batch is one row
//! and latency is one commit.
//!
//! PostgreSQL overlaps commits from several connections (they share WAL flushes), so it gets several
//! writers taking turns at the channel; SQLite has one writer at a time whatever we do, so one.

use std::sync::Arc;

use tokio::sync::{Mutex, mpsc, oneshot};

use crate::queue::NewJob;
use crate::{Backend, Clock, Store, StoreError};

/// Most deliveries in one transaction.
const MAX_BATCH: usize = 512;

type Reply = oneshot::Sender<Result<(), Arc<StoreError>>>;

/// A handle to the intake writer; cheap to clone. The writer stops when every handle is dropped.
#[derive(Clone)]
pub struct Intake {
    tx: mpsc::Sender<(NewJob, Reply)>,
}

/// Writers committing at once on PostgreSQL.
const POSTGRES_WRITERS: usize = 2;

impl Intake {
    pub fn start(store: Store, clock: Arc<dyn Clock>) -> Self {
        let (tx, rx) = mpsc::channel(MAX_BATCH * 8);
        let writers = match store.backend() {
            Backend::Sqlite => 1,
            Backend::Postgres => POSTGRES_WRITERS,
        };
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..writers {
            tokio::spawn(writer(store.clone(), clock.clone(), rx.clone()));
        }
        Self { tx }
    }

    /// Queues one job durably; returns once it is committed.
    pub async fn submit(&self, job: NewJob) -> Result<(), Arc<StoreError>> {
        let (reply, done) = oneshot::channel();
        self.tx
            .send((job, reply))
            .await
            .map_err(|_| Arc::new(StoreError::Closed))?;
        done.await.map_err(|_| Arc::new(StoreError::Closed))?
    }
}

/// Takes what waits (holding the channel only while taking), commits it, answers it; ends when the
/// channel closes.
async fn writer(
    store: Store,
    clock: Arc<dyn Clock>,
    rx: Arc<Mutex<mpsc::Receiver<(NewJob, Reply)>>>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.lock().await.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (jobs, replies): (Vec<NewJob>, Vec<Reply>) = batch.drain(..).unzip();
        let result = store
            .enqueue(&jobs, clock.now_ms())
            .await
            .map(|_| ())
            .map_err(Arc::new);
        if let Err(e) = &result {
            tracing::error!(error = %e, deliveries = jobs.len(), "could not queue webhook deliveries");
        }
        for reply in replies {
            let _ = reply.send(result.clone());
        }
    }
}
