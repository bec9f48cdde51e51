//! Repositories: branches and commits with real parent links, the REST endpoints that read them, and
//! pushes with the Push Hook GitLab sends for them.
//!
//! Push rules from GitLab: `commits` holds at most the newest 20 commits while `total_commits_count`
//! tells the truth; a push that changes more than 3 refs (`push_event_hooks_limit`) sends no webhook at
//! all; a force push reports the old head as `before` and only the new commits.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use super::{GitLabSim, Inner, NULL_SHA, Project, Shared, SimCommit, err, param_err};

/// GitLab's `push_event_hooks_limit` default.
const PUSH_EVENT_HOOKS_LIMIT: usize = 3;
/// Commits a Push Hook payload carries at most.
const PUSH_COMMITS_LIMIT: usize = 20;

pub(super) fn timestamp(t: time::OffsetDateTime) -> String {
    super::rfc3339(t.replace_nanosecond(0).unwrap_or(t))
}

/// The first-parent history from `head`, newest first.
pub(super) fn history(inner: &Inner, project_id: i64, head: &str) -> Vec<SimCommit> {
    let mut out = Vec::new();
    walk(inner, project_id, head, |c| {
        out.push(c.clone());
        true
    });
    out
}

/// Visits the first-parent history from `head`, newest first, while `visit` returns true; one lookup key
/// is reused throughout, so long histories cost no allocation per step.
fn walk<'a>(
    inner: &'a Inner,
    project_id: i64,
    head: &str,
    mut visit: impl FnMut(&'a SimCommit) -> bool,
) {
    let mut key = (project_id, head.to_owned());
    while let Some(c) = inner.commits.get(&key) {
        if !visit(c) {
            return;
        }
        match inner.parents.get(&key).and_then(|p| p.first()) {
            Some(parent) => key.1.clone_from(parent),
            None => return,
        }
    }
}

/// The SHAs of the first-parent history from `head`.
fn history_ids(inner: &Inner, project_id: i64, head: &str) -> HashSet<String> {
    let mut out = HashSet::new();
    walk(inner, project_id, head, |c| {
        out.insert(c.id.clone());
        true
    });
    out
}

fn parents_of(inner: &Inner, project_id: i64, sha: &str) -> Vec<String> {
    inner
        .parents
        .get(&(project_id, sha.to_owned()))
        .cloned()
        .unwrap_or_default()
}

/// A branch name, a full SHA, or an unambiguous SHA prefix of at least 7 characters.
fn resolve(inner: &Inner, p: &Project, r: &str) -> Option<String> {
    if let Some(head) = p.branches.get(r) {
        return Some(head.clone());
    }
    if r.len() < 7 {
        return None;
    }
    let mut matches = inner
        .commits
        .keys()
        .filter(|(pid, sha)| *pid == p.id && sha.starts_with(r));
    match (matches.next(), matches.next()) {
        (Some((_, sha)), None) => Some(sha.clone()),
        _ => None,
    }
}

/// Adds a commit on top of `parent` and returns it.
fn new_commit(
    inner: &mut Inner,
    project_id: i64,
    parent: &str,
    message: &str,
    n: usize,
    now: time::OffsetDateTime,
) -> SimCommit {
    let sha = super::sha_for(&format!(
        "{project_id}-{parent}-{}-{n}-{message}",
        inner.commits.len()
    ));
    let c = SimCommit {
        id: sha.clone(),
        message: format!("{message}\n"),
        timestamp: timestamp(now),
        author_name: "Ada Lovelace".into(),
        author_email: "ada@example.com".into(),
        added: vec![format!("src/file{}.rs", inner.commits.len())],
        modified: vec!["README.md".into()],
    };
    inner.commits.insert((project_id, sha.clone()), c.clone());
    inner
        .parents
        .insert((project_id, sha), vec![parent.to_owned()]);
    c
}

