//! `link` and `unlink`: the command-line side of `gfj_sync::linking`.

use gfj_store::Store;
use gfj_store::installations::Installation;
use gfj_sync::linking::{self, GitLabCredentials, Linker};

pub use gfj_sync::linking::LinkedSubscription;

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

impl From<HookMode> for linking::HookMode {
    fn from(m: HookMode) -> Self {
        match m {
            HookMode::Auto => linking::HookMode::Auto,
            HookMode::Group => linking::HookMode::Group,
            HookMode::Project => linking::HookMode::Project,
        }
    }
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

pub(crate) async fn site(store: &Store, site: &str) -> anyhow::Result<Installation> {
    store.find_installation(site).await?.ok_or_else(|| {
        anyhow::anyhow!(
            "no Jira site {site:?} is installed (give its clientKey or base URL; see `sites list`)"
        )
    })
}

pub async fn link(
    settings: &Settings,
    store: &Store,
    req: LinkRequest,
    now_ms: i64,
) -> anyhow::Result<LinkedSubscription> {
    let install = site(store, &req.site).await?;
    let access = settings.gitlab_access();
    let linker = Linker {
        store,
        access: &access,
        base_url: &settings.base_url,
    };
    let credentials = match req.gitlab_connection {
        Some(id) => GitLabCredentials::AdminConnection(id),
        None => GitLabCredentials::Token(req.gitlab_token.clone()),
    };
    let linked = linker
        .link(
            linking::LinkRequest {
                install: &install,
                group: &req.group,
                gitlab_url: &req.gitlab_url,
                credentials,
                hook_mode: req.hook_mode.into(),
            },
            now_ms,
        )
        .await?;
    Ok(linked)
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
    let access = settings.gitlab_access();
    let linker = Linker {
        store,
        access: &access,
        base_url: &settings.base_url,
    };
    Ok(linker.unlink(&sub, now_ms).await?)
}
