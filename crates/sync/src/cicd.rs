//! Merge requests, pipelines, deployments and feature flags: what their webhooks (or `replay`'s typed
//! events made from GitLab's REST records) mean for Jira. Pushes are `push`'s.
//!
//! GitLab reads happen before any Jira call, so a GitLab outage never holds a Jira site's slot, and
//! every Jira call runs under `at_site` (429 pause, credential flag).

use gfj_core::domain::{MergeRequestId, ProjectId, SubscriptionId};
use gfj_core::gitlab::{DeploymentEvent, FeatureFlagEvent, WebhookEvent};
use gfj_core::issue_keys;
use gfj_core::mapping;
use gfj_core::mapping::deployment::{DeploymentFacts, map_deployment};
use gfj_core::mapping::feature_flag::{FlagFacts, map_feature_flag};
use gfj_core::mapping::merge_request::{MergeRequestAction, map_merge_request};
use gfj_core::mapping::pipeline::map_pipeline;
use gfj_jira_client::Site;
use gfj_store::subscriptions::Subscription;

use crate::JobError;
use crate::context::{Handlers, off_runtime};
use crate::jira_out::SendOptions;

impl Handlers {
    pub(crate) async fn cicd_event(
        &self,
        sub: &Subscription,
        site: &Site,
        opts: &SendOptions,
        event: WebhookEvent,
        seq: i64,
    ) -> Result<(), JobError> {
        let keys = &opts.keys;
        let ck = &sub.client_key;
        let properties = |project_id: i64| mapping::properties(sub.id, project_id);
        match event {
            WebhookEvent::MergeRequest(ev) => {
                let options = self.merge_request_options;
                let (ev, action) = off_runtime(move || {
                    let action = map_merge_request(&ev, seq, options);
                    (ev, action)
                })
                .await?;
                match action {
                    MergeRequestAction::Nothing => Ok(()),
                    MergeRequestAction::Store {
                        mut request,
                        dropped_keys,
                    } => {
                        request.properties = properties(ev.project.id);
                        if !opts.prepare(&mut request) {
                            return Ok(());
                        }
                        let sends_pull_request = request
                            .repositories
                            .iter()
                            .any(|r| !r.pull_requests.is_empty());
                        self.at_site(
                            ck,
                            opts.on_pause,
                            self.store_entities(ck, site, request, dropped_keys),
                        )
                        .await?;
                        if sends_pull_request {
                            // Reconciliation compares these with GitLab's list to find deletions.
                            self.store
                                .remember_sent_merge_request(
                                    SubscriptionId(sub.id),
                                    ProjectId(ev.project.id),
                                    MergeRequestId(ev.object_attributes.id),
                                )
                                .await?;
                        }
                        Ok(())
                    }
                }
            }
            WebhookEvent::Pipeline(ev) => {
                let (ev, build) = off_runtime(move || {
                    let build = map_pipeline(&ev, seq);
                    (ev, build)
                })
                .await?;
                match build.and_then(|b| keys.filter_build(b)) {
                    None => Ok(()),
                    Some(build) => {
                        let props = properties(ev.project.id);
                        self.at_site(ck, opts.on_pause, self.send(ck, site, props, vec![build]))
                            .await
                    }
                }
            }
            WebhookEvent::Deployment(ev) => {
                let Some(facts) = self.deployment_facts(sub, &ev).await? else {
                    return Ok(());
                };
                // The facts carry the messages of every commit the deployment brings.
                let (facts, deployment) = off_runtime(move || {
                    let deployment = map_deployment(&facts, seq);
                    (facts, deployment)
                })
                .await?;
                match deployment.and_then(|d| keys.filter_deployment(d)) {
                    None => Ok(()),
                    Some(d) => {
                        let props = properties(facts.project.id);
                        let gate = facts.gating.then(|| new_gate(sub, &facts, &d));
                        self.at_site(ck, opts.on_pause, self.send(ck, site, props, vec![d]))
                            .await?;
                        // Jira has the deployment with its command: JSM opens a change request.
                        match gate {
                            Some(gate) => self.open_gate(gate).await,
                            None => Ok(()),
                        }
                    }
                }
            }
            WebhookEvent::FeatureFlag(ev) => {
                let attrs = &ev.object_attributes;
                self.store
                    .remember_feature_flag(
                        SubscriptionId(sub.id),
                        ProjectId(ev.project.id),
                        &attrs.name,
                        attrs.id,
                    )
                    .await?;
                let mut props = properties(ev.project.id);
                props.insert(mapping::FLAG_PROPERTY.to_owned(), attrs.id.to_string());
                let Some(facts) = self.flag_facts(sub, &ev).await? else {
                    // Deleted in GitLab since: delete it from Jira too.
                    self.store
                        .forget_feature_flag(
                            SubscriptionId(sub.id),
                            ProjectId(ev.project.id),
                            &attrs.name,
                        )
                        .await?;
                    let props: Vec<(&str, &str)> = props
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_str()))
                        .collect();
                    let delete = self.jira.delete_by_properties(
                        site,
                        gfj_jira_client::JiraApi::FeatureFlags,
                        &props,
                        None,
                    );
                    return self.at_site(ck, opts.on_pause, delete).await;
                };
                match map_feature_flag(&facts, seq).and_then(|f| keys.filter_flag(f)) {
                    None => Ok(()),
                    Some(flag) => {
                        self.at_site(ck, opts.on_pause, self.send(ck, site, props, vec![flag]))
                            .await
                    }
                }
            }
            WebhookEvent::Job(ev) if ev.is_manual_deployment() => {
                self.manual_deployment_job(sub, site, opts, &ev, seq).await
            }
            other => {
                tracing::debug!(kind = ?other.kind(), "event kind not synced yet");
                Ok(())
            }
        }
    }

    /// The deployment as GitLab's REST API knows it (the webhook has no iid and no full SHA), with the
    /// commits it brings to its environment. `None` when the deployment is gone.
    async fn deployment_facts(
        &self,
        sub: &Subscription,
        ev: &DeploymentEvent,
    ) -> Result<Option<DeploymentFacts>, JobError> {
        let gitlab = self
            .gitlab
            .client_for(&self.store, sub, self.clock.now_ms())
            .await?;
        let project_id = ev.project.id;
        let Some(d) = gitlab.deployment(project_id, ev.deployment_id).await? else {
            tracing::info!(
                project = project_id,
                deployment = ev.deployment_id,
                "deployment no longer exists in GitLab"
            );
            return Ok(None);
        };
        let commits = gitlab.deployment_commits(project_id, &d).await?;
        let jsm = gfj_core::jsm::in_force(
            &self.store.jsm_settings(SubscriptionId(sub.id)).await?,
            ProjectId(project_id),
            &mapping::full_path(&ev.project),
        );
        // The deployed commit first, then the newest of the others: key order follows relevance.
        let mut key_texts: Vec<String> = Vec::with_capacity(commits.len());
        if let Some(own) = commits.iter().find(|c| c.id == d.sha) {
            key_texts.push(own.message.clone());
        }
        key_texts.extend(
            commits
                .iter()
                .rev()
                .filter(|c| c.id != d.sha)
                .map(|c| c.message.clone()),
        );
        let facts = DeploymentFacts {
            project: ev.project.clone(),
            deployment_id: d.id,
            iid: d.iid,
            // The status this delivery reported: it belongs with the delivery's sequence number. Newer
            // GitLab also reports approvals as `approved` / `rejected`, which are not deployment statuses:
            // the deployment's own status then.
            status: match ev.status.as_str() {
                "approved" | "rejected" => d.status.clone(),
                other => other.to_owned(),
            },
            git_ref: d.git_ref.clone(),
            sha: d.sha.clone(),
            environment_id: d.environment.id,
            environment_name: d.environment.name.clone(),
            environment_tier: d
                .environment
                .tier
                .clone()
                .or_else(|| ev.environment_tier.clone()),
            job: d.deployable.as_ref().map(|j| (j.id, j.name.clone())),
            pipeline: d
                .deployable
                .as_ref()
                .and_then(|j| j.pipeline.as_ref())
                .map(|p| (p.id, p.iid)),
            updated_at: ev
                .status_changed_at
                .as_ref()
                .map(|t| t.rfc3339())
                .or(d.updated_at.clone())
                .unwrap_or_default(),
            key_texts,
            gating: matches!(ev.status.as_str(), "blocked" | "approved" | "rejected")
                && d.status == "blocked"
                && jsm.gates(d.environment.tier.as_deref()),
            service_ids: jsm.service_ids,
        };
        // Service IDs alone are enough: JSM shows the deployment on the service.
        if facts.service_ids.is_empty()
            && issue_keys::extract(facts.key_texts.iter().map(String::as_str)).is_empty()
        {
            return Ok(None);
        }
        Ok(Some(facts))
    }

    /// The flag with its strategies, read from GitLab (the webhook carries none); `None` once the flag
    /// was deleted.
    async fn flag_facts(
        &self,
        sub: &Subscription,
        ev: &FeatureFlagEvent,
    ) -> Result<Option<FlagFacts>, JobError> {
        let gitlab = self
            .gitlab
            .client_for(&self.store, sub, self.clock.now_ms())
            .await?;
        let attrs = &ev.object_attributes;
        let Some(rest) = gitlab.feature_flag(ev.project.id, &attrs.name).await? else {
            return Ok(None);
        };
        Ok(Some(FlagFacts {
            project: ev.project.clone(),
            id: attrs.id,
            name: attrs.name.clone(),
            description: rest
                .description
                .or_else(|| attrs.description.clone())
                .unwrap_or_default(),
            // GitLab's current state, like the strategies (a reconciliation replay carries it too).
            active: rest.active,
            strategies: rest.strategies,
            updated_at: rest.updated_at.unwrap_or_default(),
        }))
    }
}

/// The gate a gated deployment opens once Jira accepted it: the deployment in GitLab, and its key in
/// Jira.
fn new_gate(
    sub: &Subscription,
    facts: &DeploymentFacts,
    d: &gfj_core::jira::Deployment,
) -> gfj_store::gates::NewGate {
    gfj_store::gates::NewGate {
        subscription_id: SubscriptionId(sub.id),
        client_key: sub.client_key.clone(),
        project_id: ProjectId(facts.project.id),
        deployment_id: facts.deployment_id,
        job_id: facts.job.as_ref().map(|(id, _)| *id),
        pipeline_key: d.pipeline.id.clone(),
        environment_key: d.environment.id.clone(),
        deployment_seq: d.deployment_sequence_number,
        environment_name: facts.environment_name.clone(),
        tier: facts.environment_tier.clone().unwrap_or_default(),
        issue_keys: d
            .associations
            .iter()
            .filter(|a| a.association_type == "issueKeys")
            .flat_map(|a| a.values.iter().cloned())
            .collect(),
    }
}
