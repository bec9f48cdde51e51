//! Merge requests: the control methods that move one through its life (each delivering the `Merge Request
//! Hook` GitLab sends), and the REST endpoints a backfill reads.
//!
//! Also holds the small helpers the other feature modules (CI, deployments, feature flags) share: GitLab's
//! date formats, user shapes, access checks and list URLs.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::macros::format_description;

use super::{
    GitLabSim, Inner, Project, Shared, SimCommit, User, err, paging, project_json, sha_for,
};

/// What `open_merge_request` returns: the global id and the per-project iid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MergeRequestRef {
    pub id: i64,
    pub iid: i64,
}

#[derive(Debug, Clone)]
pub(super) struct MergeRequest {
    pub(super) id: i64,
    pub(super) iid: i64,
    pub(super) project_id: i64,
    pub(super) title: String,
    pub(super) description: String,
    /// `opened`, `closed` or `merged`.
    pub(super) state: &'static str,
    pub(super) source_branch: String,
    pub(super) target_branch: String,
    pub(super) author_id: i64,
    pub(super) assignee_ids: Vec<i64>,
    pub(super) reviewer_ids: Vec<i64>,
    pub(super) approvals: Vec<(i64, OffsetDateTime)>,
    /// The MR's own commits, oldest first: recomputed from the branches while open, frozen afterwards.
    pub(super) commit_shas: Vec<String>,
    pub(super) created_at: OffsetDateTime,
    pub(super) updated_at: OffsetDateTime,
    pub(super) last_edited_at: Option<OffsetDateTime>,
    pub(super) last_edited_by: Option<i64>,
    pub(super) merged_at: Option<OffsetDateTime>,
    pub(super) merged_by: Option<i64>,
    pub(super) closed_at: Option<OffsetDateTime>,
    pub(super) closed_by: Option<i64>,
    pub(super) merge_commit_sha: Option<String>,
    pub(super) head_pipeline_id: Option<i64>,
}

impl MergeRequest {
    pub(super) fn sha(&self) -> Option<&str> {
        self.commit_shas.last().map(String::as_str)
    }

    /// GitLab derives draft status from the title prefix.
    pub(super) fn draft(&self) -> bool {
        let t = self.title.to_ascii_lowercase();
        ["draft:", "[draft]", "(draft)", "draft "]
            .iter()
            .any(|p| t.starts_with(p))
    }

    pub(super) fn detailed_merge_status(&self) -> &'static str {
        match self.state {
            "opened" if self.draft() => "draft_status",
            "opened" => "mergeable",
            _ => "not_open",
        }
    }

    fn state_id(&self) -> i64 {
        match self.state {
            "opened" => 1,
            "closed" => 2,
            "merged" => 3,
            _ => 4,
        }
    }

    pub(super) fn url(&self, base: &str, p: &Project) -> String {
        format!(
            "{base}/{}/-/merge_requests/{}",
            p.path_with_namespace, self.iid
        )
    }
}

// ---- helpers shared by the feature modules -------------------------------------------------------------

/// The simulated clock at millisecond precision, the precision REST shows: a timestamp read back from an
/// entity then compares equal to the stored one in `updated_after`/`updated_before` filters.
pub(super) fn clock(s: &Shared) -> OffsetDateTime {
    let t = s.now();
    t.replace_millisecond(t.millisecond()).unwrap_or(t)
}

/// REST timestamps: `2026-11-27T10:00:00.000Z`.
pub(super) fn rest_time(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        ))
        .expect("formattable")
}

/// Merge request and pipeline hooks use Ruby's `Time#to_s`: `2026-11-27 10:00:00 UTC`.
pub(super) fn hook_time(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(format_description!(
            "[year]-[month]-[day] [hour]:[minute]:[second] UTC"
        ))
        .expect("formattable")
}

/// A git-style timestamp for commits the simulator creates itself (merge commits).
pub(super) fn git_time(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second]+00:00"
        ))
        .expect("formattable")
}

pub(super) fn opt_rest_time(t: Option<OffsetDateTime>) -> Value {
    t.map_or(Value::Null, |t| Value::String(rest_time(t)))
}

pub(super) fn opt_hook_time(t: Option<OffsetDateTime>) -> Value {
    t.map_or(Value::Null, |t| Value::String(hook_time(t)))
}

