//! A Jira site leaving: its uninstall token is accepted once and only for the current install, and its
//! rows go at once, while what lives in GitLab (its subscriptions' hooks, its users' sign-ins) is
//! removed by queued jobs, which keep the credentials they need in `gitlab_teardowns`.

use gfj_core::jobs::{GitlabSignOut, GitlabTeardown, Job};
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::queue::{NewJob, insert_jobs};
use crate::subscriptions::{Hook, token_context};
use crate::{Store, StoreError};

/// Hooks of a subscription that is gone, still to remove from GitLab.
pub struct Teardown {
    pub id: i64,
    pub subscription_id: i64,
    pub gitlab_url: String,
    pub hooks: Vec<Hook>,
    /// The access token the subscription acted with, when it had no OAuth sign-in.
    pub gitlab_token: Option<String>,
    pub gitlab_connection_id: Option<i64>,
}

impl std::fmt::Debug for Teardown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Teardown")
            .field("id", &self.id)
            .field("subscription_id", &self.subscription_id)
            .field("gitlab_url", &self.gitlab_url)
            .field("hooks", &self.hooks)
            .field("gitlab_connection_id", &self.gitlab_connection_id)
            .finish_non_exhaustive()
    }
}

/// Why an uninstall token is refused although its signature holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UninstallRefusal {
    /// The same token was accepted before.
    Replayed,
    /// Issued before the site's current install (a token captured earlier, replayed after a reinstall).
    BeforeCurrentInstall,
}

fn teardown_token_context(subscription_id: i64, gitlab_url: &str) -> String {
    format!("gitlab_teardowns.gitlab_token:{subscription_id}:{gitlab_url}")
}

/// A verified uninstall token: the token itself (remembered by its SHA-256) and its `iat` and `exp`
/// (seconds).
pub struct UninstallToken<'a> {
    pub token: &'a str,
    pub issued_at_s: i64,
    pub expires_at_s: i64,
}

/// Accepts an uninstall token once, and only if it was issued no earlier than the second the site's
/// current install was stored; remembered until it expires.
async fn accept_token(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    client_key: &str,
    t: &UninstallToken<'_>,
    now_ms: i64,
) -> Result<Result<(), UninstallRefusal>, StoreError> {
    let hash = gfj_core::qsh::hex(&Sha256::digest(t.token.as_bytes()));
    sqlx::query("DELETE FROM lifecycle_tokens_used WHERE expires_at < $1")
        .bind(now_ms)
        .execute(&mut **tx)
        .await?;
    let used: Option<String> =
        sqlx::query_scalar("SELECT token_hash FROM lifecycle_tokens_used WHERE token_hash = $1")
            .bind(&hash)
            .fetch_optional(&mut **tx)
            .await?;
    if used.is_some() {
        return Ok(Err(UninstallRefusal::Replayed));
    }
    let installed_at: Option<i64> =
        sqlx::query_scalar("SELECT updated_at FROM installations WHERE client_key = $1")
            .bind(client_key)
            .fetch_optional(&mut **tx)
            .await?;
    if installed_at.is_some_and(|at| t.issued_at_s < at.div_euclid(1000)) {
        return Ok(Err(UninstallRefusal::BeforeCurrentInstall));
    }
    sqlx::query(
        "INSERT INTO lifecycle_tokens_used (token_hash, client_key, expires_at) VALUES ($1, $2, $3)",
    )
    .bind(&hash)
    .bind(client_key)
    .bind(t.expires_at_s.saturating_mul(1000))
    .execute(&mut **tx)
    .await?;
    Ok(Ok(()))
}

