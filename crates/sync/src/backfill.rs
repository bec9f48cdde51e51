//! Backfill: a linked group's history, all of it (within the configured window), as fast as GitLab's and
//! Jira's rate limits allow, resumable and visible.
//!
//! `backfill_plan` lists the group's projects and records one task per project and kind of history
//! (`gfj_store::backfill`). A bounded number of tasks run at a time; each is a chain of `backfill_page`
//! jobs, one GitLab page (100 records) each, whose entities go to Jira in as few requests as Jira's
//! limits allow, as `operationType: BACKFILL` with `preventTransitions`, so that old work does not move
//! issues. The cursor moves in the same transaction that queues the next page, so a crash repeats at
//! most one page (harmless: Jira keeps the newest by sequence number). How fast it goes is set by the
//! GitLab client's gate (`RateLimit-Remaining`, 429) and the Jira site's budget, which every page passes
//! through; the running-task cap only keeps workers free for live events.

use gfj_core::domain::{MergeRequestId, ProjectId, SubscriptionId};
use std::collections::HashSet;

use gfj_core::batching;
use gfj_core::gitlab::{GitLabTime, NULL_SHA, Project, PushEvent};
use gfj_core::jobs::{self, BackfillEntity, BackfillFlush, BackfillPage, BackfillPlan};
use gfj_core::mapping::merge_request::{MergeRequestAction, map_merge_request};
use gfj_core::mapping::project_keys::ProjectKeys;
use gfj_core::mapping::{self, PushAction};
use gfj_gitlab_client::{GitLabClient, GitLabError, ProjectSummary};
use gfj_jira_client::Site;
use gfj_store::backfill::{BackfillTask, PageOutcome, TaskKey, TaskState};
use gfj_store::queue::{Job, NewJob};
use gfj_store::subscriptions::Subscription;
use gfj_store::{Store, StoreError};

use crate::JobError;
use crate::context::{Handlers, off_runtime};
use crate::jira_out::{OnPause, SendOptions, site_of};
use crate::replay::{merge_request_event, within_window};

/// Queues the planning of a subscription's backfill (after `link`).
pub async fn queue_backfill_plan(
    store: &Store,
    subscription_id: i64,
    now_ms: i64,
) -> Result<(), StoreError> {
    let job = NewJob::of(
        &jobs::Job::BackfillPlan(BackfillPlan { subscription_id }),
        now_ms,
    );
    store.enqueue(&[job], now_ms).await.map(drop)
}

/// GitLab answers that will not change by retrying: the project is gone or out of reach.
fn final_gitlab_error(e: &GitLabError) -> bool {
    matches!(
        e,
        GitLabError::NotFound(_) | GitLabError::Forbidden(_) | GitLabError::Unauthorized
    )
}

/// History is sent with the sequence number of the moment its task was queued, so that anything a live
/// event sent since (more complete: a push knows which branch a commit was on) wins. Within that
/// millisecond, kinds that know more about an entity come later: a commit's own message (commits) <
/// a merge request's view of its source branch < the branch itself (its name, tip and open merge
/// requests).
fn sequence_number(task: &BackfillTask) -> i64 {
    let rank = match task.entity {
        BackfillEntity::Commits => 0,
        BackfillEntity::MergeRequests => 1,
        BackfillEntity::Branches => 2,
        BackfillEntity::Pipelines => 3,
        BackfillEntity::Deployments => 4,
        BackfillEntity::FeatureFlags => 5,
    };
    task.queued_at.saturating_mul(1000) + rank
}

/// What reading any kind of page needs: the task, GitLab, the project, and how to send.
struct PageContext<'a> {
    sub: &'a Subscription,
    site: &'a Site,
    task: &'a BackfillTask,
    gitlab: GitLabClient,
    project: Project,
    opts: SendOptions,
    seq: i64,
    now: i64,
    /// The start of the window, as GitLab's `updated_after` takes it.
    since: Option<String>,
}

/// A GitLab error of a backfill read: final when the project is gone or out of reach.
fn gone(e: GitLabError) -> JobError {
    if final_gitlab_error(&e) {
        JobError::Permanent(format!(
            "GitLab: {e} (the project was deleted, or the linking user lost access)"
        ))
    } else {
        e.into()
    }
}