/// The Push Hook payload. `commits` are all new commits, oldest first; the payload keeps the newest 20.
#[allow(clippy::too_many_arguments)]
pub(super) fn push_payload(
    base: &str,
    i: &Inner,
    p: &Project,
    branch: &str,
    before: &str,
    after: &str,
    commits: &[SimCommit],
    total: usize,
    pusher: i64,
) -> Value {
    let user = i
        .users
        .iter()
        .find(|u| u.id == pusher)
        .cloned()
        .expect("pusher exists");
    let web_url = format!("{base}/{}", p.path_with_namespace);
    let kept = &commits[commits.len().saturating_sub(PUSH_COMMITS_LIMIT)..];
    json!({
        "object_kind": "push",
        "event_name": "push",
        "before": before,
        "after": after,
        "ref": format!("refs/heads/{branch}"),
        "ref_protected": branch == p.default_branch,
        "checkout_sha": if after == NULL_SHA { Value::Null } else { Value::String(after.to_owned()) },
        "message": null,
        "user_id": user.id,
        "user_name": user.name,
        "user_username": user.username,
        "user_email": "[REDACTED]",
        "user_avatar": format!("{base}/uploads/-/system/user/avatar/{}/avatar.png", user.id),
        "project_id": p.id,
        "project": super::project_json(base, p),
        "commits": kept.iter().map(|c| json!({
            "id": c.id,
            "message": c.message,
            "title": c.message.lines().next().unwrap_or(""),
            "timestamp": c.timestamp,
            "url": format!("{web_url}/-/commit/{}", c.id),
            "author": { "name": c.author_name, "email": c.author_email },
            "added": c.added,
            "modified": c.modified,
            "removed": [],
        })).collect::<Vec<_>>(),
        "total_commits_count": total,
        "push_options": {},
        "repository": {
            "name": p.name,
            "url": format!("{base}/{}.git", p.path_with_namespace),
            "description": "",
            "homepage": web_url,
            "git_http_url": format!("{web_url}.git"),
            "git_ssh_url": format!("git@sim:{}.git", p.path_with_namespace),
            "visibility_level": 0
        }
    })
}

impl GitLabSim {
    /// Moves `branch` and returns the Push Hook payload with the new SHAs. A new branch starts at the
    /// default branch head; `force` rewrites an existing one from there too.
    fn update_ref(
        &self,
        project_id: i64,
        branch: &str,
        messages: &[&str],
        pusher: i64,
        force: bool,
    ) -> (Value, Vec<String>) {
        let now = self.shared.now();
        let mut i = self.shared.inner.lock().unwrap();
        let p = i
            .projects
            .iter()
            .find(|p| p.id == project_id)
            .expect("project exists")
            .clone();
        let old = p.branches.get(branch).cloned();
        let before = old.clone().unwrap_or_else(|| NULL_SHA.to_owned());
        let mut parent = match (&old, force) {
            (Some(head), false) => head.clone(),
            _ => p.branches[&p.default_branch].clone(),
        };
        let mut commits = Vec::new();
        for (n, message) in messages.iter().enumerate() {
            let c = new_commit(&mut i, project_id, &parent, message, n, now);
            parent = c.id.clone();
            commits.push(c);
        }
        let after = parent;
        i.projects
            .iter_mut()
            .find(|x| x.id == project_id)
            .unwrap()
            .branches
            .insert(branch.to_owned(), after.clone());
        let shas = commits.iter().map(|c| c.id.clone()).collect();
        let payload = push_payload(
            &self.base_url,
            &i,
            &p,
            branch,
            &before,
            &after,
            &commits,
            commits.len(),
            pusher,
        );
        (payload, shas)
    }

    /// Pushes new commits (one per message, oldest first) to `branch`, creating it from the default branch
    /// if needed, and delivers the Push Hook to every hook that covers the project. Returns the SHAs.
    pub async fn push(
        &self,
        project_id: i64,
        branch: &str,
        messages: &[&str],
        pusher: i64,
    ) -> Vec<String> {
        let (payload, shas) = self.update_ref(project_id, branch, messages, pusher, false);
        self.deliver(project_id, "Push Hook", payload).await;
        shas
    }

