//! Merge requests sent to each subscription's site, so that deletions (which GitLab never reports) can
//! be found by comparing with GitLab's list.

use crate::{Store, StoreError};
use gfj_core::domain::{MergeRequestId, ProjectId, SubscriptionId};

impl Store {
    /// Records that a merge request (by its global id) is in the subscription's Jira site.
    pub async fn remember_sent_merge_request(
        &self,
        subscription_id: SubscriptionId,
        project_id: ProjectId,
        merge_request_id: MergeRequestId,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO sent_merge_requests (subscription_id, project_id, merge_request_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
            .bind(subscription_id.0)
            .bind(project_id.0)
            .bind(merge_request_id.0)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The global ids of the project's merge requests sent to the subscription's site.
    pub async fn sent_merge_requests(
        &self,
        subscription_id: SubscriptionId,
        project_id: ProjectId,
    ) -> Result<Vec<MergeRequestId>, StoreError> {
        let ids: Vec<i64> = sqlx::query_scalar(
            "SELECT merge_request_id FROM sent_merge_requests WHERE subscription_id = $1 AND project_id = $2 ORDER BY merge_request_id",
        )
        .bind(subscription_id.0)
        .bind(project_id.0)
        .fetch_all(&self.pool)
        .await?;
        Ok(ids.into_iter().map(MergeRequestId).collect())
    }

    pub async fn forget_sent_merge_request(
        &self,
        subscription_id: SubscriptionId,
        project_id: ProjectId,
        merge_request_id: MergeRequestId,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "DELETE FROM sent_merge_requests WHERE subscription_id = $1 AND project_id = $2 AND merge_request_id = $3",
        )
        .bind(subscription_id.0)
        .bind(project_id.0)
        .bind(merge_request_id.0)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
