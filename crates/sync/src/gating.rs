//! JSM deployment gating on any GitLab: a blocked deployment to a gated tier goes to Jira as `pending`
//! with `initiate_deployment_gating` (`cicd`), which opens its gate here; JSM's decision arrives by the
//! Connect callback (`gfj-server`, `POST /jira/gating`) or by polling the gating-status API (the only
//! route for OAuth-credentials sites), whichever comes first; and the decision is carried out in GitLab
//! with the project's gating token: approve (then play the manual job), or reject with a comment.
//!
//! Exactly once: a decision is recorded by compare-and-set on the gate (open → decided), and applied
//! by one job per gate that looks at GitLab first (an approval already given, a job already
//! started), so a duplicate callback, a callback racing the poll, or a worker killed halfway all end
//! with one approval or rejection.

use gfj_core::domain::{ProjectId, SubscriptionId};
use gfj_core::gitlab::JobEvent;
use gfj_core::jobs::{ApplyGate, GatingCheck, Job};
use gfj_core::jsm::{self, GateAction, GateDecision, GateState, GatingReport, Undecided};
use gfj_gitlab_client::{GitLabClient, GitLabError};
use gfj_jira_client::Site;
use gfj_store::Store;
use gfj_store::gates::{Gate, NewGate};
use gfj_store::queue::NewJob;
use gfj_store::subscriptions::Subscription;

use crate::JobError;
use crate::context::Handlers;
use crate::jira_out::{OnPause, SendOptions, site_of};

/// How gates are looked after (`GFJ_GATING_POLL_SECS`, `GFJ_GATING_TIMEOUT_SECS`,
/// `GFJ_GATING_UNDECIDED`).
#[derive(Debug, Clone, Copy)]
pub struct GatingSettings {
    pub poll_ms: i64,
    pub timeout_ms: i64,
    pub undecided: Undecided,
}

impl Default for GatingSettings {
    fn default() -> Self {
        use gfj_core::settings::{default_number, setting};
        Self {
            poll_ms: default_number("GFJ_GATING_POLL_SECS") * 1000,
            timeout_ms: default_number("GFJ_GATING_TIMEOUT_SECS") * 1000,
            undecided: match setting("GFJ_GATING_UNDECIDED").default {
                Some("leave") => Undecided::Leave,
                _ => Undecided::Reject,
            },
        }
    }
}

/// The longest wait between two polls of one gate.
const LONGEST_POLL_GAP_MS: i64 = 10 * 60 * 1000;

/// When to ask JSM about an open gate again after `polls` answers of `awaiting`: the poll interval,
/// doubling, at most ten minutes apart.
pub fn next_poll_gap_ms(poll_ms: i64, polls: i64) -> i64 {
    poll_ms
        .saturating_mul(1i64 << polls.clamp(0, 20))
        .min(LONGEST_POLL_GAP_MS.max(poll_ms))
}

/// Records a decision JSM reported for a gate (once: a second report finds it decided) and queues its
/// application. Returns whether this report decided it.
pub async fn record_decision(
    store: &Store,
    gate: &Gate,
    decision: GateDecision,
    change_request: Option<(&str, &str)>,
    now_ms: i64,
) -> Result<bool, gfj_store::StoreError> {
    let decided = store
        .decide_gate(gate.id, decision, change_request, now_ms)
        .await?;
    if decided {
        tracing::info!(gate = gate.id, decision = decision.as_str(), change_request = ?change_request.map(|c| c.0), "deployment gate decided");
        queue_apply(store, gate.id, now_ms).await?;
    }
    Ok(decided)
}

async fn queue_apply(
    store: &Store,
    gate_id: i64,
    now_ms: i64,
) -> Result<(), gfj_store::StoreError> {
    let job = NewJob::of(&Job::ApplyGate(ApplyGate { gate_id }), now_ms);
    store.enqueue(&[job], now_ms).await.map(drop)
}

