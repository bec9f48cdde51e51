//! The audit trail: every entity sent to Jira, under each of its issue keys, with Jira's verdict.

use serde::Serialize;
use sqlx::Row;

use crate::{Store, StoreError};

/// One entity as sent under one issue key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    pub client_key: String,
    pub issue_key: String,
    /// `commit`, `branch`, `pull_request`, `build`, `deployment`, `feature_flag`.
    pub entity_type: String,
    pub entity_id: String,
    pub seq: i64,
    /// `accepted` or `rejected`.
    pub verdict: String,
    /// Jira's reason for a rejection.
    pub message: Option<String>,
    pub at: i64,
}

impl Store {
    /// Records entries (multi-row inserts, one transaction).
    pub async fn record_audit(&self, entries: &[AuditEntry]) -> Result<(), StoreError> {
        const ROWS_PER_STATEMENT: usize = 200;
        if entries.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        for chunk in entries.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO jira_audit (client_key, issue_key, entity_type, entity_id, seq, verdict, message, at) VALUES {}",
                crate::db::placeholders(self.backend(), chunk.len(), 8)
            );
            let mut q = sqlx::query(&sql);
            for e in chunk {
                q = q
                    .bind(&e.client_key)
                    .bind(&e.issue_key)
                    .bind(&e.entity_type)
                    .bind(&e.entity_id)
                    .bind(e.seq)
                    .bind(&e.verdict)
                    .bind(&e.message)
                    .bind(e.at);
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// What was sent under an issue key, newest first (at most `limit` entries).
    pub async fn audit_for_issue(
        &self,
        issue_key: &str,
        limit: i64,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT client_key, issue_key, entity_type, entity_id, seq, verdict, message, at FROM jira_audit
             WHERE issue_key = $1 ORDER BY at DESC, id DESC LIMIT $2",
        )
        .bind(issue_key)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditEntry {
                    client_key: r.try_get("client_key")?,
                    issue_key: r.try_get("issue_key")?,
                    entity_type: r.try_get("entity_type")?,
                    entity_id: r.try_get("entity_id")?,
                    seq: r.try_get("seq")?,
                    verdict: r.try_get("verdict")?,
                    message: r.try_get("message")?,
                    at: r.try_get("at")?,
                })
            })
            .collect()
    }

    /// Forgets entries older than `before_ms`. Returns how many.
    pub async fn prune_audit(&self, before_ms: i64) -> Result<u64, StoreError> {
        Ok(sqlx::query("DELETE FROM jira_audit WHERE at < $1")
            .bind(before_ms)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }
}
