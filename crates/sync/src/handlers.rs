//! What each job kind does.

use gfj_core::gitlab::{EventKind, PushEvent};
use gfj_core::jobs::GitlabEvent;
use gfj_core::mapping::{self, PushAction};
use gfj_core::url_pattern::UrlAllowList;
use gfj_gitlab_client::GitLabClient;
use gfj_jira_client::{JiraClient, Site};
use gfj_store::Store;
use gfj_store::queue::Job;

use crate::JobError;

/// Everything a job may need, shared by all of them.
pub struct Handlers {
    pub store: Store,
    pub jira: JiraClient,
    pub gitlab_http: reqwest::Client,
    pub gitlab_urls: UrlAllowList,
    pub jira_urls: UrlAllowList,
}

impl Handlers {
    pub async fn run(&self, job: &Job) -> Result<(), JobError> {
        match job.kind.as_str() {
            GitlabEvent::KIND => {
                let event: GitlabEvent = serde_json::from_str(&job.payload)
                    .map_err(|e| JobError::Permanent(format!("unreadable job payload: {e}")))?;
                self.gitlab_event(&event).await
            }
            other => Err(JobError::Permanent(format!("unknown job kind {other:?}"))),
        }
    }

    async fn gitlab_event(&self, event: &GitlabEvent) -> Result<(), JobError> {
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
        if !self.jira_urls.allows(&install.base_url) {
            return Err(JobError::Permanent(format!(
                "Jira site {} is not in GFJ_JIRA_URLS",
                install.base_url
            )));
        }
        let site = Site {
            base_url: install.base_url,
            shared_secret: install.shared_secret,
        };
        match EventKind::from_header(&event.event) {
            EventKind::Push => {
                let push: PushEvent = serde_json::from_str(event.body.get())
                    .map_err(|e| JobError::Permanent(format!("unreadable push event: {e}")))?;
                let action = match mapping::map_push(&push, event.seq, None) {
                    Ok(a) => a,
                    Err(mapping::NeedsTipCommit(sha)) => {
                        if !self.gitlab_urls.allows(&sub.gitlab_url) {
                            return Err(JobError::Permanent(format!(
                                "{} is not in GFJ_GITLAB_URLS",
                                sub.gitlab_url
                            )));
                        }
                        let token = self.store.subscription_gitlab_token(&sub).await?;
                        let gitlab =
                            GitLabClient::new(self.gitlab_http.clone(), &sub.gitlab_url, &token);
                        let tip = gitlab.commit(push.project.id, &sha).await?;
                        mapping::map_push(&push, event.seq, Some(&tip)).map_err(|e| {
                            JobError::Permanent(format!(
                                "tip commit {} not returned by GitLab",
                                e.0
                            ))
                        })?
                    }
                };
                self.apply_push(&site, action, event.seq).await
            }
            other => {
                tracing::debug!(event = %event.event, kind = ?other, "event kind not synced yet");
                Ok(())
            }
        }
    }

    async fn apply_push(&self, site: &Site, action: PushAction, seq: i64) -> Result<(), JobError> {
        match action {
            PushAction::Nothing => Ok(()),
            PushAction::DeleteBranch {
                repository_id,
                branch_id,
            } => Ok(self
                .jira
                .delete_branch(site, &repository_id, &branch_id, seq)
                .await?),
            PushAction::Store(request) => {
                let result = self.jira.store_devinfo(site, &request).await?;
                if result.has_failures() {
                    // Jira stored the rest; entities it refused will be refused again, so no retry.
                    tracing::warn!(failed = %result.failed_devinfo_entities, "Jira refused some entities");
                }
                if !result.unknown_issue_keys.is_empty() {
                    tracing::info!(keys = ?result.unknown_issue_keys, "issue keys unknown to Jira");
                }
                Ok(())
            }
        }
    }
}
