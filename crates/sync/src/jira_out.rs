//! Everything that goes to Jira: each site's shared state (paused after a 429, flagged after a 401/403),
//! development information packed into as few requests as Jira's limits allow, one sender for builds,
//! deployments and feature flags, the audit trail, rejected entities and unknown keys, and deletions.

use std::collections::BTreeMap;

use gfj_core::batching;
use gfj_core::jira::{
    Build, BuildsRequest, Deployment, DeploymentsRequest, DevinfoRequest, FeatureFlag,
    FeatureFlagsRequest, ProviderMetadata,
};
use gfj_core::jobs::{self, CleanupScope, JiraCleanup};
use gfj_core::mapping;
use gfj_core::mapping::project_keys::ProjectKeys;
use gfj_core::metric_names;
use gfj_jira_client::{BulkRequest, JiraApi, JiraError, Site, SiteAuth};
use gfj_store::Store;
use gfj_store::audit::AuditEntry;
use gfj_store::installations::Installation;
use gfj_store::queue::NewJob;
use gfj_store::sites::Rejection;

use crate::JobError;
use crate::accepted;
use crate::audit::Rejections;
use crate::context::Handlers;

/// How entities are sent: the site's project keys, and whether they are history (backfilled:
/// `operationType: BACKFILL`, `preventTransitions`, so old work does not move issues) or live.
pub struct SendOptions {
    pub keys: ProjectKeys,
    pub history: bool,
    pub on_pause: OnPause,
}

/// What a job does when the site is paused (after a 429) as it is about to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnPause {
    /// Hands its worker back and runs again when the pause is over: a live event is one request.
    Postpone,
    /// Waits the pause out (up to [`LONGEST_PAUSE_WAITED_MS`]) and goes on: a job of many requests (a
    /// reconciliation pass, a backfill page of pipelines) would otherwise start over, and resend what
    /// it had sent, after every pause.
    Wait,
}

/// The longest pause a job that waits pauses out sits through; a longer one postpones it.
const LONGEST_PAUSE_WAITED_MS: i64 = 60_000;

