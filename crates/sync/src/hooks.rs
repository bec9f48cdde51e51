//! Keeping a subscription's GitLab webhooks healthy. GitLab auto-disables a hook after failed
//! deliveries, a user may delete it, and in project-hook mode no webhook announces a new project. A
//! periodic `hook_check` job per subscription notices each case, repairs it, and records the window
//! whose events GitLab may not have delivered (a gap) for reconciliation.

use std::collections::HashSet;

use gfj_core::domain::HookState;
use gfj_core::jobs::{CleanupScope, HookCheck, JiraCleanup, Job};
use gfj_gitlab_client::{GitLabClient, GitLabError, HookInfo, HookScope};
use gfj_store::subscriptions::{Hook, Subscription};
use gfj_store::{Store, StoreError};

use crate::JobError;
use crate::context::Handlers;
use crate::jira_out::queue_jira_cleanup;

/// Where GitLab delivers webhooks, given `GFJ_BASE_URL`.
pub fn webhook_url(base_url: &str) -> String {
    format!("{}/gitlab/webhook", base_url.trim_end_matches('/'))
}

/// The secrets a subscription's hooks are registered with: the `X-Gitlab-Token`, and a Standard
/// Webhooks signing secret that only the newest GitLab keeps.
pub struct HookSecrets {
    pub token: String,
    pub signing_secret: Option<String>,
}

impl HookSecrets {
    pub fn fresh() -> Result<Self, getrandom::Error> {
        let mut token = [0u8; 32];
        let mut signing = [0u8; 32];
        getrandom::fill(&mut token)?;
        getrandom::fill(&mut signing)?;
        Ok(Self {
            token: gfj_core::qsh::hex(&token),
            signing_secret: Some(gfj_core::standard_webhooks::format_secret(&signing)),
        })
    }

    /// Registers a hook with our events and these secrets.
    pub async fn register(
        &self,
        client: &GitLabClient,
        scope: HookScope,
        target_id: i64,
        url: &str,
    ) -> Result<HookInfo, GitLabError> {
        client
            .create_hook(
                scope,
                target_id,
                url,
                &self.token,
                self.signing_secret.as_deref(),
            )
            .await
    }
}

/// A hook check's hold on its subscription's lock, renewed while it runs: a check whose replica dies
/// frees it within this.
const HOOK_CHECK_LOCK_MS: i64 = 30_000;

/// Queues one `hook_check` per subscription for the current interval.
pub async fn schedule_hook_checks(
    store: &Store,
    now_ms: i64,
    interval_ms: i64,
) -> Result<u64, StoreError> {
    crate::queue_per_subscription(store, now_ms, interval_ms, |subscription_id, interval| {
        Job::HookCheck(HookCheck {
            subscription_id,
            interval,
        })
    })
    .await
}

impl Handlers {
    pub(crate) async fn check_hooks(&self, check: &HookCheck) -> Result<(), JobError> {
        // One check of a subscription at a time across all replicas: two would each register a
        // missing hook, and the one not recorded would deliver twice, never to be removed.
        let name = format!("hook_check:{}", check.subscription_id);
        match self
            .while_locked(&name, HOOK_CHECK_LOCK_MS, self.check_hooks_locked(check))
            .await?
        {
            Some(checked) => checked,
            None => {
                tracing::info!(
                    subscription = check.subscription_id,
                    "hook check skipped: another worker is checking this subscription's hooks"
                );
                Ok(())
            }
        }
    }

    async fn check_hooks_locked(&self, check: &HookCheck) -> Result<(), JobError> {
        let Some(sub) = self.store.subscription(check.subscription_id).await? else {
            return Ok(());
        };
        let client = self
            .gitlab
            .client_for(&self.store, &sub, self.clock.now_ms())
            .await?;
        let secrets =
            self.store
                .subscription_hook_secrets(&sub)
                .await?
                .map(|(token, signing_secret)| HookSecrets {
                    token,
                    signing_secret,
                });
        if sub.hook_mode == HookScope::Project {
            self.follow_group_projects(&sub, &client, secrets.as_ref())
                .await?;
        }
        for status in self.store.subscription_hook_status(sub.id).await? {
            let since = status.checked_at.unwrap_or(sub.created_at);
            self.check_hook(&sub, &client, secrets.as_ref(), &status.hook, since)
                .await?;
        }
        Ok(())
    }