/// A report from JSM (callback or poll) applied to the gate it names: `awaiting` changes nothing but
/// the change request; the other statuses decide it.
pub async fn report(
    store: &Store,
    gate: &Gate,
    report: &GatingReport,
    now_ms: i64,
) -> Result<bool, gfj_store::StoreError> {
    match GateDecision::from_status(report.gating_status) {
        Some(decision) => {
            record_decision(store, gate, decision, report.change_request(), now_ms).await
        }
        None => Ok(false),
    }
}

impl Handlers {
    /// Opens the gate of a blocked deployment Jira accepted with `initiate_deployment_gating`.
    pub(crate) async fn open_gate(&self, gate: NewGate) -> Result<(), JobError> {
        let now = self.clock.now_ms();
        let (stored, new) = self
            .store
            .open_gate(&gate, now, now + self.gating.poll_ms)
            .await?;
        if new {
            tracing::info!(gate = stored.id, project = gate.project_id.0, deployment = gate.deployment_id, tier = %gate.tier, "deployment gate opened");
        }
        Ok(())
    }

    /// A deployment job waiting for someone (GitLab sends no deployment hook for `blocked`): the
    /// deployment it waits on, read from GitLab, through the deployment path.
    pub(crate) async fn manual_deployment_job(
        &self,
        sub: &Subscription,
        site: &Site,
        opts: &SendOptions,
        ev: &JobEvent,
        seq: i64,
    ) -> Result<(), JobError> {
        let Some(project) = ev.project.clone() else {
            return Ok(());
        };
        let gitlab = self
            .gitlab
            .client_for(&self.store, sub, self.clock.now_ms())
            .await?;
        let blocked = gitlab.blocked_deployments(ev.project_id).await?;
        for d in blocked
            .iter()
            .filter(|d| d.deployable.as_ref().is_some_and(|j| j.id == ev.build_id))
        {
            // Boxed: the deployment path is the one this event came through.
            Box::pin(self.replay_deployment(sub, site, opts, &project, d, seq)).await?;
        }
        Ok(())
    }

    /// The periodic look at one subscription's gates (see [`GatingCheck`]).
    pub(crate) async fn check_gates(&self, c: &GatingCheck) -> Result<(), JobError> {
        let Some(sub) = self.store.subscription(c.subscription_id).await? else {
            return Ok(());
        };
        let Some(install) = self.store.installation(&sub.client_key).await? else {
            return Ok(());
        };
        let site = site_of(install);
        let sub_id = SubscriptionId(sub.id);
        // Open gates first: a GitLab that fails the search below must not hold up decisions.
        let now = self.clock.now_ms();
        for gate in self.store.gates_in_progress(sub_id).await? {
            match gate.state {
                GateState::Open if now - gate.opened_at >= self.gating.timeout_ms => {
                    record_decision(&self.store, &gate, GateDecision::TimedOut, None, now).await?;
                }
                GateState::Open if gate.next_poll_at <= now => {
                    self.poll_gate(&site, &gate).await?;
                }
                // Decided, but its application was never queued (a crash in between).
                GateState::Decided => queue_apply(&self.store, gate.id, now).await?,
                _ => {}
            }
        }
        self.find_unannounced_gates(&sub, &site).await
    }

