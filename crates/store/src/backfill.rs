//! Backfill tasks: one per subscription, project and kind of history, each a chain of page jobs whose
//! cursor (the next GitLab page) is stored here, so that a backfill resumes where it stopped after a
//! crash. A bounded number run at a time, so that live events always find free workers.

use gfj_core::jobs::{BackfillEntity, BackfillFlush, BackfillPage, Job};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::queue::{NewJob, insert_jobs};
use crate::{Backend, Store, StoreError};

gfj_core::named_enum! {
    /// Where a backfill task is.
    pub enum TaskState ("backfill task state") {
        Pending = "pending",
        Running = "running",
        Done = "done",
        Failed = "failed",
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct BackfillTask {
    pub subscription_id: i64,
    pub project_id: i64,
    pub project_path: String,
    pub entity: BackfillEntity,
    pub state: TaskState,
    /// History from this time (epoch ms); `None`: all of it.
    pub since_ms: Option<i64>,
    /// Lists that grow while the task runs are read up to this time.
    pub until_ms: Option<i64>,
    pub next_page: i64,
    /// Items read from GitLab.
    pub items_done: i64,
    /// Items that mentioned issue keys and were sent to Jira.
    pub items_sent: i64,
    /// How many items GitLab says there are, when it says.
    pub items_total: Option<i64>,
    /// Why it failed, or the last error it is retrying after.
    pub error: Option<String>,
    pub queued_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub updated_at: i64,
}

impl BackfillTask {
    /// The job that reads this task's next page.
    fn page_job(&self, run: i64, now_ms: i64) -> NewJob {
        let page = BackfillPage {
            subscription_id: self.subscription_id,
            project_id: self.project_id,
            entity: self.entity,
            run,
            page: self.next_page,
        };
        NewJob::of(&Job::BackfillPage(page), now_ms)
    }
}

/// The PostgreSQL advisory lock under which backfill tasks are counted and started (any fixed number
/// this database uses for nothing else).
const BACKFILL_START_LOCK: i64 = 0x6766_6a5f_6266; // "gfj_bf"

const COLUMNS: &str = "subscription_id, project_id, project_path, entity, state, since_ms, until_ms, next_page, \
     items_done, items_sent, items_total, error, queued_at, started_at, finished_at, updated_at";

fn task(r: &AnyRow) -> Result<BackfillTask, StoreError> {
    let entity: String = r.try_get("entity")?;
    let state: String = r.try_get("state")?;
    Ok(BackfillTask {
        subscription_id: r.try_get("subscription_id")?,
        project_id: r.try_get("project_id")?,
        project_path: r.try_get("project_path")?,
        entity: BackfillEntity::parse(&entity)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown backfill entity {entity:?}")))?,
        state: TaskState::parse(&state)?,
        since_ms: r.try_get("since_ms")?,
        until_ms: r.try_get("until_ms")?,
        next_page: r.try_get("next_page")?,
        items_done: r.try_get("items_done")?,
        items_sent: r.try_get("items_sent")?,
        items_total: r.try_get("items_total")?,
        error: r.try_get("error")?,
        queued_at: r.try_get("queued_at")?,
        started_at: r.try_get("started_at")?,
        finished_at: r.try_get("finished_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

/// Which task a page job belongs to.
#[derive(Debug, Clone, Copy)]
pub struct TaskKey {
    pub subscription_id: i64,
    pub project_id: i64,
    pub entity: BackfillEntity,
}

impl From<&BackfillPage> for TaskKey {
    fn from(p: &BackfillPage) -> Self {
        Self {
            subscription_id: p.subscription_id,
            project_id: p.project_id,
            entity: p.entity,
        }
    }
}

/// Where a page left its task.
#[derive(Debug, Clone)]
pub struct PageOutcome {
    /// The next GitLab page, or `None` when this was the last.
    pub next_page: Option<i64>,
    pub items_read: i64,
    pub items_sent: i64,
    pub items_total: Option<i64>,
    /// Development information for the outbox: (entities, the request as JSON).
    pub outbox: Option<(i64, String)>,
}

/// One outbox row: a page's development information, waiting to be sent.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    pub id: i64,
    pub entities: i64,
    pub request: String,
}

/// What a subscription's outbox holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct OutboxState {
    pub rows: i64,
    pub entities: i64,
    /// When the oldest row was written.
    pub oldest_ms: Option<i64>,
}

fn flush_job(subscription_id: i64, now_ms: i64) -> NewJob {
    NewJob::of(
        &Job::BackfillFlush(BackfillFlush { subscription_id }),
        now_ms,
    )
}

impl Store {
    /// Records pending tasks for every kind of history of these projects (`(id, full path)`), leaving
    /// tasks that already exist alone. Returns how many were new.
    pub async fn plan_backfill(
        &self,
        subscription_id: i64,
        projects: &[(i64, String)],
        since_ms: Option<i64>,
        now_ms: i64,
    ) -> Result<u64, StoreError> {
        let mut tx = self.begin_write().await?;
        let mut inserted = 0;
        for (project_id, path) in projects {
            for entity in BackfillEntity::ALL {
                inserted += sqlx::query(
                    &format!(
                        "INSERT INTO backfill_tasks (subscription_id, project_id, project_path, entity, entity_rank, state, \
                     since_ms, next_page, items_done, items_sent, queued_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, '{PENDING}', $6, 1, 0, 0, $7, $7) ON CONFLICT DO NOTHING",
                        PENDING = TaskState::Pending
                    ),
                )
                .bind(subscription_id)
                .bind(project_id)
                .bind(path)
                .bind(entity.as_str())
                .bind(entity.rank())
                .bind(since_ms)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            }
        }
        tx.commit().await?;
        Ok(inserted)
    }

    /// Starts pending tasks until `max_running` run; each gets the job for its first page. Returns how
    /// many started.
    ///
    /// Slots are shared fairly between subscriptions, so that one huge group cannot hold them all: each
    /// free slot goes to the subscription with pending tasks that runs the fewest (the older
    /// subscription on a tie), and within a subscription tasks start oldest first. A subscription
    /// linked while another's backfill fills every slot gets the next slot that frees.
    pub async fn start_backfill_tasks(
        &self,
        max_running: i64,
        now_ms: i64,
    ) -> Result<u64, StoreError> {
        let mut tx = self.begin_write().await?;
        // Replicas count and start in turn: without it two transactions count the same free slots
        // and both fill them. (SQLite's `BEGIN IMMEDIATE` already lets one writer in at a time.)
        if self.backend() == Backend::Postgres {
            sqlx::query("SELECT 1 FROM (SELECT pg_advisory_xact_lock($1)) AS taken")
                .bind(BACKFILL_START_LOCK)
                .execute(&mut *tx)
                .await?;
        }
        let running: Vec<(i64, i64)> = sqlx::query_as(&format!(
            "SELECT subscription_id, COUNT(*) FROM backfill_tasks WHERE state = '{RUNNING}' \
             GROUP BY subscription_id",
            RUNNING = TaskState::Running
        ))
        .fetch_all(&mut *tx)
        .await?;
        let room = max_running - running.iter().map(|(_, n)| n).sum::<i64>();
        if room <= 0 {
            return Ok(0);
        }
        // Pending tasks per subscription, counted only up to `room`: no subscription can get more.
        let pending: Vec<(i64, i64)> = sqlx::query_as(&format!(
            "SELECT id, (SELECT COUNT(*) FROM (SELECT 1 FROM backfill_tasks t \
                         WHERE t.subscription_id = s.id AND t.state = '{PENDING}' LIMIT $1) AS p) \
             FROM subscriptions s ORDER BY id",
            PENDING = TaskState::Pending
        ))
        .bind(room)
        .fetch_all(&mut *tx)
        .await?;
        let waiting: Vec<Waiting> = pending
            .into_iter()
            .filter(|(_, pending)| *pending > 0)
            .map(|(subscription_id, pending)| Waiting {
                subscription_id,
                running: running
                    .iter()
                    .find(|(sub, _)| *sub == subscription_id)
                    .map_or(0, |(_, n)| *n),
                pending,
            })
            .collect();
        let mut rows = Vec::new();
        for (subscription_id, slots) in fair_shares(&waiting, room) {
            rows.extend(
                sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM backfill_tasks WHERE subscription_id = $1 AND state = '{PENDING}' \
                     ORDER BY queued_at, project_id, entity_rank LIMIT $2",
                    PENDING = TaskState::Pending
                ))
                .bind(subscription_id)
                .bind(slots)
                .fetch_all(&mut *tx)
                .await?,
            );
        }
        let mut jobs = Vec::new();
        for row in &rows {
            let t = task(row)?;
            // The state check makes a replica that raced us here start nothing twice.
            let n = sqlx::query(
                &format!(
                    "UPDATE backfill_tasks SET state = '{RUNNING}', started_at = $1, until_ms = $1, updated_at = $1, \
                 error = NULL WHERE subscription_id = $2 AND project_id = $3 AND entity = $4 AND state = '{PENDING}'",
                    PENDING = TaskState::Pending, RUNNING = TaskState::Running
                ),
            )
            .bind(now_ms)
            .bind(t.subscription_id)
            .bind(t.project_id)
            .bind(t.entity.as_str())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n == 1 {
                jobs.push(t.page_job(now_ms, now_ms));
            }
        }
        insert_jobs(&mut tx, &jobs, now_ms).await?;
        tx.commit().await?;
        if !jobs.is_empty() {
            self.wake_workers();
        }
        Ok(jobs.len() as u64)
    }

    pub async fn backfill_task(&self, key: TaskKey) -> Result<Option<BackfillTask>, StoreError> {
        sqlx::query(&format!(
            "SELECT {COLUMNS} FROM backfill_tasks WHERE subscription_id = $1 AND project_id = $2 AND entity = $3"
        ))
        .bind(key.subscription_id)
        .bind(key.project_id)
        .bind(key.entity.as_str())
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(task)
        .transpose()
    }

    /// Every task, of one subscription or of all, by subscription, project and kind.
    pub async fn backfill_tasks(
        &self,
        subscription_id: Option<i64>,
    ) -> Result<Vec<BackfillTask>, StoreError> {
        let rows = match subscription_id {
            Some(id) => {
                sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM backfill_tasks WHERE subscription_id = $1 \
                     ORDER BY subscription_id, project_path, entity_rank"
                ))
                .bind(id)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM backfill_tasks ORDER BY subscription_id, project_path, entity_rank"
                ))
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter().map(task).collect()
    }

    /// The projects a subscription covers, as its backfill planned them (a project that joined the group
    /// is planned by the next hook check or reconciliation): (id, full path), by path.
    pub async fn subscription_projects(
        &self,
        subscription_id: gfj_core::domain::SubscriptionId,
    ) -> Result<Vec<(gfj_core::domain::ProjectId, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT DISTINCT project_id, project_path FROM backfill_tasks WHERE subscription_id = $1
             ORDER BY project_path",
        )
        .bind(subscription_id.0)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    gfj_core::domain::ProjectId(r.try_get("project_id")?),
                    r.try_get("project_path")?,
                ))
            })
            .collect()
    }

    /// Records a page as done: moves the cursor and queues the next page's job, or marks the task done,
    /// in one transaction. Only the page the task expects, of its current run, counts: a replayed job
    /// changes nothing and gets `false`.
    pub async fn advance_backfill(
        &self,
        key: TaskKey,
        run: i64,
        page: i64,
        outcome: PageOutcome,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let (state, finished) = match outcome.next_page {
            Some(_) => ("running", None),
            None => ("done", Some(now_ms)),
        };
        let n = sqlx::query(
            &format!(
                "UPDATE backfill_tasks SET next_page = $1, items_done = items_done + $2, items_sent = items_sent + $3, \
             items_total = COALESCE($4, items_total), error = NULL, state = $5, finished_at = $6, updated_at = $7 \
             WHERE subscription_id = $8 AND project_id = $9 AND entity = $10 AND state = '{RUNNING}' \
             AND started_at = $11 AND next_page = $12",
                RUNNING = TaskState::Running
            ),
        )
        .bind(outcome.next_page.unwrap_or(page))
        .bind(outcome.items_read)
        .bind(outcome.items_sent)
        .bind(outcome.items_total)
        .bind(state)
        .bind(finished)
        .bind(now_ms)
        .bind(key.subscription_id)
        .bind(key.project_id)
        .bind(key.entity.as_str())
        .bind(run)
        .bind(page)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n != 1 {
            return Ok(false);
        }
        let mut queued = false;
        if let Some((entities, request)) = &outcome.outbox {
            sqlx::query(
                "INSERT INTO backfill_outbox (subscription_id, entities, request, created_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(key.subscription_id)
            .bind(entities)
            .bind(request)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
            queued |=
                insert_jobs(&mut tx, &[flush_job(key.subscription_id, now_ms)], now_ms).await? > 0;
        }
        if let Some(next) = outcome.next_page {
            let t = sqlx::query(&format!(
                "SELECT {COLUMNS} FROM backfill_tasks WHERE subscription_id = $1 AND project_id = $2 AND entity = $3"
            ))
            .bind(key.subscription_id)
            .bind(key.project_id)
            .bind(key.entity.as_str())
            .fetch_one(&mut *tx)
            .await?;
            let t = task(&t)?;
            debug_assert_eq!(t.next_page, next);
            queued |= insert_jobs(&mut tx, &[t.page_job(run, now_ms)], now_ms).await? > 0;
        }
        tx.commit().await?;
        if queued {
            self.wake_workers();
        }
        Ok(true)
    }

    /// What a subscription's outbox holds.
    pub async fn outbox_state(&self, subscription_id: i64) -> Result<OutboxState, StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n, CAST(COALESCE(SUM(entities), 0) AS BIGINT) AS entities, MIN(created_at) AS oldest \
             FROM backfill_outbox WHERE subscription_id = $1",
        )
        .bind(subscription_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(OutboxState {
            rows: row.try_get("n")?,
            entities: row.try_get("entities")?,
            oldest_ms: row.try_get("oldest")?,
        })
    }

    /// The oldest outbox rows of a subscription, up to `max_entities` (at least one row). The sizes are
    /// read first and only the chosen rows' requests after, so memory stays at what is sent.
    pub async fn outbox_batch(
        &self,
        subscription_id: i64,
        max_entities: i64,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        let sizes = sqlx::query(
            "SELECT id, entities FROM backfill_outbox WHERE subscription_id = $1 ORDER BY id LIMIT $2",
        )
        .bind(subscription_id)
        .bind(max_entities.max(1))
        .fetch_all(&self.pool)
        .await?;
        let mut chosen: Vec<(i64, i64)> = Vec::new();
        let mut total = 0;
        for r in &sizes {
            let entities: i64 = r.try_get("entities")?;
            if !chosen.is_empty() && total + entities > max_entities {
                break;
            }
            total += entities;
            chosen.push((r.try_get("id")?, entities));
        }
        let mut out = Vec::with_capacity(chosen.len());
        for (id, entities) in chosen {
            let request: Option<String> =
                sqlx::query_scalar("SELECT request FROM backfill_outbox WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
            if let Some(request) = request {
                out.push(OutboxRow {
                    id,
                    entities,
                    request,
                });
            }
        }
        Ok(out)
    }

    /// Removes rows Jira took.
    pub async fn remove_from_outbox(&self, ids: &[i64]) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        for id in ids {
            sqlx::query("DELETE FROM backfill_outbox WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Queues the subscription's outbox flush.
    pub async fn queue_outbox_flush(
        &self,
        subscription_id: i64,
        run_at_ms: i64,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let mut job = flush_job(subscription_id, now_ms);
        job.run_at = run_at_ms;
        self.enqueue(&[job], now_ms).await.map(drop)
    }

    /// Whether any backfill task of the subscription is still pending or running.
    pub async fn backfill_active(&self, subscription_id: i64) -> Result<bool, StoreError> {
        let n: i64 = sqlx::query_scalar(
            &format!(
                "SELECT COUNT(*) FROM backfill_tasks WHERE subscription_id = $1 AND state IN ('{PENDING}', '{RUNNING}')",
                PENDING = TaskState::Pending, RUNNING = TaskState::Running
            ),
        )
        .bind(subscription_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(n > 0)
    }

    /// Notes the error a running task's page is being retried after (progress shows it).
    pub async fn note_backfill_error(
        &self,
        key: TaskKey,
        error: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            &format!(
                "UPDATE backfill_tasks SET error = $1, updated_at = $2 \
             WHERE subscription_id = $3 AND project_id = $4 AND entity = $5 AND state = '{RUNNING}'",
                RUNNING = TaskState::Running
            ),
        )
        .bind(error)
        .bind(now_ms)
        .bind(key.subscription_id)
        .bind(key.project_id)
        .bind(key.entity.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Ends a task as failed, with the reason.
    pub async fn fail_backfill(
        &self,
        key: TaskKey,
        run: i64,
        error: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            &format!(
                "UPDATE backfill_tasks SET state = '{FAILED}', error = $1, finished_at = $2, updated_at = $2 \
             WHERE subscription_id = $3 AND project_id = $4 AND entity = $5 AND state = '{RUNNING}' AND started_at = $6",
                RUNNING = TaskState::Running, FAILED = TaskState::Failed
            ),
        )
        .bind(error)
        .bind(now_ms)
        .bind(key.subscription_id)
        .bind(key.project_id)
        .bind(key.entity.as_str())
        .bind(run)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Queues tasks of a subscription again from their first page: all of them, one project's, or only
    /// the failed ones; from `since_ms` when given (else each keeps its window). Returns how many.
    pub async fn reset_backfill(
        &self,
        subscription_id: i64,
        project_id: Option<i64>,
        since_ms: Option<i64>,
        only_failed: bool,
        now_ms: i64,
    ) -> Result<u64, StoreError> {
        let mut sql = format!(
            "UPDATE backfill_tasks SET state = '{PENDING}', next_page = 1, items_done = 0, items_sent = 0, \
             items_total = NULL, error = NULL, started_at = NULL, until_ms = NULL, finished_at = NULL, \
             queued_at = $1, updated_at = $1",
            PENDING = TaskState::Pending
        );
        if since_ms.is_some() {
            sql.push_str(", since_ms = $3");
        }
        sql.push_str(" WHERE subscription_id = $2");
        if only_failed {
            sql.push_str(&format!(" AND state = '{}'", TaskState::Failed));
        }
        if project_id.is_some() {
            sql.push_str(if since_ms.is_some() {
                " AND project_id = $4"
            } else {
                " AND project_id = $3"
            });
        }
        let mut q = sqlx::query(&sql).bind(now_ms).bind(subscription_id);
        if let Some(s) = since_ms {
            q = q.bind(s);
        }
        if let Some(p) = project_id {
            q = q.bind(p);
        }
        Ok(q.execute(&self.pool).await?.rows_affected())
    }
}

/// Where a set of tasks stands (one project's, one subscription's): what the status command, the
/// configuration page and the admin page show.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Progress {
    pub tasks: usize,
    pub pending: usize,
    pub running: usize,
    pub done: usize,
    pub failed: usize,
    pub items_done: i64,
    pub items_sent: i64,
    /// Items GitLab counted, for the tasks where it did.
    pub items_total: i64,
    /// Estimated time to finish, from the pace so far; `None` until there is a pace to go by.
    pub eta_ms: Option<i64>,
}

impl Progress {
    pub fn of(tasks: &[BackfillTask], now_ms: i64) -> Self {
        let mut p = Progress {
            tasks: tasks.len(),
            ..Default::default()
        };
        let mut remaining = 0;
        for t in tasks {
            match t.state {
                TaskState::Pending => p.pending += 1,
                TaskState::Running => p.running += 1,
                TaskState::Done => p.done += 1,
                TaskState::Failed => p.failed += 1,
            }
            p.items_done += t.items_done;
            p.items_sent += t.items_sent;
            let total = match t.state {
                TaskState::Done => t.items_done,
                _ => t.items_total.unwrap_or(t.items_done).max(t.items_done),
            };
            p.items_total += total;
            if matches!(t.state, TaskState::Pending | TaskState::Running) {
                remaining += total - t.items_done;
            }
        }
        // The pace: items read per millisecond since the first task started.
        let started = tasks.iter().filter_map(|t| t.started_at).min();
        p.eta_ms = match (started, p.pending + p.running) {
            (_, 0) => Some(0),
            (Some(s), _) if p.items_done > 0 && now_ms > s => {
                let per_ms = p.items_done as f64 / (now_ms - s) as f64;
                Some((remaining as f64 / per_ms).round() as i64)
            }
            _ => None,
        };
        p
    }

    /// `done`, `failed`, `running` or `pending`: the state of the whole.
    pub fn state(&self) -> &'static str {
        if self.pending + self.running > 0 {
            if self.running > 0 || self.done + self.failed > 0 {
                "running"
            } else {
                "pending"
            }
        } else if self.failed > 0 {
            "failed"
        } else {
            "done"
        }
    }

    /// The state of a subscription's backfill: done once what it read has also reached Jira.
    pub fn state_with_outbox(&self, outbox: &OutboxState) -> &'static str {
        match self.state() {
            "done" | "failed" if outbox.entities > 0 => "running",
            s => s,
        }
    }

    /// Done as a fraction of the known work (tasks finished count whole).
    pub fn fraction(&self) -> f64 {
        if self.tasks == 0 {
            return 1.0;
        }
        if self.items_total > 0 {
            self.items_done as f64 / self.items_total as f64
        } else {
            (self.done + self.failed) as f64 / self.tasks as f64
        }
    }
}

/// A subscription with backfill tasks waiting for a slot.
#[derive(Debug, Clone, Copy)]
struct Waiting {
    subscription_id: i64,
    running: i64,
    pending: i64,
}

/// How many of `room` free slots each subscription of `waiting` (oldest first) gets: one slot at a
/// time to the one that would then run the fewest tasks, ties to the older, so that shares even out;
/// never more than a subscription has pending.
fn fair_shares(waiting: &[Waiting], room: i64) -> Vec<(i64, i64)> {
    let mut given = vec![0_i64; waiting.len()];
    for _ in 0..room.max(0) {
        let next = (0..waiting.len())
            .filter(|&i| given[i] < waiting[i].pending)
            .min_by_key(|&i| (waiting[i].running + given[i], i));
        let Some(i) = next else { break };
        given[i] += 1;
    }
    waiting
        .iter()
        .zip(given)
        .filter(|(_, slots)| *slots > 0)
        .map(|(w, slots)| (w.subscription_id, slots))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_slots_go_to_the_subscriptions_that_run_fewest() {
        let w = |subscription_id, running, pending| Waiting {
            subscription_id,
            running,
            pending,
        };
        // One subscription alone takes every slot it has tasks for.
        assert_eq!(fair_shares(&[w(1, 0, 100)], 4), [(1, 4)]);
        assert_eq!(fair_shares(&[w(1, 0, 2)], 4), [(1, 2)]);
        // A newcomer gets the slot that freed.
        assert_eq!(fair_shares(&[w(1, 3, 97), w(2, 0, 6)], 1), [(2, 1)]);
        // Shares even out, and ties go to the older subscription.
        assert_eq!(
            fair_shares(&[w(1, 0, 100), w(2, 0, 6)], 4),
            [(1, 2), (2, 2)]
        );
        assert_eq!(
            fair_shares(&[w(1, 0, 100), w(2, 0, 6)], 3),
            [(1, 2), (2, 1)]
        );
        assert_eq!(
            fair_shares(&[w(1, 2, 100), w(2, 0, 6), w(3, 1, 1)], 3),
            [(2, 2), (3, 1)]
        );
        // What one cannot use goes to the others.
        assert_eq!(
            fair_shares(&[w(1, 0, 100), w(2, 0, 1)], 8),
            [(1, 7), (2, 1)]
        );
        assert!(fair_shares(&[], 4).is_empty());
        assert!(fair_shares(&[w(1, 0, 5)], 0).is_empty());
        assert!(fair_shares(&[w(1, 0, 5)], -3).is_empty());
    }

    fn t(state: TaskState, done: i64, total: Option<i64>, started: Option<i64>) -> BackfillTask {
        BackfillTask {
            subscription_id: 1,
            project_id: 2,
            project_path: "acme/api".into(),
            entity: BackfillEntity::Commits,
            state,
            since_ms: None,
            until_ms: None,
            next_page: 1,
            items_done: done,
            items_sent: done / 2,
            items_total: total,
            error: None,
            queued_at: 0,
            started_at: started,
            finished_at: None,
            updated_at: 0,
        }
    }

    #[test]
    fn progress_counts_states_and_estimates_from_the_pace_so_far() {
        // 300 of 1,000 items in 3 s since the first start: 700 more take 7 s.
        let tasks = [
            t(TaskState::Done, 100, Some(100), Some(1_000)),
            t(TaskState::Running, 200, Some(500), Some(2_000)),
            t(TaskState::Pending, 0, None, None),
            t(TaskState::Failed, 0, Some(400), Some(1_500)),
        ];
        let p = Progress::of(&tasks[..2], 4_000);
        assert_eq!(
            (p.done, p.running, p.items_done, p.items_total),
            (1, 1, 300, 600)
        );
        assert_eq!(p.eta_ms, Some(3_000 * 300 / 300), "300 left at 0.1 per ms");
        assert_eq!(p.state(), "running");
        assert!((p.fraction() - 0.5).abs() < 1e-9);

        let all = Progress::of(&tasks, 4_000);
        assert_eq!((all.pending, all.failed), (1, 1));
        assert_eq!(all.state(), "running");

        let waiting = Progress::of(&tasks[2..3], 4_000);
        assert_eq!((waiting.state(), waiting.eta_ms), ("pending", None));

        let finished = Progress::of(&[tasks[0].clone(), tasks[3].clone()], 4_000);
        assert_eq!((finished.state(), finished.eta_ms), ("failed", Some(0)));
        assert_eq!(Progress::of(&tasks[..1], 4_000).state(), "done");
    }
}
