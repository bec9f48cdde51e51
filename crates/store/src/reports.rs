//! Answers to an operator's two questions, read the same way by `status` and the admin page: "why is
//! (or isn't) PROJ-123 in Jira?" ([`Store::issue_report`]) and "how far is this group's backfill, and what
//! failed?" ([`Store::backfill_report`]).

use serde::Serialize;

use crate::audit::AuditEntry;
use crate::backfill::{BackfillTask, Progress, TaskState};
use crate::gates::Gate;
use crate::{Store, StoreError};

/// What was sent to Jira under an issue key, Jira's verdicts, its deployment gates, and why something
/// may not have been sent.
#[derive(Debug, Clone, Serialize)]
pub struct IssueReport {
    pub issue_key: String,
    /// Newest first, at most the number asked for.
    pub sent: Vec<AuditEntry>,
    pub gates: Vec<Gate>,
    /// Reasons the key may be missing: a site that does not know it, a site that only takes other
    /// projects' keys.
    pub notes: Vec<String>,
}

/// One task of a project's backfill.
#[derive(Debug, Clone, Serialize)]
pub struct TaskReport {
    pub entity: &'static str,
    pub state: TaskState,
    pub items_done: i64,
    pub items_sent: i64,
    pub items_total: Option<i64>,
    /// Why it failed, or the last error it is retrying after.
    pub error: Option<String>,
    pub eta_ms: Option<i64>,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
}

/// One project's backfill.
#[derive(Debug, Clone, Serialize)]
pub struct ProjectBackfill {
    pub project_id: i64,
    pub project_path: String,
    pub state: &'static str,
    pub progress: Progress,
    pub tasks: Vec<TaskReport>,
}

/// A linked group's backfill, per project and kind of history.
#[derive(Debug, Clone, Serialize)]
pub struct BackfillReport {
    pub subscription_id: i64,
    /// `pending` (not planned yet), `running`, `done` or `failed`; done once what was read reached Jira.
    pub state: &'static str,
    pub progress: Progress,
    /// Entities read and not yet sent to Jira.
    pub unsent_entities: i64,
    pub projects: Vec<ProjectBackfill>,
}

impl Store {
    /// `status --issue KEY` and the admin page's search: the newest `limit` entities sent under the key.
    pub async fn issue_report(&self, key: &str, limit: i64) -> Result<IssueReport, StoreError> {
        let sent = self.audit_for_issue(key, limit).await?;
        let project = key.rsplit_once('-').map(|(p, _)| p).unwrap_or(key);
        let mut notes = Vec::new();
        for site in self.installations().await? {
            if self
                .unknown_keys(&site.client_key)
                .await?
                .iter()
                .any(|k| k == key)
            {
                notes.push(format!(
                    "{} answered that it does not know {key} (unknownIssueKeys): check the key, or that the Jira project exists",
                    site.base_url
                ));
            }
            let allowed = self.site_project_keys(&site.client_key).await?;
            if !allowed.is_empty() && !allowed.iter().any(|p| p == project) {
                notes.push(format!(
                    "{} only gets issue keys of {} (sites set-project-keys), so {key} is not sent there",
                    site.base_url,
                    allowed.join(", ")
                ));
            }
        }
        Ok(IssueReport {
            issue_key: key.to_owned(),
            sent,
            gates: self.gates_for_issue(key).await?,
            notes,
        })
    }

    /// A subscription's backfill as `status --json` and the admin page's drill-down show it.
    pub async fn backfill_report(
        &self,
        subscription_id: i64,
        now_ms: i64,
    ) -> Result<BackfillReport, StoreError> {
        let tasks = self.backfill_tasks(Some(subscription_id)).await?;
        let outbox = self.outbox_state(subscription_id).await?;
        let overall = Progress::of(&tasks, now_ms);
        let projects = by_project(&tasks)
            .into_iter()
            .map(|(path, tasks)| {
                let progress = Progress::of(&tasks, now_ms);
                ProjectBackfill {
                    project_id: tasks[0].project_id,
                    project_path: path,
                    state: progress.state(),
                    tasks: tasks
                        .iter()
                        .map(|t| TaskReport {
                            entity: t.entity.as_str(),
                            state: t.state,
                            items_done: t.items_done,
                            items_sent: t.items_sent,
                            items_total: t.items_total,
                            error: t.error.clone(),
                            eta_ms: Progress::of(std::slice::from_ref(t), now_ms).eta_ms,
                            started_at: t.started_at,
                            finished_at: t.finished_at,
                        })
                        .collect(),
                    progress,
                }
            })
            .collect();
        Ok(BackfillReport {
            subscription_id,
            state: if tasks.is_empty() {
                "pending"
            } else {
                overall.state_with_outbox(&outbox)
            },
            progress: overall,
            unsent_entities: outbox.entities,
            projects,
        })
    }
}

/// Tasks grouped by project, in path order.
pub fn by_project(tasks: &[BackfillTask]) -> Vec<(String, Vec<BackfillTask>)> {
    let mut out: Vec<(String, Vec<BackfillTask>)> = Vec::new();
    for t in tasks {
        match out.iter_mut().find(|(p, _)| *p == t.project_path) {
            Some((_, list)) => list.push(t.clone()),
            None => out.push((t.project_path.clone(), vec![t.clone()])),
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}
