//! Merge requests sent to each subscription's site, so that deletions (which GitLab never reports) can
//! be found by comparing with GitLab's list.

use crate::{Store, StoreError};

impl Store {
    /// Records that a merge request (by its global id) is in the subscription's Jira site.
    pub async fn remember_sent_merge_request(
        &self,
        subscription_id: i64,
        project_id: i64,
        merge_request_id: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO sent_merge_requests (subscription_id, project_id, merge_request_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
            .bind(subscription_id)
            .bind(project_id)
            .bind(merge_request_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The global ids of the project's merge requests sent to the subscription's site.
    pub async fn sent_merge_requests(
        &self,
        subscription_id: i64,
        project_id: i64,
    ) -> Result<Vec<i64>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT merge_request_id FROM sent_merge_requests WHERE subscription_id = $1 AND project_id = $2 ORDER BY merge_request_id",
        )
        .bind(subscription_id)
        .bind(project_id)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn forget_sent_merge_request(
        &self,
        subscription_id: i64,
        project_id: i64,
        merge_request_id: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "DELETE FROM sent_merge_requests WHERE subscription_id = $1 AND project_id = $2 AND merge_request_id = $3",
        )
        .bind(subscription_id)
        .bind(project_id)
        .bind(merge_request_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
