//! GitLab objects → Jira entities. Ids follow `docs/interface.md` (and GitLab's own app): repository id =
//! project id, commit id = full SHA, branch id = hex SHA-256 of the branch name.

pub mod deployment;
pub mod feature_flag;
pub mod merge_request;
pub mod pipeline;
pub mod project_keys;

use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::gitlab::{Commit as GlCommit, GitLabTime, Project, PushEvent};
use crate::issue_keys;
use crate::jira::{self, DevinfoRequest, OperationType, ProviderMetadata, Repository};
use crate::qsh::hex;

/// Jira's branch id: lower-case hex SHA-256 of the branch name.
pub fn branch_id(name: &str) -> String {
    hex(&Sha256::digest(name.as_bytes()))
}

/// What one push means for Jira.
#[derive(Debug, Clone, PartialEq)]
pub enum PushAction {
    /// Nothing in the push mentions an issue key.
    Nothing,
    /// The branch was deleted: remove it from Jira (harmless when Jira never had it).
    DeleteBranch {
        repository_id: String,
        branch_id: String,
    },
    /// Store these commits and branches. `dropped_keys` lists entities that mention more issue keys than
    /// Jira takes on one entity; only the first 500 are sent, and the caller records the rest.
    Store {
        request: DevinfoRequest,
        dropped_keys: Vec<DroppedKeys>,
    },
}

/// Issue keys beyond Jira's per-entity limit that one entity could not carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DroppedKeys {
    /// `commit`, `branch` or `pull_request`.
    pub entity_type: &'static str,
    pub entity_id: String,
    pub dropped: usize,
}

/// Caps each entity's keys at Jira's limit, remembering what was dropped.
#[derive(Default)]
struct KeyCaps(Vec<DroppedKeys>);

impl KeyCaps {
    fn cap(
        &mut self,
        entity_type: &'static str,
        entity_id: &str,
        keys: issue_keys::ExtractedKeys,
    ) -> Vec<String> {
        let dropped = keys.dropped();
        if dropped > 0
            && !self
                .0
                .iter()
                .any(|d| d.entity_type == entity_type && d.entity_id == entity_id)
        {
            self.0.push(DroppedKeys {
                entity_type,
                entity_id: entity_id.to_owned(),
                dropped,
            });
        }
        keys.into_keys()
    }
}

/// The branch tip is not among the pushed commits (e.g. a new branch with no new commits); fetch this
/// commit from GitLab and map again with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeedsTipCommit(pub String);

/// Maps a push. Commits are sent when their message or the branch name has a key (a commit pushed to an
/// issue branch is that issue's work); the branch is sent when its name or one of its pushed commits has a
/// key, except the default branch, which is sent only when its own name has one.
pub fn map_push(
    push: &PushEvent,
    seq: i64,
    tip: Option<&GlCommit>,
) -> Result<PushAction, NeedsTipCommit> {
    map_push_with(push, seq, tip, &[])
}

/// Like [`map_push`], for a branch with open merge requests: like GitLab, the branch also carries the
/// keys of their titles and descriptions (`open_mr_texts`), so a push does not take away from the branch
/// what the MR gave it.
pub fn map_push_with(
    push: &PushEvent,
    seq: i64,
    tip: Option<&GlCommit>,
    open_mr_texts: &[String],
) -> Result<PushAction, NeedsTipCommit> {
    let Some(branch) = push.branch() else {
        return Ok(PushAction::Nothing);
    };
    let repository_id = push.project.id.to_string();
    if push.deletes_ref() {
        return Ok(PushAction::DeleteBranch {
            repository_id,
            branch_id: branch_id(branch),
        });
    }
    let branch_keys = issue_keys::extract([branch]);
    let mut caps = KeyCaps::default();
    let mut commits = Vec::new();
    let mut keys_from_commits = issue_keys::ExtractedKeys::default();
    for c in &push.commits {
        let mut keys = issue_keys::extract([c.message.as_str()]);
        keys_from_commits.merge(&keys);
        keys.merge(&branch_keys);
        if !keys.is_empty() {
            let keys = caps.cap("commit", &c.id, keys);
            commits.push(commit(c, keys, seq));
        }
    }
    let is_default = push.project.default_branch.as_deref() == Some(branch);
    let mut keys = branch_keys;
    keys.merge(&issue_keys::extract(
        open_mr_texts.iter().map(String::as_str),
    ));
    if !is_default {
        keys.merge(&keys_from_commits);
    }
    let mut branches = Vec::new();
    if !keys.is_empty() {
        let tip_sha = push
            .checkout_sha
            .clone()
            .unwrap_or_else(|| push.after.clone());
        let tip = push
            .commits
            .iter()
            .find(|c| c.id == tip_sha)
            .or(tip.filter(|c| c.id == tip_sha));
        let Some(tip) = tip else {
            return Err(NeedsTipCommit(tip_sha));
        };
        branches.push(branch_entity(
            &push.project,
            branch,
            keys,
            tip,
            seq,
            &mut caps,
        ));
    }
    if commits.is_empty() && branches.is_empty() {
        return Ok(PushAction::Nothing);
    }
    // More than Jira's 400 per type (a push completed from GitLab) is fine: `batching` splits requests.
    Ok(PushAction::Store {
        request: devinfo(
            repository(&push.project, seq, commits, branches),
            OperationType::Normal,
        ),
        dropped_keys: caps.0,
    })
}