impl Store {
    /// Removes a site that uninstalled the app, in one transaction with the acceptance of its token
    /// (so a failed attempt can be retried with the same token): its installation, secret,
    /// subscriptions and state (as [`Store::delete_installation`]) and its users' GitLab sign-ins; and
    /// queues, per subscription, the removal of its GitLab hooks, and per sign-in, its sign-out at
    /// GitLab. Returns whether the site existed, or why the token is refused.
    pub async fn uninstall_site(
        &self,
        client_key: &str,
        token: &UninstallToken<'_>,
        now_ms: i64,
    ) -> Result<Result<bool, UninstallRefusal>, StoreError> {
        let subs = sqlx::query(
            "SELECT id, gitlab_url, group_id, gitlab_token, gitlab_connection_id FROM subscriptions WHERE client_key = $1 ORDER BY id",
        )
        .bind(client_key)
        .fetch_all(&self.pool)
        .await?;
        let mut hooks_of = Vec::with_capacity(subs.len());
        for r in &subs {
            hooks_of.push(self.subscription_hooks(r.try_get("id")?).await?);
        }
        let mut tx = self.begin_write().await?;
        if let Err(refused) = accept_token(&mut tx, client_key, token, now_ms).await? {
            return Ok(Err(refused));
        }
        let mut jobs = Vec::new();
        for (r, hooks) in subs.iter().zip(hooks_of) {
            let id: i64 = r.try_get("id")?;
            let gitlab_url: String = r.try_get("gitlab_url")?;
            let group_id: i64 = r.try_get("group_id")?;
            let connection: Option<i64> = r.try_get("gitlab_connection_id")?;
            let token = match connection {
                Some(_) => None,
                None => {
                    let record: Vec<u8> = r.try_get("gitlab_token")?;
                    let plain = self
                        .cipher
                        .decrypt(&record, &token_context(client_key, &gitlab_url, group_id))?;
                    Some(
                        self.cipher
                            .encrypt(&plain, &teardown_token_context(id, &gitlab_url))?,
                    )
                }
            };
            let teardown_id: i64 = sqlx::query_scalar(
                "INSERT INTO gitlab_teardowns (subscription_id, gitlab_url, hooks, gitlab_token, gitlab_connection_id, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            )
            .bind(id)
            .bind(&gitlab_url)
            .bind(serde_json::to_string(&hooks).expect("hooks serialise"))
            .bind(token)
            .bind(connection)
            .bind(now_ms)
            .fetch_one(&mut *tx)
            .await?;
            jobs.push(NewJob::of(
                &Job::GitlabTeardown(GitlabTeardown { teardown_id }),
                now_ms,
            ));
        }
        let sign_ins: Vec<i64> = sqlx::query_scalar(
            "SELECT DISTINCT connection_id FROM jira_gitlab_sign_ins WHERE client_key = $1 ORDER BY connection_id",
        )
        .bind(client_key)
        .fetch_all(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM jira_gitlab_sign_ins WHERE client_key = $1")
            .bind(client_key)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM gitlab_oauth_pending WHERE jira_client_key = $1")
            .bind(client_key)
            .execute(&mut *tx)
            .await?;
        for connection_id in sign_ins {
            jobs.push(NewJob::of(
                &Job::GitlabSignOut(GitlabSignOut { connection_id }),
                now_ms,
            ));
        }
        let existed = crate::installations::delete_installation_rows(&mut tx, client_key).await?;
        insert_jobs(&mut tx, &jobs, now_ms).await?;
        tx.commit().await?;
        if !jobs.is_empty() {
            self.wake_workers();
        }
        Ok(Ok(existed))
    }

    pub async fn teardown(&self, id: i64) -> Result<Option<Teardown>, StoreError> {
        let row = sqlx::query(
            "SELECT id, subscription_id, gitlab_url, hooks, gitlab_token, gitlab_connection_id FROM gitlab_teardowns WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else { return Ok(None) };
        let subscription_id: i64 = r.try_get("subscription_id")?;
        let gitlab_url: String = r.try_get("gitlab_url")?;
        let hooks: String = r.try_get("hooks")?;
        let hooks: Vec<Hook> = serde_json::from_str(&hooks)
            .map_err(|e| StoreError::Crypto(format!("unreadable teardown hooks: {e}")))?;
        let token: Option<Vec<u8>> = r.try_get("gitlab_token")?;
        let gitlab_token = token
            .map(|t| {
                let plain = self
                    .cipher
                    .decrypt(&t, &teardown_token_context(subscription_id, &gitlab_url))?;
                String::from_utf8(plain)
                    .map_err(|_| StoreError::Crypto("token is not UTF-8".into()))
            })
            .transpose()?;
        Ok(Some(Teardown {
            id: r.try_get("id")?,
            subscription_id,
            gitlab_url,
            hooks,
            gitlab_token,
            gitlab_connection_id: r.try_get("gitlab_connection_id")?,
        }))
    }

    pub async fn finish_teardown(&self, id: i64) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM gitlab_teardowns WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Whether a subscription, a Jira user or a pending teardown still uses a GitLab sign-in.
    pub async fn gitlab_connection_in_use(&self, connection_id: i64) -> Result<bool, StoreError> {
        let uses: i64 = sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM subscriptions WHERE gitlab_connection_id = $1) \
                  + (SELECT COUNT(*) FROM jira_gitlab_sign_ins WHERE connection_id = $1) \
                  + (SELECT COUNT(*) FROM gitlab_teardowns WHERE gitlab_connection_id = $1)",
        )
        .bind(connection_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(uses > 0)
    }

    /// Forgets a GitLab sign-in unless something started using it again; whether it went.
    pub async fn delete_unused_gitlab_connection(
        &self,
        connection_id: i64,
    ) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "DELETE FROM gitlab_connections WHERE id = $1 \
             AND NOT EXISTS (SELECT 1 FROM subscriptions WHERE gitlab_connection_id = $1) \
             AND NOT EXISTS (SELECT 1 FROM jira_gitlab_sign_ins WHERE connection_id = $1) \
             AND NOT EXISTS (SELECT 1 FROM gitlab_teardowns WHERE gitlab_connection_id = $1)",
        )
        .bind(connection_id)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n > 0)
    }
}