/// What one page read from GitLab and sent.
struct PageRead {
    next_page: Option<i64>,
    read: i64,
    sent: i64,
    total: Option<i64>,
    /// Development information for the outbox: (entities, request JSON).
    outbox: Option<(i64, String)>,
}

impl Handlers {
    pub(crate) async fn plan_backfill(&self, plan: &BackfillPlan) -> Result<(), JobError> {
        let Some(sub) = self.store.subscription(plan.subscription_id).await? else {
            return Ok(());
        };
        let now = self.clock.now_ms();
        let gitlab = self.gitlab.client_for(&self.store, &sub, now).await?;
        let projects = gitlab.group_projects(sub.group_id).await?;
        self.plan_projects(&sub, &projects, now).await?;
        Ok(())
    }

    /// Records backfill tasks for projects that have none (the group's at link, and projects that join
    /// later) and starts what the cap allows.
    pub(crate) async fn plan_projects(
        &self,
        sub: &Subscription,
        projects: &[ProjectSummary],
        now_ms: i64,
    ) -> Result<u64, StoreError> {
        let listed: Vec<(i64, String)> = projects
            .iter()
            .map(|p| (p.id, p.path_with_namespace.clone()))
            .collect();
        let since = self.backfill.window_ms.map(|w| now_ms - w);
        let planned = self
            .store
            .plan_backfill(sub.id, &listed, since, now_ms)
            .await?;
        if planned > 0 {
            tracing::info!(subscription = sub.id, tasks = planned, "backfill planned");
        }
        self.store
            .start_backfill_tasks(self.backfill.max_running, now_ms)
            .await?;
        Ok(planned)
    }

    pub(crate) async fn backfill_page(
        &self,
        job: &Job,
        page: &BackfillPage,
    ) -> Result<(), JobError> {
        let key = TaskKey::from(page);
        let Some(task) = self.store.backfill_task(key).await? else {
            return Ok(()); // unlinked
        };
        if task.state != TaskState::Running
            || task.started_at != Some(page.run)
            || task.next_page != page.page
        {
            return Ok(()); // a page already done, or a run a resync replaced
        }
        let Some(sub) = self.store.subscription(page.subscription_id).await? else {
            return Ok(());
        };
        let Some(install) = self.store.installation(&sub.client_key).await? else {
            return Ok(());
        };
        let site = site_of(install);
        let result = self.read_and_send_page(&sub, &site, &task).await;
        let now = self.clock.now_ms();
        match result {
            Ok(read) => {
                let outcome = PageOutcome {
                    next_page: read.next_page,
                    items_read: read.read,
                    items_sent: read.sent,
                    items_total: read.total,
                    outbox: read.outbox,
                };
                self.store
                    .advance_backfill(key, page.run, page.page, outcome, now)
                    .await?;
                if read.next_page.is_none() {
                    self.store
                        .start_backfill_tasks(self.backfill.max_running, now)
                        .await?;
                }
                Ok(())
            }
            Err(e) => {
                let last = job.attempts >= job.max_attempts;
                let message = e.to_string();
                if last || matches!(e, JobError::Permanent(_)) {
                    tracing::warn!(project = %task.project_path, entity = task.entity.as_str(), error = %message, "backfill task failed");
                    self.store
                        .fail_backfill(key, page.run, &message, now)
                        .await?;
                    self.store
                        .start_backfill_tasks(self.backfill.max_running, now)
                        .await?;
                    Ok(())
                } else {
                    self.store.note_backfill_error(key, &message, now).await?;
                    Err(e)
                }
            }
        }
    }