/// The `properties` every request to Jira carries, so that `bulkByProperties` can later delete what one
/// subscription sent (unlink) or what came from one project (the project left the group). `projectId`
/// is also what GitLab's own app sends with feature flags.
pub fn properties(
    subscription_id: i64,
    project_id: i64,
) -> std::collections::BTreeMap<String, String> {
    std::collections::BTreeMap::from([
        (PROJECT_PROPERTY.to_owned(), project_property(project_id)),
        (
            SUBSCRIPTION_PROPERTY.to_owned(),
            subscription_id.to_string(),
        ),
    ])
}

pub const PROJECT_PROPERTY: &str = "projectId";
/// Feature flags also carry their id, so one deleted flag can be deleted from Jira by properties.
pub const FLAG_PROPERTY: &str = "gitlabFeatureFlag";
pub const SUBSCRIPTION_PROPERTY: &str = "gitlabForJiraSubscription";

pub fn project_property(project_id: i64) -> String {
    format!("project-{project_id}")
}

/// Adds what GitLab's REST API knows about a commit and a push does not: its changed files (the first
/// ten, with line counts, as Jira shows them; `fileCount` counts them all) and whether it is a merge.
pub fn enrich_commit(
    commit: &mut jira::Commit,
    project_web_url: &str,
    parent_count: usize,
    diffs: &[crate::gitlab::DiffFile],
) {
    if parent_count > 1 {
        commit.flags = vec!["MERGE_COMMIT".to_owned()];
    }
    commit.file_count = diffs.len().try_into().unwrap_or(i32::MAX);
    commit.files = diffs
        .iter()
        .take(jira::MAX_FILES_PER_COMMIT)
        .map(|d| {
            let (added, removed) = d.diff.lines().fold((0i32, 0i32), |(a, r), line| {
                if line.starts_with('+') && !line.starts_with("+++") {
                    (a.saturating_add(1), r)
                } else if line.starts_with('-') && !line.starts_with("---") {
                    (a, r.saturating_add(1))
                } else {
                    (a, r)
                }
            });
            let (path, change_type) = if d.new_file {
                (&d.new_path, "ADDED")
            } else if d.deleted_file {
                (&d.old_path, "DELETED")
            } else if d.renamed_file {
                (&d.new_path, "MOVED")
            } else {
                (&d.new_path, "MODIFIED")
            };
            // A deleted file has no blob at this commit; the commit itself shows the deletion.
            let url = if d.deleted_file {
                commit.url.clone()
            } else {
                blob_url(project_web_url, &commit.id, path).unwrap_or_else(|| commit.url.clone())
            };
            jira::CommitFile {
                path: jira::cap(path, jira::MAX_MESSAGE_CHARS),
                url,
                change_type: change_type.to_owned(),
                lines_added: added,
                lines_removed: removed,
            }
        })
        .collect();
}

