//! Bulk seeding for benchmarks: a project's whole history written straight into the simulator's state, with
//! no webhook deliveries, fast enough for hundreds of projects with thousands of records each.
//!
//! [`GitLabSim::seed_history`] builds, on top of the default branch's head: `commits` commits on the default
//! branch, `branches` branches forked from points spread along that history with one commit each, and
//! `merge_requests` merge requests from those branches into the default branch (merged, closed and open in
//! the proportions 8:1:1). Every commit message, branch name and merge request title carries an issue key
//! of its own, `<key_project>-<n>`: commit `i` (1-based) on the default branch gets `first_issue + i`,
//! branch `j` (1-based) and its commit and merge request get `first_issue + commits + j`. Timestamps are
//! spread over the `span` before the simulator's clock, oldest first, and all lie in the past.
//!
//! The records are those the control methods (`push`, `open_merge_request`, `merge_merge_request`, …)
//! would have created, so every REST endpoint answers for them as it does for the others.

use std::time::Duration;

use time::OffsetDateTime;

use super::merge_requests::MergeRequest;
use super::{GitLabSim, SimCommit};

/// What to seed; see the module documentation.
#[derive(Debug, Clone)]
pub struct HistorySpec {
    pub commits: usize,
    pub branches: usize,
    /// At most one per branch: merge request `j` is opened from branch `j`.
    pub merge_requests: usize,
    /// Jira project key of the issue keys, e.g. `BENCH`.
    pub key_project: String,
    /// Issue numbers of this project start after this one.
    pub first_issue: u64,
    /// How far back the history reaches.
    pub span: Duration,
    /// Author of the commits and merge requests (an existing user).
    pub author_id: i64,
}

/// One seeded branch.
#[derive(Debug, Clone)]
pub struct SeededBranch {
    pub name: String,
    /// The issue key in its name, its commit's message and its merge request's title.
    pub key: String,
    /// Its own commit (the head).
    pub sha: String,
    /// The merge request opened from it: iid and state (`opened`, `merged` or `closed`).
    pub merge_request: Option<(i64, &'static str)>,
}

/// What [`GitLabSim::seed_history`] created.
#[derive(Debug, Clone, Default)]
pub struct SeededHistory {
    /// Commits added to the default branch, oldest first: (SHA, issue key).
    pub commits: Vec<(String, String)>,
    pub branches: Vec<SeededBranch>,
}

/// Merge request `j`'s state: eight in ten merged, one closed, one still open.
fn mr_state(j: usize) -> &'static str {
    match j % 10 {
        3 => "opened",
        7 => "closed",
        _ => "merged",
    }
}