    async fn read_and_send_page(
        &self,
        sub: &Subscription,
        site: &Site,
        task: &BackfillTask,
    ) -> Result<PageRead, JobError> {
        let now = self.clock.now_ms();
        let gitlab = self.gitlab.client_for(&self.store, sub, now).await?;
        let opts = SendOptions {
            keys: ProjectKeys::new(self.store.site_project_keys(&sub.client_key).await?),
            history: true,
            // A page of pipelines, deployments or flags is many requests: started over after a
            // pause, it would resend what it had sent.
            on_pause: OnPause::Wait,
        };
        let project = self
            .backfill_shared
            .get(&gitlab, task.project_id, now)
            .await
            .map_err(gone)?
            .ok_or_else(|| {
                JobError::Permanent(
                    "GitLab: the project no longer exists or is out of the linking user's reach"
                        .into(),
                )
            })?;
        let page = PageContext {
            sub,
            site,
            task,
            gitlab,
            project,
            opts,
            seq: sequence_number(task),
            now,
            since: task.since_ms.map(GitLabTime::rfc3339_at),
        };
        match task.entity {
            BackfillEntity::MergeRequests => self.merge_requests_page(&page).await,
            BackfillEntity::Branches => self.branches_page(&page).await,
            BackfillEntity::Commits => self.commits_page(&page).await,
            BackfillEntity::Pipelines => self.pipelines_page(&page).await,
            BackfillEntity::Deployments => self.deployments_page(&page).await,
            BackfillEntity::FeatureFlags => self.feature_flags_page(&page).await,
        }
    }

    /// Merge requests, with the keys of their titles, descriptions and branches.
    async fn merge_requests_page(&self, p: &PageContext<'_>) -> Result<PageRead, JobError> {
        let PageContext {
            sub,
            gitlab,
            project,
            ..
        } = p;
        let seq = p.seq;
        let n = p.task.next_page;
        let since = p.since.as_deref();
        let mut page = gitlab
            .merge_requests_page(project.id, since, n)
            .await
            .map_err(gone)?;
        // A page of merge requests may hold megabytes of descriptions.
        let options = self.merge_request_options;
        let items = std::mem::take(&mut page.items);
        let read = items.len() as i64;
        let project_id = project.id;
        let owner = project.clone();
        let (requests, dropped, sent_ids) = off_runtime(move || {
            let mut requests = Vec::new();
            let mut dropped = Vec::new();
            let mut sent_ids = Vec::new();
            for mr in items {
                let Some(ev) = merge_request_event(&owner, mr) else {
                    tracing::warn!(
                        project = project_id,
                        "a merge request GitLab listed has no branches or state; skipped"
                    );
                    continue;
                };
                if let MergeRequestAction::Store {
                    request,
                    dropped_keys,
                } = map_merge_request(&ev, seq, options)
                {
                    if request
                        .repositories
                        .iter()
                        .any(|r| !r.pull_requests.is_empty())
                    {
                        sent_ids.push(ev.object_attributes.id);
                    }
                    requests.push(request);
                    dropped.extend(
                        dropped_keys
                            .into_iter()
                            .filter(|d| d.entity_type == "branch"),
                    );
                }
            }
            (requests, dropped, sent_ids)
        })
        .await?;
        for id in sent_ids {
            self.store
                .remember_sent_merge_request(
                    SubscriptionId(sub.id),
                    ProjectId(project.id),
                    MergeRequestId(id),
                )
                .await?;
        }
        Ok(self.outbox_page(p, &page, read, requests, dropped).await)
    }

    /// Branches that had commits within the window, each with its tip and, like GitLab, the keys of its open
    /// merge requests.
    async fn branches_page(&self, p: &PageContext<'_>) -> Result<PageRead, JobError> {
        let PageContext {
            task,
            gitlab,
            project,
            ..
        } = p;
        let seq = p.seq;
        let now = p.now;
        let n = p.task.next_page;
        let mut page = gitlab.branches_page(project.id, n).await.map_err(gone)?;
        let read = page.items.len() as i64;
        // Like GitLab, a branch also carries the keys of its open merge requests.
        let open_mr_texts = if page.items.is_empty() {
            Default::default()
        } else {
            self.backfill_shared
                .open_mr_texts(gitlab, project.id, now)
                .await
                .map_err(gone)?
        };
        let mut requests = Vec::new();
        let mut dropped = Vec::new();
        for branch in std::mem::take(&mut page.items) {
            if !within_window(branch.commit.committed_date.as_deref(), task.since_ms) {
                continue;
            }
            let texts = open_mr_texts
                .get(&branch.name)
                .map(Vec::as_slice)
                .unwrap_or_default();
            let tip: gfj_core::gitlab::Commit = branch.commit.into();
            let push = PushEvent {
                object_kind: "push".into(),
                before: NULL_SHA.into(),
                after: tip.id.clone(),
                git_ref: format!("refs/heads/{}", branch.name),
                checkout_sha: Some(tip.id.clone()),
                user_username: None,
                project_id: project.id,
                project: project.clone(),
                total_commits_count: 1,
                commits: vec![tip],
            };
            if let Ok(PushAction::Store {
                request,
                dropped_keys,
            }) = mapping::map_push_with(&push, seq, None, texts)
            {
                // The branch with its last commit; the commits themselves are the commits
                // task's (it lists those of every branch), so each goes to Jira once.
                let mut request = request;
                for repo in &mut request.repositories {
                    repo.commits.clear();
                }
                requests.push(request);
                dropped.extend(dropped_keys);
            }
        }
        Ok(self.outbox_page(p, &page, read, requests, dropped).await)
    }