fn blob_url(project_web_url: &str, sha: &str, path: &str) -> Option<String> {
    let mut url = url::Url::parse(project_web_url).ok()?;
    url.path_segments_mut()
        .ok()?
        .pop_if_empty()
        .extend(["-", "blob", sha])
        .extend(path.split('/'));
    let url = String::from(url);
    (url.chars().count() <= 2000).then_some(url)
}

/// The project every mapping test uses.
#[cfg(test)]
pub(crate) fn test_project() -> Project {
    Project {
        id: 15,
        name: "api".into(),
        web_url: "https://gitlab.example/g/api".into(),
        path_with_namespace: "g/api".into(),
        default_branch: Some("main".into()),
        avatar_url: None,
    }
}

/// A branch on `keys`, with its tip commit, which carries the branch's keys too (the tip is that work).
fn branch_entity(
    project: &Project,
    name: &str,
    keys: issue_keys::ExtractedKeys,
    tip: &GlCommit,
    seq: i64,
    caps: &mut KeyCaps,
) -> jira::Branch {
    let mut tip_keys = issue_keys::extract([tip.message.as_str()]);
    tip_keys.merge(&keys);
    let tip_keys = caps.cap("commit", &tip.id, tip_keys);
    let id = branch_id(name);
    let issue_keys = caps.cap("branch", &id, keys);
    jira::Branch {
        id,
        issue_keys,
        update_sequence_id: seq,
        name: jira::cap(name, jira::MAX_BRANCH_NAME_CHARS),
        last_commit: commit(tip, tip_keys, seq),
        url: branch_url(project, name),
        create_pull_request_url: create_pull_request_url(project, name),
    }
}

fn repository(
    p: &Project,
    seq: i64,
    commits: Vec<jira::Commit>,
    branches: Vec<jira::Branch>,
) -> Repository {
    Repository {
        id: p.id.to_string(),
        name: jira::cap(&p.name, jira::MAX_NAME_CHARS),
        url: p.web_url.clone(),
        update_sequence_id: seq,
        avatar: p.avatar_url.clone().filter(|a| a.starts_with("http")),
        commits,
        branches,
        pull_requests: vec![],
    }
}

/// The branch's commit list, as GitLab's app links branches. Jira matches a pull request to its branch by
/// comparing `sourceBranchUrl` with this, so every entity that names a branch uses it. Very long branch
/// names make URLs Jira refuses: those fall back to the branch list.
fn branch_url(p: &Project, branch: &str) -> String {
    Some(format!("{}/-/commits/{}", p.web_url, branch))
        .filter(|u| u.chars().count() <= jira::MAX_URL_CHARS)
        .unwrap_or_else(|| format!("{}/-/branches", p.web_url))
}

/// GitLab's new-merge-request page for the branch; optional, so dropped when too long for Jira.
fn create_pull_request_url(p: &Project, branch: &str) -> Option<String> {
    Some(format!(
        "{}/-/merge_requests/new?merge_request%5Bsource_branch%5D={}",
        p.web_url,
        url::form_urlencoded::byte_serialize(branch.as_bytes()).collect::<String>()
    ))
    .filter(|u| u.chars().count() <= jira::MAX_URL_CHARS)
}

/// `url` when Jira can store it, else `fallback` (a shorter page of the same object).
fn url_or(url: String, fallback: impl FnOnce() -> String) -> String {
    if url.chars().count() <= jira::MAX_URL_CHARS {
        url
    } else {
        fallback()
    }
}

/// `group/project`: `path_with_namespace`, or the path of `web_url` when a payload left it out.
/// The project's full path (`group/subgroup/project`), from its URL when the payload lacks it.
pub fn full_path(p: &Project) -> String {
    if !p.path_with_namespace.is_empty() {
        return p.path_with_namespace.clone();
    }
    url::Url::parse(&p.web_url)
        .map(|u| u.path().trim_matches('/').to_owned())
        .unwrap_or_default()
}

/// The first 8 characters of a SHA, as GitLab shortens them.
fn short_sha(sha: &str) -> String {
    sha.chars().take(8).collect()
}