impl GitLabSim {
    /// Seeds `project_id` with the history `spec` describes (see the module documentation). Sends no
    /// webhook. Panics if the project or the author does not exist, or a branch name is taken.
    pub fn seed_history(&self, project_id: i64, spec: &HistorySpec) -> SeededHistory {
        let now = self.shared.now().replace_nanosecond(0).expect("valid");
        let start = now - time::Duration::try_from(spec.span).expect("span fits");
        // The newest record is a minute old; steps are whole seconds at least.
        let end = now - time::Duration::minutes(1);
        let step_ms = ((end - start).whole_milliseconds() / (spec.commits as i128 + 1)).max(1000);
        let step = time::Duration::milliseconds(i64::try_from(step_ms).unwrap_or(i64::MAX));
        let at = |n: usize| -> OffsetDateTime {
            let t = start + step * i32::try_from(n).unwrap_or(i32::MAX);
            t.replace_nanosecond(0).unwrap_or(t)
        };
        let key = |n: usize| format!("{}-{}", spec.key_project, spec.first_issue + n as u64);

        let mut i = self.shared.inner.lock().unwrap();
        let author = i
            .users
            .iter()
            .find(|u| u.id == spec.author_id)
            .cloned()
            .expect("author exists");
        let p = i
            .projects
            .iter()
            .find(|p| p.id == project_id)
            .cloned()
            .expect("project exists");
        let root = p.branches[&p.default_branch].clone();
        // A fresh project's only commit becomes the oldest one.
        if i.parents
            .get(&(project_id, root.clone()))
            .is_some_and(Vec::is_empty)
            && let Some(c) = i.commits.get_mut(&(project_id, root.clone()))
        {
            c.timestamp = super::repo::timestamp(at(0));
        }
        let commit = |sha: &str, message: String, t: OffsetDateTime, file: String| SimCommit {
            id: sha.to_owned(),
            message,
            timestamp: super::repo::timestamp(t),
            author_name: author.name.clone(),
            author_email: author.email.clone(),
            added: vec![file],
            modified: vec![],
        };

        let mut out = SeededHistory::default();
        // The default branch: `main_shas[k]` is the head after k new commits.
        let mut main_shas = Vec::with_capacity(spec.commits + 1);
        main_shas.push(root);
        for n in 1..=spec.commits {
            let parent = main_shas.last().expect("root").clone();
            let k = key(n);
            let sha = super::sha_for(&format!("bulk-{project_id}-main-{n}-{parent}"));
            let c = commit(
                &sha,
                format!("{k} change {n} of the main line\n"),
                at(n),
                format!("src/main/{n}.rs"),
            );
            i.commits.insert((project_id, sha.clone()), c);
            i.parents.insert((project_id, sha.clone()), vec![parent]);
            out.commits.push((sha.clone(), k));
            main_shas.push(sha);
        }

        let mut branch_heads = Vec::with_capacity(spec.branches);
        let first_iid = i
            .merge_requests
            .iter()
            .filter(|m| m.project_id == project_id)
            .map(|m| m.iid)
            .max()
            .unwrap_or(0);
        for j in 1..=spec.branches {
            // Forked from points spread evenly along the default branch, committed half a step later.
            let fork = (j * spec.commits) / (spec.branches + 1);
            let parent = main_shas[fork].clone();
            let k = key(spec.commits + j);
            let name = format!("feature/{k}-work-{j}");
            assert!(!p.branches.contains_key(&name), "branch {name} exists");
            let committed = at(fork) + step / 2;
            let sha = super::sha_for(&format!("bulk-{project_id}-branch-{j}-{parent}"));
            let c = commit(
                &sha,
                format!("{k} work on branch {j}\n"),
                committed,
                format!("src/feature/{j}.rs"),
            );
            i.commits.insert((project_id, sha.clone()), c);
            i.parents.insert((project_id, sha.clone()), vec![parent]);
            branch_heads.push((name.clone(), sha.clone()));

            let merge_request = (j <= spec.merge_requests).then(|| {
                let id = Self::next_id(&mut i);
                let iid = first_iid + j as i64;
                let state = mr_state(j);
                let created = committed + step / 4;
                let updated = created + step / 8;
                let done = (state != "opened").then_some(updated);
                i.merge_requests.push(MergeRequest {
                    id,
                    iid,
                    project_id,
                    title: format!("{k} change from branch {j}"),
                    description: format!("Implements {k}."),
                    state,
                    source_branch: name.clone(),
                    target_branch: p.default_branch.clone(),
                    author_id: author.id,
                    assignee_ids: vec![],
                    reviewer_ids: vec![],
                    approvals: vec![],
                    commit_shas: vec![sha.clone()],
                    created_at: created,
                    updated_at: updated,
                    last_edited_at: None,
                    last_edited_by: None,
                    merged_at: done.filter(|_| state == "merged"),
                    merged_by: (state == "merged").then_some(author.id),
                    closed_at: done.filter(|_| state == "closed"),
                    closed_by: (state == "closed").then_some(author.id),
                    merge_commit_sha: None,
                    head_pipeline_id: None,
                });
                (iid, state)
            });
            out.branches.push(SeededBranch {
                name,
                key: k,
                sha,
                merge_request,
            });
        }

        let project = i
            .projects
            .iter_mut()
            .find(|x| x.id == project_id)
            .expect("project exists");
        project.branches.insert(
            project.default_branch.clone(),
            main_shas.last().expect("root").clone(),
        );
        project.branches.extend(branch_heads);
        out
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use serde_json::Value;

    use super::*;
    use crate::gitlab::Plan;

    const TOKEN: &str = "glpat-bulk";

    struct World {
        sim: GitLabSim,
        http: reqwest::Client,
        user: i64,
        project: i64,
        seeded: SeededHistory,
    }

    async fn world(commits: usize, branches: usize, merge_requests: usize) -> World {
        let sim = GitLabSim::start().await.unwrap();
        let user = sim.add_user("ada", TOKEN);
        let group = sim.add_group("acme", None, Plan::Free);
        sim.add_member(group, user, 40);
        let project = sim.add_project(group, "api");
        let seeded = sim.seed_history(
            project,
            &HistorySpec {
                commits,
                branches,
                merge_requests,
                key_project: "BULK".into(),
                first_issue: 1000,
                span: Duration::from_secs(2 * 86_400),
                author_id: user,
            },
        );
        World {
            sim,
            http: reqwest::Client::new(),
            user,
            project,
            seeded,
        }
    }

    impl World {
        /// Every page of a list, and the `x-total` of the first.
        async fn all(&self, list: &str) -> (Vec<Value>, Option<usize>) {
            let mut out = Vec::new();
            let mut total = None;
            let mut page = 1;
            loop {
                let sep = if list.contains('?') { '&' } else { '?' };
                let resp = self
                    .http
                    .get(format!(
                        "{}/api/v4/projects/{}/{list}{sep}per_page=100&page={page}",
                        self.sim.base_url, self.project
                    ))
                    .header("private-token", TOKEN)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 200, "{list}");
                let next = resp.headers()["x-next-page"].to_str().unwrap().to_owned();
                if page == 1 {
                    total = resp
                        .headers()
                        .get("x-total")
                        .map(|v| v.to_str().unwrap().parse().unwrap());
                }
                out.extend(resp.json::<Vec<Value>>().await.unwrap());
                if next.is_empty() {
                    return (out, total);
                }
                page = next.parse().unwrap();
            }
        }
    }

