//! What each job kind does.

use std::collections::BTreeMap;

use crate::gitlab_access::GitLabAccess;
use gfj_core::batching;
use gfj_core::gitlab::{EventKind, PushEvent, WebhookEvent};
use gfj_core::jira::{
    Build, BuildsRequest, Deployment, DeploymentsRequest, DevinfoRequest, FeatureFlag,
    FeatureFlagsRequest, ProviderMetadata,
};
use gfj_core::jobs::{self, CleanupScope, GitlabEvent, JiraCleanup};
use gfj_core::mapping::project_keys::ProjectKeys;
use gfj_core::mapping::{self, PushAction};
use gfj_gitlab_client::GitLabClient;
use gfj_jira_client::{DevinfoEntity, JiraApi, JiraError};
use gfj_jira_client::{JiraClient, Site, SiteAuth};
use gfj_store::installations::Installation;
use gfj_store::queue::{Job, NewJob};
use gfj_store::sites::Rejection;
use gfj_store::subscriptions::Subscription;
use gfj_store::{Clock, Store};

use crate::JobError;

/// Everything a job may need, shared by all of them.
pub struct Handlers {
    pub store: Store,
    pub jira: JiraClient,
    pub gitlab: GitLabAccess,
    pub clock: std::sync::Arc<dyn Clock>,
    /// Builds, deployments or flags per request (`GFJ_JIRA_BATCH_SIZE`).
    pub cicd_batch_size: usize,
    /// Where GitLab delivers our webhooks (from `GFJ_BASE_URL`), for hooks registered again.
    pub webhook_url: String,
    /// How merge requests are mapped (`GFJ_MR_KEYS_FROM_BRANCH`).
    pub merge_request_options: mapping::merge_request::MergeRequestOptions,
    /// How backfills run (`GFJ_BACKFILL_DAYS`, `GFJ_BACKFILL_TASKS`).
    pub backfill: crate::backfill::BackfillSettings,
    /// What backfill jobs share (projects read from GitLab, flush locks).
    pub backfill_shared: crate::backfill::BackfillShared,
    /// Membership checks of projects a delivery names (see `coverage`).
    pub coverage_checks: crate::coverage::CoverageChecks,
}

/// The GitLab client acting for a subscription, made on first use (reading and, for an OAuth sign-in,
/// perhaps refreshing its credentials) and then shared by every read of one job.
pub(crate) struct LazyGitLab<'a> {
    handlers: &'a Handlers,
    sub: &'a Subscription,
    client: tokio::sync::OnceCell<GitLabClient>,
}

impl<'a> LazyGitLab<'a> {
    pub(crate) fn new(handlers: &'a Handlers, sub: &'a Subscription) -> Self {
        Self {
            handlers,
            sub,
            client: tokio::sync::OnceCell::new(),
        }
    }

    pub(crate) async fn get(&self) -> Result<&GitLabClient, JobError> {
        self.client
            .get_or_try_init(|| {
                let h = self.handlers;
                h.gitlab.client_for(&h.store, self.sub, h.clock.now_ms())
            })
            .await
    }
}

/// Adds files with line counts and the merge flag to the commits about to be sent, reading GitLab
/// best-effort: the first failure (GitLab down or throttling) stops it, and the commits go without.
async fn enrich_commits(gitlab: &LazyGitLab<'_>, request: &mut DevinfoRequest) {
    let Ok(gitlab) = gitlab.get().await else {
        return;
    };
    let gitlab = gitlab.best_effort();
    for repo in &mut request.repositories {
        let Ok(project_id) = repo.id.parse::<i64>() else {
            continue;
        };
        for commit in repo.commits.iter_mut().take(MAX_ENRICHED_COMMITS) {
            match gitlab.commit_changes(project_id, &commit.id).await {
                Ok((parents, diffs)) => {
                    mapping::enrich_commit(commit, &repo.url, parents, &diffs);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "commit details not read from GitLab; sent without files");
                    return;
                }
            }
        }
    }
}

/// How entities are sent: the site's project keys, and whether they are history (backfilled:
/// `operationType: BACKFILL`, `preventTransitions`, so old work does not move issues) or live.
pub struct SendOptions {
    pub keys: ProjectKeys,
    pub history: bool,
}

impl SendOptions {
    pub fn live(keys: ProjectKeys) -> Self {
        Self {
            keys,
            history: false,
        }
    }

    /// Applies the options to a devinfo request; `false` when nothing is left to send.
    pub fn prepare(&self, request: &mut DevinfoRequest) -> bool {
        self.keys.filter_devinfo(request);
        if self.history {
            request.operation_type = gfj_core::jira::OperationType::Backfill;
            request.prevent_transitions = true;
        }
        !request.repositories.is_empty()
    }
}

