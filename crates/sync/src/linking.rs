//! Linking a GitLab group to a Jira site, and unlinking it: the one implementation behind the `link` and
//! `unlink` commands, the Jira configuration page and the admin page.
//!
//! Linking checks the GitLab user's role on the group (Maintainer or higher), refuses projects and
//! personal namespaces, registers webhooks (one group hook, or one per project of the group and its
//! subgroups) with fresh secrets, stores the subscription and queues the backfill. A failure after some
//! hooks were created removes them again. Unlinking removes the hooks first (and stops if GitLab will
//! not), then queues the deletion from Jira of what the subscription sent, then forgets it.

use gfj_core::jobs::{CleanupScope, JiraCleanup};
use gfj_gitlab_client::{GitLabClient, GitLabError, HookScope, MAINTAINER};
use gfj_store::installations::Installation;
use gfj_store::subscriptions::{Hook, NewSubscription, Subscription};
use gfj_store::{Store, StoreError};
use serde::Serialize;

use crate::JobError;
use crate::gitlab_access::GitLabAccess;
use crate::hooks::{HookSecrets, webhook_url};
use crate::jira_out::queue_jira_cleanup;

pub use gfj_core::domain::HookMode;

/// Who acts in GitLab for the subscription.
#[derive(Clone)]
pub enum GitLabCredentials {
    /// A personal, group or project access token.
    Token(String),
    /// A Jira user's own GitLab sign-in (OAuth; stored and refreshed), linking from the Jira page.
    Connection(i64),
    /// A GitLab sign-in made through the admin page's flow: the only kind the admin page and the command
    /// line may link with, so an operator never acts as a GitLab user who signed in for a Jira user.
    AdminConnection(i64),
}

/// Never prints the token: requests are logged and shown in errors.
impl std::fmt::Debug for GitLabCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Token(_) => f.write_str("Token(<redacted>)"),
            Self::Connection(id) => f.debug_tuple("Connection").field(id).finish(),
            Self::AdminConnection(id) => f.debug_tuple("AdminConnection").field(id).finish(),
        }
    }
}

pub struct LinkRequest<'a> {
    pub install: &'a Installation,
    /// Full path of the group or subgroup.
    pub group: &'a str,
    pub gitlab_url: &'a str,
    pub credentials: GitLabCredentials,
    pub hook_mode: HookMode,
}

/// A linked group, as `link` prints it and the pages show it.
#[derive(Debug, Clone, Serialize)]
pub struct LinkedSubscription {
    pub id: i64,
    pub site: String,
    pub jira_url: String,
    pub gitlab_url: String,
    pub group_id: i64,
    pub group_path: String,
    /// Where its hooks live.
    pub hook_mode: HookScope,
    pub hooks: Vec<Hook>,
    pub created_at: i64,
}

/// Why a link or unlink did not happen; each says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("{0} is not in GFJ_GITLAB_URLS")]
    GitLabNotAllowed(String),
    #[error("GitLab at {0} rejected the token")]
    Unauthorized(String),
    /// A project, a personal namespace, or a group the user cannot see.
    #[error("{0}")]
    NotAGroup(String),
    #[error("{user} has access level {level} on {group}; linking needs Maintainer (40) or higher")]
    BelowMaintainer {
        user: String,
        level: i64,
        group: String,
    },
    #[error("{group} is already linked to {site} (subscription {id})")]
    AlreadyLinked {
        group: String,
        site: String,
        id: i64,
    },
    #[error("{0}")]
    Hooks(String),
    #[error("GitLab: {0}")]
    GitLab(#[from] GitLabError),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error(
        "GitLab sign-in {0} was not made through the admin page; sign in to GitLab from the admin page"
    )]
    NotAnAdminSignIn(i64),
    #[error("{0}")]
    Job(String),
}

impl From<JobError> for LinkError {
    fn from(e: JobError) -> Self {
        LinkError::Job(e.to_string())
    }
}

/// What linking needs from the service.
pub struct Linker<'a> {
    pub store: &'a Store,
    pub access: &'a GitLabAccess,
    /// `GFJ_BASE_URL`: GitLab delivers webhooks there.
    pub base_url: &'a str,
}

