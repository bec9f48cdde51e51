//! Job → handler: one exhaustive `match` over [`jobs::Job`], and the routing of a GitLab delivery
//! (parsed, checked against the subscription's projects, then to `push`, `cicd` or `coverage`). The top
//! of the crate: it may use every module, and none uses it.

use gfj_core::gitlab::{EventKind, PushEvent, WebhookEvent};
use gfj_core::jobs::{self, GitlabEvent};
use gfj_core::mapping::project_keys::ProjectKeys;
use gfj_core::metric_names;
use gfj_store::queue::Job;

use crate::JobError;
use crate::context::{Handlers, off_runtime};
use crate::jira_out::{SendOptions, site_of};

/// Payloads larger than this are decoded on the blocking pool.
const DECODE_OFF_RUNTIME_BYTES: usize = 64 * 1024;

impl Handlers {
    pub async fn run(&self, job: &Job) -> Result<(), JobError> {
        // A job that replaces an entity's whole state, with a newer one for the same entity queued
        // behind it, has nothing left to do.
        if self.store.superseded(job).await? {
            tracing::debug!(
                job.id = job.id,
                "a newer update of the same entity is queued"
            );
            return Ok(());
        }
        let unreadable =
            |e: serde_json::Error| JobError::Permanent(format!("unreadable {} job: {e}", job.kind));
        // A delivery's body may be hundreds of kilobytes (larger ones are queued shortened).
        let decoded = if job.payload.len() > DECODE_OFF_RUNTIME_BYTES {
            let (kind, payload) = (job.kind.clone(), job.payload.clone());
            off_runtime(move || jobs::Job::decode(&kind, &payload)).await?
        } else {
            jobs::Job::decode(&job.kind, &job.payload)
        };
        let decoded = decoded.map_err(unreadable)?;
        if let Some(id) = decoded.subscription_id() {
            tracing::Span::current().record("subscription", id);
        }
        match decoded {
            jobs::Job::GitlabEvent(event) => self.gitlab_event(event).await,
            jobs::Job::JiraCleanup(cleanup) => self.cleanup(&cleanup).await,
            jobs::Job::Reconcile(reconcile) => self.reconcile(&reconcile).await,
            jobs::Job::BackfillPlan(plan) => self.plan_backfill(&plan).await,
            jobs::Job::BackfillFlush(flush) => self.flush_backfill(&flush).await,
            jobs::Job::BackfillPage(page) => self.backfill_page(job, &page).await,
            jobs::Job::HookCheck(check) => self.check_hooks(&check).await,
            jobs::Job::GitlabTeardown(teardown) => self.tear_down(&teardown).await,
            jobs::Job::GitlabSignOut(sign_out) => self.sign_out(&sign_out).await,
            jobs::Job::GatingCheck(check) => self.check_gates(&check).await,
            jobs::Job::ApplyGate(apply) => self.apply_gate(&apply).await,
        }
    }

    async fn gitlab_event(&self, event: GitlabEvent) -> Result<(), JobError> {
        let Some(sub) = self.store.subscription(event.subscription_id).await? else {
            tracing::info!(
                subscription = event.subscription_id,
                "subscription was removed; event dropped"
            );
            metrics::counter!(metric_names::EVENTS_DROPPED, "reason" => "subscription_removed")
                .increment(1);
            return Ok(());
        };
        let Some(install) = self.store.installation(&sub.client_key).await? else {
            tracing::info!(site = %sub.client_key, "Jira site was uninstalled; event dropped");
            metrics::counter!(metric_names::EVENTS_DROPPED, "reason" => "site_uninstalled")
                .increment(1);
            return Ok(());
        };
        let site = site_of(install);
        let opts = SendOptions::live(ProjectKeys::new(
            self.store.site_project_keys(&sub.client_key).await?,
        ));
        // Parsed first, and checked against the subscription's projects before any GitLab read.
        let body = event.body;
        let parsed = match EventKind::from_header(&event.event) {
            EventKind::Push => {
                let push: PushEvent = off_runtime(move || serde_json::from_str(body.get()))
                    .await?
                    .map_err(|e| JobError::Permanent(format!("unreadable push event: {e}")))?;
                if push.project_id != push.project.id {
                    return self
                        .drop_foreign(&sub, push.project_id, "project_id and project.id differ")
                        .await;
                }
                WebhookEvent::Push(push)
            }
            kind => off_runtime(move || WebhookEvent::parse(kind, body.get().as_bytes()))
                .await?
                .map_err(|e| JobError::Permanent(format!("unreadable {}: {e}", event.event)))?,
        };
        match &parsed {
            WebhookEvent::Project(project) => return self.project_event(&sub, project).await,
            WebhookEvent::Subgroup(subgroup) => return self.subgroup_event(&sub, subgroup).await,
            _ => {}
        }
        if let Some(project_id) = parsed.project_id()
            && !self.covers(&sub, project_id).await?
        {
            return self
                .drop_foreign(&sub, project_id, "not a project of the linked group")
                .await;
        }
        match parsed {
            WebhookEvent::Push(push) => self.push_event(&sub, &site, &opts, push, event.seq).await,
            other => self.cicd_event(&sub, &site, &opts, other, event.seq).await,
        }
    }
}