    /// The commits of every branch as `commits?all=true` listed them before it stopped walking at seen
    /// commits: each branch's whole history, each commit once, newest first, ties in walk order.
    fn reference_all_commits(sim: &GitLabSim, project: i64) -> Vec<String> {
        let inner = sim.shared.inner.lock().unwrap();
        let p = inner.projects.iter().find(|p| p.id == project).unwrap();
        let mut seen = HashSet::new();
        let mut list: Vec<SimCommit> = p
            .branches
            .values()
            .flat_map(|head| super::super::repo::history(&inner, project, head))
            .filter(|c| seen.insert(c.id.clone()))
            .collect();
        let date = |c: &SimCommit| {
            OffsetDateTime::parse(&c.timestamp, &time::format_description::well_known::Rfc3339)
                .unwrap()
        };
        list.sort_by_key(|c| std::cmp::Reverse(date(c)));
        list.into_iter().map(|c| c.id).collect()
    }

    #[tokio::test]
    async fn a_seeded_history_reads_back_through_the_rest_api() {
        let w = world(250, 120, 100).await;
        assert_eq!(w.seeded.commits.len(), 250);
        assert_eq!(w.seeded.commits[0].1, "BULK-1001");
        assert_eq!(w.seeded.branches[0].key, "BULK-1251");

        let (commits, total) = w.all("repository/commits?all=true").await;
        assert_eq!(total, Some(250 + 120 + 1));
        let ids: Vec<String> = commits
            .iter()
            .map(|c| c["id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(ids, reference_all_commits(&w.sim, w.project));
        let dates: Vec<&str> = commits
            .iter()
            .map(|c| c["committed_date"].as_str().unwrap())
            .collect();
        assert!(dates.windows(2).all(|d| d[0] >= d[1]), "newest first");
        let now = time::OffsetDateTime::now_utc();
        assert!(dates.iter().all(|d| {
            let t =
                OffsetDateTime::parse(d, &time::format_description::well_known::Rfc3339).unwrap();
            t < now && now - t < time::Duration::days(3)
        }));
        let (main, _) = w.all("repository/commits").await;
        assert_eq!(
            main.len(),
            251,
            "the default branch: its commits and the initial one"
        );
        assert_eq!(main[0]["id"], w.seeded.commits[249].0.as_str());
        assert!(main[0]["message"].as_str().unwrap().contains("BULK-1250"));

        let (branches, total) = w.all("repository/branches").await;
        assert_eq!(total, Some(121));
        let b = branches
            .iter()
            .find(|b| b["name"] == w.seeded.branches[4].name.as_str())
            .unwrap();
        assert_eq!(b["commit"]["id"], w.seeded.branches[4].sha.as_str());
        assert_eq!(b["merged"], false);
        assert!(
            branches
                .iter()
                .any(|b| b["name"] == "main" && b["default"] == true)
        );

        let (mrs, total) = w.all("merge_requests?state=all").await;
        assert_eq!(total, Some(100));
        let count = |state: &str| mrs.iter().filter(|m| m["state"] == state).count();
        assert_eq!(
            (count("merged"), count("closed"), count("opened")),
            (80, 10, 10)
        );
        let open = w
            .seeded
            .branches
            .iter()
            .find(|b| b.merge_request.is_some_and(|m| m.1 == "opened"))
            .unwrap();
        let mr = mrs
            .iter()
            .find(|m| m["source_branch"] == open.name.as_str())
            .unwrap();
        assert_eq!(mr["sha"], open.sha.as_str());
        assert!(mr["title"].as_str().unwrap().starts_with(&open.key));
        assert!(w.sim.deliveries().is_empty(), "seeding sends no webhook");

        // The control methods work on seeded records.
        let iid = open.merge_request.unwrap().0;
        w.sim.merge_merge_request(w.project, iid, w.user).await;
        w.sim
            .push(w.project, &open.name, &["BULK-1 more"], w.user)
            .await;
        let (commits, total) = w.all("repository/commits?all=true").await;
        assert_eq!(
            total,
            Some(250 + 120 + 1 + 2),
            "the merge commit and the push"
        );
        let ids: Vec<String> = commits
            .iter()
            .map(|c| c["id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(ids, reference_all_commits(&w.sim, w.project));
    }

    #[tokio::test]
    async fn commits_pages_filter_by_date_like_the_whole_list() {
        let w = world(300, 50, 0).await;
        let (all, _) = w.all("repository/commits?all=true").await;
        let middle = all[150]["committed_date"].as_str().unwrap().to_owned();
        let since = url::form_urlencoded::byte_serialize(middle.as_bytes()).collect::<String>();
        let (recent, total) = w
            .all(&format!("repository/commits?all=true&since={since}"))
            .await;
        let want: Vec<&Value> = all
            .iter()
            .filter(|c| c["committed_date"].as_str().unwrap() >= middle.as_str())
            .collect();
        assert_eq!(total, Some(want.len()));
        assert_eq!(recent.iter().collect::<Vec<_>>(), want);
        // A page past the end is empty, with the same counts.
        let resp = w
            .http
            .get(format!(
                "{}/api/v4/projects/{}/repository/commits?all=true&per_page=100&page=9",
                w.sim.base_url, w.project
            ))
            .header("private-token", TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.headers()["x-total"], "351");
        assert_eq!(
            resp.json::<Vec<Value>>().await.unwrap(),
            Vec::<Value>::new()
        );
    }
}
