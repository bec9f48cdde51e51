//! Deployment gates: one row per deployment sent to Jira with `initiate_deployment_gating`, from the
//! moment Jira accepted it until its decision was carried out in GitLab. Each step is a compare-and-set
//! on the row's state, so a decision is taken once (callback and poll may both bring it) and carried
//! out once.

use gfj_core::domain::{ProjectId, SubscriptionId};
use gfj_core::jsm::{GateDecision, GateState};
use sqlx::Row;

use crate::{Store, StoreError};

/// A gate about to open: the deployment, and its key in Jira.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewGate {
    pub subscription_id: SubscriptionId,
    pub client_key: String,
    pub project_id: ProjectId,
    pub deployment_id: i64,
    pub job_id: Option<i64>,
    pub pipeline_key: String,
    pub environment_key: String,
    pub deployment_seq: i64,
    pub environment_name: String,
    pub tier: String,
    pub issue_keys: Vec<String>,
}

/// A gate as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Gate {
    pub id: i64,
    pub subscription_id: i64,
    pub client_key: String,
    pub project_id: i64,
    pub deployment_id: i64,
    pub job_id: Option<i64>,
    pub pipeline_key: String,
    pub environment_key: String,
    pub deployment_seq: i64,
    pub environment_name: String,
    pub tier: String,
    pub issue_keys: Vec<String>,
    pub state: GateState,
    pub decision: Option<GateDecision>,
    pub change_request: Option<String>,
    pub change_request_url: Option<String>,
    /// What was done in GitLab, or why nothing was.
    pub outcome: Option<String>,
    pub opened_at: i64,
    pub next_poll_at: i64,
    pub polls: i64,
    pub decided_at: Option<i64>,
    pub done_at: Option<i64>,
}

const COLUMNS: &str = "id, subscription_id, client_key, project_id, deployment_id, job_id, pipeline_key, \
     environment_key, deployment_seq, environment_name, tier, issue_keys, state, decision, change_request, \
     change_request_url, outcome, opened_at, next_poll_at, polls, decided_at, done_at";

fn from_row(r: &sqlx::any::AnyRow) -> Result<Gate, StoreError> {
    Ok(Gate {
        id: r.try_get("id")?,
        subscription_id: r.try_get("subscription_id")?,
        client_key: r.try_get("client_key")?,
        project_id: r.try_get("project_id")?,
        deployment_id: r.try_get("deployment_id")?,
        job_id: r.try_get("job_id")?,
        pipeline_key: r.try_get("pipeline_key")?,
        environment_key: r.try_get("environment_key")?,
        deployment_seq: r.try_get("deployment_seq")?,
        environment_name: r.try_get("environment_name")?,
        tier: r.try_get("tier")?,
        issue_keys: r
            .try_get::<String, _>("issue_keys")?
            .split(',')
            .filter(|k| !k.is_empty())
            .map(str::to_owned)
            .collect(),
        state: GateState::parse(&r.try_get::<String, _>("state")?)?,
        decision: r
            .try_get::<Option<String>, _>("decision")?
            .map(|d| GateDecision::parse(&d))
            .transpose()?,
        change_request: r.try_get("change_request")?,
        change_request_url: r.try_get("change_request_url")?,
        outcome: r.try_get("outcome")?,
        opened_at: r.try_get("opened_at")?,
        next_poll_at: r.try_get("next_poll_at")?,
        polls: r.try_get::<i64, _>("polls")?,
        decided_at: r.try_get("decided_at")?,
        done_at: r.try_get("done_at")?,
    })
}