    /// One `git push` that updates several branches: one Push Hook per branch when at most 3 change,
    /// and none at all when more do, as GitLab's `push_event_hooks_limit` has it. Returns each branch's
    /// new SHAs.
    pub async fn push_refs(
        &self,
        project_id: i64,
        updates: &[(&str, &[&str])],
        pusher: i64,
    ) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        let mut payloads = Vec::new();
        for (branch, messages) in updates {
            let (payload, shas) = self.update_ref(project_id, branch, messages, pusher, false);
            payloads.push(payload);
            out.push(shas);
        }
        if updates.len() <= PUSH_EVENT_HOOKS_LIMIT {
            for payload in payloads {
                self.deliver(project_id, "Push Hook", payload).await;
            }
        }
        out
    }

    /// `git push --force`: `branch` is rewritten as the default branch head plus the new commits.
    pub async fn force_push(
        &self,
        project_id: i64,
        branch: &str,
        messages: &[&str],
        pusher: i64,
    ) -> Vec<String> {
        let (payload, shas) = self.update_ref(project_id, branch, messages, pusher, true);
        self.deliver(project_id, "Push Hook", payload).await;
        shas
    }

    /// Deletes a branch and delivers the Push Hook GitLab sends for it (`after` = forty zeros).
    pub async fn delete_branch(&self, project_id: i64, branch: &str, pusher: i64) {
        let payload = {
            let mut i = self.shared.inner.lock().unwrap();
            let p = i
                .projects
                .iter()
                .find(|p| p.id == project_id)
                .expect("project exists")
                .clone();
            let before = p
                .branches
                .get(branch)
                .cloned()
                .unwrap_or_else(|| NULL_SHA.to_owned());
            i.projects
                .iter_mut()
                .find(|x| x.id == project_id)
                .unwrap()
                .branches
                .remove(branch);
            push_payload(
                &self.base_url,
                &i,
                &p,
                branch,
                &before,
                NULL_SHA,
                &[],
                0,
                pusher,
            )
        };
        self.deliver(project_id, "Push Hook", payload).await;
    }
}

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/api/v4/projects/{id}/repository/branches", get(branches))
        .route(
            "/api/v4/projects/{id}/repository/branches/{branch}",
            get(branch),
        )
        .route("/api/v4/projects/{id}/repository/commits", get(commits))
        .route(
            "/api/v4/projects/{id}/repository/commits/{sha}",
            get(commit),
        )
        .route(
            "/api/v4/projects/{id}/repository/commits/{sha}/diff",
            get(commit_diff),
        )
        .route("/api/v4/projects/{id}/repository/compare", get(compare))
}

type Q = Query<HashMap<String, String>>;

/// Reading code on a private project needs Reporter: Guests get 403, strangers 404.
fn reader(s: &Shared, headers: &HeaderMap, id: &str) -> Result<(Project, i64), Response> {
    let (_, p, level) = s.visible_project(headers, id)?;
    if level < 20 {
        return Err(err(StatusCode::FORBIDDEN, "403 Forbidden"));
    }
    Ok((p, level))
}

fn commit_json(base: &str, inner: &Inner, p: &Project, c: &SimCommit) -> Value {
    json!({
        "id": c.id,
        "short_id": &c.id[..8],
        "created_at": c.timestamp,
        "parent_ids": parents_of(inner, p.id, &c.id),
        "title": c.message.lines().next().unwrap_or(""),
        "message": c.message,
        "author_name": c.author_name,
        "author_email": c.author_email,
        "authored_date": c.timestamp,
        "committer_name": c.author_name,
        "committer_email": c.author_email,
        "committed_date": c.timestamp,
        "trailers": {},
        "extended_trailers": {},
        "web_url": format!("{base}/{}/-/commit/{}", p.path_with_namespace, c.id),
    })
}

fn diffs_of(commits: &[SimCommit]) -> Vec<Value> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for c in commits {
        let title = c.message.lines().next().unwrap_or("");
        for (path, new) in c
            .added
            .iter()
            .map(|p| (p, true))
            .chain(c.modified.iter().map(|p| (p, false)))
        {
            if !seen.insert(path.clone()) {
                continue;
            }
            let diff = if new {
                format!("@@ -0,0 +1 @@\n+{title}\n")
            } else {
                format!("@@ -1 +1,2 @@\n # README\n+{title}\n")
            };
            out.push(json!({
                "old_path": path,
                "new_path": path,
                "a_mode": if new { "0" } else { "100644" },
                "b_mode": "100644",
                "new_file": new,
                "renamed_file": false,
                "deleted_file": false,
                "generated_file": false,
                "diff": diff,
            }));
        }
    }
    out
}

/// `on_default`: the SHAs of the default branch's history (computed once per list).
fn branch_json(
    base: &str,
    inner: &Inner,
    p: &Project,
    name: &str,
    level: i64,
    on_default: &HashSet<String>,
) -> Value {
    let head = &p.branches[name];
    let merged = name != p.default_branch && on_default.contains(head);
    let c = inner
        .commits
        .get(&(p.id, head.clone()))
        .expect("branch head exists");
    json!({
        "name": name,
        "merged": merged,
        "protected": name == p.default_branch,
        "default": name == p.default_branch,
        "developers_can_push": false,
        "developers_can_merge": false,
        "can_push": if name == p.default_branch { level >= 40 } else { level >= 30 },
        "web_url": format!("{base}/{}/-/tree/{name}", p.path_with_namespace),
        "commit": commit_json(base, inner, p, c),
    })
}

