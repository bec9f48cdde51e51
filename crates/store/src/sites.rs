//! Per-site state shared by every worker and process: a pause after Jira answered 429, a flag when Jira
//! refused our credentials (401/403) so that operators see it instead of a hot retry loop, and the entities
//! Jira refused.

use serde::Serialize;
use sqlx::Row;

use crate::{Store, StoreError};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SiteState {
    pub client_key: String,
    /// Epoch ms before which no request may go to the site.
    pub paused_until: i64,
    pub pause_reason: Option<String>,
    /// Why the site needs an operator, if it does.
    pub attention: Option<String>,
    pub attention_since: Option<i64>,
}

/// One entity Jira refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejection {
    pub client_key: String,
    pub repository_id: String,
    /// `commit`, `branch` or `pull_request`.
    pub entity_type: String,
    pub entity_id: String,
    pub reason: String,
    pub at: i64,
}

impl Store {
    /// Records (or refreshes) an entity Jira refused.
    pub async fn record_rejection(&self, r: &Rejection) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO jira_rejections (client_key, repository_id, entity_type, entity_id, reason, at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (client_key, repository_id, entity_type, entity_id)
             DO UPDATE SET reason = excluded.reason, at = excluded.at",
        )
        .bind(&r.client_key)
        .bind(&r.repository_id)
        .bind(&r.entity_type)
        .bind(&r.entity_id)
        .bind(&r.reason)
        .bind(r.at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn rejections(&self) -> Result<Vec<Rejection>, StoreError> {
        let rows = sqlx::query(
            "SELECT client_key, repository_id, entity_type, entity_id, reason, at FROM jira_rejections ORDER BY at, entity_id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Rejection {
                    client_key: r.try_get("client_key")?,
                    repository_id: r.try_get("repository_id")?,
                    entity_type: r.try_get("entity_type")?,
                    entity_id: r.try_get("entity_id")?,
                    reason: r.try_get("reason")?,
                    at: r.try_get("at")?,
                })
            })
            .collect()
    }

    /// Records issue keys Jira reported as unknown for a site, in one commit: one statement per key was
    /// one commit (and fsync) each, and a push naming 500 unknown keys held SQLite's only writer, and
    /// webhook intake behind it, for hundreds of commits.
    pub async fn record_unknown_keys(
        &self,
        client_key: &str,
        keys: &[String],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        // Distinct, since one statement may not update the same row twice.
        let keys: Vec<&String> = keys
            .iter()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        if keys.is_empty() {
            return Ok(());
        }
        const ROWS_PER_STATEMENT: usize = 500;
        let mut tx = self.begin_write().await?;
        for chunk in keys.chunks(ROWS_PER_STATEMENT) {
            let values: Vec<String> = (0..chunk.len())
                .map(|i| format!("($1, ${}, $2)", i + 3))
                .collect();
            let sql = format!(
                "INSERT INTO jira_unknown_keys (client_key, issue_key, last_seen) VALUES {}
                 ON CONFLICT (client_key, issue_key) DO UPDATE SET last_seen = excluded.last_seen",
                values.join(", ")
            );
            let mut q = sqlx::query(&sql).bind(client_key).bind(now_ms);
            for key in chunk {
                q = q.bind(*key);
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Issue keys Jira did not know, per site, most recent first.
    pub async fn unknown_keys(&self, client_key: &str) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT issue_key FROM jira_unknown_keys WHERE client_key = $1 ORDER BY last_seen DESC, issue_key",
        )
        .bind(client_key)
        .fetch_all(&self.pool)
        .await?)
    }

    /// No request goes to the site before `until_ms`. A later pause extends, an earlier one never shortens.
    pub async fn pause_site(
        &self,
        client_key: &str,
        until_ms: i64,
        reason: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO site_state (client_key, paused_until, pause_reason) VALUES ($1, $2, $3)
             ON CONFLICT (client_key) DO UPDATE SET
                 paused_until = CASE WHEN excluded.paused_until > site_state.paused_until
                                     THEN excluded.paused_until ELSE site_state.paused_until END,
                 pause_reason = excluded.pause_reason",
        )
        .bind(client_key)
        .bind(until_ms)
        .bind(reason)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// When the site may be called again, if that is after `now_ms`.
    pub async fn site_paused_until(
        &self,
        client_key: &str,
        now_ms: i64,
    ) -> Result<Option<i64>, StoreError> {
        let until: Option<i64> = sqlx::query_scalar(
            "SELECT paused_until FROM site_state WHERE client_key = $1 AND paused_until > $2",
        )
        .bind(client_key)
        .bind(now_ms)
        .fetch_optional(&self.pool)
        .await?;
        Ok(until)
    }

    /// Marks the site as needing an operator (kept until [`Store::site_recovered`]).
    pub async fn flag_site(
        &self,
        client_key: &str,
        why: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO site_state (client_key, attention, attention_since) VALUES ($1, $2, $3)
             ON CONFLICT (client_key) DO UPDATE SET attention = excluded.attention,
                 attention_since = COALESCE(site_state.attention_since, excluded.attention_since)",
        )
        .bind(client_key)
        .bind(why)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Clears the attention flag after a successful call.
    pub async fn site_recovered(&self, client_key: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE site_state SET attention = NULL, attention_since = NULL WHERE client_key = $1 AND attention IS NOT NULL")
            .bind(client_key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Restricts the issue keys sent to a site to these Jira projects; an empty list sends all.
    pub async fn set_site_project_keys(
        &self,
        client_key: &str,
        project_keys: &[String],
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM site_settings WHERE client_key = $1")
            .bind(client_key)
            .execute(&mut *tx)
            .await?;
        if !project_keys.is_empty() {
            sqlx::query("INSERT INTO site_settings (client_key, project_keys) VALUES ($1, $2)")
                .bind(client_key)
                .bind(project_keys.join(","))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The Jira project keys a site accepts issue keys of; empty for all.
    pub async fn site_project_keys(&self, client_key: &str) -> Result<Vec<String>, StoreError> {
        let keys: Option<Option<String>> =
            sqlx::query_scalar("SELECT project_keys FROM site_settings WHERE client_key = $1")
                .bind(client_key)
                .fetch_optional(&self.pool)
                .await?;
        Ok(keys
            .flatten()
            .map(|k| k.split(',').map(str::to_owned).collect())
            .unwrap_or_default())
    }

    pub async fn site_states(&self) -> Result<Vec<SiteState>, StoreError> {
        let rows = sqlx::query(
            "SELECT client_key, paused_until, pause_reason, attention, attention_since FROM site_state ORDER BY client_key",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(SiteState {
                    client_key: r.try_get("client_key")?,
                    paused_until: r.try_get("paused_until")?,
                    pause_reason: r.try_get("pause_reason")?,
                    attention: r.try_get("attention")?,
                    attention_since: r.try_get("attention_since")?,
                })
            })
            .collect()
    }
}