/// Grape's `DateTime` parameters: ISO 8601, as the docs ask for (`2019-03-15T08:00:00Z`).
pub(super) fn parse_time(
    name: &str,
    v: &Option<String>,
) -> Result<Option<OffsetDateTime>, Response> {
    match v.as_deref() {
        None | Some("") => Ok(None),
        Some(s) => OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .map(Some)
            .map_err(|_| grape_error(&format!("{name} is invalid"))),
    }
}

/// Parameter validation failures come from Grape, with `error` instead of `message`.
pub(super) fn grape_error(message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({ "error": message })),
    )
        .into_response()
}

/// Checks a parameter against Grape's `values:` list.
pub(super) fn check_values(
    name: &str,
    v: &Option<String>,
    allowed: &[&str],
) -> Result<(), Response> {
    match v.as_deref() {
        Some(x) if !allowed.contains(&x) => {
            Err(grape_error(&format!("{name} does not have a valid value")))
        }
        _ => Ok(()),
    }
}

/// Request parameters as GitLab reads them: a JSON object or a form-encoded body.
pub(super) fn body_params(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<serde_json::Map<String, Value>, Response> {
    let form = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    if form {
        return Ok(url::form_urlencoded::parse(body)
            .into_owned()
            .map(|(k, v)| (k, Value::String(v)))
            .collect());
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(grape_error("The request body is not a JSON object")),
    }
}

/// A string parameter; numbers are accepted the way Grape coerces them.
pub(super) fn param_str(m: &serde_json::Map<String, Value>, key: &str) -> Option<String> {
    match m.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A Grape `Boolean` parameter: `Some(Err)` when present but not a boolean.
pub(super) fn param_bool(
    m: &serde_json::Map<String, Value>,
    key: &str,
) -> Option<Result<bool, Response>> {
    let v = m.get(key)?;
    Some(match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s == "true" || s == "1" => Ok(true),
        Value::String(s) if s == "false" || s == "0" => Ok(false),
        _ => Err(grape_error(&format!("{key} is invalid"))),
    })
}

pub(super) fn find_user(i: &Inner, id: i64) -> User {
    i.users
        .iter()
        .find(|u| u.id == id)
        .cloned()
        .expect("user exists")
}

fn avatar(base: &str, u: &User) -> String {
    format!("{base}/uploads/-/system/user/avatar/{}/avatar.png", u.id)
}

/// `UserBasic`, as REST entities embed users.
pub(super) fn user_basic(base: &str, u: &User) -> Value {
    json!({
        "id": u.id,
        "username": u.username,
        "name": u.name,
        "state": "active",
        "locked": false,
        "avatar_url": avatar(base, u),
        "web_url": format!("{base}/{}", u.username),
    })
}

/// `User#hook_attrs`, as webhooks embed users (no public email configured, so GitLab redacts it).
pub(super) fn user_hook(base: &str, u: &User) -> Value {
    json!({
        "id": u.id,
        "name": u.name,
        "username": u.username,
        "avatar_url": avatar(base, u),
        "email": "[REDACTED]",
    })
}

pub(super) fn commit_entity(base: &str, i: &Inner, p: &Project, c: &SimCommit) -> Value {
    let parents = i
        .parents
        .get(&(p.id, c.id.clone()))
        .cloned()
        .unwrap_or_default();
    json!({
        "id": c.id,
        "short_id": &c.id[..8],
        "created_at": c.timestamp,
        "parent_ids": parents,
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

/// `commit` / `last_commit` in webhooks.
pub(super) fn commit_hook(base: &str, p: &Project, c: &SimCommit) -> Value {
    json!({
        "id": c.id,
        "message": c.message,
        "title": c.message.lines().next().unwrap_or(""),
        "timestamp": c.timestamp,
        "url": format!("{base}/{}/-/commit/{}", p.path_with_namespace, c.id),
        "author": { "name": c.author_name, "email": c.author_email },
    })
}

pub(super) fn repository_hook(base: &str, p: &Project) -> Value {
    let web_url = format!("{base}/{}", p.path_with_namespace);
    json!({
        "name": p.name,
        "url": format!("{web_url}.git"),
        "description": "",
        "homepage": web_url,
        "git_http_url": format!("{web_url}.git"),
        "git_ssh_url": format!("git@sim:{}.git", p.path_with_namespace),
        "visibility_level": 0,
    })
}

/// The caller and the project, for a route needing `min` access. No access at all is `404 Project Not Found`
/// (GitLab hides private projects); some access below `min` answers `below`.
pub(super) fn authorize(
    s: &Shared,
    headers: &HeaderMap,
    id: &str,
    min: i64,
    below: StatusCode,
) -> Result<(User, Project, i64), Response> {
    let u = s.user(headers)?;
    let p = s.project(id)?;
    let level = s.access_level(p.group_id, u.id);
    if level < 10 || (level < min && below == StatusCode::NOT_FOUND) {
        return Err(err(StatusCode::NOT_FOUND, "404 Project Not Found"));
    }
    if level < min {
        return Err(err(below, "403 Forbidden"));
    }
    Ok((u, p, level))
}

/// A list URL with its filters, for `paging::offset_page`'s `Link` header.
pub(super) fn list_url(s: &Shared, path: &str, params: &[(&str, &Option<String>)]) -> String {
    let base = s.base_url.lock().unwrap().clone();
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        if let Some(v) = v {
            q.append_pair(k, v);
        }
    }
    let q = q.finish();
    if q.is_empty() {
        format!("{base}/api/v4{path}")
    } else {
        format!("{base}/api/v4{path}?{q}")
    }
}

/// Delivers hooks from a REST handler, in order, through the same path `GitLabSim::deliver` takes.
pub(super) async fn deliver_all(s: &Shared, project_id: i64, out: Vec<(&'static str, Value)>) {
    for (event, payload) in out {
        super::hooks::deliver(s, super::hooks::Target::Project(project_id), event, payload).await;
    }
}

pub(super) fn project_of(i: &Inner, project_id: i64) -> Project {
    i.projects
        .iter()
        .find(|p| p.id == project_id)
        .cloned()
        .expect("project exists")
}

// ---- state changes ---------------------------------------------------------------------------------------

/// The commits of `source` that `target` does not have, oldest first (first-parent histories).
fn branch_commits(
    i: &Inner,
    project_id: i64,
    source: &str,
    target: Option<&String>,
) -> Vec<String> {
    let on_target: std::collections::HashSet<String> = target
        .map(|t| super::repo::history(i, project_id, t))
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .collect();
    let mut own: Vec<String> = super::repo::history(i, project_id, source)
        .into_iter()
        .map(|c| c.id)
        .take_while(|id| !on_target.contains(id))
        .collect();
    own.reverse();
    own
}

/// Recomputes the commits of every open MR in the project from its branches, so `commits` and `sha`
/// follow pushes. Closed and merged MRs keep the commits they had.
pub(super) fn sync_heads(i: &mut Inner, project_id: i64) {
    let Some(p) = i.projects.iter().find(|p| p.id == project_id) else {
        return;
    };
    let branches = p.branches.clone();
    let updates: Vec<(usize, Vec<String>)> = i
        .merge_requests
        .iter()
        .enumerate()
        .filter(|(_, m)| m.project_id == project_id && m.state == "opened")
        .filter_map(|(n, m)| {
            let source = branches.get(&m.source_branch)?;
            Some((
                n,
                branch_commits(i, project_id, source, branches.get(&m.target_branch)),
            ))
        })
        .collect();
    for (n, shas) in updates {
        i.merge_requests[n].commit_shas = shas;
    }
}

fn mr_index(i: &Inner, project_id: i64, iid: i64) -> usize {
    i.merge_requests
        .iter()
        .position(|m| m.project_id == project_id && m.iid == iid)
        .expect("merge request exists")
}

fn users_hook(base: &str, i: &Inner, ids: &[i64]) -> Vec<Value> {
    ids.iter()
        .map(|id| {
            let u = find_user(i, *id);
            json!({ "id": u.id, "name": u.name, "username": u.username, "avatar_url": avatar(base, &u) })
        })
        .collect()
}

fn mr_hook(
    base: &str,
    i: &Inner,
    mr: &MergeRequest,
    action: &str,
    actor: i64,
    changes: Value,
) -> Value {
    let p = project_of(i, mr.project_id);
    let actor = find_user(i, actor);
    let last_commit = mr
        .sha()
        .and_then(|sha| i.commits.get(&(p.id, sha.to_owned())))
        .map(|c| commit_hook(base, &p, c));
    let mut attrs = json!({
        "id": mr.id,
        "iid": mr.iid,
        "target_branch": mr.target_branch,
        "source_branch": mr.source_branch,
        "source_project_id": p.id,
        "author_id": mr.author_id,
        "assignee_ids": mr.assignee_ids,
        "assignee_id": mr.assignee_ids.first(),
        "reviewer_ids": mr.reviewer_ids,
        "title": mr.title,
        "created_at": hook_time(mr.created_at),
        "updated_at": hook_time(mr.updated_at),
        "updated_by_id": mr.last_edited_by,
        "last_edited_at": opt_hook_time(mr.last_edited_at),
        "last_edited_by_id": mr.last_edited_by,
        "merged_at": opt_hook_time(mr.merged_at),
        "merge_user_id": mr.merged_by,
        "milestone_id": null,
        "state_id": mr.state_id(),
        "state": mr.state,
        "blocking_discussions_resolved": true,
        "work_in_progress": mr.draft(),
        "draft": mr.draft(),
        "first_contribution": false,
        "merge_status": "can_be_merged",
    });
    // Two halves: one `json!` this large exceeds the macro recursion limit.
    let rest = json!({
        "target_project_id": p.id,
        "description": mr.description,
        "prepared_at": hook_time(mr.created_at),
        "total_time_spent": 0,
        "time_change": 0,
        "human_total_time_spent": null,
        "human_time_change": null,
        "human_time_estimate": null,
        "url": mr.url(base, &p),
        "source": project_json(base, &p),
        "target": project_json(base, &p),
        "last_commit": last_commit,
        "head_pipeline_id": mr.head_pipeline_id,
        "merge_commit_sha": mr.merge_commit_sha,
        "labels": [],
        "action": action,
        "detailed_merge_status": mr.detailed_merge_status(),
    });
    if let (Value::Object(a), Value::Object(r)) = (&mut attrs, rest) {
        a.extend(r);
    }
    if action == "merge" {
        attrs["merge_when_pipeline_succeeds"] = json!(false);
    }
    json!({
        "object_kind": "merge_request",
        "event_type": "merge_request",
        "user": user_hook(base, &actor),
        "project": project_json(base, &p),
        "repository": { "name": p.name, "url": format!("{base}/{}.git", p.path_with_namespace), "description": "", "homepage": format!("{base}/{}", p.path_with_namespace) },
        "object_attributes": attrs,
        "labels": [],
        "changes": changes,
        "assignees": users_hook(base, i, &mr.assignee_ids),
        "reviewers": users_hook(base, i, &mr.reviewer_ids),
    })
}

fn change(previous: impl Into<Value>, current: impl Into<Value>) -> Value {
    json!({ "previous": previous.into(), "current": current.into() })
}

impl GitLabSim {
    /// Opens a merge request from `source_branch` (which must exist) and delivers `action: open`.
    pub async fn open_merge_request(
        &self,
        project_id: i64,
        source_branch: &str,
        target_branch: &str,
        title: &str,
        description: &str,
        author_id: i64,
    ) -> MergeRequestRef {
        let now = clock(&self.shared);
        let (r, payload) = {
            let mut i = self.shared.inner.lock().unwrap();
            let p = project_of(&i, project_id);
            let head = p
                .branches
                .get(source_branch)
                .cloned()
                .expect("source branch exists");
            let commit_shas = branch_commits(&i, project_id, &head, p.branches.get(target_branch));
            let id = Self::next_id(&mut i);
            let iid = i
                .merge_requests
                .iter()
                .filter(|m| m.project_id == project_id)
                .map(|m| m.iid)
                .max()
                .unwrap_or(0)
                + 1;
            let mr = MergeRequest {
                id,
                iid,
                project_id,
                title: title.into(),
                description: description.into(),
                state: "opened",
                source_branch: source_branch.into(),
                target_branch: target_branch.into(),
                author_id,
                assignee_ids: vec![],
                reviewer_ids: vec![],
                approvals: vec![],
                commit_shas,
                created_at: now,
                updated_at: now,
                last_edited_at: None,
                last_edited_by: None,
                merged_at: None,
                merged_by: None,
                closed_at: None,
                closed_by: None,
                merge_commit_sha: None,
                head_pipeline_id: None,
            };
            let changes = json!({
                "id": change(Value::Null, id),
                "iid": change(Value::Null, iid),
                "title": change(Value::Null, title),
                "description": change(Value::Null, description),
                "source_branch": change(Value::Null, source_branch),
                "target_branch": change(Value::Null, target_branch),
                "author_id": change(Value::Null, author_id),
                "state_id": change(Value::Null, 1),
                "created_at": change(Value::Null, hook_time(now)),
                "updated_at": change(Value::Null, hook_time(now)),
            });
            let payload = mr_hook(&self.base_url, &i, &mr, "open", author_id, changes);
            i.merge_requests.push(mr);
            (MergeRequestRef { id, iid }, payload)
        };
        self.deliver(project_id, "Merge Request Hook", payload)
            .await;
        r
    }

    /// Edits the title and/or description as the author; delivers `action: update` when something changed.
    pub async fn update_merge_request(
        &self,
        project_id: i64,
        iid: i64,
        title: Option<&str>,
        description: Option<&str>,
    ) {
        let now = clock(&self.shared);
        let payload = {
            let mut i = self.shared.inner.lock().unwrap();
            sync_heads(&mut i, project_id);
            let n = mr_index(&i, project_id, iid);
            let mr = &mut i.merge_requests[n];
            let mut changes = serde_json::Map::new();
            if let Some(t) = title.filter(|t| *t != mr.title) {
                changes.insert("title".into(), change(mr.title.clone(), t));
                mr.title = t.into();
            }
            if let Some(d) = description.filter(|d| *d != mr.description) {
                changes.insert("description".into(), change(mr.description.clone(), d));
                mr.description = d.into();
            }
            if changes.is_empty() {
                return;
            }
            changes.insert(
                "last_edited_at".into(),
                change(opt_hook_time(mr.last_edited_at), hook_time(now)),
            );
            changes.insert(
                "last_edited_by_id".into(),
                change(mr.last_edited_by, mr.author_id),
            );
            changes.insert(
                "updated_at".into(),
                change(hook_time(mr.updated_at), hook_time(now)),
            );
            mr.last_edited_at = Some(now);
            mr.last_edited_by = Some(mr.author_id);
            mr.updated_at = now;
            let mr = mr.clone();
            mr_hook(
                &self.base_url,
                &i,
                &mr,
                "update",
                mr.author_id,
                changes.into(),
            )
        };
        self.deliver(project_id, "Merge Request Hook", payload)
            .await;
    }

    /// Merges: a merge commit lands on the target branch, the MR becomes `merged`, `action: merge` is
    /// delivered. (No Push Hook for the target branch is sent.)
    pub async fn merge_merge_request(&self, project_id: i64, iid: i64, by: i64) {
        let now = clock(&self.shared);
        let payload = {
            let mut i = self.shared.inner.lock().unwrap();
            sync_heads(&mut i, project_id);
            let n = mr_index(&i, project_id, iid);
            let mr = i.merge_requests[n].clone();
            assert_eq!(
                mr.state, "opened",
                "only an open merge request can be merged"
            );
            let p = project_of(&i, project_id);
            let sha = sha_for(&format!("{project_id}-merge-{iid}-{}", i.commits.len()));
            let by_user = find_user(&i, by);
            i.commits.insert(
                (project_id, sha.clone()),
                SimCommit {
                    id: sha.clone(),
                    message: format!(
                        "Merge branch '{}' into '{}'\n\n{}\n\nSee merge request {}!{}\n",
                        mr.source_branch, mr.target_branch, mr.title, p.path_with_namespace, iid
                    ),
                    timestamp: git_time(now),
                    author_name: by_user.name.clone(),
                    author_email: by_user.email.clone(),
                    added: vec![],
                    modified: vec![],
                },
            );
            let parents = [
                p.branches.get(&mr.target_branch),
                mr.sha().map(|x| x.to_owned()).as_ref(),
            ]
            .into_iter()
            .flatten()
            .cloned()
            .collect();
            i.parents.insert((project_id, sha.clone()), parents);
            if let Some(project) = i.projects.iter_mut().find(|x| x.id == project_id) {
                project
                    .branches
                    .insert(mr.target_branch.clone(), sha.clone());
            }
            let mr = &mut i.merge_requests[n];
            let changes = json!({
                "state_id": change(1, 3),
                "updated_at": change(hook_time(mr.updated_at), hook_time(now)),
            });
            mr.state = "merged";
            mr.merged_at = Some(now);
            mr.merged_by = Some(by);
            mr.updated_at = now;
            mr.merge_commit_sha = Some(sha);
            let mr = mr.clone();
            mr_hook(&self.base_url, &i, &mr, "merge", by, changes)
        };
        self.deliver(project_id, "Merge Request Hook", payload)
            .await;
    }

    /// Closes without merging and delivers `action: close`.
    pub async fn close_merge_request(&self, project_id: i64, iid: i64, by: i64) {
        let now = clock(&self.shared);
        let payload = {
            let mut i = self.shared.inner.lock().unwrap();
            sync_heads(&mut i, project_id);
            let n = mr_index(&i, project_id, iid);
            let mr = &mut i.merge_requests[n];
            assert_eq!(
                mr.state, "opened",
                "only an open merge request can be closed"
            );
            let changes = json!({
                "state_id": change(1, 2),
                "updated_at": change(hook_time(mr.updated_at), hook_time(now)),
            });
            mr.state = "closed";
            mr.closed_at = Some(now);
            mr.closed_by = Some(by);
            mr.updated_at = now;
            let mr = mr.clone();
            mr_hook(&self.base_url, &i, &mr, "close", by, changes)
        };
        self.deliver(project_id, "Merge Request Hook", payload)
            .await;
    }

    /// Deletes a merge request as an owner can (`DELETE /projects/:id/merge_requests/:iid`): GitLab sends no
    /// webhook for it.
    pub fn delete_merge_request(&self, project_id: i64, iid: i64) {
        let mut i = self.shared.inner.lock().unwrap();
        let n = mr_index(&i, project_id, iid);
        i.merge_requests.remove(n);
    }

    /// Requests a review (acting as the author) and delivers `action: update` with a `reviewers` change.
    pub async fn add_reviewer(&self, project_id: i64, iid: i64, user_id: i64) {
        let now = clock(&self.shared);
        let payload = {
            let mut i = self.shared.inner.lock().unwrap();
            sync_heads(&mut i, project_id);
            let n = mr_index(&i, project_id, iid);
            if i.merge_requests[n].reviewer_ids.contains(&user_id) {
                return;
            }
            let before = i.merge_requests[n].reviewer_ids.clone();
            let mut after = before.clone();
            after.push(user_id);
            let changes = json!({
                "reviewers": change(users_hook(&self.base_url, &i, &before), users_hook(&self.base_url, &i, &after)),
                "updated_at": change(hook_time(i.merge_requests[n].updated_at), hook_time(now)),
            });
            let mr = &mut i.merge_requests[n];
            mr.reviewer_ids = after;
            mr.updated_at = now;
            let mr = mr.clone();
            mr_hook(&self.base_url, &i, &mr, "update", mr.author_id, changes)
        };
        self.deliver(project_id, "Merge Request Hook", payload)
            .await;
    }

    /// Approves as `user_id`. Without approval rules (Free) one approval approves the MR, so GitLab sends
    /// `action: approved`. Approving twice changes nothing and sends nothing.
    pub async fn approve_merge_request(&self, project_id: i64, iid: i64, user_id: i64) {
        let now = clock(&self.shared);
        let payload = {
            let mut i = self.shared.inner.lock().unwrap();
            sync_heads(&mut i, project_id);
            let n = mr_index(&i, project_id, iid);
            let mr = &mut i.merge_requests[n];
            if mr.approvals.iter().any(|(u, _)| *u == user_id) {
                return;
            }
            mr.approvals.push((user_id, now));
            let mr = mr.clone();
            mr_hook(&self.base_url, &i, &mr, "approved", user_id, json!({}))
        };
        self.deliver(project_id, "Merge Request Hook", payload)
            .await;
    }
}

// ---- REST --------------------------------------------------------------------------------------------------

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/api/v4/projects/{id}/merge_requests", get(list))
        .route("/api/v4/projects/{id}/merge_requests/{iid}", get(show))
        .route(
            "/api/v4/projects/{id}/merge_requests/{iid}/approvals",
            get(approvals),
        )
        .route(
            "/api/v4/projects/{id}/merge_requests/{iid}/commits",
            get(commits),
        )
}

/// `MergeRequestBasic` plus the fields of `MergeRequest` list entries.
fn entity(base: &str, i: &Inner, p: &Project, mr: &MergeRequest) -> Value {
    let author = find_user(i, mr.author_id);
    let users = |ids: &[i64]| -> Vec<Value> {
        ids.iter()
            .map(|id| user_basic(base, &find_user(i, *id)))
            .collect()
    };
    let by = |id: Option<i64>| id.map_or(Value::Null, |id| user_basic(base, &find_user(i, id)));
    let mut e = json!({
        "id": mr.id,
        "iid": mr.iid,
        "project_id": p.id,
        "title": mr.title,
        "description": mr.description,
        "state": mr.state,
        "created_at": rest_time(mr.created_at),
        "updated_at": rest_time(mr.updated_at),
        "merged_by": by(mr.merged_by),
        "merge_user": by(mr.merged_by),
        "merged_at": opt_rest_time(mr.merged_at),
        "closed_by": by(mr.closed_by),
        "closed_at": opt_rest_time(mr.closed_at),
        "target_branch": mr.target_branch,
        "source_branch": mr.source_branch,
        "user_notes_count": 0,
        "upvotes": 0,
        "downvotes": 0,
        "author": user_basic(base, &author),
        "assignees": users(&mr.assignee_ids),
        "assignee": mr.assignee_ids.first().map_or(Value::Null, |id| user_basic(base, &find_user(i, *id))),
        "reviewers": users(&mr.reviewer_ids),
        "source_project_id": p.id,
        "target_project_id": p.id,
        "labels": [],
        "draft": mr.draft(),
        "work_in_progress": mr.draft(),
        "milestone": null,
        "merge_when_pipeline_succeeds": false,
        "merge_status": "can_be_merged",
    });
    // Two halves: one `json!` this large exceeds the macro recursion limit.
    let rest = json!({
        "detailed_merge_status": mr.detailed_merge_status(),
        "sha": mr.sha(),
        "merge_commit_sha": mr.merge_commit_sha,
        "squash_commit_sha": null,
        "discussion_locked": null,
        "should_remove_source_branch": null,
        "force_remove_source_branch": false,
        "prepared_at": rest_time(mr.created_at),
        "reference": format!("!{}", mr.iid),
        "references": {
            "short": format!("!{}", mr.iid),
            "relative": format!("!{}", mr.iid),
            "full": format!("{}!{}", p.path_with_namespace, mr.iid),
        },
        "web_url": mr.url(base, p),
        "time_stats": { "time_estimate": 0, "total_time_spent": 0, "human_time_estimate": null, "human_total_time_spent": null },
        "squash": false,
        "squash_on_merge": false,
        "task_completion_status": { "count": 0, "completed_count": 0 },
        "has_conflicts": false,
        "blocking_discussions_resolved": true,
    });
    if let (Value::Object(a), Value::Object(r)) = (&mut e, rest) {
        a.extend(r);
    }
    e
}

#[derive(serde::Deserialize)]
struct ListQuery {
    state: Option<String>,
    order_by: Option<String>,
    sort: Option<String>,
    updated_after: Option<String>,
    updated_before: Option<String>,
    created_after: Option<String>,
    created_before: Option<String>,
    source_branch: Option<String>,
    target_branch: Option<String>,
    page: Option<usize>,
    per_page: Option<usize>,
}

async fn list(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<Response, Response> {
    let (_, p, _) = authorize(&s, &headers, &id, 20, StatusCode::NOT_FOUND)?;
    check_values(
        "state",
        &q.state,
        &["opened", "closed", "locked", "merged", "all"],
    )?;
    check_values(
        "order_by",
        &q.order_by,
        &["created_at", "updated_at", "merged_at", "title"],
    )?;
    check_values("sort", &q.sort, &["asc", "desc"])?;
    let updated_after = parse_time("updated_after", &q.updated_after)?;
    let updated_before = parse_time("updated_before", &q.updated_before)?;
    let created_after = parse_time("created_after", &q.created_after)?;
    let created_before = parse_time("created_before", &q.created_before)?;
    let base = s.base_url.lock().unwrap().clone();
    let all: Vec<Value> = {
        let mut i = s.inner.lock().unwrap();
        sync_heads(&mut i, p.id);
        let mut mrs: Vec<&MergeRequest> = i
            .merge_requests
            .iter()
            .filter(|m| m.project_id == p.id)
            .filter(|m| match q.state.as_deref() {
                None | Some("all") => true,
                Some(st) => m.state == st,
            })
            .filter(|m| updated_after.is_none_or(|t| m.updated_at >= t))
            .filter(|m| updated_before.is_none_or(|t| m.updated_at <= t))
            .filter(|m| created_after.is_none_or(|t| m.created_at >= t))
            .filter(|m| created_before.is_none_or(|t| m.created_at <= t))
            .filter(|m| {
                q.source_branch
                    .as_ref()
                    .is_none_or(|b| &m.source_branch == b)
            })
            .filter(|m| {
                q.target_branch
                    .as_ref()
                    .is_none_or(|b| &m.target_branch == b)
            })
            .collect();
        mrs.sort_by(|a, b| {
            let key = match q.order_by.as_deref().unwrap_or("created_at") {
                "updated_at" => a.updated_at.cmp(&b.updated_at),
                "merged_at" => a.merged_at.cmp(&b.merged_at),
                "title" => a.title.cmp(&b.title),
                _ => a.created_at.cmp(&b.created_at),
            };
            key.then(a.id.cmp(&b.id))
        });
        if q.sort.as_deref() != Some("asc") {
            mrs.reverse();
        }
        mrs.into_iter().map(|m| entity(&base, &i, &p, m)).collect()
    };
    let link = list_url(
        &s,
        &format!("/projects/{}/merge_requests", p.id),
        &[
            ("state", &q.state),
            ("order_by", &q.order_by),
            ("sort", &q.sort),
            ("updated_after", &q.updated_after),
            ("updated_before", &q.updated_before),
            ("created_after", &q.created_after),
            ("created_before", &q.created_before),
            ("source_branch", &q.source_branch),
            ("target_branch", &q.target_branch),
        ],
    );
    Ok(paging::offset_page(all, q.page, q.per_page, &link))
}

fn with_mr<T>(
    s: &Shared,
    headers: &HeaderMap,
    id: &str,
    iid: i64,
    f: impl FnOnce(&str, &Inner, &Project, &MergeRequest, &User) -> T,
) -> Result<T, Response> {
    let (u, p, _) = authorize(s, headers, id, 20, StatusCode::NOT_FOUND)?;
    let base = s.base_url.lock().unwrap().clone();
    let mut i = s.inner.lock().unwrap();
    sync_heads(&mut i, p.id);
    let mr = i
        .merge_requests
        .iter()
        .find(|m| m.project_id == p.id && m.iid == iid)
        .ok_or_else(|| err(StatusCode::NOT_FOUND, "404 Not found"))?;
    Ok(f(&base, &i, &p, mr, &u))
}

async fn show(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path((id, iid)): Path<(String, i64)>,
) -> Result<Response, Response> {
    with_mr(&s, &headers, &id, iid, |base, i, p, mr, _| {
        let mut e = entity(base, i, p, mr);
        let head_pipeline = mr
            .head_pipeline_id
            .and_then(|pid| i.pipelines.iter().find(|x| x.id == pid))
            .map(|pl| super::ci::pipeline_basic(base, p, pl));
        let target_head = p.branches.get(&mr.target_branch).cloned();
        e["head_pipeline"] = head_pipeline.clone().unwrap_or(Value::Null);
        e["pipeline"] = head_pipeline.unwrap_or(Value::Null);
        e["diff_refs"] = json!({
            "base_sha": target_head,
            "head_sha": mr.sha(),
            "start_sha": target_head,
        });
        e["changes_count"] = json!(mr.commit_shas.len().to_string());
        e["first_contribution"] = json!(false);
        e["user"] = json!({ "can_merge": true });
        axum::Json(e).into_response()
    })
}

async fn approvals(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path((id, iid)): Path<(String, i64)>,
) -> Result<Response, Response> {
    with_mr(&s, &headers, &id, iid, |base, i, p, mr, me| {
        axum::Json(json!({
            "id": mr.id,
            "iid": mr.iid,
            "project_id": p.id,
            "title": mr.title,
            "description": mr.description,
            "state": mr.state,
            "created_at": rest_time(mr.created_at),
            "updated_at": rest_time(mr.updated_at),
            "merge_status": "can_be_merged",
            "approved": true,
            "approvals_required": 0,
            "approvals_left": 0,
            "require_password_to_approve": false,
            "approved_by": mr.approvals.iter().map(|(u, _)| json!({ "user": user_basic(base, &find_user(i, *u)) })).collect::<Vec<_>>(),
            "suggested_approvers": [],
            "approvers": [],
            "approver_groups": [],
            "user_has_approved": mr.approvals.iter().any(|(u, _)| *u == me.id),
            "user_can_approve": mr.state == "opened" && !mr.approvals.iter().any(|(u, _)| *u == me.id),
            "approval_rules_left": [],
            "has_approval_rules": false,
            "merge_request_approvers_available": false,
            "multiple_approval_rules_available": false,
            "invalid_approvers_rules": [],
        }))
        .into_response()
    })
}

#[derive(serde::Deserialize)]
struct PageQuery {
    page: Option<usize>,
    per_page: Option<usize>,
}

async fn commits(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path((id, iid)): Path<(String, i64)>,
    Query(q): Query<PageQuery>,
) -> Result<Response, Response> {
    let (all, pid) = with_mr(&s, &headers, &id, iid, |base, i, p, mr, _| {
        // Newest first, as GitLab lists MR commits.
        let all: Vec<Value> = mr
            .commit_shas
            .iter()
            .rev()
            .filter_map(|sha| i.commits.get(&(p.id, sha.clone())))
            .map(|c| commit_entity(base, i, p, c))
            .collect();
        (all, p.id)
    })?;
    let link = list_url(
        &s,
        &format!("/projects/{pid}/merge_requests/{iid}/commits"),
        &[],
    );
    Ok(paging::offset_page(all, q.page, q.per_page, &link))
}