fn link_for(base: &str, p: &Project, rest: &str, raw: Option<&str>) -> String {
    super::with_query(
        format!("{base}/api/v4/projects/{}/repository/{rest}", p.id),
        &super::query_without(raw, &["page", "per_page"]),
    )
}

/// Branches sorted by name (GitLab offers no other order), filtered by `search` (`^`/`$` anchor it).
async fn branches(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Q,
    RawQuery(raw): RawQuery,
) -> Result<Response, Response> {
    let (p, level) = reader(&s, &headers, &id)?;
    let base = s.base();
    let search = q.get("search").map(|t| t.to_lowercase());
    let all: Vec<Value> = {
        let inner = s.inner.lock().unwrap();
        let on_default = history_ids(&inner, p.id, &p.branches[&p.default_branch]);
        p.branches
            .keys()
            .filter(|name| {
                search.as_deref().is_none_or(|t| {
                    let name = name.to_lowercase();
                    match (t.strip_prefix('^'), t.strip_suffix('$')) {
                        (Some(prefix), _) => name.starts_with(prefix),
                        (_, Some(suffix)) => name.ends_with(suffix),
                        _ => name.contains(t),
                    }
                })
            })
            .map(|name| branch_json(&base, &inner, &p, name, level, &on_default))
            .collect()
    };
    Ok(super::paging::offset_page(
        all,
        super::usize_param(&q, "page")?,
        super::usize_param(&q, "per_page")?,
        &link_for(&base, &p, "branches", raw.as_deref()),
    ))
}

async fn branch(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path((id, name)): Path<(String, String)>,
) -> Result<Response, Response> {
    let (p, level) = reader(&s, &headers, &id)?;
    if !p.branches.contains_key(&name) {
        return Err(err(StatusCode::NOT_FOUND, "404 Branch Not Found"));
    }
    let inner = s.inner.lock().unwrap();
    let on_default = history_ids(&inner, p.id, &p.branches[&p.default_branch]);
    Ok(axum::Json(branch_json(
        &s.base(),
        &inner,
        &p,
        &name,
        level,
        &on_default,
    ))
    .into_response())
}

fn time_param(
    q: &HashMap<String, String>,
    name: &str,
) -> Result<Option<time::OffsetDateTime>, Response> {
    q.get(name)
        .map(|v| {
            time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339)
                .map_err(|_| param_err(&format!("{name} is invalid")))
        })
        .transpose()
}