/// The time Jira shows for a build, deployment, flag or pull request, all of which require one: GitLab's
/// own when it sent one we can read, else the update sequence, which is microseconds since the epoch when
/// the event arrived (the server's `SequenceClock`) and so the best stand-in. A sequence outside years
/// 1970–9999 (only in tests) gives the epoch, so that the result is always a valid RFC 3339 date-time.
fn time_or_seq(t: Option<GitLabTime>, seq: i64) -> String {
    t.or_else(|| {
        GitLabTime::from_unix_ms(seq / 1000)
            .filter(|at| (0..=253_402_300_799_999).contains(&at.unix_ms()))
    })
    .unwrap_or_else(|| GitLabTime::from(OffsetDateTime::UNIX_EPOCH))
    .rfc3339()
}

fn devinfo(repo: Repository, operation_type: OperationType) -> DevinfoRequest {
    DevinfoRequest {
        repositories: vec![repo],
        prevent_transitions: false,
        operation_type,
        properties: Default::default(),
        provider_metadata: ProviderMetadata::ours(),
    }
}

/// A GitLab commit as a Jira commit with the given keys.
pub fn commit(c: &GlCommit, issue_keys: Vec<String>, seq: i64) -> jira::Commit {
    let email = Some(c.author.email.clone()).filter(|e| !e.is_empty() && e != "[REDACTED]");
    jira::Commit {
        id: c.id.clone(),
        issue_keys,
        update_sequence_id: seq,
        display_id: c.id.chars().take(8).collect(),
        message: jira::cap(&c.message, jira::MAX_MESSAGE_CHARS),
        author: jira::Author {
            name: jira::cap(&c.author.name, jira::MAX_NAME_CHARS),
            email: email.filter(|e| e.chars().count() <= jira::MAX_NAME_CHARS),
        },
        file_count: (c.added.len() + c.modified.len() + c.removed.len())
            .try_into()
            .unwrap_or(i32::MAX),
        url: c.url.clone(),
        author_timestamp: to_utc_iso8601(&c.timestamp),
        files: vec![],
        flags: vec![],
    }
}