/// Queues a deletion from Jira (see [`JiraCleanup`]).
pub async fn queue_jira_cleanup(
    store: &Store,
    cleanup: &JiraCleanup,
    now_ms: i64,
) -> Result<(), gfj_store::StoreError> {
    let job = NewJob::of(&jobs::Job::JiraCleanup(cleanup.clone()), now_ms);
    store.enqueue(&[job], now_ms).await.map(drop)
}

/// Runs CPU-heavy work on tokio's blocking pool: parsing and mapping an event whose texts may be megabytes
/// would otherwise hold a runtime worker that webhook intake and other jobs share. A panic inside goes on
/// here, as if the work had run inline.
pub(crate) async fn off_runtime<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, JobError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(out) => Ok(out),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // Only when the runtime shuts down before the work started: the job runs again later.
        Err(e) => Err(JobError::Retry {
            message: format!("interrupted by shutdown: {e}"),
            after_ms: None,
        }),
    }
}

/// At most this many commits of one push get their files read from GitLab (two reads each).
const MAX_ENRICHED_COMMITS: usize = 50;

/// At most this many commits of one push are sent (GitLab's own app stops at 100).
const MAX_PUSH_COMMITS: usize = 5_000;

/// Payloads larger than this are decoded on the blocking pool.
const DECODE_OFF_RUNTIME_BYTES: usize = 64 * 1024;

