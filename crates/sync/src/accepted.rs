//! What Jira already accepted for the running job, kept on the job's row, so that a job that runs again
//! (it failed partway, was postponed, handed back on shutdown, or its replica was killed) sends only
//! the requests Jira has not accepted yet.
//!
//! A job may send many requests: a push of 450 commits, a backfill page of pipelines, a reconciliation
//! pass. Without this, a 503 on the last of them, or a SIGKILL in between, would resend all the others
//! when the job runs again: harmless for Jira (it keeps the newest by sequence number), but work done
//! twice against a rate-limited API. Each request is known by the digest of its body, which a job
//! rebuilds identically when it runs again (its sequence number is part of the job).
//!
//! Cost: nothing for a job of one request. Before each further request, the digests of the requests
//! accepted since the last write are written to the row (one small `UPDATE`, fenced by the lease), and
//! the runner writes what is left before it records a failure, a postponement or a hand-back. Only a
//! kill between Jira's answer and that write repeats a request.
//!
//! The running job's record is reached through a task-local, set by the runner around the handler: the
//! senders in `jira_out` are many calls below `dispatch`, and a parameter through every mapping path
//! would say nothing more. Outside a runner (tests calling handlers directly) every request is sent.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use gfj_store::Store;
use gfj_store::queue::{Job, Lease};

tokio::task_local! {
    static RUNNING_JOB: Arc<AcceptedRequests>;
}

/// The digests of the requests Jira accepted for one job: those on its row when it was claimed, and
/// those accepted since.
pub(crate) struct AcceptedRequests {
    store: Store,
    lease: Lease,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    accepted: HashSet<String>,
    /// Accepted during this run and not yet written to the row.
    unrecorded: Vec<String>,
}

/// A request about to be sent; [`Sending::accepted`] once Jira answered 2xx.
pub(crate) struct Sending {
    digest: String,
}

impl AcceptedRequests {
    pub(crate) fn of(store: Store, job: &Job) -> Arc<Self> {
        Arc::new(Self {
            store,
            lease: job.lease.clone(),
            state: Mutex::new(State {
                accepted: job.accepted_requests.iter().cloned().collect(),
                unrecorded: Vec::new(),
            }),
        })
    }

    /// Runs `work` (the job's handler) with this as the running job's record.
    pub(crate) async fn scope<F: std::future::Future>(self: Arc<Self>, work: F) -> F::Output {
        RUNNING_JOB.scope(self, work).await
    }

    /// Writes the digests accepted since the last write to the job's row. A failure is logged and
    /// costs only repeats: the requests are sent again if the job runs again.
    pub(crate) async fn record(&self) {
        let digests = std::mem::take(&mut self.state.lock().unwrap().unrecorded);
        if digests.is_empty() {
            return;
        }
        match self
            .store
            .record_accepted_requests(&self.lease, &digests)
            .await
        {
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "could not record the requests Jira accepted; a rerun sends them again");
            }
        }
    }
}

/// Before sending `body` for the running job: `None` when Jira accepted this very request in an earlier
/// run of the job (nothing to send), otherwise what to mark once Jira accepts it. Writes what earlier
/// requests of this run had accepted first, so that a kill now repeats none of them.
pub(crate) async fn before_sending(body: &impl serde::Serialize) -> Option<Sending> {
    let Ok(job) = RUNNING_JOB.try_with(Arc::clone) else {
        return Some(Sending {
            digest: String::new(),
        });
    };
    let digest = match serde_json::to_vec(body) {
        // 128 bits of SHA-256: collisions among one job's requests are out of reach.
        Ok(bytes) => gfj_core::digest::sha256_hex(&bytes)[..32].to_owned(),
        Err(_) => String::new(),
    };
    if !digest.is_empty() && job.state.lock().unwrap().accepted.contains(&digest) {
        tracing::debug!("Jira accepted this request in an earlier run of the job; not sent again");
        return None;
    }
    job.record().await;
    Some(Sending { digest })
}

impl Sending {
    /// Jira answered 2xx: the request is not to be sent again by this job.
    pub(crate) fn accepted(self) {
        if self.digest.is_empty() {
            return;
        }
        // Outside a runner there is no record to keep.
        let _ = RUNNING_JOB.try_with(|job| {
            let mut state = job.state.lock().unwrap();
            state.accepted.insert(self.digest.clone());
            state.unrecorded.push(self.digest);
        });
    }
}
