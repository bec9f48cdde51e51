//! GitLab groups linked to Jira sites, and the webhooks each link registered.

use serde::Serialize;
use sqlx::Row;

use gfj_core::domain::{HookScope, HookState};

use crate::{Store, StoreError};
use gfj_core::domain::{ProjectId, SubscriptionId};

/// A webhook registered in GitLab for a subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Hook {
    pub scope: HookScope,
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
    /// Where its hooks live.
    pub hook_mode: HookScope,
    pub created_at: i64,
    /// Hex SHA-256 of the webhook secret token.
    #[serde(skip)]
    pub webhook_token_hash: String,
    /// The OAuth sign-in the subscription acts as, instead of a stored access token.
    pub gitlab_connection_id: Option<i64>,
    /// Deliveries dropped because they named a project the subscription does not cover.
    pub foreign_deliveries_dropped: i64,
}

pub struct NewSubscription {
    pub client_key: String,
    pub gitlab_url: String,
    pub group_id: i64,
    pub group_path: String,
    pub gitlab_token: String,
    /// The hooks' `X-Gitlab-Token`: stored encrypted, and looked up by its SHA-256.
    pub webhook_token: String,
    /// Where its hooks live.
    pub hook_mode: HookScope,
    pub hooks: Vec<Hook>,
    /// The `whsec_` signing secret, when GitLab confirmed it for the hooks; stored encrypted.
    pub webhook_signing_secret: Option<String>,
    /// Act as this OAuth sign-in (`gitlab_token` is then empty).
    pub gitlab_connection_id: Option<i64>,
}

/// A window in which GitLab may not have delivered a project's (or group's) events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Gap {
    pub id: i64,
    pub subscription_id: i64,
    pub scope: HookScope,
    pub target_id: i64,
    pub since_ms: i64,
    pub until_ms: i64,
    pub reason: String,
    pub reconciled_at: Option<i64>,
}

/// A hook as the last health check saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HookStatus {
    #[serde(flatten)]
    pub hook: Hook,
    pub state: HookState,
    pub checked_at: Option<i64>,
}

const COLUMNS: &str = "id, client_key, gitlab_url, group_id, group_path, hook_mode, created_at, webhook_token_hash, gitlab_connection_id, foreign_deliveries_dropped";

pub(crate) fn token_context(client_key: &str, gitlab_url: &str, group_id: i64) -> String {
    format!("subscriptions.gitlab_token:{client_key}:{gitlab_url}:{group_id}")
}

fn webhook_token_context(client_key: &str, gitlab_url: &str, group_id: i64) -> String {
    format!("subscriptions.webhook_token:{client_key}:{gitlab_url}:{group_id}")
}

fn signing_context(client_key: &str, gitlab_url: &str, group_id: i64) -> String {
    format!("subscriptions.webhook_signing_secret:{client_key}:{gitlab_url}:{group_id}")
}