    /// Commits of every branch within the window, each sent on the keys of its own message.
    async fn commits_page(&self, p: &PageContext<'_>) -> Result<PageRead, JobError> {
        let PageContext {
            task,
            gitlab,
            project,
            ..
        } = p;
        let seq = p.seq;
        let now = p.now;
        let n = p.task.next_page;
        let since = p.since.as_deref();
        let until = GitLabTime::rfc3339_at(task.until_ms.unwrap_or(now));
        let mut page = gitlab
            .commits_page(project.id, since, &until, n)
            .await
            .map_err(gone)?;
        let read = page.items.len() as i64;
        let default_branch = project
            .default_branch
            .clone()
            .unwrap_or_else(|| "main".into());
        // Commits of every branch, as if pushed to the default branch: each is sent on the keys of
        // its own message (branch names are the branches task's).
        let push = PushEvent {
            object_kind: "push".into(),
            before: NULL_SHA.into(),
            after: page
                .items
                .first()
                .map(|c| c.id.clone())
                .unwrap_or_else(|| NULL_SHA.into()),
            git_ref: format!("refs/heads/{default_branch}"),
            checkout_sha: None,
            user_username: None,
            project_id: project.id,
            project: project.clone(),
            total_commits_count: read,
            commits: std::mem::take(&mut page.items),
        };
        let mut requests = Vec::new();
        let mut dropped = Vec::new();
        // A page of commits may hold megabytes of messages.
        let mapped = if read > 0 {
            off_runtime(move || mapping::map_push(&push, seq, None)).await?
        } else {
            Ok(PushAction::Nothing)
        };
        if let Ok(PushAction::Store {
            request,
            dropped_keys,
        }) = mapped
        {
            requests.push(request);
            dropped.extend(dropped_keys);
        }
        Ok(self.outbox_page(p, &page, read, requests, dropped).await)
    }

    /// Pipelines, as builds, through the live path.
    async fn pipelines_page(&self, p: &PageContext<'_>) -> Result<PageRead, JobError> {
        let PageContext {
            sub,
            site,
            gitlab,
            project,
            opts,
            ..
        } = p;
        let seq = p.seq;
        let n = p.task.next_page;
        let since = p.since.as_deref();
        let page = gitlab
            .pipelines_page(project.id, since, n)
            .await
            .map_err(gone)?;
        for pipeline in &page.items {
            self.replay_pipeline(sub, site, opts, gitlab, project, pipeline, seq)
                .await?;
        }
        Ok(PageRead {
            next_page: page.next_page,
            read: page.items.len() as i64,
            sent: page.items.len() as i64,
            total: page.total,
            outbox: None,
        })
    }

    /// Deployments updated within the window, through the live path.
    async fn deployments_page(&self, p: &PageContext<'_>) -> Result<PageRead, JobError> {
        let PageContext {
            sub,
            site,
            task,
            gitlab,
            project,
            opts,
            ..
        } = p;
        let seq = p.seq;
        let n = p.task.next_page;
        let page = gitlab.deployments_page(project.id, n).await.map_err(gone)?;
        let mut sent = 0;
        for d in &page.items {
            if within_window(d.updated_at.as_deref(), task.since_ms) {
                self.replay_deployment(sub, site, opts, project, d, seq)
                    .await?;
                sent += 1;
            }
        }
        Ok(PageRead {
            next_page: page.next_page,
            read: page.items.len() as i64,
            sent,
            total: page.total,
            outbox: None,
        })
    }