    /// Project-hook mode: hooks projects that joined the group (or a subgroup) and forgets those that
    /// left. A new project's history is backfilled.
    async fn follow_group_projects(
        &self,
        sub: &Subscription,
        client: &GitLabClient,
        secrets: Option<&HookSecrets>,
    ) -> Result<(), JobError> {
        let projects = client.group_projects(sub.group_id).await?;
        self.plan_projects(sub, &projects, self.clock.now_ms())
            .await?;
        let hooked: Vec<Hook> = self
            .store
            .subscription_hooks(sub.id)
            .await?
            .into_iter()
            .filter(|h| h.scope == HookScope::Project)
            .collect();
        let current: HashSet<i64> = projects.iter().map(|p| p.id).collect();
        for p in projects
            .iter()
            .filter(|p| !hooked.iter().any(|h| h.target_id == p.id))
        {
            let Some(secrets) = secrets else {
                tracing::warn!(subscription = sub.id, project = %p.path_with_namespace,
                    "new project not hooked: this subscription predates stored hook secrets; link the group again");
                continue;
            };
            let info = secrets
                .register(client, HookScope::Project, p.id, &self.webhook_url)
                .await?;
            let now = self.clock.now_ms();
            let hook = Hook {
                scope: HookScope::Project,
                target_id: p.id,
                hook_id: info.id,
            };
            self.store.put_subscription_hook(sub.id, &hook, now).await?;
            tracing::info!(subscription = sub.id, project = %p.path_with_namespace, "hooked a new project of the group");
        }
        for h in hooked.iter().filter(|h| !current.contains(&h.target_id)) {
            let gone = &h.target_id;
            match client
                .delete_hook(HookScope::Project, h.target_id, h.hook_id)
                .await
            {
                Ok(()) | Err(GitLabError::Forbidden(_)) => {}
                Err(e) => return Err(e.into()),
            }
            self.store
                .remove_subscription_hook(sub.id, HookScope::Project, *gone)
                .await?;
            let cleanup = JiraCleanup {
                client_key: sub.client_key.clone(),
                scope: CleanupScope::Project { project_id: *gone },
            };
            queue_jira_cleanup(&self.store, &cleanup, self.clock.now_ms()).await?;
            tracing::info!(
                subscription = sub.id,
                project = gone,
                "project left the group; its hook is removed and its data deleted from Jira"
            );
        }
        Ok(())
    }

    async fn check_hook(
        &self,
        sub: &Subscription,
        client: &GitLabClient,
        secrets: Option<&HookSecrets>,
        hook: &Hook,
        healthy_since: i64,
    ) -> Result<(), JobError> {
        let scope = hook.scope;
        let seen = client.hook(scope, hook.target_id, hook.hook_id).await?;
        let now = self.clock.now_ms();
        match seen {
            Some(info) if !info.is_disabled() => {
                self.store
                    .set_hook_state(sub.id, hook, HookState::Ok, now)
                    .await?;
            }
            Some(info) => {
                // GitLab re-enables an auto-disabled hook when a test delivery succeeds.
                tracing::warn!(subscription = sub.id, scope = %hook.scope, target = hook.target_id,
                    alert_status = ?info.alert_status, disabled_until = ?info.disabled_until,
                    "GitLab disabled the webhook; re-enabling it");
                client
                    .test_hook(scope, hook.target_id, hook.hook_id)
                    .await?;
                let again = client.hook(scope, hook.target_id, hook.hook_id).await?;
                if again.as_ref().is_some_and(|h| !h.is_disabled()) {
                    self.store
                        .set_hook_state(sub.id, hook, HookState::Ok, now)
                        .await?;
                    self.store
                        .record_gap(
                            sub.id,
                            hook.scope,
                            hook.target_id,
                            healthy_since,
                            now,
                            "hook disabled by GitLab",
                        )
                        .await?;
                } else {
                    // Keep the old healthy time, so the gap covers everything once the hook is back.
                    self.store
                        .set_hook_state(sub.id, hook, HookState::Disabled, healthy_since)
                        .await?;
                    return Err(JobError::Retry {
                        message: "GitLab keeps the webhook disabled".into(),
                        after_ms: None,
                    });
                }
            }
            None => {
                let Some(secrets) = secrets else {
                    self.store
                        .set_hook_state(sub.id, hook, HookState::Missing, healthy_since)
                        .await?;
                    return Err(JobError::Permanent(
                        "webhook deleted in GitLab and this subscription predates stored hook secrets; link the group again".into(),
                    ));
                };
                match secrets
                    .register(client, scope, hook.target_id, &self.webhook_url)
                    .await
                {
                    Ok(info) => {
                        let restored = Hook {
                            hook_id: info.id,
                            ..hook.clone()
                        };
                        self.store
                            .put_subscription_hook(sub.id, &restored, now)
                            .await?;
                        self.store
                            .record_gap(
                                sub.id,
                                hook.scope,
                                hook.target_id,
                                healthy_since,
                                now,
                                "hook deleted in GitLab",
                            )
                            .await?;
                        tracing::warn!(subscription = sub.id, scope = %hook.scope, target = hook.target_id,
                            "webhook was deleted in GitLab; registered it again");
                    }
                    // The project itself is gone.
                    Err(GitLabError::NotFound(_)) if scope == HookScope::Project => {
                        self.store
                            .remove_subscription_hook(sub.id, hook.scope, hook.target_id)
                            .await?;
                    }
                    Err(e) => {
                        self.store
                            .set_hook_state(sub.id, hook, HookState::Missing, healthy_since)
                            .await?;
                        return Err(e.into());
                    }
                }
            }
        }
        Ok(())
    }
}