/// How long a job waits when Jira refuses our credentials, so a broken site is not retried hot.
const CREDENTIALS_RETRY_MS: i64 = 5 * 60 * 1000;

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
        match decoded.map_err(unreadable)? {
            jobs::Job::GitlabEvent(event) => self.gitlab_event(event).await,
            jobs::Job::JiraCleanup(cleanup) => self.cleanup(&cleanup).await,
            jobs::Job::Reconcile(reconcile) => self.reconcile(&reconcile).await,
            jobs::Job::BackfillPlan(plan) => self.plan_backfill(&plan).await,
            jobs::Job::BackfillFlush(flush) => self.flush_backfill(&flush).await,
            jobs::Job::BackfillPage(page) => self.backfill_page(job, &page).await,
            jobs::Job::HookCheck(check) => self.check_hooks(&check).await,
            jobs::Job::GitlabTeardown(teardown) => self.tear_down(&teardown).await,
            jobs::Job::GitlabSignOut(sign_out) => self.sign_out(&sign_out).await,
        }
    }

    async fn gitlab_event(&self, event: GitlabEvent) -> Result<(), JobError> {
        let Some(sub) = self.store.subscription(event.subscription_id).await? else {
            tracing::info!(
                subscription = event.subscription_id,
                "subscription was removed; event dropped"
            );
            return Ok(());
        };
        let Some(install) = self.store.installation(&sub.client_key).await? else {
            tracing::info!(site = %sub.client_key, "Jira site was uninstalled; event dropped");
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
        if let WebhookEvent::Project(project) = &parsed {
            return self.project_event(&sub, project).await;
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

    /// Deletes from Jira what a removed subscription sent, or what came from a project that left its
    /// group. Nothing to do when the site was uninstalled: Jira deletes the app's data itself then.
    async fn cleanup(&self, c: &JiraCleanup) -> Result<(), JobError> {
        let Some(install) = self.store.installation(&c.client_key).await? else {
            return Ok(());
        };
        let site = site_of(install);
        let jira = &self.jira;
        let calls = async {
            match c.scope {
                CleanupScope::Subscription { subscription_id } => {
                    let id = subscription_id.to_string();
                    let props = [(mapping::SUBSCRIPTION_PROPERTY, id.as_str())];
                    for api in JiraApi::ALL {
                        jira.delete_by_properties(&site, api, &props, None).await?;
                    }
                }
                CleanupScope::Project { project_id } => {
                    jira.delete_repository(&site, &project_id.to_string(), None)
                        .await?;
                    let project = mapping::project_property(project_id);
                    let props = [(mapping::PROJECT_PROPERTY, project.as_str())];
                    for api in [JiraApi::Builds, JiraApi::Deployments, JiraApi::FeatureFlags] {
                        jira.delete_by_properties(&site, api, &props, None).await?;
                    }
                }
            }
            Ok(())
        };
        self.at_site(&c.client_key, calls).await
    }

    /// A push (from a webhook, or made up by reconciliation from what GitLab lists) into Jira.
    pub(crate) async fn push_event(
        &self,
        sub: &Subscription,
        site: &Site,
        opts: &SendOptions,
        push: PushEvent,
        seq: i64,
    ) -> Result<(), JobError> {
        let properties = mapping::properties(sub.id, push.project.id);
        let gitlab = LazyGitLab::new(self, sub);
        let action = match self.map_push(&gitlab, push, seq).await? {
            PushAction::Store {
                mut request,
                dropped_keys,
            } => {
                if !opts.prepare(&mut request) {
                    return Ok(());
                }
                enrich_commits(&gitlab, &mut request).await;
                PushAction::Store {
                    request,
                    dropped_keys,
                }
            }
            other => other,
        };
        self.at_site(
            &sub.client_key,
            self.apply_push(&sub.client_key, site, action, seq, properties),
        )
        .await
    }

    /// Maps a push, reading from GitLab what the payload leaves out: the commits beyond its 20, the open
    /// merge requests of the branch (whose keys the branch carries), and a branch tip it does not hold.
    async fn map_push(
        &self,
        gitlab: &LazyGitLab<'_>,
        mut push: PushEvent,
        seq: i64,
    ) -> Result<PushAction, JobError> {
        let Some(branch) = push.branch().map(str::to_owned) else {
            return Ok(PushAction::Nothing);
        };
        if push.deletes_ref() {
            return Ok(mapping::map_push(&push, seq, None).unwrap_or(PushAction::Nothing));
        }
        if let Some(base) = push.missing_commits_base() {
            let mut all = gitlab
                .get()
                .await?
                .compare(push.project.id, &base, &push.after)
                .await?;
            // The newest commits matter most when a huge push must be cut.
            if all.len() > MAX_PUSH_COMMITS {
                all.drain(..all.len() - MAX_PUSH_COMMITS);
            }
            push = push.with_all_commits(all);
        }
        let open_mr_texts = if push.project.default_branch.as_deref() == Some(branch.as_str()) {
            Vec::new()
        } else {
            gitlab
                .get()
                .await?
                .open_merge_request_texts(push.project.id, &branch)
                .await?
        };
        let (push, open_mr_texts, mapped) = off_runtime(move || {
            let mapped = mapping::map_push_with(&push, seq, None, &open_mr_texts);
            (push, open_mr_texts, mapped)
        })
        .await?;
        match mapped {
            Ok(a) => Ok(a),
            Err(mapping::NeedsTipCommit(sha)) => {
                let tip = gitlab.get().await?.commit(push.project.id, &sha).await?;
                off_runtime(move || mapping::map_push_with(&push, seq, Some(&tip), &open_mr_texts))
                    .await?
                    .map_err(|e| {
                        JobError::Permanent(format!("tip commit {} not returned by GitLab", e.0))
                    })
            }
        }
    }

    /// Runs calls to one Jira site under its shared state: nothing is sent while the site is paused after a
    /// 429 (in any process), a 429 pauses it for everyone, and a 401/403 flags it for an operator and
    /// waits minutes, not seconds, before the job tries again.
    pub(crate) async fn at_site(
        &self,
        client_key: &str,
        calls: impl std::future::Future<Output = Result<(), JiraError>>,
    ) -> Result<(), JobError> {
        let now = self.clock.now_ms();
        if let Some(until) = self.store.site_paused_until(client_key, now).await? {
            return Err(JobError::Postpone {
                message: "Jira site paused after a 429".into(),
                after_ms: until - now,
            });
        }
        match calls.await {
            Ok(()) => {
                self.store.site_recovered(client_key).await?;
                Ok(())
            }
            Err(JiraError::RateLimited { retry_after_ms }) => {
                let until = self.clock.now_ms() + retry_after_ms;
                self.store
                    .pause_site(
                        client_key,
                        until,
                        &format!("429; Retry-After {retry_after_ms} ms"),
                    )
                    .await?;
                Err(JobError::Postpone {
                    message: "Jira answered 429".into(),
                    after_ms: retry_after_ms,
                })
            }
            Err(e @ (JiraError::Unauthorized | JiraError::Forbidden)) => {
                let message = e.to_string();
                tracing::error!(site = client_key, "{message}; the site needs attention");
                self.store
                    .flag_site(client_key, &message, self.clock.now_ms())
                    .await?;
                Err(JobError::Postpone {
                    message,
                    after_ms: CREDENTIALS_RETRY_MS,
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn apply_push(
        &self,
        client_key: &str,
        site: &Site,
        action: PushAction,
        seq: i64,
        properties: BTreeMap<String, String>,
    ) -> Result<(), JiraError> {
        match action {
            PushAction::Nothing => Ok(()),
            PushAction::DeleteBranch {
                repository_id,
                branch_id,
            } => {
                self.jira
                    .delete_devinfo_entity(
                        site,
                        &repository_id,
                        DevinfoEntity::Branch,
                        &branch_id,
                        seq,
                    )
                    .await
            }
            PushAction::Store {
                mut request,
                dropped_keys,
            } => {
                request.properties = properties;
                self.store_entities(client_key, site, request, dropped_keys)
                    .await
            }
        }
    }

    /// Stores development information, first recording the keys that did not fit on their entities.
    pub(crate) async fn store_entities(
        &self,
        client_key: &str,
        site: &Site,
        request: DevinfoRequest,
        dropped_keys: Vec<mapping::DroppedKeys>,
    ) -> Result<(), JiraError> {
        let repository_id = request
            .repositories
            .first()
            .map(|r| r.id.clone())
            .unwrap_or_default();
        self.record_dropped_keys(client_key, &repository_id, dropped_keys)
            .await;
        self.store_devinfo(client_key, site, request).await
    }

    /// Records the issue keys that did not fit on their entities (Jira takes at most 500).
    pub(crate) async fn record_dropped_keys(
        &self,
        client_key: &str,
        repository_id: &str,
        dropped_keys: Vec<mapping::DroppedKeys>,
    ) {
        for d in dropped_keys {
            // "At least": a text shortened on arrival keeps one key beyond the limit, not all of them.
            let reason = format!(
                "at least {} issue keys beyond Jira's limit of 500 per entity were not sent",
                d.dropped
            );
            self.reject(
                client_key,
                repository_id,
                d.entity_type,
                &d.entity_id,
                &reason,
            )
            .await;
        }
    }

    /// Sends development information in as few requests as Jira's limits allow. A request Jira finds too
    /// large (413) is split in halves and resent, down to single entities; an entity that alone is still
    /// too large, and every entity Jira refuses in a 202, is recorded with Jira's reason.
    pub async fn store_devinfo(
        &self,
        client_key: &str,
        site: &Site,
        request: DevinfoRequest,
    ) -> Result<(), JiraError> {
        let mut pending: Vec<DevinfoRequest> = batching::pack_devinfo(request);
        pending.reverse();
        while let Some(request) = pending.pop() {
            match self.jira.store_devinfo(site, &request).await {
                Ok(result) => {
                    let failures = result.failures();
                    self.record_audit(crate::audit::devinfo(
                        client_key,
                        &request,
                        &failures,
                        self.clock.now_ms(),
                    ))
                    .await;
                    for (repository_id, entity_type, entity_id, reason) in failures {
                        self.reject(
                            client_key,
                            &repository_id,
                            &entity_type,
                            &entity_id,
                            &reason,
                        )
                        .await;
                    }
                    if !result.unknown_issue_keys.is_empty() {
                        tracing::info!(keys = ?result.unknown_issue_keys, "issue keys unknown to Jira");
                        let now = self.clock.now_ms();
                        if let Err(e) = self
                            .store
                            .record_unknown_keys(client_key, &result.unknown_issue_keys, now)
                            .await
                        {
                            tracing::error!(error = %e, "could not record unknown issue keys");
                        }
                    }
                }
                Err(JiraError::TooLarge) => match batching::split_devinfo(&request) {
                    Some((first, second)) => {
                        pending.push(second);
                        pending.push(first);
                    }
                    None => {
                        let repo = &request.repositories[0];
                        let (entity_type, entity_id) = match (
                            repo.commits.first(),
                            repo.branches.first(),
                            repo.pull_requests.first(),
                        ) {
                            (Some(c), _, _) => ("commit", c.id.clone()),
                            (None, Some(b), _) => ("branch", b.id.clone()),
                            (None, None, Some(p)) => ("pull_request", p.id.clone()),
                            (None, None, None) => continue,
                        };
                        let reason = "Jira answered 413 (too large) for this entity alone";
                        self.reject(client_key, &repo.id, entity_type, &entity_id, reason)
                            .await;
                    }
                },
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Sends builds in requests of `cicd_batch_size`, in order, recording what Jira refuses or does not know.
    pub async fn send_builds(
        &self,
        client_key: &str,
        site: &Site,
        properties: BTreeMap<String, String>,
        builds: Vec<Build>,
    ) -> Result<(), JiraError> {
        for chunk in builds.chunks(self.cicd_batch_size.max(1)) {
            let body = BuildsRequest {
                properties: properties.clone(),
                builds: chunk.to_vec(),
                provider_metadata: ProviderMetadata::ours(),
            };
            let result = self.jira.submit_builds(site, &body).await?;
            self.record_bulk_result(client_key, "build", &result, |rejected, now| {
                crate::audit::builds(client_key, chunk, rejected, now)
            })
            .await;
        }
        Ok(())
    }

    /// Sends deployments in requests of `cicd_batch_size`, in order.
    pub async fn send_deployments(
        &self,
        client_key: &str,
        site: &Site,
        properties: BTreeMap<String, String>,
        deployments: Vec<Deployment>,
    ) -> Result<(), JiraError> {
        for chunk in deployments.chunks(self.cicd_batch_size.max(1)) {
            let body = DeploymentsRequest {
                properties: properties.clone(),
                deployments: chunk.to_vec(),
                provider_metadata: ProviderMetadata::ours(),
            };
            let result = self.jira.submit_deployments(site, &body).await?;
            self.record_bulk_result(client_key, "deployment", &result, |rejected, now| {
                crate::audit::deployments(client_key, chunk, rejected, now)
            })
            .await;
        }
        Ok(())
    }

    /// Sends feature flags in requests of `cicd_batch_size`, in order, with the `properties` given (GitLab
    /// sends `projectId`, which later allows deleting a project's flags at once).
    pub async fn send_feature_flags(
        &self,
        client_key: &str,
        site: &Site,
        properties: BTreeMap<String, String>,
        flags: Vec<FeatureFlag>,
    ) -> Result<(), JiraError> {
        for chunk in flags.chunks(self.cicd_batch_size.max(1)) {
            let body = FeatureFlagsRequest {
                properties: properties.clone(),
                flags: chunk.to_vec(),
                provider_metadata: ProviderMetadata::ours(),
            };
            let result = self.jira.submit_feature_flags(site, &body).await?;
            self.record_bulk_result(client_key, "feature_flag", &result, |rejected, now| {
                crate::audit::flags(client_key, chunk, rejected, now)
            })
            .await;
        }
        Ok(())
    }

    /// The audit trail is for answering questions later; failing to write it must not resend to Jira.
    async fn record_audit(&self, entries: Vec<gfj_store::audit::AuditEntry>) {
        if let Err(e) = self.store.record_audit(&entries).await {
            tracing::error!(error = %e, entries = entries.len(), "could not record the audit trail");
        }
    }

    /// Records what Jira said about a builds, deployments or flags request: the audit trail (built by
    /// `audit` from Jira's rejections), the rejected entities, and unknown keys and associations.
    async fn record_bulk_result(
        &self,
        client_key: &str,
        entity_type: &str,
        result: &gfj_jira_client::BulkResult,
        audit: impl FnOnce(&crate::audit::Rejections, i64) -> Vec<gfj_store::audit::AuditEntry>,
    ) {
        let rejected = result.rejected();
        self.record_audit(audit(&rejected, self.clock.now_ms()))
            .await;
        for (key, reason) in rejected {
            self.reject(client_key, "", entity_type, &key, &reason)
                .await;
        }
        // Unknown issue keys and unknown associations (JSM services) go to one list per site.
        let mut unknown = result.unknown_issue_keys();
        unknown.extend(result.unknown_associations());
        if !unknown.is_empty()
            && let Err(e) = self
                .store
                .record_unknown_keys(client_key, &unknown, self.clock.now_ms())
                .await
        {
            tracing::error!(error = %e, "could not record unknown issue keys");
        }
    }

    async fn reject(
        &self,
        client_key: &str,
        repository_id: &str,
        entity_type: &str,
        entity_id: &str,
        reason: &str,
    ) {
        tracing::warn!(
            site = client_key,
            repository_id,
            entity_type,
            entity_id,
            reason,
            "Jira refused an entity"
        );
        let rejection = Rejection {
            client_key: client_key.to_owned(),
            repository_id: repository_id.to_owned(),
            entity_type: entity_type.to_owned(),
            entity_id: entity_id.to_owned(),
            reason: reason.to_owned(),
            at: self.clock.now_ms(),
        };
        if let Err(e) = self.store.record_rejection(&rejection).await {
            tracing::error!(error = %e, "could not record a rejected entity");
        }
    }
}

/// How to call a stored site: Connect or OAuth credentials; nothing downstream depends on which.
pub fn site_of(install: Installation) -> Site {
    let auth = match install.oauth {
        Some(o) => SiteAuth::OAuth {
            cloud_id: o.cloud_id,
            client_id: o.client_id,
            client_secret: install.shared_secret,
        },
        None => SiteAuth::Connect {
            shared_secret: install.shared_secret,
        },
    };
    Site {
        base_url: install.base_url,
        auth,
    }
}