    /// Feature flags whose id a toggle webhook taught us (GitLab's REST API lists flags without the ids
    /// Jira knows them by).
    async fn feature_flags_page(&self, p: &PageContext<'_>) -> Result<PageRead, JobError> {
        let PageContext {
            sub,
            site,
            task,
            gitlab,
            project,
            opts,
            ..
        } = p;
        let seq = p.seq;
        // GitLab's REST API lists flags without the ids Jira knows them by; only flags whose id a
        // toggle webhook taught us can be sent.
        let known = self
            .store
            .known_feature_flags(SubscriptionId(sub.id), ProjectId(project.id))
            .await?
            .len() as i64;
        self.replay_known_flags(sub, site, opts, gitlab, project, task.since_ms, seq)
            .await?;
        Ok(PageRead {
            next_page: None,
            read: known,
            sent: known,
            total: Some(known),
            outbox: None,
        })
    }

    /// A page whose development information goes to the outbox: its requests combined into one (with the
    /// site's project keys and the history flags applied), and what the page read. Keys beyond Jira's
    /// limit are recorded now.
    async fn outbox_page<T>(
        &self,
        p: &PageContext<'_>,
        listed: &gfj_gitlab_client::Page<T>,
        read: i64,
        requests: Vec<gfj_core::jira::DevinfoRequest>,
        dropped: Vec<mapping::DroppedKeys>,
    ) -> PageRead {
        let mut page = PageRead {
            next_page: listed.next_page,
            read,
            sent: 0,
            total: listed.total,
            outbox: None,
        };
        let Some(mut request) = batching::combine_devinfo(requests) else {
            return page;
        };
        if let Some(repo) = request.repositories.first() {
            let repository_id = repo.id.clone();
            self.record_dropped_keys(&p.sub.client_key, &repository_id, dropped)
                .await;
        }
        if !p.opts.prepare(&mut request) {
            return page;
        }
        let entities = batching::devinfo_entities(&request) as i64;
        let json = serde_json::to_string(&request).expect("devinfo serialises");
        page.sent = entities;
        page.outbox = Some((entities, json));
        page
    }

    /// Sends a subscription's outbox: the pages of all its projects together, so that each Jira request
    /// carries up to 1,000 entities. While pages are still being read, a short outbox waits a moment for
    /// more (a later flush job takes over); rows leave the outbox once Jira took them.
    pub(crate) async fn flush_backfill(&self, flush: &BackfillFlush) -> Result<(), JobError> {
        // One flush at a time per subscription across all replicas: two would read and send the same
        // rows. The lock runs out on its own if this process dies holding it.
        let name = format!("backfill_flush:{}", flush.subscription_id);
        self.while_locked(&name, FLUSH_LOCK_MS, self.flush_outbox(flush))
            .await?
            .unwrap_or_else(|| {
                Err(JobError::Postpone {
                    message: "another worker is sending this subscription's outbox".into(),
                    after_ms: FLUSH_LOCK_WAIT_MS,
                })
            })
    }

