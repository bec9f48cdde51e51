//! GitLab groups linked to Jira sites, and the webhooks each link registered.

use serde::Serialize;
use sqlx::Row;

use crate::{Store, StoreError};

/// A webhook registered in GitLab for a subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hook {
    /// `group` or `project`.
    pub scope: String,
    /// The group or project id the hook belongs to.
    pub target_id: i64,
    pub hook_id: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Subscription {
    pub id: i64,
    pub client_key: String,
    pub gitlab_url: String,
    pub group_id: i64,
    pub group_path: String,
    pub hook_mode: String,
    pub created_at: i64,
    /// Hex SHA-256 of the webhook secret token.
    #[serde(skip)]
    pub webhook_token_hash: String,
}

pub struct NewSubscription {
    pub client_key: String,
    pub gitlab_url: String,
    pub group_id: i64,
    pub group_path: String,
    pub gitlab_token: String,
    /// Hex SHA-256 of the webhook secret token; the token itself is never stored.
    pub webhook_token_hash: String,
    pub hook_mode: String,
    pub hooks: Vec<Hook>,
}

const COLUMNS: &str =
    "id, client_key, gitlab_url, group_id, group_path, hook_mode, created_at, webhook_token_hash";

fn token_context(client_key: &str, gitlab_url: &str, group_id: i64) -> String {
    format!("subscriptions.gitlab_token:{client_key}:{gitlab_url}:{group_id}")
}

fn from_row(r: &sqlx::any::AnyRow) -> Result<Subscription, sqlx::Error> {
    Ok(Subscription {
        id: r.try_get("id")?,
        client_key: r.try_get("client_key")?,
        gitlab_url: r.try_get("gitlab_url")?,
        group_id: r.try_get("group_id")?,
        group_path: r.try_get("group_path")?,
        hook_mode: r.try_get("hook_mode")?,
        created_at: r.try_get("created_at")?,
        webhook_token_hash: r.try_get("webhook_token_hash")?,
    })
}

impl Store {
    pub async fn create_subscription(
        &self,
        s: &NewSubscription,
        now_ms: i64,
    ) -> Result<Subscription, StoreError> {
        let token = self.cipher.encrypt(
            s.gitlab_token.as_bytes(),
            &token_context(&s.client_key, &s.gitlab_url, s.group_id),
        )?;
        let mut tx = self.begin_write().await?;
        let exists: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM subscriptions WHERE client_key = $1 AND gitlab_url = $2 AND group_id = $3",
        )
        .bind(&s.client_key)
        .bind(&s.gitlab_url)
        .bind(s.group_id)
        .fetch_optional(&mut *tx)
        .await?;
        if exists.is_some() {
            return Err(StoreError::Conflict(format!(
                "group {} is already linked to this Jira site",
                s.group_path
            )));
        }
        let row = sqlx::query(&format!(
            "INSERT INTO subscriptions (client_key, gitlab_url, group_id, group_path, gitlab_token, webhook_token_hash, hook_mode, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {COLUMNS}"
        ))
        .bind(&s.client_key)
        .bind(&s.gitlab_url)
        .bind(s.group_id)
        .bind(&s.group_path)
        .bind(token)
        .bind(&s.webhook_token_hash)
        .bind(&s.hook_mode)
        .bind(now_ms)
        .fetch_one(&mut *tx)
        .await?;
        let sub = from_row(&row)?;
        for h in &s.hooks {
            sqlx::query("INSERT INTO subscription_hooks (subscription_id, scope, target_id, hook_id) VALUES ($1, $2, $3, $4)")
                .bind(sub.id)
                .bind(&h.scope)
                .bind(h.target_id)
                .bind(h.hook_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(sub)
    }

    pub async fn subscription(&self, id: i64) -> Result<Option<Subscription>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM subscriptions WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(from_row).transpose()?)
    }

    /// The subscription whose webhook token hashes to `hash` (hex SHA-256).
    pub async fn subscription_by_token_hash(
        &self,
        hash: &str,
    ) -> Result<Option<Subscription>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM subscriptions WHERE webhook_token_hash = $1"
        ))
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(from_row).transpose()?)
    }

    pub async fn find_subscription(
        &self,
        client_key: &str,
        group_path: &str,
    ) -> Result<Option<Subscription>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM subscriptions WHERE client_key = $1 AND group_path = $2"
        ))
        .bind(client_key)
        .bind(group_path)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(from_row).transpose()?)
    }

    pub async fn subscriptions(&self) -> Result<Vec<Subscription>, StoreError> {
        let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM subscriptions ORDER BY id"))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
    }

    /// The GitLab token a subscription acts with, decrypted.
    pub async fn subscription_gitlab_token(&self, s: &Subscription) -> Result<String, StoreError> {
        let record: Vec<u8> =
            sqlx::query_scalar("SELECT gitlab_token FROM subscriptions WHERE id = $1")
                .bind(s.id)
                .fetch_optional(&self.pool)
                .await?
                .ok_or(StoreError::NotFound("subscription"))?;
        let plain = self.cipher.decrypt(
            &record,
            &token_context(&s.client_key, &s.gitlab_url, s.group_id),
        )?;
        String::from_utf8(plain).map_err(|_| StoreError::Crypto("token is not UTF-8".into()))
    }

    pub async fn subscription_hooks(&self, id: i64) -> Result<Vec<Hook>, StoreError> {
        let rows = sqlx::query("SELECT scope, target_id, hook_id FROM subscription_hooks WHERE subscription_id = $1 ORDER BY target_id")
            .bind(id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Hook {
                    scope: r.try_get("scope")?,
                    target_id: r.try_get("target_id")?,
                    hook_id: r.try_get("hook_id")?,
                })
            })
            .collect()
    }

    /// Deletes a subscription and its hook records. Returns whether it existed.
    pub async fn delete_subscription(&self, id: i64) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM subscription_hooks WHERE subscription_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let n = sqlx::query("DELETE FROM subscriptions WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(n > 0)
    }
}