/// GitLab timestamps carry an offset (`2011-12-12T14:27:31+02:00`); Jira wants UTC. Unparseable input is
/// passed through unchanged so that Jira, not we, decides about it.
pub fn to_utc_iso8601(ts: &str) -> String {
    OffsetDateTime::parse(ts, &Rfc3339)
        .ok()
        .and_then(|t| t.to_offset(time::UtcOffset::UTC).format(&Rfc3339).ok())
        .unwrap_or_else(|| ts.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gitlab::{CommitAuthor, NULL_SHA};

    fn gl_commit(id: &str, message: &str) -> GlCommit {
        GlCommit {
            id: id.to_owned(),
            message: message.to_owned(),
            title: message.lines().next().unwrap_or("").to_owned(),
            timestamp: "2026-11-27T10:00:00+02:00".to_owned(),
            url: format!("https://gitlab.example/g/p/-/commit/{id}"),
            author: CommitAuthor {
                name: "Ada".into(),
                email: "ada@example.com".into(),
            },
            added: vec!["a.rs".into()],
            modified: vec!["b.rs".into(), "c.rs".into()],
            removed: vec![],
        }
    }

    fn push(branch: &str, commits: Vec<GlCommit>) -> PushEvent {
        let after = commits
            .last()
            .map(|c| c.id.clone())
            .unwrap_or_else(|| "f".repeat(40));
        PushEvent {
            object_kind: "push".into(),
            before: "a".repeat(40),
            after: after.clone(),
            git_ref: format!("refs/heads/{branch}"),
            checkout_sha: Some(after),
            user_username: None,
            project_id: 15,
            project: crate::mapping::test_project(),
            total_commits_count: commits.len() as i64,
            commits,
        }
    }

    fn stored(a: PushAction) -> Repository {
        match a {
            PushAction::Store { mut request, .. } => request.repositories.remove(0),
            other => panic!("expected Store, got {other:?}"),
        }
    }

    #[test]
    fn issue_branch_with_two_commits() {
        let p = push(
            "feature/PROJ-7-login",
            vec![
                gl_commit(&"1".repeat(40), "start"),
                gl_commit(&"2".repeat(40), "fix PROJ-8"),
            ],
        );
        let repo = stored(map_push(&p, 42, None).unwrap());
        assert_eq!(repo.id, "15");
        let keys: Vec<_> = repo.commits.iter().map(|c| c.issue_keys.clone()).collect();
        assert_eq!(keys, vec![vec!["PROJ-7"], vec!["PROJ-8", "PROJ-7"]]);
        let b = &repo.branches[0];
        assert_eq!(b.id, branch_id("feature/PROJ-7-login"));
        assert_eq!(b.issue_keys, ["PROJ-7", "PROJ-8"]);
        assert_eq!(b.last_commit.id, "2".repeat(40));
        assert_eq!(
            b.url,
            "https://gitlab.example/g/api/-/commits/feature/PROJ-7-login"
        );
        assert_eq!(
            b.create_pull_request_url.as_deref(),
            Some(
                "https://gitlab.example/g/api/-/merge_requests/new?merge_request%5Bsource_branch%5D=feature%2FPROJ-7-login"
            )
        );
        let c = &repo.commits[1];
        assert_eq!(
            (
                c.display_id.as_str(),
                c.file_count,
                c.author_timestamp.as_str()
            ),
            ("22222222", 3, "2026-11-27T08:00:00Z")
        );
        assert_eq!(c.update_sequence_id, 42);
    }

    #[test]
    fn enriched_commits_carry_files_line_counts_and_the_merge_flag() {
        let p = push("main", vec![gl_commit(&"1".repeat(40), "PROJ-1 fix")]);
        let mut repo = stored(map_push(&p, 1, None).unwrap());
        let c = &mut repo.commits[0];
        let diff = |path: &str, new: bool, deleted: bool, text: &str| crate::gitlab::DiffFile {
            old_path: path.into(),
            new_path: path.into(),
            new_file: new,
            renamed_file: false,
            deleted_file: deleted,
            diff: text.into(),
        };
        let mut diffs = vec![
            diff("src/a b.rs", true, false, "@@ -0,0 +1,2 @@\n+one\n+two\n"),
            diff("old.txt", false, true, "@@ -1 +0,0 @@\n-gone\n"),
            diff("README.md", false, false, "@@ -1,2 +1,2 @@\n-a\n+b\n c\n"),
        ];
        diffs.extend((0..9).map(|n| diff(&format!("f{n}"), false, false, "")));
        enrich_commit(c, "https://gitlab.example/g/api", 2, &diffs);
        assert_eq!(c.flags, ["MERGE_COMMIT"]);
        assert_eq!(c.file_count, 12);
        assert_eq!(c.files.len(), jira::MAX_FILES_PER_COMMIT);
        let f = |i: usize| {
            let f = &c.files[i];
            (
                f.path.as_str(),
                f.change_type.as_str(),
                f.lines_added,
                f.lines_removed,
            )
        };
        assert_eq!(f(0), ("src/a b.rs", "ADDED", 2, 0));
        assert_eq!(f(1), ("old.txt", "DELETED", 0, 1));
        assert_eq!(f(2), ("README.md", "MODIFIED", 1, 1));
        assert_eq!(
            c.files[0].url,
            format!(
                "https://gitlab.example/g/api/-/blob/{}/src/a%20b.rs",
                "1".repeat(40)
            )
        );
        assert_eq!(c.files[1].url, c.url, "a deleted file links to its commit");
    }

    #[test]
    fn an_open_merge_requests_keys_stay_on_its_branch() {
        let p = push("topic", vec![gl_commit(&"1".repeat(40), "tidy up")]);
        assert_eq!(map_push(&p, 1, None).unwrap(), PushAction::Nothing);
        let texts = ["Login form".to_owned(), "Implements PROJ-31.".to_owned()];
        let repo = stored(map_push_with(&p, 1, None, &texts).unwrap());
        assert!(repo.commits.is_empty(), "commits keep their own keys");
        assert_eq!(repo.branches[0].issue_keys, ["PROJ-31"]);
    }

    #[test]
    fn default_branch_is_not_attached_to_commit_keys() {
        let p = push(
            "main",
            vec![
                gl_commit(&"1".repeat(40), "PROJ-1 fix"),
                gl_commit(&"2".repeat(40), "no key"),
            ],
        );
        let repo = stored(map_push(&p, 1, None).unwrap());
        assert_eq!(repo.commits.len(), 1);
        assert!(repo.branches.is_empty());
    }

    #[test]
    fn plain_branch_takes_keys_of_its_commits() {
        let p = push("topic", vec![gl_commit(&"1".repeat(40), "QA-3 tests")]);
        let repo = stored(map_push(&p, 1, None).unwrap());
        assert_eq!(repo.branches[0].issue_keys, ["QA-3"]);
    }

    #[test]
    fn nothing_without_keys_and_deletion_and_tags() {
        assert_eq!(
            map_push(
                &push("topic", vec![gl_commit(&"1".repeat(40), "wip")]),
                1,
                None
            ),
            Ok(PushAction::Nothing)
        );
        let mut d = push("feature/PROJ-7", vec![]);
        d.after = NULL_SHA.into();
        assert_eq!(
            map_push(&d, 1, None),
            Ok(PushAction::DeleteBranch {
                repository_id: "15".into(),
                branch_id: branch_id("feature/PROJ-7")
            })
        );
        let mut t = push("x", vec![]);
        t.git_ref = "refs/tags/v1-PROJ-1".into();
        assert_eq!(map_push(&t, 1, None), Ok(PushAction::Nothing));
    }

    #[test]
    fn new_branch_without_commits_needs_its_tip() {
        let p = push("PROJ-9-new", vec![]);
        let tip_sha = "f".repeat(40);
        assert_eq!(map_push(&p, 1, None), Err(NeedsTipCommit(tip_sha.clone())));
        let tip = gl_commit(&tip_sha, "base");
        let repo = stored(map_push(&p, 1, Some(&tip)).unwrap());
        assert_eq!(repo.branches[0].last_commit.issue_keys, ["PROJ-9"]);
        assert!(repo.commits.is_empty());
    }

    #[test]
    fn keys_beyond_jiras_limit_are_dropped_and_reported() {
        let many: String = (1..=520).map(|n| format!("K{n}-1 ")).collect();
        let p = push("feature/PROJ-1", vec![gl_commit(&"1".repeat(40), &many)]);
        let PushAction::Store {
            request,
            dropped_keys,
        } = map_push(&p, 1, None).unwrap()
        else {
            panic!("expected Store")
        };
        let repo = &request.repositories[0];
        assert_eq!(
            repo.commits[0].issue_keys.len(),
            issue_keys::MAX_KEYS_PER_ENTITY
        );
        assert_eq!(
            repo.branches[0].issue_keys.len(),
            issue_keys::MAX_KEYS_PER_ENTITY
        );
        assert_eq!(
            dropped_keys,
            [
                DroppedKeys {
                    entity_type: "commit",
                    entity_id: "1".repeat(40),
                    dropped: 21
                },
                DroppedKeys {
                    entity_type: "branch",
                    entity_id: branch_id("feature/PROJ-1"),
                    dropped: 21
                },
            ]
        );
    }

    #[test]
    fn branch_names_and_urls_stay_within_jiras_limits() {
        let long = format!("PROJ-1-{}", "x".repeat(1_990));
        let p = push(&long, vec![gl_commit(&"1".repeat(40), "work")]);
        let repo = stored(map_push(&p, 1, None).unwrap());
        let b = &repo.branches[0];
        assert_eq!(b.name.chars().count(), jira::MAX_BRANCH_NAME_CHARS);
        assert_eq!(
            b.id,
            branch_id(&long),
            "the id still names the whole branch"
        );
        assert_eq!(b.url, "https://gitlab.example/g/api/-/branches");
        assert_eq!(b.create_pull_request_url, None);
    }

    #[test]
    fn long_messages_are_cut_and_redacted_emails_dropped() {
        let mut c = gl_commit(&"1".repeat(40), &format!("PROJ-1 {}", "é".repeat(2000)));
        c.author.email = "[REDACTED]".into();
        let j = commit(&c, vec!["PROJ-1".into()], 1);
        assert_eq!(j.message.chars().count(), jira::MAX_MESSAGE_CHARS);
        assert_eq!(j.author.email, None);
        assert_eq!(to_utc_iso8601("garbage"), "garbage");
    }
}
