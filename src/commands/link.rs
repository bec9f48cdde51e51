//! `link` and `unlink`: connect a GitLab group to a Jira site, registering webhooks.

use gfj_core::jobs::{CleanupScope, JiraCleanup};
use gfj_core::url_pattern::normalize_base_url;
use gfj_gitlab_client::{GitLabClient, GitLabError, HookScope, MAINTAINER};
use gfj_store::Store;
use gfj_store::installations::Installation;
use gfj_store::subscriptions::{Hook, NewSubscription};
use gfj_sync::handlers::queue_jira_cleanup;
use gfj_sync::hooks::{HookSecrets, webhook_url};
use serde::Serialize;

use crate::Settings;

/// How webhooks are registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum HookMode {
    /// A group hook when GitLab allows it (Premium, Owner), else one hook per project.
    Auto,
    /// One group hook (GitLab Premium; the token's user must be Owner).
    Group,
    /// One hook per project of the group and its subgroups (any tier; Maintainer).
    Project,
}

pub struct LinkRequest {
    pub site: String,
    pub group: String,
    pub gitlab_url: String,
    /// Ignored when `gitlab_connection` is given.
    pub gitlab_token: String,
    /// Act as this OAuth sign-in instead of a token.
    pub gitlab_connection: Option<i64>,
    pub hook_mode: HookMode,
}

/// What `link` prints.
#[derive(Debug, Serialize)]
pub struct LinkedSubscription {
    pub id: i64,
    pub site: String,
    pub jira_url: String,
    pub gitlab_url: String,
    pub group_id: i64,
    pub group_path: String,
    pub hook_mode: String,
    pub hooks: Vec<Hook>,
    pub created_at: i64,
}

pub(crate) async fn site(store: &Store, site: &str) -> anyhow::Result<Installation> {
    store.find_installation(site).await?.ok_or_else(|| {
        anyhow::anyhow!(
            "no Jira site {site:?} is installed (give its clientKey or base URL; see `sites list`)"
        )
    })
}

fn gitlab(settings: &Settings, url: &str, token: &str) -> anyhow::Result<GitLabClient> {
    anyhow::ensure!(
        settings.gitlab_urls.allows(url),
        "{url} is not in GFJ_GITLAB_URLS"
    );
    Ok(GitLabClient::new(
        gfj_gitlab_client::http_client(),
        url,
        token,
    ))
}

pub async fn link(
    settings: &Settings,
    store: &Store,
    req: LinkRequest,
    now_ms: i64,
) -> anyhow::Result<LinkedSubscription> {
    let install = site(store, &req.site).await?;
    let gitlab_url = normalize_base_url(&req.gitlab_url);
    let client = match req.gitlab_connection {
        None => gitlab(settings, &gitlab_url, &req.gitlab_token)?,
        Some(id) => {
            let (client, conn) = settings
                .gitlab_access()
                .client_for_connection(store, id, now_ms)
                .await?;
            anyhow::ensure!(
                conn.gitlab_url == gitlab_url,
                "GitLab sign-in {id} is for {}, not {gitlab_url}",
                conn.gitlab_url
            );
            client
        }
    };
    let user = client.current_user().await.map_err(|e| match e {
        GitLabError::Unauthorized => anyhow::anyhow!("GitLab at {gitlab_url} rejected the token"),
        e => anyhow::anyhow!("GitLab at {gitlab_url}: {e}"),
    })?;
    let group = match client.group(&req.group).await {
        Ok(g) => g,
        Err(GitLabError::NotFound(_)) => return Err(not_a_group(&client, &req.group).await),
        Err(e) => anyhow::bail!("GitLab: {e}"),
    };
    if !user.is_admin {
        let level = client
            .group_member(group.id, user.id)
            .await?
            .map(|m| m.access_level)
            .unwrap_or(0);
        anyhow::ensure!(
            level >= MAINTAINER,
            "{} has access level {level} on {}; linking needs Maintainer (40) or higher",
            user.username,
            group.full_path
        );
    }
    if let Some(existing) = store
        .find_subscription(&install.client_key, &group.full_path)
        .await?
    {
        anyhow::bail!(
            "{} is already linked to {} (subscription {})",
            group.full_path,
            install.base_url,
            existing.id
        );
    }
    let secrets = HookSecrets::fresh().map_err(|e| anyhow::anyhow!("random token: {e}"))?;
    let hook_url = webhook_url(&settings.base_url);
    let (mode, hooks, signed) =
        register_hooks(&client, req.hook_mode, group.id, &hook_url, &secrets).await?;
    let new = NewSubscription {
        client_key: install.client_key.clone(),
        gitlab_url: gitlab_url.clone(),
        group_id: group.id,
        group_path: group.full_path.clone(),
        gitlab_token: if req.gitlab_connection.is_some() {
            String::new()
        } else {
            req.gitlab_token.clone()
        },
        webhook_token: secrets.token.clone(),
        hook_mode: mode.to_owned(),
        hooks: hooks.clone(),
        webhook_signing_secret: secrets.signing_secret.clone().filter(|_| signed),
        gitlab_connection_id: req.gitlab_connection,
    };
    let sub = match store.create_subscription(&new, now_ms).await {
        Ok(s) => s,
        Err(e) => {
            remove_hooks(&client, &hooks).await;
            return Err(e.into());
        }
    };
    // The history follows as jobs; a link whose backfill could not be queued still works live, and
    // `resync` queues it again.
    if let Err(e) = gfj_sync::backfill::queue_backfill_plan(store, sub.id, now_ms).await {
        tracing::warn!(subscription = sub.id, error = %e, "backfill not queued; run resync");
    }
    Ok(LinkedSubscription {
        id: sub.id,
        site: install.client_key,
        jira_url: install.base_url,
        gitlab_url,
        group_id: group.id,
        group_path: group.full_path,
        hook_mode: sub.hook_mode,
        hooks,
        created_at: sub.created_at,
    })
}