    /// Blocked deployments to gated tiers that no Job Hook announced (a hook down, an older GitLab):
    /// sent through the deployment path, which opens their gates.
    async fn find_unannounced_gates(
        &self,
        sub: &Subscription,
        site: &Site,
    ) -> Result<(), JobError> {
        let records = self.store.jsm_settings(SubscriptionId(sub.id)).await?;
        if !records.iter().any(|(_, s)| s.gating_tiers.is_some()) {
            return Ok(());
        }
        let mut gitlab: Option<GitLabClient> = None;
        let keys = self.store.site_project_keys(&sub.client_key).await?;
        let opts = SendOptions {
            on_pause: OnPause::Wait,
            ..SendOptions::live(gfj_core::mapping::project_keys::ProjectKeys::new(keys))
        };
        for (project_id, path) in self
            .store
            .subscription_projects(SubscriptionId(sub.id))
            .await?
        {
            if jsm::in_force(&records, project_id, &path).gating.is_none() {
                continue;
            }
            let in_force = jsm::in_force(&records, project_id, &path);
            let client = match &gitlab {
                Some(c) => c,
                None => gitlab.insert(
                    self.gitlab
                        .client_for(&self.store, sub, self.clock.now_ms())
                        .await?,
                ),
            };
            let found = async {
                let blocked = client.blocked_deployments(project_id.0).await?;
                // Only deployments to gated tiers: the others reach Jira by their Job Hook or the
                // reconciliation, not every interval from here.
                let mut unknown = Vec::new();
                for d in blocked
                    .iter()
                    .filter(|d| in_force.gates(d.environment.tier.as_deref()))
                {
                    if !self
                        .store
                        .has_gate(SubscriptionId(sub.id), project_id, d.id)
                        .await?
                    {
                        unknown.push(d);
                    }
                }
                if unknown.is_empty() {
                    return Ok(());
                }
                let Some(project) = self
                    .backfill_shared
                    .get(client, project_id.0, self.clock.now_ms())
                    .await?
                else {
                    return Ok(());
                };
                let seq = self.clock.now_ms().saturating_mul(1000);
                for d in unknown {
                    self.replay_deployment(sub, site, &opts, &project, d, seq)
                        .await?;
                }
                Ok::<(), JobError>(())
            };
            // A project GitLab or Jira fails on does not stop the others; the next check tries again.
            if let Err(e) = found.await {
                tracing::warn!(subscription = sub.id, project = %path, error = %e, "could not look for blocked deployments");
            }
        }
        Ok(())
    }

    /// Asks JSM about one open gate.
    async fn poll_gate(&self, site: &Site, gate: &Gate) -> Result<(), JobError> {
        let jira = &self.jira;
        let answer = std::sync::Mutex::new(None);
        let call = async {
            let report = jira
                .gating_status(
                    site,
                    &gate.pipeline_key,
                    &gate.environment_key,
                    gate.deployment_seq,
                )
                .await?;
            *answer.lock().unwrap() = Some(report);
            Ok(())
        };
        match self
            .at_site(&gate.client_key, OnPause::Postpone, call)
            .await
        {
            Ok(()) => {}
            // A pause after a 429: the whole check waits for it.
            Err(e @ JobError::Postpone { .. }) => return Err(e),
            // Jira does not know the deployment (a 404), or failed: ask again later, backing off, and
            // go on with the other gates.
            Err(e) => {
                tracing::warn!(gate = gate.id, error = %e, "gating status unavailable; asking again later");
            }
        }
        let now = self.clock.now_ms();
        let report = answer.into_inner().unwrap();
        if let Some(report) = &report
            && self::report(&self.store, gate, report, now).await?
        {
            return Ok(());
        }
        let next = now + next_poll_gap_ms(self.gating.poll_ms, gate.polls);
        let change_request = report.as_ref().and_then(|r| r.change_request());
        self.store
            .gate_polled(gate.id, next, change_request)
            .await?;
        Ok(())
    }

