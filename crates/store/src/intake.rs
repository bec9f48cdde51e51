//! Group commit for webhook intake.
//!
//! Each delivery must be durable (committed with fsync) before we answer 2xx, but one fsync per delivery
//! caps intake near two thousand per second on this class of machine. So deliveries are handed to a single
//! writer task that takes everything waiting, inserts it in one transaction, commits once, and then
//! answers every delivery in the batch. Under load batches grow by themselves; when idle a batch is one row
//! and latency is one commit.
//!
//! One writer per process on both engines. SQLite has one writer at a time whatever we do. PostgreSQL
//! could overlap commits from several connections, but with the database on the service's cores, several
//! writers only split the same deliveries into smaller batches, each paying a statement's and a commit's
//! fixed cost in the database. Measured with `wrk` (BENCHMARKS.md, 2026-12-06): one writer 22.4-22.6k
//! deliveries/s, two 19.6-19.7k, three 17.0-17.9k, six 12.0-12.6k. Replicas on one PostgreSQL still
//! commit side by side, one writer each.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use crate::queue::{NewJob, insert_jobs};
use crate::{Clock, Store, StoreError};

/// Most deliveries in one transaction.
const MAX_BATCH: usize = 512;

type Reply = oneshot::Sender<Result<(), Arc<StoreError>>>;

/// A job to queue and where to answer once it is committed (or not).
type Delivery = (NewJob, Reply);

/// A handle to the intake writer; cheap to clone. The writer stops when every handle is dropped.
#[derive(Clone)]
pub struct Intake {
    tx: mpsc::Sender<Delivery>,
}

impl Intake {
    pub fn start(store: Store, clock: Arc<dyn Clock>) -> Self {
        let (tx, rx) = mpsc::channel(MAX_BATCH * 8);
        tokio::spawn(writer(store, clock, rx));
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

/// How long a writer keeps its connection while deliveries keep arriving. Returning a connection to
/// the pool and taking it back costs two round trips to the database (the pool tests it each way) and a
/// task hop, about half a millisecond a commit under load (BENCHMARKS.md, 2026-12-05); holding it across
/// consecutive commits saves that. Bounded, so that on SQLite, whose pool has one connection, the
/// workers and page requests get their turn at least this often however busy intake is.
const HOLD_CONNECTION: Duration = Duration::from_millis(10);

/// Waits for deliveries, then commits them and whatever arrives meanwhile on one connection, for up to
/// [`HOLD_CONNECTION`]; ends when the channel closes. Each commit takes everything waiting, up to
/// [`MAX_BATCH`].
async fn writer(store: Store, clock: Arc<dyn Clock>, mut rx: mpsc::Receiver<Delivery>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let mut conn = match store.pool.acquire().await {
            Ok(conn) => conn,
            Err(e) => {
                answer(&mut batch, Err(Arc::new(e.into())));
                continue;
            }
        };
        let held_since = Instant::now();
        loop {
            let committed = commit(&store, &mut conn, clock.now_ms(), &mut batch).await;
            crate::db::finish_checkpoint(&store, &mut conn).await;
            let left = HOLD_CONNECTION.saturating_sub(held_since.elapsed());
            if !committed || left.is_zero() {
                // After a failure the pool's test on release decides whether the connection is kept.
                break;
            }
            // Under load the next deliveries come in while this batch's answers are still going out,
            // a fraction of a millisecond later: wait for them on this connection rather than give it
            // back and take it again.
            match tokio::time::timeout(
                left.min(NEXT_DELIVERY_WAIT),
                rx.recv_many(&mut batch, MAX_BATCH),
            )
            .await
            {
                Ok(0) => return, // every handle dropped
                Ok(_) => {}
                Err(_) => break,
            }
        }
    }
}

/// How long a writer holding its connection waits for the next delivery before giving the connection
/// back: longer than the gap between a batch's answers and the requests they let clients send, short
/// enough that on SQLite the workers wait for it no more than a commit's time.
const NEXT_DELIVERY_WAIT: Duration = Duration::from_millis(1);

/// Inserts `batch` in one statement (one commit) and answers every delivery in it; whether it worked.
async fn commit(
    store: &Store,
    conn: &mut sqlx::AnyConnection,
    now_ms: i64,
    batch: &mut Vec<Delivery>,
) -> bool {
    let (jobs, replies): (Vec<NewJob>, Vec<Reply>) = batch.drain(..).unzip();
    let result = insert_jobs(conn, &jobs, now_ms).await;
    let committed = result.is_ok();
    let result = match result {
        Ok(inserted) => {
            if inserted > 0 {
                store.wake_workers();
            }
            Ok(())
        }
        Err(e) => {
            tracing::error!(error = %e, deliveries = jobs.len(), "could not queue webhook deliveries");
            Err(Arc::new(e))
        }
    };
    for reply in replies {
        let _ = reply.send(result.clone());
    }
    committed
}

/// Answers every delivery in `batch` with `result`.
fn answer(batch: &mut Vec<Delivery>, result: Result<(), Arc<StoreError>>) {
    for (_, reply) in batch.drain(..) {
        let _ = reply.send(result.clone());
    }
}
