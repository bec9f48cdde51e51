//! Jira Service Management settings per subscription: a project's own, and groups' defaults for the
//! projects under them ([`gfj_core::jsm`] resolves which apply).

use gfj_core::domain::SubscriptionId;
use gfj_core::jsm::{JsmScope, JsmSettings};
use sqlx::Row;

use crate::{Store, StoreError};

impl Store {
    /// Replaces the settings of `scope` in a subscription.
    pub async fn put_jsm_settings(
        &self,
        subscription_id: SubscriptionId,
        scope: &JsmScope,
        settings: &JsmSettings,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let service_ids = settings.service_ids.as_ref().map(|ids| ids.join(","));
        let (project_id, conflict) = match scope {
            JsmScope::Project { id, .. } => (
                Some(id.0),
                "(subscription_id, project_id) WHERE project_id IS NOT NULL",
            ),
            JsmScope::Group { .. } => (None, "(subscription_id, path) WHERE project_id IS NULL"),
        };
        sqlx::query(&format!(
            "INSERT INTO jsm_settings (subscription_id, path, project_id, service_ids, updated_at)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT {conflict} DO UPDATE SET path = excluded.path,
                 service_ids = excluded.service_ids, updated_at = excluded.updated_at"
        ))
        .bind(subscription_id.0)
        .bind(scope.path())
        .bind(project_id)
        .bind(service_ids)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Removes the settings of `scope` (its projects then inherit). Returns whether there were any.
    pub async fn clear_jsm_settings(
        &self,
        subscription_id: SubscriptionId,
        scope: &JsmScope,
    ) -> Result<bool, StoreError> {
        let q = match scope {
            JsmScope::Project { id, .. } => {
                sqlx::query("DELETE FROM jsm_settings WHERE subscription_id = $1 AND project_id = $2")
                    .bind(subscription_id.0)
                    .bind(id.0)
            }
            JsmScope::Group { path } => sqlx::query(
                "DELETE FROM jsm_settings WHERE subscription_id = $1 AND project_id IS NULL AND path = $2",
            )
            .bind(subscription_id.0)
            .bind(path.as_str()),
        };
        Ok(q.execute(&self.pool).await?.rows_affected() > 0)
    }

    /// Every scope's settings in a subscription, groups first, by path.
    pub async fn jsm_settings(
        &self,
        subscription_id: SubscriptionId,
    ) -> Result<Vec<(JsmScope, JsmSettings)>, StoreError> {
        let rows = sqlx::query(
            "SELECT path, project_id, service_ids FROM jsm_settings WHERE subscription_id = $1
             ORDER BY CASE WHEN project_id IS NULL THEN 0 ELSE 1 END, path",
        )
        .bind(subscription_id.0)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let path: String = r.try_get("path")?;
                let scope = match r.try_get::<Option<i64>, _>("project_id")? {
                    Some(id) => JsmScope::Project {
                        id: gfj_core::domain::ProjectId(id),
                        path,
                    },
                    None => JsmScope::Group { path },
                };
                let service_ids = r.try_get::<Option<String>, _>("service_ids")?.map(|list| {
                    list.split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect()
                });
                Ok((scope, JsmSettings { service_ids }))
            })
            .collect()
    }
}
