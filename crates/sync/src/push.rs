//! Pushes into Jira: a branch's commits and the branch itself, with what the payload leaves out read from
//! GitLab (commits beyond its 20, the branch's open merge requests, a tip it does not hold, files).

use std::collections::BTreeMap;

use gfj_core::gitlab::PushEvent;
use gfj_core::jira::DevinfoRequest;
use gfj_core::mapping::{self, PushAction};
use gfj_jira_client::{DevinfoEntity, JiraError, Site};
use gfj_store::subscriptions::Subscription;

use crate::JobError;
use crate::context::{Handlers, LazyGitLab, off_runtime};
use crate::jira_out::SendOptions;

/// At most this many commits of one push get their files read from GitLab (two reads each).
const MAX_ENRICHED_COMMITS: usize = 50;

/// At most this many commits of one push are sent (GitLab's own app stops at 100).
const MAX_PUSH_COMMITS: usize = 5_000;

/// Adds files with line counts and the merge flag to the commits about to be sent, reading GitLab
/// best-effort: the first failure (GitLab down or throttling) stops it, and the commits go without.
async fn enrich_commits(gitlab: &LazyGitLab<'_>, request: &mut DevinfoRequest) {
    let Ok(gitlab) = gitlab.get().await else {
        return;
    };
    let gitlab = gitlab.best_effort();
    for repo in &mut request.repositories {
        let Ok(project_id) = repo.id.parse::<i64>() else {
            continue;
        };
        for commit in repo.commits.iter_mut().take(MAX_ENRICHED_COMMITS) {
            match gitlab.commit_changes(project_id, &commit.id).await {
                Ok((parents, diffs)) => {
                    mapping::enrich_commit(commit, &repo.url, parents, &diffs);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "commit details not read from GitLab; sent without files");
                    return;
                }
            }
        }
    }
}

impl Handlers {
    /// A push (from a webhook, or made up by reconciliation from what GitLab lists) into Jira.
    pub(crate) async fn push_event(
        &self,
        sub: &Subscription,
        site: &Site,
        opts: &SendOptions,
        push: PushEvent,
        seq: i64,
    ) -> Result<(), JobError> {
        let properties = mapping::properties(sub.id, push.project.id);
        let gitlab = LazyGitLab::new(self, sub);
        let action = match self.map_push(&gitlab, push, seq).await? {
            PushAction::Store {
                mut request,
                dropped_keys,
            } => {
                if !opts.prepare(&mut request) {
                    return Ok(());
                }
                enrich_commits(&gitlab, &mut request).await;
                PushAction::Store {
                    request,
                    dropped_keys,
                }
            }
            other => other,
        };
        self.at_site(
            &sub.client_key,
            opts.on_pause,
            self.apply_push(&sub.client_key, site, action, seq, properties),
        )
        .await
    }

    /// Maps a push, reading from GitLab what the payload leaves out: the commits beyond its 20, the open
    /// merge requests of the branch (whose keys the branch carries), and a branch tip it does not hold.
    async fn map_push(
        &self,
        gitlab: &LazyGitLab<'_>,
        mut push: PushEvent,
        seq: i64,
    ) -> Result<PushAction, JobError> {
        let Some(branch) = push.branch().map(str::to_owned) else {
            return Ok(PushAction::Nothing);
        };
        if push.deletes_ref() {
            return Ok(mapping::map_push(&push, seq, None).unwrap_or(PushAction::Nothing));
        }
        if let Some(base) = push.missing_commits_base() {
            let mut all = gitlab
                .get()
                .await?
                .compare(push.project.id, &base, &push.after)
                .await?;
            // The newest commits matter most when a huge push must be cut.
            if all.len() > MAX_PUSH_COMMITS {
                all.drain(..all.len() - MAX_PUSH_COMMITS);
            }
            push = push.with_all_commits(all);
        }
        let open_mr_texts = if push.project.default_branch.as_deref() == Some(branch.as_str()) {
            Vec::new()
        } else {
            gitlab
                .get()
                .await?
                .open_merge_request_texts(push.project.id, &branch)
                .await?
        };
        let (push, open_mr_texts, mapped) = off_runtime(move || {
            let mapped = mapping::map_push_with(&push, seq, None, &open_mr_texts);
            (push, open_mr_texts, mapped)
        })
        .await?;
        match mapped {
            Ok(a) => Ok(a),
            Err(mapping::NeedsTipCommit(sha)) => {
                let tip = gitlab.get().await?.commit(push.project.id, &sha).await?;
                off_runtime(move || mapping::map_push_with(&push, seq, Some(&tip), &open_mr_texts))
                    .await?
                    .map_err(|e| {
                        JobError::Permanent(format!("tip commit {} not returned by GitLab", e.0))
                    })
            }
        }
    }

    async fn apply_push(
        &self,
        client_key: &str,
        site: &Site,
        action: PushAction,
        seq: i64,
        properties: BTreeMap<String, String>,
    ) -> Result<(), JiraError> {
        match action {
            PushAction::Nothing => Ok(()),
            PushAction::DeleteBranch {
                repository_id,
                branch_id,
            } => {
                self.jira
                    .delete_devinfo_entity(
                        site,
                        &repository_id,
                        DevinfoEntity::Branch,
                        &branch_id,
                        seq,
                    )
                    .await
            }
            PushAction::Store {
                mut request,
                dropped_keys,
            } => {
                request.properties = properties;
                self.store_entities(client_key, site, request, dropped_keys)
                    .await
            }
        }
    }
}