    /// [`Self::flush_backfill`] under the subscription's lock.
    async fn flush_outbox(&self, flush: &BackfillFlush) -> Result<(), JobError> {
        let Some(sub) = self.store.subscription(flush.subscription_id).await? else {
            return Ok(());
        };
        let Some(install) = self.store.installation(&sub.client_key).await? else {
            return Ok(());
        };
        let site = site_of(install);
        loop {
            let state = self.store.outbox_state(sub.id).await?;
            if state.entities == 0 {
                return Ok(());
            }
            let now = self.clock.now_ms();
            let age = now - state.oldest_ms.unwrap_or(now);
            if state.entities < FLUSH_ENTITIES
                && age < FLUSH_LINGER_MS
                && self.store.backfill_active(sub.id).await?
            {
                return Err(JobError::Postpone {
                    message: format!(
                        "{} entities wait for more to fill a Jira request",
                        state.entities
                    ),
                    after_ms: FLUSH_LINGER_MS - age,
                });
            }
            let rows = self
                .store
                .outbox_batch(sub.id, FLUSH_BATCH_ENTITIES)
                .await?;
            let mut requests = Vec::with_capacity(rows.len());
            let mut row_entities: Vec<(i64, Vec<EntityKey>)> = Vec::with_capacity(rows.len());
            for row in &rows {
                match serde_json::from_str::<gfj_core::jira::DevinfoRequest>(&row.request) {
                    Ok(r) => {
                        row_entities.push((row.id, entity_keys(&r)));
                        requests.push(r);
                    }
                    Err(e) => {
                        tracing::error!(subscription = sub.id, row = row.id, error = %e, "unreadable outbox row dropped");
                        row_entities.push((row.id, Vec::new()));
                    }
                }
            }
            let packed = match batching::combine_devinfo(requests) {
                Some(mut request) => {
                    // Pages of many projects share a request: only the subscription's property is
                    // common to them (a departed project's data is deleted by repository instead).
                    request.properties = std::collections::BTreeMap::from([(
                        mapping::SUBSCRIPTION_PROPERTY.to_owned(),
                        sub.id.to_string(),
                    )]);
                    batching::pack_devinfo_dense(request)
                }
                None => Vec::new(),
            };
            let active = self.store.backfill_active(sub.id).await?;
            let mut sent: HashSet<EntityKey> = HashSet::new();
            let mut pending_rows = row_entities;
            // Rows with nothing to send (unreadable) go at once.
            let empty: Vec<i64> = pending_rows
                .iter()
                .filter(|(_, keys)| keys.is_empty())
                .map(|(id, _)| *id)
                .collect();
            self.store.remove_from_outbox(&empty).await?;
            pending_rows.retain(|(_, keys)| !keys.is_empty());
            for request in packed {
                let size = batching::devinfo_entities(&request) as i64;
                // A part-filled request waits for more pages while they are still being read.
                if size < FLUSH_ENTITIES * 9 / 10 && active && age < FLUSH_LINGER_MS {
                    break;
                }
                let keys = entity_keys(&request);
                let ck = &sub.client_key;
                self.at_site(
                    ck,
                    OnPause::Postpone,
                    self.store_devinfo(ck, &site, request),
                )
                .await?;
                sent.extend(keys);
                // Rows whose every entity Jira now has leave the outbox at once: a later failure does
                // not send them again.
                let (done, rest): (Vec<_>, Vec<_>) = pending_rows
                    .into_iter()
                    .partition(|(_, keys)| keys.iter().all(|k| sent.contains(k)));
                pending_rows = rest;
                let ids: Vec<i64> = done.iter().map(|(id, _)| *id).collect();
                self.store.remove_from_outbox(&ids).await?;
            }
            if !pending_rows.is_empty() {
                let state = self.store.outbox_state(sub.id).await?;
                if state.entities < FLUSH_BATCH_ENTITIES && active {
                    return Err(JobError::Postpone {
                        message: format!(
                            "{} entities wait for more to fill a Jira request",
                            state.entities
                        ),
                        after_ms: FLUSH_LINGER_MS,
                    });
                }
            }
        }
    }
}

/// An entity of a devinfo request: repository, kind (0 commit, 1 branch, 2 pull request) and id.
type EntityKey = (String, u8, String);

fn entity_keys(request: &gfj_core::jira::DevinfoRequest) -> Vec<EntityKey> {
    let mut keys = Vec::new();
    for r in &request.repositories {
        keys.extend(r.commits.iter().map(|c| (r.id.clone(), 0, c.id.clone())));
        keys.extend(r.branches.iter().map(|b| (r.id.clone(), 1, b.id.clone())));
        keys.extend(
            r.pull_requests
                .iter()
                .map(|p| (r.id.clone(), 2, p.id.clone())),
        );
    }
    keys
}

/// A flush's hold on its subscription's outbox lock, renewed while it runs: a flush whose replica dies
/// frees it within this.
const FLUSH_LOCK_MS: i64 = 30_000;
/// A flush that finds the lock held tries again this much later.
const FLUSH_LOCK_WAIT_MS: i64 = 1_000;

/// Jira takes at most this many entities per devinfo request: a flush waits for that many.
const FLUSH_ENTITIES: i64 = gfj_core::jira::MAX_ENTITIES_PER_REQUEST as i64;
/// A flush reads this many at once, so that the requests it packs are full but for the last.
const FLUSH_BATCH_ENTITIES: i64 = 4 * FLUSH_ENTITIES;
/// How long a part-filled outbox waits for more pages while the backfill is still reading.
const FLUSH_LINGER_MS: i64 = 1_000;
