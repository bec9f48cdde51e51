//! What an uninstalled Jira site leaves in GitLab: its subscriptions' hooks, removed with the
//! credentials kept for it, and its users' GitLab sign-ins, revoked at GitLab once nothing else uses
//! them. Queued jobs, so that a GitLab outage delays this without losing it.

use gfj_core::jobs::{GitlabSignOut, GitlabTeardown};
use gfj_gitlab_client::oauth::{self, OAuthTokens};
use gfj_gitlab_client::{GitLabClient, GitLabError};

use crate::JobError;
use crate::context::Handlers;

impl Handlers {
    pub(crate) async fn tear_down(&self, job: &GitlabTeardown) -> Result<(), JobError> {
        let Some(t) = self.store.teardown(job.teardown_id).await? else {
            return Ok(()); // done by an earlier run
        };
        let client = if !self.gitlab.urls.allows(&t.gitlab_url) {
            tracing::warn!(gitlab = %t.gitlab_url, "not in GFJ_GITLAB_URLS any more; its hooks stay");
            None
        } else if let Some(id) = t.gitlab_connection_id {
            match self
                .gitlab
                .client_for_connection(&self.store, id, self.clock.now_ms())
                .await
            {
                Ok((client, _)) => Some(client),
                Err(JobError::Permanent(why)) => {
                    tracing::warn!(subscription = t.subscription_id, reason = %why, "GitLab sign-in unusable; hooks left in GitLab");
                    None
                }
                Err(e) => return Err(e),
            }
        } else {
            t.gitlab_token
                .as_deref()
                .map(|token| GitLabClient::new(self.gitlab.http.clone(), &t.gitlab_url, token))
        };
        if let Some(client) = client {
            for h in &t.hooks {
                match client.delete_hook(h.scope, h.target_id, h.hook_id).await {
                    Ok(()) => {}
                    // The credentials lost their rights: nothing this service can still do.
                    Err(e @ (GitLabError::Unauthorized | GitLabError::Forbidden(_))) => {
                        tracing::warn!(subscription = t.subscription_id, hook = h.hook_id, error = %e, "hook not removed from GitLab");
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        tracing::info!(
            subscription = t.subscription_id,
            hooks = t.hooks.len(),
            "hooks of an uninstalled site's subscription removed"
        );
        self.store.finish_teardown(t.id).await?;
        if let Some(id) = t.gitlab_connection_id {
            self.sign_out(&GitlabSignOut { connection_id: id }).await?;
        }
        Ok(())
    }

    /// Revokes a GitLab sign-in at GitLab and forgets it, unless something still uses it.
    pub(crate) async fn sign_out(&self, job: &GitlabSignOut) -> Result<(), JobError> {
        let id = job.connection_id;
        if self.store.gitlab_connection_in_use(id).await? {
            return Ok(());
        }
        let Some((conn, stored)) = self.store.gitlab_connection(id).await? else {
            return Ok(());
        };
        let app = self
            .gitlab
            .app_for(&conn.gitlab_url)
            .filter(|_| self.gitlab.urls.allows(&conn.gitlab_url));
        match (app, serde_json::from_str::<OAuthTokens>(&stored.tokens)) {
            (Some(app), Ok(tokens)) => {
                // The refresh token first: GitLab revokes the pair, and a stolen refresh token is the
                // one that would mint new access tokens.
                oauth::revoke(&self.gitlab.http, app, &tokens.refresh_token).await?;
                oauth::revoke(&self.gitlab.http, app, &tokens.access_token).await?;
            }
            _ => tracing::warn!(
                connection = id,
                gitlab = %conn.gitlab_url,
                "no OAuth application for this GitLab (or unreadable tokens); sign-in forgotten without revoking"
            ),
        }
        if self.store.delete_unused_gitlab_connection(id).await? {
            tracing::info!(connection = id, user = %conn.username, "GitLab sign-in revoked and forgotten");
        }
        Ok(())
    }
}