impl Linker<'_> {
    async fn client(
        &self,
        gitlab_url: &str,
        credentials: &GitLabCredentials,
        now_ms: i64,
    ) -> Result<GitLabClient, LinkError> {
        if !self.access.urls.allows(gitlab_url) {
            return Err(LinkError::GitLabNotAllowed(gitlab_url.to_owned()));
        }
        match credentials {
            GitLabCredentials::Token(token) => Ok(GitLabClient::new(
                self.access.http.clone(),
                gitlab_url,
                token,
            )),
            GitLabCredentials::Connection(id) | GitLabCredentials::AdminConnection(id) => {
                let (client, conn) = self
                    .access
                    .client_for_connection(self.store, *id, now_ms)
                    .await?;
                if matches!(credentials, GitLabCredentials::AdminConnection(_)) && !conn.via_admin {
                    return Err(LinkError::NotAnAdminSignIn(*id));
                }
                if conn.gitlab_url != gitlab_url {
                    return Err(LinkError::Job(format!(
                        "GitLab sign-in {id} is for {}, not {gitlab_url}",
                        conn.gitlab_url
                    )));
                }
                Ok(client)
            }
        }
    }

    pub async fn link(
        &self,
        req: LinkRequest<'_>,
        now_ms: i64,
    ) -> Result<LinkedSubscription, LinkError> {
        let install = req.install;
        let gitlab_url = self
            .access
            .urls
            .allowed_origin(req.gitlab_url)
            .ok_or_else(|| LinkError::GitLabNotAllowed(req.gitlab_url.to_owned()))?;
        let client = self.client(&gitlab_url, &req.credentials, now_ms).await?;
        let user = client.current_user().await.map_err(|e| match e {
            GitLabError::Unauthorized => LinkError::Unauthorized(gitlab_url.clone()),
            e => LinkError::GitLab(e),
        })?;
        let group = match client.group(req.group).await {
            Ok(g) => g,
            Err(GitLabError::NotFound(_)) => return Err(not_a_group(&client, req.group).await),
            Err(e) => return Err(e.into()),
        };
        if !user.is_admin {
            let level = client
                .group_member(group.id, user.id)
                .await?
                .map(|m| m.access_level)
                .unwrap_or(0);
            if level < MAINTAINER {
                return Err(LinkError::BelowMaintainer {
                    user: user.username,
                    level,
                    group: group.full_path,
                });
            }
        }
        if let Some(existing) = self
            .store
            .find_subscription(&install.client_key, &group.full_path)
            .await?
        {
            return Err(LinkError::AlreadyLinked {
                group: group.full_path,
                site: install.base_url.clone(),
                id: existing.id,
            });
        }
        let secrets =
            HookSecrets::fresh().map_err(|e| LinkError::Hooks(format!("random token: {e}")))?;
        let hook_url = webhook_url(self.base_url);
        let (mode, hooks, signed) =
            register_hooks(&client, req.hook_mode, group.id, &hook_url, &secrets).await?;
        let (gitlab_token, gitlab_connection_id) = match &req.credentials {
            GitLabCredentials::Token(t) => (t.clone(), None),
            GitLabCredentials::Connection(id) | GitLabCredentials::AdminConnection(id) => {
                (String::new(), Some(*id))
            }
        };
        let new = NewSubscription {
            client_key: install.client_key.clone(),
            gitlab_url: gitlab_url.clone(),
            group_id: group.id,
            group_path: group.full_path.clone(),
            gitlab_token,
            webhook_token: secrets.token.clone(),
            hook_mode: mode,
            hooks: hooks.clone(),
            webhook_signing_secret: secrets.signing_secret.clone().filter(|_| signed),
            gitlab_connection_id,
        };
        let sub = match self.store.create_subscription(&new, now_ms).await {
            Ok(s) => s,
            Err(e) => {
                remove_hooks(&client, &hooks).await;
                return Err(e.into());
            }
        };
        // The history follows as jobs; a link whose backfill could not be queued still works live, and
        // `resync` queues it again.
        if let Err(e) = crate::backfill::queue_backfill_plan(self.store, sub.id, now_ms).await {
            tracing::warn!(subscription = sub.id, error = %e, "backfill not queued; run resync");
        }
        Ok(LinkedSubscription {
            id: sub.id,
            site: install.client_key.clone(),
            jira_url: install.base_url.clone(),
            gitlab_url,
            group_id: group.id,
            group_path: group.full_path,
            hook_mode: sub.hook_mode,
            hooks,
            created_at: sub.created_at,
        })
    }

    /// Removes the subscription after removing the webhooks it registered. When a webhook cannot be
    /// removed, nothing is deleted, so that it can be tried again. Returns how many hooks went.
    pub async fn unlink(&self, sub: &Subscription, now_ms: i64) -> Result<usize, LinkError> {
        let hooks = self.store.subscription_hooks(sub.id).await?;
        let client = self.access.client_for(self.store, sub, now_ms).await?;
        let failures = remove_hooks(&client, &hooks).await;
        if !failures.is_empty() {
            return Err(LinkError::Hooks(format!(
                "could not remove webhooks: {}",
                failures.join("; ")
            )));
        }
        // What the subscription sent leaves Jira too; queued, so that a Jira outage only delays it.
        let cleanup = JiraCleanup {
            client_key: sub.client_key.clone(),
            scope: CleanupScope::Subscription {
                subscription_id: sub.id,
            },
        };
        queue_jira_cleanup(self.store, &cleanup, now_ms).await?;
        self.store.delete_subscription(sub.id).await?;
        Ok(hooks.len())
    }
}