impl Store {
    /// Opens a gate for the deployment unless it has one; returns the deployment's gate either way and
    /// whether it is new.
    pub async fn open_gate(
        &self,
        gate: &NewGate,
        now_ms: i64,
        first_poll_at: i64,
    ) -> Result<(Gate, bool), StoreError> {
        let inserted = sqlx::query(
            "INSERT INTO gates (subscription_id, client_key, project_id, deployment_id, job_id, pipeline_key,
                 environment_key, deployment_seq, environment_name, tier, issue_keys, state, opened_at,
                 next_poll_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
             ON CONFLICT (subscription_id, project_id, deployment_id) DO NOTHING",
        )
        .bind(gate.subscription_id.0)
        .bind(&gate.client_key)
        .bind(gate.project_id.0)
        .bind(gate.deployment_id)
        .bind(gate.job_id)
        .bind(&gate.pipeline_key)
        .bind(&gate.environment_key)
        .bind(gate.deployment_seq)
        .bind(&gate.environment_name)
        .bind(&gate.tier)
        .bind(gate.issue_keys.join(","))
        .bind(GateState::Open.as_str())
        .bind(now_ms)
        .bind(first_poll_at)
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1;
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM gates WHERE subscription_id = $1 AND project_id = $2 AND deployment_id = $3"
        ))
        .bind(gate.subscription_id.0)
        .bind(gate.project_id.0)
        .bind(gate.deployment_id)
        .fetch_one(&self.pool)
        .await?;
        Ok((from_row(&row)?, inserted))
    }

    pub async fn gate(&self, id: i64) -> Result<Option<Gate>, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM gates WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// The gates of the deployment Jira knows by this key on this site (one, unless two linked groups
    /// overlap).
    pub async fn gates_by_jira_key(
        &self,
        client_key: &str,
        pipeline_key: &str,
        environment_key: &str,
        deployment_seq: i64,
    ) -> Result<Vec<Gate>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM gates WHERE client_key = $1 AND pipeline_key = $2
                 AND environment_key = $3 AND deployment_seq = $4 ORDER BY id"
        ))
        .bind(client_key)
        .bind(pipeline_key)
        .bind(environment_key)
        .bind(deployment_seq)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// Every gate (of one subscription, or all), newest first.
    pub async fn gates(
        &self,
        subscription_id: Option<SubscriptionId>,
    ) -> Result<Vec<Gate>, StoreError> {
        let rows = match subscription_id {
            Some(sub) => {
                sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM gates WHERE subscription_id = $1 ORDER BY id DESC"
                ))
                .bind(sub.0)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(&format!("SELECT {COLUMNS} FROM gates ORDER BY id DESC"))
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter().map(from_row).collect()
    }

    /// A subscription's gates still open or decided (not done), oldest first: what the gating check
    /// looks after.
    pub async fn gates_in_progress(
        &self,
        subscription_id: SubscriptionId,
    ) -> Result<Vec<Gate>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM gates WHERE subscription_id = $1 AND state <> $2 ORDER BY id"
        ))
        .bind(subscription_id.0)
        .bind(GateState::Done.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// Whether the deployment has a gate in the subscription, in any state.
    pub async fn has_gate(
        &self,
        subscription_id: SubscriptionId,
        project_id: ProjectId,
        deployment_id: i64,
    ) -> Result<bool, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM gates WHERE subscription_id = $1 AND project_id = $2 AND deployment_id = $3",
        )
        .bind(subscription_id.0)
        .bind(project_id.0)
        .bind(deployment_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(n > 0)
    }

    /// The gates of a change request, or of deployments that carried the issue key.
    pub async fn gates_for_issue(&self, key: &str) -> Result<Vec<Gate>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM gates WHERE change_request = $1 OR ',' || issue_keys || ',' LIKE $2
             ORDER BY id DESC"
        ))
        .bind(key)
        .bind(format!("%,{key},%"))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// Records JSM's decision on an open gate. False when the gate was no longer open (decided before,
    /// by the callback or the poll): the decision is taken once.
    pub async fn decide_gate(
        &self,
        id: i64,
        decision: GateDecision,
        change_request: Option<(&str, &str)>,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "UPDATE gates SET state = $2, decision = $3, decided_at = $4,
                 change_request = COALESCE($5, change_request),
                 change_request_url = COALESCE($6, change_request_url)
             WHERE id = $1 AND state = $7",
        )
        .bind(id)
        .bind(GateState::Decided.as_str())
        .bind(decision.as_str())
        .bind(now_ms)
        .bind(change_request.map(|c| c.0))
        .bind(change_request.map(|c| c.1))
        .bind(GateState::Open.as_str())
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Records an answer of `awaiting` (with the change request, when JSM named it) and when to ask
    /// again.
    pub async fn gate_polled(
        &self,
        id: i64,
        next_poll_at: i64,
        change_request: Option<(&str, &str)>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE gates SET next_poll_at = $2, polls = polls + 1,
                 change_request = COALESCE($3, change_request),
                 change_request_url = COALESCE($4, change_request_url)
             WHERE id = $1",
        )
        .bind(id)
        .bind(next_poll_at)
        .bind(change_request.map(|c| c.0))
        .bind(change_request.map(|c| c.1))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Marks a decided gate done with what was done. False when it was done before.
    pub async fn finish_gate(
        &self,
        id: i64,
        outcome: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "UPDATE gates SET state = $2, outcome = $3, done_at = $4 WHERE id = $1 AND state = $5",
        )
        .bind(id)
        .bind(GateState::Done.as_str())
        .bind(outcome)
        .bind(now_ms)
        .bind(GateState::Decided.as_str())
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }
}