impl SendOptions {
    pub fn live(keys: ProjectKeys) -> Self {
        Self {
            keys,
            history: false,
            on_pause: OnPause::Postpone,
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

/// Builds, deployments and feature flags: what differs between them when they are sent.
pub trait CicdEntity: Clone + Send + Sync {
    /// As rejections and the audit trail name it.
    const ENTITY_TYPE: &'static str;
    type Request: BulkRequest;
    fn request(properties: BTreeMap<String, String>, entities: Vec<Self>) -> Self::Request;
    fn audit(client_key: &str, sent: &[Self], rejected: &Rejections, at: i64) -> Vec<AuditEntry>;
}

impl CicdEntity for Build {
    const ENTITY_TYPE: &'static str = "build";
    type Request = BuildsRequest;
    fn request(properties: BTreeMap<String, String>, builds: Vec<Self>) -> BuildsRequest {
        BuildsRequest {
            properties,
            builds,
            provider_metadata: ProviderMetadata::ours(),
        }
    }
    fn audit(client_key: &str, sent: &[Self], rejected: &Rejections, at: i64) -> Vec<AuditEntry> {
        crate::audit::builds(client_key, sent, rejected, at)
    }
}

impl CicdEntity for Deployment {
    const ENTITY_TYPE: &'static str = "deployment";
    type Request = DeploymentsRequest;
    fn request(properties: BTreeMap<String, String>, deployments: Vec<Self>) -> DeploymentsRequest {
        DeploymentsRequest {
            properties,
            deployments,
            provider_metadata: ProviderMetadata::ours(),
        }
    }
    fn audit(client_key: &str, sent: &[Self], rejected: &Rejections, at: i64) -> Vec<AuditEntry> {
        crate::audit::deployments(client_key, sent, rejected, at)
    }
}

impl CicdEntity for FeatureFlag {
    const ENTITY_TYPE: &'static str = "feature_flag";
    type Request = FeatureFlagsRequest;
    fn request(properties: BTreeMap<String, String>, flags: Vec<Self>) -> FeatureFlagsRequest {
        FeatureFlagsRequest {
            properties,
            flags,
            provider_metadata: ProviderMetadata::ours(),
        }
    }
    fn audit(client_key: &str, sent: &[Self], rejected: &Rejections, at: i64) -> Vec<AuditEntry> {
        crate::audit::flags(client_key, sent, rejected, at)
    }
}

/// How long a job waits when Jira refuses our credentials, so a broken site is not retried hot.
const CREDENTIALS_RETRY_MS: i64 = 5 * 60 * 1000;

impl Handlers {
    /// Deletes from Jira what a removed subscription sent, or what came from a project that left its
    /// group. Nothing to do when the site was uninstalled: Jira deletes the app's data itself then.
    pub(crate) async fn cleanup(&self, c: &JiraCleanup) -> Result<(), JobError> {
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
        self.at_site(&c.client_key, OnPause::Postpone, calls).await
    }

    /// Runs calls to one Jira site under its shared state: nothing is sent while the site is paused after a
    /// 429 (in any process), a 429 pauses it for everyone, and a 401/403 flags it for an operator and
    /// waits minutes, not seconds, before the job tries again.
    pub(crate) async fn at_site(
        &self,
        client_key: &str,
        on_pause: OnPause,
        calls: impl std::future::Future<Output = Result<(), JiraError>>,
    ) -> Result<(), JobError> {
        let now = self.clock.now_ms();
        if let Some(until) = self.store.site_paused_until(client_key, now).await? {
            let wait_ms = until - now;
            if on_pause == OnPause::Postpone || wait_ms > LONGEST_PAUSE_WAITED_MS {
                return Err(JobError::Postpone {
                    message: "Jira site paused after a 429".into(),
                    after_ms: wait_ms,
                });
            }
            // Spread over a second: every waiting job resuming at once would meet Jira together.
            let spread_ms = (gfj_core::backoff::jitter() * 1_000.0) as i64;
            tokio::time::sleep(std::time::Duration::from_millis(
                (wait_ms + spread_ms).max(0) as u64,
            ))
            .await;
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
                "issue_keys_over_limit",
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
            let Some(sending) = accepted::before_sending(&request).await else {
                continue;
            };
            match self.jira.store_devinfo(site, &request).await {
                Ok(result) => {
                    sending.accepted();
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
                            "rejected_by_jira",
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
                        self.reject(
                            "too_large",
                            client_key,
                            &repo.id,
                            entity_type,
                            &entity_id,
                            reason,
                        )
                        .await;
                    }
                },
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Sends builds, deployments or feature flags in requests of `cicd_batch_size`, in order, with the
    /// `properties` given (for deleting a subscription's or a project's entities later), recording what
    /// Jira refuses or does not know.
    pub async fn send<E: CicdEntity>(
        &self,
        client_key: &str,
        site: &Site,
        properties: BTreeMap<String, String>,
        entities: Vec<E>,
    ) -> Result<(), JiraError> {
        for chunk in entities.chunks(self.cicd_batch_size.max(1)) {
            let body = E::request(properties.clone(), chunk.to_vec());
            let Some(sending) = accepted::before_sending(&body).await else {
                continue;
            };
            let result = self.jira.submit(site, &body).await?;
            sending.accepted();
            self.record_bulk_result(client_key, E::ENTITY_TYPE, &result, |rejected, now| {
                E::audit(client_key, chunk, rejected, now)
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
            self.reject(
                "rejected_by_jira",
                client_key,
                "",
                entity_type,
                &key,
                &reason,
            )
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

    /// Records an entity not sent, or refused by Jira, with the reason an operator reads (`status`) and
    /// the closed-set `label` of `/metrics`.
    async fn reject(
        &self,
        label: &'static str,
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
        metrics::counter!(metric_names::EVENTS_DROPPED, "reason" => label).increment(1);
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
    // Every job that reaches Jira comes through here: its log span names the site from now on.
    tracing::Span::current().record("site", install.base_url.as_str());
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