    /// Carries out a gate's decision in GitLab, once (see the module's notes). One job per gate runs at a
    /// time: its dedup key keeps a second from being queued while it exists, and its lease (fenced) keeps
    /// a second worker off it.
    pub(crate) async fn apply_gate(&self, a: &ApplyGate) -> Result<(), JobError> {
        let gate_id = a.gate_id;
        let Some(gate) = self.store.gate(gate_id).await? else {
            return Ok(());
        };
        let (GateState::Decided, Some(decision)) = (gate.state, gate.decision) else {
            return Ok(());
        };
        let Some(sub) = self.store.subscription(gate.subscription_id).await? else {
            return Ok(());
        };
        let records = self.store.jsm_settings(SubscriptionId(sub.id)).await?;
        let path = self
            .store
            .subscription_projects(SubscriptionId(sub.id))
            .await?
            .into_iter()
            .find(|(id, _)| id.0 == gate.project_id)
            .map(|(_, path)| path)
            .unwrap_or_default();
        let Some(gating) = jsm::in_force(&records, ProjectId(gate.project_id), &path).gating else {
            let outcome =
                "gating was turned off before the decision arrived; left to people in GitLab";
            self.store
                .finish_gate(gate.id, outcome, self.clock.now_ms())
                .await?;
            return Ok(());
        };
        let change_request = gate
            .change_request
            .as_deref()
            .map(|key| (key, gate.change_request_url.as_deref().unwrap_or("")));
        let action = jsm::gate_action(
            decision,
            change_request,
            self.gating.undecided,
            gating.play_after_approval,
            self.gating.timeout_ms / 1000,
        );
        let gitlab = self
            .gitlab
            .client_with_token(&sub.gitlab_url, &gating.token.0)?;
        let outcome = match self.carry_out(&gitlab, &gate, action).await {
            Ok(Some(outcome)) => outcome,
            Ok(None) => {
                let waited = self.clock.now_ms() - gate.decided_at.unwrap_or(gate.opened_at);
                if waited < self.gating.timeout_ms {
                    tracing::info!(
                        gate = gate.id,
                        "approved; waiting for the environment's other approvers"
                    );
                    return Ok(());
                }
                "approved in GitLab; the environment's other approvers did not approve in time, so the job was not started".to_owned()
            }
            // Retried (GitLab unavailable, rate limited): the gate stays decided.
            Err(e @ (JobError::Retry { .. } | JobError::Postpone { .. })) => return Err(e),
            // Will not succeed as things are (the token refused, GitLab refused the decision): the gate
            // ends with the reason, for `status` to show, rather than stay decided forever.
            Err(JobError::Permanent(why)) => {
                tracing::error!(
                    gate = gate.id,
                    "could not carry out the gate's decision: {why}"
                );
                format!("not carried out: {why}")
            }
        };
        self.store
            .finish_gate(gate.id, &outcome, self.clock.now_ms())
            .await?;
        tracing::info!(gate = gate.id, decision = decision.as_str(), "{outcome}");
        Ok(())
    }

    /// Does what the decision says in GitLab; returns what was done, or `None` while an approved
    /// deployment still waits for other approvers before its job can be played.
    async fn carry_out(
        &self,
        gitlab: &GitLabClient,
        gate: &Gate,
        action: GateAction,
    ) -> Result<Option<String>, JobError> {
        Ok(Some(match action {
            GateAction::Leave => "left to people in GitLab".to_owned(),
            GateAction::Approve { comment, play } => {
                match self
                    .decide_in_gitlab(gitlab, gate, "approved", &comment)
                    .await?
                {
                    Decided::NotWaiting(status) => not_waiting(&status),
                    Decided::Done if play => return self.play_if_waiting(gitlab, gate).await,
                    Decided::Done => "approved in GitLab".to_owned(),
                }
            }
            GateAction::Reject { comment } => {
                match self
                    .decide_in_gitlab(gitlab, gate, "rejected", &comment)
                    .await?
                {
                    Decided::NotWaiting(status) => not_waiting(&status),
                    Decided::Done => format!("rejected in GitLab: {comment}"),
                }
            }
        }))
    }

    /// Approves or rejects the deployment as the gating token's user, unless that user already did
    /// (a run cut short after GitLab recorded it), or the deployment no longer waits.
    async fn decide_in_gitlab(
        &self,
        gitlab: &GitLabClient,
        gate: &Gate,
        status: &str,
        comment: &str,
    ) -> Result<Decided, JobError> {
        let me = gitlab.current_user().await.map_err(gating_token_error)?;
        let deployment = || async {
            gitlab
                .deployment(gate.project_id, gate.deployment_id)
                .await?
                .ok_or_else(|| {
                    JobError::Permanent(format!(
                        "deployment {} is gone from GitLab",
                        gate.deployment_id
                    ))
                })
        };
        let d = deployment().await?;
        if d.approvals
            .iter()
            .any(|a| a.user.id == me.id && a.status == status)
        {
            return Ok(Decided::Done);
        }
        if d.status != "blocked" {
            return Ok(Decided::NotWaiting(d.status));
        }
        match gitlab
            .decide_deployment(gate.project_id, gate.deployment_id, status, comment)
            .await
        {
            Ok(()) => Ok(Decided::Done),
            // Someone decided in GitLab between our read and our request.
            Err(GitLabError::Other { status: 400, .. }) => {
                let d = deployment().await?;
                if d.status != "blocked" {
                    Ok(Decided::NotWaiting(d.status))
                } else {
                    Err(JobError::Permanent(format!(
                        "GitLab refused to record the decision on deployment {}",
                        gate.deployment_id
                    )))
                }
            }
            Err(e) => Err(gating_token_error(e)),
        }
    }

