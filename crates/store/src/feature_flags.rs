//! GitLab feature flag ids, learned from webhooks (the REST API does not show them), per subscription:
//! one subscription's deliveries cannot change what another one reconciles.

use sqlx::Row;

use crate::{Store, StoreError};
use gfj_core::domain::{ProjectId, SubscriptionId};

impl Store {
    pub async fn remember_feature_flag(
        &self,
        subscription_id: SubscriptionId,
        project_id: ProjectId,
        name: &str,
        flag_id: i64,
    ) -> Result<(), StoreError> {
        // One statement: replicas recording the same flag at once (its webhook here, a reconciliation
        // there) both succeed, where a delete-then-insert let the second hit the primary key.
        sqlx::query(
            "INSERT INTO feature_flag_ids (subscription_id, project_id, name, flag_id) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (subscription_id, project_id, name) DO UPDATE SET flag_id = excluded.flag_id",
        )
        .bind(subscription_id.0)
        .bind(project_id.0)
        .bind(name)
        .bind(flag_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The flags of a project whose ids the subscription knows, as (name, id).
    pub async fn known_feature_flags(
        &self,
        subscription_id: SubscriptionId,
        project_id: ProjectId,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT name, flag_id FROM feature_flag_ids WHERE subscription_id = $1 AND project_id = $2 ORDER BY name",
        )
        .bind(subscription_id.0)
        .bind(project_id.0)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("name")?, r.try_get("flag_id")?)))
            .collect()
    }

    pub async fn forget_feature_flag(
        &self,
        subscription_id: SubscriptionId,
        project_id: ProjectId,
        name: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "DELETE FROM feature_flag_ids WHERE subscription_id = $1 AND project_id = $2 AND name = $3",
        )
        .bind(subscription_id.0)
        .bind(project_id.0)
        .bind(name)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
