//! Acting in GitLab for a subscription: with its stored access token, or as the GitLab user who signed
//! in with OAuth. OAuth pairs are refreshed shortly before they expire and the rotated pair is persisted
//! (compare-and-swap) before it is used, so a crash never strands a revoked refresh token.

use gfj_core::url_pattern::UrlAllowList;
use gfj_gitlab_client::GitLabClient;
use gfj_gitlab_client::oauth::{self, OAuthApp, OAuthTokens};
use gfj_store::Store;
use gfj_store::gitlab_connections::{ConnectionTokens, GitLabConnection};
use gfj_store::subscriptions::Subscription;

use crate::JobError;

/// How long a replica may hold a sign-in's refresh: one token request, with its timeouts, and the swap.
const REFRESH_LOCK_MS: i64 = 60_000;
/// How long a worker waits for another replica's refresh of the same sign-in before it postpones.
const REFRESH_WAIT: std::time::Duration = std::time::Duration::from_secs(15);
const REFRESH_POLL: std::time::Duration = std::time::Duration::from_millis(50);

/// How GitLab is reached: one HTTP client, the allow-list, and the OAuth apps per instance.
#[derive(Clone)]
pub struct GitLabAccess {
    pub http: reqwest::Client,
    pub urls: UrlAllowList,
    pub oauth_apps: Vec<OAuthApp>,
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

    /// A client acting with a token an operator gave for one purpose (a project's gating token), on an
    /// allowed instance.
    pub fn client_with_token(
        &self,
        gitlab_url: &str,
        token: &str,
    ) -> Result<GitLabClient, JobError> {
        let origin = self.allowed(gitlab_url)?;
        Ok(GitLabClient::new(self.http.clone(), &origin, token))
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
    ///
    /// GitLab rotates the refresh token on every refresh, so a second refresh with the same one is
    /// refused. One refresh per sign-in runs at a time across every replica (a lock in the database);
    /// a worker that finds it taken waits for the winner's pair and uses it.
    pub async fn client_for_connection(
        &self,
        store: &Store,
        connection_id: i64,
        now_ms: i64,
    ) -> Result<(GitLabClient, GitLabConnection), JobError> {
        let waiting_since = std::time::Instant::now();
        loop {
            let now = now_ms + waiting_since.elapsed().as_millis() as i64;
            let (conn, _, tokens) = self.stored_sign_in(store, connection_id).await?;
            if !tokens.needs_refresh(now) {
                return Ok((self.client_as(&conn, &tokens)?, conn));
            }
            let lock = format!("gitlab_refresh:{connection_id}");
            if let Some(held) = store.try_lock(&lock, now, REFRESH_LOCK_MS).await? {
                let refreshed = self.refresh(store, connection_id, now).await;
                store.unlock(held).await?;
                let (conn, tokens) = refreshed?;
                return Ok((self.client_as(&conn, &tokens)?, conn));
            }
            if waiting_since.elapsed() >= REFRESH_WAIT {
                return Err(JobError::Postpone {
                    message: "another worker is refreshing the GitLab sign-in".into(),
                    after_ms: 1_000,
                });
            }
            tokio::time::sleep(REFRESH_POLL).await;
        }
    }

    /// The sign-in as stored, with its pair.
    async fn stored_sign_in(
        &self,
        store: &Store,
        connection_id: i64,
    ) -> Result<(GitLabConnection, ConnectionTokens, OAuthTokens), JobError> {
        let (conn, stored) = store
            .gitlab_connection(connection_id)
            .await?
            .ok_or_else(|| {
                JobError::Permanent(format!(
                    "GitLab sign-in {connection_id} no longer exists; sign in again"
                ))
            })?;
        let tokens: OAuthTokens = serde_json::from_str(&stored.tokens)
            .map_err(|e| JobError::Permanent(format!("unreadable GitLab sign-in: {e}")))?;
        Ok((conn, stored, tokens))
    }

    fn client_as(
        &self,
        conn: &GitLabConnection,
        tokens: &OAuthTokens,
    ) -> Result<GitLabClient, JobError> {
        let origin = self.allowed(&conn.gitlab_url)?;
        Ok(GitLabClient::new(
            self.http.clone(),
            &origin,
            &tokens.access_token,
        ))
    }

    /// Refreshes the sign-in, holding its refresh lock, and persists the rotated pair (compare-and-swap)
    /// before it is used, so that a crash never strands a revoked refresh token.
    async fn refresh(
        &self,
        store: &Store,
        connection_id: i64,
        now_ms: i64,
    ) -> Result<(GitLabConnection, OAuthTokens), JobError> {
        // Read again under the lock: the previous holder may have refreshed it just now.
        let (conn, stored, tokens) = self.stored_sign_in(store, connection_id).await?;
        if !tokens.needs_refresh(now_ms) {
            return Ok((conn, tokens));
        }
        self.allowed(&conn.gitlab_url)?;
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
                    Ok((conn, fresh))
                } else {
                    // Only when a holder's lock ran out mid-refresh: the stored pair is the one GitLab
                    // knows about.
                    Err(JobError::Retry {
                        message: "GitLab sign-in was refreshed concurrently".into(),
                        after_ms: Some(0),
                    })
                }
            }
            // Under the lock, nobody else presented this refresh token: GitLab revoked the sign-in.
            Err(gfj_gitlab_client::GitLabError::OAuthRejected(reason)) => {
                Err(JobError::Permanent(format!(
                    "GitLab refused to refresh the sign-in of {} ({reason}); sign in again",
                    conn.username
                )))
            }
            Err(e) => Err(e.into()),
        }
    }
}
