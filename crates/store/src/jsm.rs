//! Jira Service Management settings per subscription: a project's own, and groups' defaults for the
//! projects under them ([`gfj_core::jsm`] resolves which apply).

use gfj_core::domain::SubscriptionId;
use gfj_core::jsm::{GatingTier, GatingToken, JsmScope, JsmSettings};
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
        let tiers = settings.gating_tiers.as_ref().map(|tiers| {
            tiers
                .iter()
                .map(|t| t.as_str())
                .collect::<Vec<_>>()
                .join(",")
        });
        let token = match &settings.gating_token {
            Some(GatingToken(token)) => Some(
                self.cipher
                    .encrypt(token.as_bytes(), &token_context(subscription_id, scope))?,
            ),
            None => None,
        };
        let (project_id, conflict) = match scope {
            JsmScope::Project { id, .. } => (
                Some(id.0),
                "(subscription_id, project_id) WHERE project_id IS NOT NULL",
            ),
            JsmScope::Group { .. } => (None, "(subscription_id, path) WHERE project_id IS NULL"),
        };
        sqlx::query(&format!(
            "INSERT INTO jsm_settings (subscription_id, path, project_id, service_ids, gating_tiers,
                 gating_token, play_after_approval, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT {conflict} DO UPDATE SET path = excluded.path,
                 service_ids = excluded.service_ids, gating_tiers = excluded.gating_tiers,
                 gating_token = excluded.gating_token,
                 play_after_approval = excluded.play_after_approval, updated_at = excluded.updated_at"
        ))
        .bind(subscription_id.0)
        .bind(scope.path())
        .bind(project_id)
        .bind(service_ids)
        .bind(tiers)
        .bind(token)
        .bind(settings.play_after_approval.map(i64::from))
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
            "SELECT path, project_id, service_ids, gating_tiers, gating_token, play_after_approval
             FROM jsm_settings WHERE subscription_id = $1
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
                let gating_tiers = match r.try_get::<Option<String>, _>("gating_tiers")? {
                    None => None,
                    Some(list) => Some(
                        list.split(',')
                            .filter(|s| !s.is_empty())
                            .map(GatingTier::parse)
                            .collect::<Result<Vec<_>, _>>()
                            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    ),
                };
                let gating_token = match r.try_get::<Option<Vec<u8>>, _>("gating_token")? {
                    None => None,
                    Some(record) => {
                        let plain = self
                            .cipher
                            .decrypt(&record, &token_context(subscription_id, &scope))?;
                        Some(GatingToken(String::from_utf8(plain).map_err(|_| {
                            StoreError::Crypto("gating token is not UTF-8".into())
                        })?))
                    }
                };
                let play_after_approval = r
                    .try_get::<Option<i64>, _>("play_after_approval")?
                    .map(|v| v != 0);
                Ok((
                    scope,
                    JsmSettings {
                        service_ids,
                        gating_tiers,
                        gating_token,
                        play_after_approval,
                    },
                ))
            })
            .collect()
    }
}

/// What a gating token's ciphertext is bound to: a token copied to another row does not decrypt.
fn token_context(subscription_id: SubscriptionId, scope: &JsmScope) -> String {
    match scope {
        JsmScope::Project { id, .. } => format!("jsm-gating:{subscription_id}:project:{id}"),
        JsmScope::Group { path } => {
            format!("jsm-gating:{subscription_id}:group:{}", path.to_lowercase())
        }
    }
}
