//! Acting in GitLab for a subscription: with its stored access token, or as the GitLab user who signed
//! in with OAuth. OAuth pairs are refreshed shortly before they expire and the rotated pair is persisted
//! (compare-and-swap) before it is used, so a crash never strands a revoked refresh token.

use std::collections::HashMap;

use gfj_core::url_pattern::UrlAllowList;
use gfj_gitlab_client::GitLabClient;
use gfj_gitlab_client::oauth::{self, OAuthApp, OAuthTokens};
use gfj_store::Store;
use gfj_store::gitlab_connections::GitLabConnection;
use gfj_store::subscriptions::Subscription;

use crate::JobError;

/// How GitLab is reached: one HTTP client, the allow-list, and the OAuth apps per instance.
#[derive(Clone)]
pub struct GitLabAccess {
    pub http: reqwest::Client,
    pub urls: UrlAllowList,
    pub oauth_apps: Vec<OAuthApp>,
    /// One refresh at a time per sign-in in this process: GitLab rotates the refresh token, so two
    /// concurrent refreshes with the same one would see the second refused.
    pub refreshing: RefreshLocks,
}

/// Per GitLab sign-in, the lock its refreshes take.
#[derive(Clone, Default)]
pub struct RefreshLocks(
    std::sync::Arc<std::sync::Mutex<HashMap<i64, std::sync::Arc<tokio::sync::Mutex<()>>>>>,
);

impl RefreshLocks {
    fn of(&self, connection_id: i64) -> std::sync::Arc<tokio::sync::Mutex<()>> {
        self.0
            .lock()
            .unwrap()
            .entry(connection_id)
            .or_default()
            .clone()
    }
}

impl GitLabAccess {
    /// The OAuth application registered for an instance (`GFJ_GITLAB_OAUTH_APPS`).
    pub fn app_for(&self, gitlab_url: &str) -> Option<&OAuthApp> {
        self.oauth_apps.iter().find(|a| a.gitlab_url == gitlab_url)
    }

    /// The canonical origin of `gitlab_url` when `GFJ_GITLAB_URLS` allows it: the only form a client is
    /// made for, so what is called is what was checked.
    fn allowed(&self, gitlab_url: &str) -> Result<String, JobError> {
        self.urls
            .allowed_origin(gitlab_url)
            .ok_or_else(|| JobError::Permanent(format!("{gitlab_url} is not in GFJ_GITLAB_URLS")))
    }

    /// A client acting for the subscription.
    pub async fn client_for(
        &self,
        store: &Store,
        sub: &Subscription,
        now_ms: i64,
    ) -> Result<GitLabClient, JobError> {
        let origin = self.allowed(&sub.gitlab_url)?;
        match sub.gitlab_connection_id {
            Some(id) => Ok(self.client_for_connection(store, id, now_ms).await?.0),
            None => {
                let token = store.subscription_gitlab_token(sub).await?;
                Ok(GitLabClient::new(self.http.clone(), &origin, &token))
            }
        }
    }

    /// A client acting as a signed-in GitLab user, refreshing the pair first when it is about to expire.
    pub async fn client_for_connection(
        &self,
        store: &Store,
        connection_id: i64,
        now_ms: i64,
    ) -> Result<(GitLabClient, GitLabConnection), JobError> {
        let lock = self.refreshing.of(connection_id);
        let _one_refresh_at_a_time = lock.lock().await;
        let (conn, stored) = store
            .gitlab_connection(connection_id)
            .await?
            .ok_or_else(|| {
                JobError::Permanent(format!(
                    "GitLab sign-in {connection_id} no longer exists; sign in again"
                ))
            })?;
        let origin = self.allowed(&conn.gitlab_url)?;
        let tokens: OAuthTokens = serde_json::from_str(&stored.tokens)
            .map_err(|e| JobError::Permanent(format!("unreadable GitLab sign-in: {e}")))?;
        let tokens = if tokens.needs_refresh(now_ms) {
            let app = self.app_for(&conn.gitlab_url).ok_or_else(|| {
                JobError::Permanent(format!(
                    "no OAuth application for {} in GFJ_GITLAB_OAUTH_APPS",
                    conn.gitlab_url
                ))
            })?;
            match oauth::refresh(&self.http, app, &tokens, now_ms).await {
                Ok(fresh) => {
                    let json = serde_json::to_string(&fresh).expect("tokens serialise");
                    if store
                        .swap_gitlab_connection_tokens(&conn, &stored, &json, now_ms)
                        .await?
                    {
                        tracing::info!(connection = conn.id, user = %conn.username, "refreshed the GitLab sign-in");
                        fresh
                    } else {
                        // Cannot happen with GitLab's rotation (the loser's refresh fails), but if it
                        // did, the stored pair is the one GitLab knows about.
                        return Err(JobError::Retry {
                            message: "GitLab sign-in was refreshed concurrently".into(),
                            after_ms: Some(0),
                        });
                    }
                }
                Err(gfj_gitlab_client::GitLabError::OAuthRejected(reason)) => {
                    // Another process may have rotated the pair first; its pair is then stored.
                    let again = store.gitlab_connection(connection_id).await?;
                    if again.is_some_and(|(_, t)| t.tokens != stored.tokens) {
                        return Err(JobError::Retry {
                            message: "GitLab sign-in was refreshed by another process".into(),
                            after_ms: Some(0),
                        });
                    }
                    return Err(JobError::Permanent(format!(
                        "GitLab refused to refresh the sign-in of {} ({reason}); sign in again",
                        conn.username
                    )));
                }
                Err(e) => return Err(e.into()),
            }
        } else {
            tokens
        };
        Ok((
            GitLabClient::new(self.http.clone(), &origin, &tokens.access_token),
            conn,
        ))
    }
}