/// Explains why a path that is not a group cannot be linked.
async fn not_a_group(client: &GitLabClient, path: &str) -> LinkError {
    if client.namespace_kind(path).await.ok().flatten().as_deref() == Some("user") {
        return LinkError::NotAGroup(format!(
            "{path} is a personal namespace; only groups and subgroups can be linked"
        ));
    }
    if client.project_exists(path).await.unwrap_or(false) {
        return LinkError::NotAGroup(format!(
            "{path} is a project; only groups and subgroups can be linked"
        ));
    }
    LinkError::NotAGroup(format!(
        "group {path} not found, or not visible to this GitLab user"
    ))
}

/// Registers the hooks; also says whether GitLab kept the signing secret on every one of them.
async fn register_hooks(
    client: &GitLabClient,
    mode: HookMode,
    group_id: i64,
    url: &str,
    secrets: &HookSecrets,
) -> Result<(HookScope, Vec<Hook>, bool), LinkError> {
    if mode != HookMode::Project {
        match secrets
            .register(client, HookScope::Group, group_id, url)
            .await
        {
            Ok(h) => {
                return Ok((
                    HookScope::Group,
                    vec![Hook {
                        scope: HookScope::Group,
                        target_id: group_id,
                        hook_id: h.id,
                    }],
                    h.signing_token_present,
                ));
            }
            Err(e @ (GitLabError::Forbidden(_) | GitLabError::NotFound(_)))
                if mode == HookMode::Auto =>
            {
                tracing::info!(reason = %e, "group hook refused; registering one hook per project");
            }
            Err(GitLabError::Forbidden(_)) => {
                return Err(LinkError::Hooks(
                    "GitLab refused the group hook: it needs the Owner role on the group (or use --hook-mode project)".into(),
                ));
            }
            Err(GitLabError::NotFound(_)) => {
                return Err(LinkError::Hooks(
                    "GitLab refused the group hook: group webhooks need GitLab Premium (or use --hook-mode project)".into(),
                ));
            }
            Err(e) => return Err(e.into()),
        }
    }
    let projects = client.group_projects(group_id).await?;
    let mut hooks = Vec::new();
    let mut signed = true;
    for p in projects {
        match secrets
            .register(client, HookScope::Project, p.id, url)
            .await
        {
            Ok(h) => {
                signed &= h.signing_token_present;
                hooks.push(Hook {
                    scope: HookScope::Project,
                    target_id: p.id,
                    hook_id: h.id,
                })
            }
            Err(e) => {
                remove_hooks(client, &hooks).await;
                return Err(LinkError::Hooks(format!(
                    "could not add a webhook to project {}: {e}",
                    p.path_with_namespace
                )));
            }
        }
    }
    let signed = signed && !hooks.is_empty();
    Ok((HookScope::Project, hooks, signed))
}

async fn remove_hooks(client: &GitLabClient, hooks: &[Hook]) -> Vec<String> {
    let mut failures = Vec::new();
    for h in hooks {
        if let Err(e) = client.delete_hook(h.scope, h.target_id, h.hook_id).await {
            failures.push(format!(
                "{} {} hook {}: {e}",
                h.scope, h.target_id, h.hook_id
            ));
        }
    }
    failures
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_print_without_their_token() {
        let printed = format!("{:?}", GitLabCredentials::Token("glpat-secret".into()));
        assert!(!printed.contains("glpat-secret"), "{printed}");
        assert_eq!(
            format!("{:?}", GitLabCredentials::AdminConnection(7)),
            "AdminConnection(7)"
        );
    }
}
