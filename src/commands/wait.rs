//! `link --wait` and `resync --wait`: follow a subscription's backfill until it is done, as progress bars
//! on a terminal (indicatif) or as plain lines otherwise (a line each time the figures change), and fail
//! with every failed task's reason. The backfill itself runs in `serve`'s workers; this only reads the
//! database, so it can follow a backfill that any replica runs.

use std::io::Write;
use std::time::Duration;

use gfj_store::backfill::{BackfillTask, OutboxState, Progress, TaskState};
use gfj_store::{Clock, Store};

/// How often the database is read; a person watching needs no more.
const POLL: Duration = Duration::from_millis(500);
/// After this long with nothing moving, say that `serve` may not be running.
const STALL_HINT: Duration = Duration::from_secs(60);

/// One reading of the backfill.
#[derive(Debug, Clone)]
pub struct Reading {
    pub progress: Progress,
    pub outbox_entities: i64,
    /// The failed tasks as `project entity: reason`.
    pub failures: Vec<String>,
    /// Whether the backfill is still to be planned (no tasks yet).
    pub planning: bool,
}

impl Reading {
    pub async fn of(store: &Store, subscription_id: i64, now_ms: i64) -> anyhow::Result<Self> {
        let tasks = store.backfill_tasks(Some(subscription_id)).await?;
        let outbox: OutboxState = store.outbox_state(subscription_id).await?;
        Ok(Self::from_tasks(&tasks, outbox.entities, now_ms))
    }

    pub fn from_tasks(tasks: &[BackfillTask], outbox_entities: i64, now_ms: i64) -> Self {
        let failures = tasks
            .iter()
            .filter(|t| t.state == TaskState::Failed)
            .map(|t| {
                format!(
                    "{} {}: {}",
                    t.project_path,
                    t.entity.as_str(),
                    t.error.as_deref().unwrap_or("failed")
                )
            })
            .collect();
        Self {
            progress: Progress::of(tasks, now_ms),
            outbox_entities,
            failures,
            planning: tasks.is_empty(),
        }
    }

    /// Whether nothing is left to do: every task finished and what they read reached Jira.
    pub fn finished(&self) -> bool {
        !self.planning
            && self.progress.pending + self.progress.running == 0
            && self.outbox_entities == 0
    }

    /// The figures as one line.
    pub fn line(&self) -> String {
        if self.planning {
            return "backfill: planning (listing the group's projects)".into();
        }
        let p = &self.progress;
        format!(
            "backfill: {}/{} tasks done, {} running, {} pending, {} failed; {} items read, {} for Jira ({} still to send)",
            p.done,
            p.tasks,
            p.running,
            p.pending,
            p.failed,
            p.items_done,
            p.items_sent,
            self.outbox_entities
        )
    }

    /// The outcome once finished: the summary, or an error listing every failed task.
    pub fn outcome(&self) -> anyhow::Result<String> {
        if self.failures.is_empty() {
            Ok(format!(
                "backfill done: {} tasks, {} items read, {} sent to Jira",
                self.progress.tasks, self.progress.items_done, self.progress.items_sent
            ))
        } else {
            anyhow::bail!(
                "backfill finished with {} failed task(s): {} (run `gitlab-for-jira resync --failed` once the cause is fixed)",
                self.failures.len(),
                self.failures.join("; ")
            )
        }
    }
}

/// Follows the subscription's backfill until it is finished, on stderr (stdout keeps the command's JSON
/// for scripts); `terminal` draws bars instead of lines. Returns the summary line.
pub async fn follow(
    store: &Store,
    clock: &dyn Clock,
    subscription_id: i64,
    terminal: bool,
) -> anyhow::Result<String> {
    let bar = terminal.then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{bar:32}] {pos}/{len} tasks {wide_msg}",
            )
            .expect("a valid template")
            .progress_chars("#>-"),
        );
        bar
    });
    let mut stderr = std::io::stderr();
    let mut last_line = String::new();
    let mut last_change = tokio::time::Instant::now();
    let mut hinted = false;
    loop {
        let reading = Reading::of(store, subscription_id, clock.now_ms()).await?;
        let line = reading.line();
        if line != last_line {
            last_change = tokio::time::Instant::now();
            match &bar {
                Some(bar) => {
                    bar.set_length(reading.progress.tasks as u64);
                    bar.set_position((reading.progress.done + reading.progress.failed) as u64);
                    bar.set_message(format!(
                        "{} items read, {} for Jira, {} to send, {} failed",
                        reading.progress.items_done,
                        reading.progress.items_sent,
                        reading.outbox_entities,
                        reading.progress.failed
                    ));
                }
                None => {
                    let _ = writeln!(stderr, "{line}");
                }
            }
            last_line = line;
        }
        if reading.finished() {
            if let Some(bar) = &bar {
                bar.finish_and_clear();
            }
            return reading.outcome();
        }
        if !hinted && last_change.elapsed() >= STALL_HINT {
            hinted = true;
            let hint = "nothing has moved for a minute: the backfill runs in `gitlab-for-jira serve`; is it running on this database?";
            match &bar {
                Some(bar) => bar.println(hint),
                None => {
                    let _ = writeln!(stderr, "{hint}");
                }
            }
        }
        if let Some(bar) = &bar {
            bar.tick();
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gfj_core::jobs::BackfillEntity;

    fn task(entity: BackfillEntity, state: TaskState, error: Option<&str>) -> BackfillTask {
        BackfillTask {
            subscription_id: 1,
            project_id: 2,
            project_path: "acme/api".into(),
            entity,
            state,
            since_ms: None,
            until_ms: None,
            next_page: 1,
            items_done: 3,
            items_sent: 1,
            items_total: None,
            error: error.map(str::to_owned),
            queued_at: 0,
            started_at: Some(0),
            finished_at: None,
            updated_at: 0,
        }
    }

    #[test]
    fn finished_only_when_every_task_ended_and_the_outbox_is_empty() {
        use BackfillEntity::{Branches, Commits};
        let done = task(Commits, TaskState::Done, None);
        let running = task(Branches, TaskState::Running, None);
        let failed = task(Branches, TaskState::Failed, Some("GitLab: 403"));
        assert!(
            !Reading::from_tasks(&[], 0, 10).finished(),
            "still planning"
        );
        assert!(!Reading::from_tasks(&[done.clone(), running], 0, 10).finished());
        assert!(
            !Reading::from_tasks(std::slice::from_ref(&done), 5, 10).finished(),
            "outbox not sent"
        );
        let ok = Reading::from_tasks(std::slice::from_ref(&done), 0, 10);
        assert!(ok.finished());
        assert_eq!(
            ok.outcome().unwrap(),
            "backfill done: 1 tasks, 3 items read, 1 sent to Jira"
        );
        let bad = Reading::from_tasks(&[done, failed], 0, 10);
        assert!(bad.finished());
        let err = bad.outcome().unwrap_err().to_string();
        assert!(
            err.contains("1 failed task(s): acme/api branches: GitLab: 403"),
            "{err}"
        );
        assert!(bad.line().contains("1 failed"), "{}", bad.line());
    }
}