fn committed(c: &SimCommit) -> time::OffsetDateTime {
    time::OffsetDateTime::parse(&c.timestamp, &time::format_description::well_known::Rfc3339)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

/// Commits reachable from `ref_name` (default branch by default; every branch with `all=true`), newest
/// first, within `since`/`until`.
async fn commits(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Q,
    RawQuery(raw): RawQuery,
) -> Result<Response, Response> {
    let (p, _) = reader(&s, &headers, &id)?;
    let since = time_param(&q, "since")?;
    let until = time_param(&q, "until")?;
    let all = super::bool_param(&q, "all")?.unwrap_or(false);
    let base = s.base();
    let (found, page, per_page) = {
        let inner = s.inner.lock().unwrap();
        let mut list: Vec<&SimCommit> = Vec::new();
        if all {
            // Every branch's history, each commit once: a walk stops at the first commit an earlier one
            // saw, as everything below it was seen too.
            let mut seen = HashSet::new();
            for head in p.branches.values() {
                walk(&inner, p.id, head, |c| {
                    let new = seen.insert(c.id.as_str());
                    if new {
                        list.push(c);
                    }
                    new
                });
            }
        } else {
            let r = q
                .get("ref_name")
                .cloned()
                .unwrap_or_else(|| p.default_branch.clone());
            let head = resolve(&inner, &p, &r)
                .ok_or_else(|| err(StatusCode::NOT_FOUND, "404 Ref Not Found"))?;
            walk(&inner, p.id, &head, |c| {
                list.push(c);
                true
            });
        }
        let mut dated: Vec<(&SimCommit, time::OffsetDateTime)> =
            list.into_iter().map(|c| (c, committed(c))).collect();
        if all {
            // Stable, as before: commits with the same date keep their order.
            dated.sort_by_key(|(_, t)| std::cmp::Reverse(*t));
        }
        dated.retain(|(_, t)| since.is_none_or(|s| *t >= s) && until.is_none_or(|u| *t <= u));
        let page = super::usize_param(&q, "page")?;
        let per_page = super::usize_param(&q, "per_page")?;
        // Only the requested page is rendered; `offset_page` needs the others only to count them.
        let size = per_page.unwrap_or(20).clamp(1, 100);
        let first = (page.unwrap_or(1).max(1) - 1).saturating_mul(size);
        let shown = first..first.saturating_add(size);
        let found: Vec<Value> = dated
            .iter()
            .enumerate()
            .map(|(n, (c, _))| {
                if shown.contains(&n) {
                    commit_json(&base, &inner, &p, c)
                } else {
                    Value::Null
                }
            })
            .collect();
        (found, page, per_page)
    };
    Ok(super::paging::offset_page(
        found,
        page,
        per_page,
        &link_for(&base, &p, "commits", raw.as_deref()),
    ))
}

async fn commit(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path((id, sha)): Path<(String, String)>,
) -> Result<Response, Response> {
    let (p, _) = reader(&s, &headers, &id)?;
    let inner = s.inner.lock().unwrap();
    let c = resolve(&inner, &p, &sha)
        .and_then(|sha| inner.commits.get(&(p.id, sha)))
        .ok_or_else(|| err(StatusCode::NOT_FOUND, "404 Commit Not Found"))?;
    let mut out = commit_json(&s.base(), &inner, &p, c);
    let additions = c.added.len() + c.modified.len();
    out["stats"] = json!({ "additions": additions, "deletions": 0, "total": additions });
    out["status"] = Value::Null;
    out["last_pipeline"] = Value::Null;
    out["project_id"] = json!(p.id);
    Ok(axum::Json(out).into_response())
}

async fn commit_diff(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path((id, sha)): Path<(String, String)>,
    Query(q): Q,
    RawQuery(raw): RawQuery,
) -> Result<Response, Response> {
    let (p, _) = reader(&s, &headers, &id)?;
    let diffs = {
        let inner = s.inner.lock().unwrap();
        let c = resolve(&inner, &p, &sha)
            .and_then(|sha| inner.commits.get(&(p.id, sha)))
            .ok_or_else(|| err(StatusCode::NOT_FOUND, "404 Commit Not Found"))?;
        diffs_of(std::slice::from_ref(c))
    };
    Ok(super::paging::offset_page(
        diffs,
        super::usize_param(&q, "page")?,
        super::usize_param(&q, "per_page")?,
        &link_for(
            &s.base(),
            &p,
            &format!("commits/{sha}/diff"),
            raw.as_deref(),
        ),
    ))
}

/// `from...to`: the commits on `to` that `from` lacks, oldest first, and the files they touch.
async fn compare(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Q,
) -> Result<Response, Response> {
    let (p, _) = reader(&s, &headers, &id)?;
    let from = q.get("from").ok_or_else(|| param_err("from is missing"))?;
    let to = q.get("to").ok_or_else(|| param_err("to is missing"))?;
    let base = s.base();
    let inner = s.inner.lock().unwrap();
    let not_found = || err(StatusCode::NOT_FOUND, "404 Ref Not Found");
    let from_sha = resolve(&inner, &p, from).ok_or_else(not_found)?;
    let to_sha = resolve(&inner, &p, to).ok_or_else(not_found)?;
    let known: HashSet<String> = history(&inner, p.id, &from_sha)
        .into_iter()
        .map(|c| c.id)
        .collect();
    let mut new: Vec<SimCommit> = history(&inner, p.id, &to_sha)
        .into_iter()
        .filter(|c| !known.contains(&c.id))
        .collect();
    new.reverse();
    let head = inner
        .commits
        .get(&(p.id, to_sha.clone()))
        .expect("resolved");
    Ok(axum::Json(json!({
        "commit": if new.is_empty() { Value::Null } else { commit_json(&base, &inner, &p, head) },
        "commits": new.iter().map(|c| commit_json(&base, &inner, &p, c)).collect::<Vec<_>>(),
        "diffs": diffs_of(&new),
        "compare_timeout": false,
        "compare_same_ref": from_sha == to_sha,
        "web_url": format!("{base}/{}/-/compare/{from_sha}...{to_sha}", p.path_with_namespace),
    }))
    .into_response())
}