/// Explains why a path that is not a group cannot be linked.
async fn not_a_group(client: &GitLabClient, path: &str) -> anyhow::Error {
    if client.namespace_kind(path).await.ok().flatten().as_deref() == Some("user") {
        return anyhow::anyhow!(
            "{path} is a personal namespace; only groups and subgroups can be linked"
        );
    }
    if client.project_exists(path).await.unwrap_or(false) {
        return anyhow::anyhow!("{path} is a project; only groups and subgroups can be linked");
    }
    anyhow::anyhow!("group {path} not found, or not visible to this token")
}

/// Registers the hooks; also says whether GitLab kept the signing secret on every one of them.
async fn register_hooks(
    client: &GitLabClient,
    mode: HookMode,
    group_id: i64,
    url: &str,
    secrets: &HookSecrets,
) -> anyhow::Result<(&'static str, Vec<Hook>, bool)> {
    if mode != HookMode::Project {
        match secrets
            .register(client, HookScope::Group, group_id, url)
            .await
        {
            Ok(h) => {
                return Ok((
                    "group",
                    vec![Hook {
                        scope: "group".into(),
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
                anyhow::bail!(
                    "GitLab refused the group hook: it needs the Owner role on the group (or use --hook-mode project)"
                )
            }
            Err(GitLabError::NotFound(_)) => {
                anyhow::bail!(
                    "GitLab refused the group hook: group webhooks need GitLab Premium (or use --hook-mode project)"
                )
            }
            Err(e) => anyhow::bail!("GitLab: {e}"),
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
                    scope: "project".into(),
                    target_id: p.id,
                    hook_id: h.id,
                })
            }
            Err(e) => {
                remove_hooks(client, &hooks).await;
                anyhow::bail!(
                    "could not add a webhook to project {}: {e}",
                    p.path_with_namespace
                );
            }
        }
    }
    let signed = signed && !hooks.is_empty();
    Ok(("project", hooks, signed))
}

async fn remove_hooks(client: &GitLabClient, hooks: &[Hook]) -> Vec<String> {
    let mut failures = Vec::new();
    for h in hooks {
        if let Err(e) = client
            .delete_hook(HookScope::parse(&h.scope), h.target_id, h.hook_id)
            .await
        {
            failures.push(format!(
                "{} {} hook {}: {e}",
                h.scope, h.target_id, h.hook_id
            ));
        }
    }
    failures
}

/// Removes the subscription after removing the webhooks it registered. When a webhook cannot be removed,
/// nothing is deleted, so that the command can be run again.
pub async fn unlink(
    settings: &Settings,
    store: &Store,
    site_ref: &str,
    group: &str,
    now_ms: i64,
) -> anyhow::Result<usize> {
    let install = site(store, site_ref).await?;
    let sub = store
        .find_subscription(&install.client_key, group)
        .await?
        .ok_or_else(|| anyhow::anyhow!("{group} is not linked to {}", install.base_url))?;
    let hooks = store.subscription_hooks(sub.id).await?;
    let client = settings
        .gitlab_access()
        .client_for(store, &sub, now_ms)
        .await?;
    let failures = remove_hooks(&client, &hooks).await;
    anyhow::ensure!(
        failures.is_empty(),
        "could not remove webhooks: {}",
        failures.join("; ")
    );
    // What the subscription sent leaves Jira too; queued, so that a Jira outage only delays it.
    let cleanup = JiraCleanup {
        client_key: sub.client_key.clone(),
        scope: CleanupScope::Subscription {
            subscription_id: sub.id,
        },
    };
    queue_jira_cleanup(store, &cleanup, now_ms).await?;
    store.delete_subscription(sub.id).await?;
    Ok(hooks.len())
}