    /// Plays the deployment's manual job once approval unblocked it (approval alone does not start it).
    async fn play_if_waiting(
        &self,
        gitlab: &GitLabClient,
        gate: &Gate,
    ) -> Result<Option<String>, JobError> {
        let Some(job_id) = gate.job_id else {
            return Ok(Some(
                "approved in GitLab (the deployment has no job to play)".into(),
            ));
        };
        let d = gitlab
            .deployment(gate.project_id, gate.deployment_id)
            .await?;
        if d.as_ref().is_some_and(|d| d.status == "blocked") {
            // The environment needs more approvals than ours: the gating check looks again each
            // interval, and plays the job once the other approvers unblocked it.
            return Ok(None);
        }
        let job = gitlab.job(gate.project_id, job_id).await?;
        Ok(Some(match job.and_then(|j| j.status) {
            Some(status) if status == "manual" => {
                match gitlab.play_job(gate.project_id, job_id).await {
                    Ok(()) => format!("approved in GitLab and job {job_id} started"),
                    // Someone started it between our read and our request.
                    Err(GitLabError::Other { status: 400, .. }) => {
                        format!("approved in GitLab; job {job_id} was started by someone else")
                    }
                    Err(e) => return Err(gating_token_error(e)),
                }
            }
            _ => format!("approved in GitLab; job {job_id} had already started"),
        }))
    }
}

/// What became of an approval or rejection.
enum Decided {
    /// GitLab has it (now, or from a run cut short).
    Done,
    /// The deployment no longer waited (someone decided in GitLab first): its status now.
    NotWaiting(String),
}

fn not_waiting(status: &str) -> String {
    format!(
        "not applied: the deployment no longer waited for approval (it is {status}); someone decided in GitLab first"
    )
}

/// GitLab refusing the gating token is for an operator to fix (`jsm set`), not for retries.
fn gating_token_error(e: GitLabError) -> JobError {
    match e {
        GitLabError::Unauthorized | GitLabError::Forbidden(_) => JobError::Permanent(format!(
            "the gating token cannot act on this deployment ({e}); set one that can with `jsm set --gating-token-file`"
        )),
        GitLabError::Other {
            status: 400,
            message,
        } => JobError::Permanent(format!("GitLab refused: {message}")),
        e => e.into(),
    }
}

/// Queues each subscription's gating check for this interval.
pub async fn schedule_gating_checks(
    store: &Store,
    now_ms: i64,
    interval_ms: i64,
) -> Result<u64, gfj_store::StoreError> {
    let interval = now_ms / interval_ms.max(1);
    let jobs: Vec<NewJob> = store
        .subscriptions()
        .await?
        .iter()
        .map(|s| {
            NewJob::of(
                &Job::GatingCheck(GatingCheck {
                    subscription_id: s.id,
                    interval,
                }),
                now_ms,
            )
        })
        .collect();
    if jobs.is_empty() {
        return Ok(0);
    }
    store.enqueue(&jobs, now_ms).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polls_back_off_to_ten_minutes() {
        let gaps: Vec<i64> = (0..8).map(|n| next_poll_gap_ms(30_000, n)).collect();
        assert_eq!(
            gaps,
            [
                30_000, 60_000, 120_000, 240_000, 480_000, 600_000, 600_000, 600_000
            ]
        );
        assert_eq!(next_poll_gap_ms(30_000, 10_000), 600_000);
        assert_eq!(
            next_poll_gap_ms(3_600_000, 0),
            3_600_000,
            "never below the interval"
        );
    }
}