fn from_row(r: &sqlx::any::AnyRow) -> Result<Subscription, sqlx::Error> {
    Ok(Subscription {
        id: r.try_get("id")?,
        client_key: r.try_get("client_key")?,
        gitlab_url: r.try_get("gitlab_url")?,
        group_id: r.try_get("group_id")?,
        group_path: r.try_get("group_path")?,
        hook_mode: HookScope::parse(&r.try_get::<String, _>("hook_mode")?)
            .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
        created_at: r.try_get("created_at")?,
        webhook_token_hash: r.try_get("webhook_token_hash")?,
        gitlab_connection_id: r.try_get("gitlab_connection_id")?,
        foreign_deliveries_dropped: r.try_get("foreign_deliveries_dropped")?,
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
        let webhook_token = self.cipher.encrypt(
            s.webhook_token.as_bytes(),
            &webhook_token_context(&s.client_key, &s.gitlab_url, s.group_id),
        )?;
        let signing = s
            .webhook_signing_secret
            .as_ref()
            .map(|secret| {
                self.cipher.encrypt(
                    secret.as_bytes(),
                    &signing_context(&s.client_key, &s.gitlab_url, s.group_id),
                )
            })
            .transpose()?;
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
            "INSERT INTO subscriptions (client_key, gitlab_url, group_id, group_path, gitlab_token, webhook_token_hash, hook_mode, created_at, webhook_signing_secret, webhook_token, gitlab_connection_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING {COLUMNS}"
        ))
        .bind(&s.client_key)
        .bind(&s.gitlab_url)
        .bind(s.group_id)
        .bind(&s.group_path)
        .bind(token)
        .bind(gfj_core::gitlab::webhook_token_hash(s.webhook_token.as_bytes()))
        .bind(s.hook_mode.as_str())
        .bind(now_ms)
        .bind(signing)
        .bind(webhook_token)
        .bind(s.gitlab_connection_id)
        .fetch_one(&mut *tx)
        .await?;
        let sub = from_row(&row)?;
        for h in &s.hooks {
            sqlx::query("INSERT INTO subscription_hooks (subscription_id, scope, target_id, hook_id) VALUES ($1, $2, $3, $4)")
                .bind(sub.id)
                .bind(h.scope.as_str())
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

    /// The hooks' secret token and signing secret, decrypted, for registering a hook again. `None` for
    /// a token linked before tokens were kept.
    pub async fn subscription_hook_secrets(
        &self,
        s: &Subscription,
    ) -> Result<Option<(String, Option<String>)>, StoreError> {
        let row = sqlx::query(
            "SELECT webhook_token, webhook_signing_secret FROM subscriptions WHERE id = $1",
        )
        .bind(s.id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound("subscription"))?;
        let token: Option<Vec<u8>> = row.try_get("webhook_token")?;
        let signing: Option<Vec<u8>> = row.try_get("webhook_signing_secret")?;
        let Some(token) = token else { return Ok(None) };
        let text = |plain: Vec<u8>| {
            String::from_utf8(plain).map_err(|_| StoreError::Crypto("secret is not UTF-8".into()))
        };
        let token = text(self.cipher.decrypt(
            &token,
            &webhook_token_context(&s.client_key, &s.gitlab_url, s.group_id),
        )?)?;
        let signing = signing
            .map(|r| {
                self.cipher
                    .decrypt(
                        &r,
                        &signing_context(&s.client_key, &s.gitlab_url, s.group_id),
                    )
                    .and_then(text)
            })
            .transpose()?;
        Ok(Some((token, signing)))
    }

    /// The key of the subscription's Standard Webhooks signing secret, when deliveries must be signed.
    pub async fn subscription_signing_key(
        &self,
        s: &Subscription,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let record: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT webhook_signing_secret FROM subscriptions WHERE id = $1")
                .bind(s.id)
                .fetch_optional(&self.pool)
                .await?
                .ok_or(StoreError::NotFound("subscription"))?;
        let Some(record) = record else {
            return Ok(None);
        };
        let plain = self.cipher.decrypt(
            &record,
            &signing_context(&s.client_key, &s.gitlab_url, s.group_id),
        )?;
        let secret = String::from_utf8(plain)
            .map_err(|_| StoreError::Crypto("signing secret is not UTF-8".into()))?;
        gfj_core::standard_webhooks::secret_key(&secret)
            .map(Some)
            .map_err(|e| StoreError::Crypto(e.to_string()))
    }

    /// The subscription's hooks with what the last health check saw.
    pub async fn subscription_hook_status(&self, id: i64) -> Result<Vec<HookStatus>, StoreError> {
        let rows = sqlx::query("SELECT scope, target_id, hook_id, state, checked_at FROM subscription_hooks WHERE subscription_id = $1 ORDER BY target_id")
            .bind(id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(HookStatus {
                    hook: Hook {
                        scope: HookScope::parse(&r.try_get::<String, _>("scope")?)?,
                        target_id: r.try_get("target_id")?,
                        hook_id: r.try_get("hook_id")?,
                    },
                    state: HookState::parse(&r.try_get::<String, _>("state")?)?,
                    checked_at: r.try_get("checked_at")?,
                })
            })
            .collect()
    }

    /// Records (or replaces, after a re-registration) the hook of a group or project.
    pub async fn put_subscription_hook(
        &self,
        subscription_id: i64,
        hook: &Hook,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        // One statement, so that replicas recording a hook at once cannot collide on the key.
        sqlx::query(
            "INSERT INTO subscription_hooks (subscription_id, scope, target_id, hook_id, state, checked_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (subscription_id, scope, target_id) \
             DO UPDATE SET hook_id = excluded.hook_id, state = excluded.state, checked_at = excluded.checked_at",
        )
        .bind(subscription_id)
        .bind(hook.scope.as_str())
        .bind(hook.target_id)
        .bind(hook.hook_id)
        .bind(HookState::Ok.as_str())
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Forgets the hook of a project that left the group.
    pub async fn remove_subscription_hook(
        &self,
        subscription_id: i64,
        scope: HookScope,
        target_id: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "DELETE FROM subscription_hooks WHERE subscription_id = $1 AND scope = $2 AND target_id = $3",
        )
        .bind(subscription_id)
        .bind(scope.as_str())
        .bind(target_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// What a health check saw of a hook.
    pub async fn set_hook_state(
        &self,
        subscription_id: i64,
        hook: &Hook,
        state: HookState,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE subscription_hooks SET state = $1, checked_at = $2 WHERE subscription_id = $3 AND scope = $4 AND target_id = $5")
            .bind(state.as_str())
            .bind(now_ms)
            .bind(subscription_id)
            .bind(hook.scope.as_str())
            .bind(hook.target_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records a window whose events GitLab may not have delivered, for reconciliation.
    pub async fn record_gap(
        &self,
        subscription_id: i64,
        scope: HookScope,
        target_id: i64,
        since_ms: i64,
        until_ms: i64,
        reason: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO gitlab_gaps (subscription_id, scope, target_id, since_ms, until_ms, reason, recorded_at) VALUES ($1, $2, $3, $4, $5, $6, $5)")
            .bind(subscription_id)
            .bind(scope.as_str())
            .bind(target_id)
            .bind(since_ms)
            .bind(until_ms)
            .bind(reason)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Gaps not yet reconciled, oldest first.
    pub async fn open_gaps(&self, subscription_id: i64) -> Result<Vec<Gap>, StoreError> {
        let rows = sqlx::query("SELECT id, subscription_id, scope, target_id, since_ms, until_ms, reason, reconciled_at FROM gitlab_gaps WHERE subscription_id = $1 AND reconciled_at IS NULL ORDER BY id")
            .bind(subscription_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Gap {
                    id: r.try_get("id")?,
                    subscription_id: r.try_get("subscription_id")?,
                    scope: HookScope::parse(&r.try_get::<String, _>("scope")?)?,
                    target_id: r.try_get("target_id")?,
                    since_ms: r.try_get("since_ms")?,
                    until_ms: r.try_get("until_ms")?,
                    reason: r.try_get("reason")?,
                    reconciled_at: r.try_get("reconciled_at")?,
                })
            })
            .collect()
    }

    /// Until when a project has been reconciled with GitLab, if ever.
    pub async fn reconcile_cursor(
        &self,
        subscription_id: SubscriptionId,
        project_id: ProjectId,
    ) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT cursor_ms FROM reconcile_cursors WHERE subscription_id = $1 AND project_id = $2",
        )
        .bind(subscription_id.0)
        .bind(project_id.0)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Moves a project's reconciliation cursor, and marks the gaps it covered as reconciled.
    pub async fn advance_reconcile_cursor(
        &self,
        subscription_id: SubscriptionId,
        project_id: ProjectId,
        cursor_ms: i64,
        gaps: &[i64],
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM reconcile_cursors WHERE subscription_id = $1 AND project_id = $2")
            .bind(subscription_id.0)
            .bind(project_id.0)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO reconcile_cursors (subscription_id, project_id, cursor_ms) VALUES ($1, $2, $3)")
            .bind(subscription_id.0)
            .bind(project_id.0)
            .bind(cursor_ms)
            .execute(&mut *tx)
            .await?;
        for id in gaps {
            sqlx::query("UPDATE gitlab_gaps SET reconciled_at = $1 WHERE id = $2")
                .bind(cursor_ms)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Marks gaps as covered by a reconciliation pass.
    pub async fn mark_gaps_reconciled(&self, gaps: &[i64], at_ms: i64) -> Result<(), StoreError> {
        for id in gaps {
            sqlx::query("UPDATE gitlab_gaps SET reconciled_at = $1 WHERE id = $2")
                .bind(at_ms)
                .bind(id)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    pub async fn subscription_hooks(&self, id: i64) -> Result<Vec<Hook>, StoreError> {
        let rows = sqlx::query("SELECT scope, target_id, hook_id FROM subscription_hooks WHERE subscription_id = $1 ORDER BY target_id")
            .bind(id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Hook {
                    scope: HookScope::parse(&r.try_get::<String, _>("scope")?)?,
                    target_id: r.try_get("target_id")?,
                    hook_id: r.try_get("hook_id")?,
                })
            })
            .collect()
    }

    /// Whether the subscription covers a project, as GitLab answered at or after `checked_since_ms`;
    /// `None` when it was not asked since (projects move between groups).
    pub async fn project_coverage(
        &self,
        subscription_id: SubscriptionId,
        project_id: ProjectId,
        checked_since_ms: i64,
    ) -> Result<Option<bool>, StoreError> {
        let covered: Option<i64> = sqlx::query_scalar(
            "SELECT covered FROM subscription_projects WHERE subscription_id = $1 AND project_id = $2 AND checked_at >= $3",
        )
        .bind(subscription_id.0)
        .bind(project_id.0)
        .bind(checked_since_ms)
        .fetch_optional(&self.pool)
        .await?;
        Ok(covered.map(|c| c != 0))
    }

    /// Remembers GitLab's answer to whether the subscription covers a project.
    pub async fn remember_project_coverage(
        &self,
        subscription_id: SubscriptionId,
        project_id: ProjectId,
        covered: bool,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO subscription_projects (subscription_id, project_id, covered, checked_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (subscription_id, project_id) DO UPDATE SET covered = excluded.covered, checked_at = excluded.checked_at",
        )
        .bind(subscription_id.0)
        .bind(project_id.0)
        .bind(i64::from(covered))
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Forgets a project the subscription no longer has (destroyed): its backfill tasks, its reconcile
    /// cursor, and that it was covered.
    pub async fn forget_project(
        &self,
        subscription_id: SubscriptionId,
        project_id: ProjectId,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        for table in ["backfill_tasks", "reconcile_cursors"] {
            sqlx::query(&format!(
                "DELETE FROM {table} WHERE subscription_id = $1 AND project_id = $2"
            ))
            .bind(subscription_id.0)
            .bind(project_id.0)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "UPDATE subscription_projects SET covered = 0, checked_at = $3 WHERE subscription_id = $1 AND project_id = $2",
        )
        .bind(subscription_id.0)
        .bind(project_id.0)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Counts a delivery dropped because it named a project the subscription does not cover.
    pub async fn count_foreign_delivery(&self, subscription_id: i64) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE subscriptions SET foreign_deliveries_dropped = foreign_deliveries_dropped + 1 WHERE id = $1",
        )
        .bind(subscription_id)
        .execute(&self.pool)
        .await?;
        Ok(())
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
