//! Merge request → Jira pull request (and, while the MR is open, its source branch).

use crate::gitlab::{MergeRequestEvent, User};
use crate::issue_keys;
use crate::jira::{
    self, ApprovalStatus, Author, DevinfoRequest, OperationType, PullRequestStatus, Reviewer,
};

use super::{
    DroppedKeys, KeyCaps, branch_entity, branch_url, devinfo, full_path, repository, time_or_seq,
    url_or,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MergeRequestOptions {
    /// Also take issue keys from the source branch name (on by default: users expect an MR whose
    /// branch names the issue on that issue).
    pub keys_from_source_branch: bool,
}

impl Default for MergeRequestOptions {
    fn default() -> Self {
        Self {
            keys_from_source_branch: crate::settings::setting("GFJ_MR_KEYS_FROM_BRANCH").default
                == Some("true"),
        }
    }
}

/// What the webhook does not say about a merge request, for callers that read it from GitLab's REST
/// API. Everything defaults to "unknown".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MergeRequestExtras {
    /// The author: the webhook names only `author_id`, and its `user` is whoever caused the event.
    pub author: Option<User>,
    /// `user_notes_count`.
    pub comment_count: Option<i64>,
    /// Ids of the users who approved the merge request.
    pub approved_by: Vec<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum MergeRequestAction {
    /// No issue key anywhere.
    Nothing,
    Store {
        request: DevinfoRequest,
        dropped_keys: Vec<DroppedKeys>,
    },
}

pub fn map_merge_request(
    ev: &MergeRequestEvent,
    seq: i64,
    opts: MergeRequestOptions,
) -> MergeRequestAction {
    map_merge_request_with(ev, seq, opts, &MergeRequestExtras::default())
}

/// [`map_merge_request`] with what the caller learned beyond the webhook.
pub fn map_merge_request_with(
    ev: &MergeRequestEvent,
    seq: i64,
    opts: MergeRequestOptions,
    extras: &MergeRequestExtras,
) -> MergeRequestAction {
    let a = &ev.object_attributes;
    let project = &ev.project;
    let description = a.description.as_deref().unwrap_or("");
    let source = a.source_branch.as_str();
    let mut caps = KeyCaps::default();

    let mut pr_keys = issue_keys::extract([a.title.as_str(), description]);
    if opts.keys_from_source_branch {
        pr_keys.merge(&issue_keys::extract([source]));
    }
    // A fork's source branch lives in another repository: linking it here would name a branch this
    // repository does not have.
    let same_project = a.source_project_id == Some(project.id);
    let status = status(&a.state);

    let mut pull_requests = Vec::new();
    if !pr_keys.is_empty() {
        let id = a.id.to_string();
        let issue_keys = caps.cap("pull_request", &id, pr_keys);
        pull_requests.push(jira::PullRequest {
            id,
            issue_keys,
            update_sequence_id: seq,
            status,
            title: jira::cap(&a.title, jira::MAX_TITLE_CHARS),
            author: author(ev, extras),
            comment_count: extras
                .comment_count
                .map_or(0, |n| i32::try_from(n.max(0)).unwrap_or(i32::MAX)),
            source_branch: jira::cap(source, jira::MAX_SHORT_TEXT_CHARS),
            source_branch_url: same_project.then(|| branch_url(project, source)),
            destination_branch: Some(jira::cap(&a.target_branch, jira::MAX_SHORT_TEXT_CHARS)),
            destination_branch_url: Some(branch_url(project, &a.target_branch)),
            last_update: time_or_seq(a.last_edited_at.or(a.updated_at).or(a.created_at), seq),
            url: Some(a.url.clone())
                .filter(|u| !u.is_empty())
                .map(|u| {
                    url_or(u, || {
                        format!("{}/-/merge_requests/{}", project.web_url, a.iid)
                    })
                })
                .unwrap_or_else(|| format!("{}/-/merge_requests/{}", project.web_url, a.iid)),
            display_id: display_id(&full_path(project), a.iid),
            reviewers: ev
                .reviewers
                .iter()
                .map(|r| Reviewer {
                    name: jira::cap(display_name(r), jira::MAX_NAME_CHARS),
                    email: r
                        .email()
                        .filter(|e| e.chars().count() <= jira::MAX_REVIEWER_EMAIL_CHARS)
                        .map(str::to_owned),
                    approval_status: if r.id.is_some_and(|id| extras.approved_by.contains(&id)) {
                        ApprovalStatus::Approved
                    } else {
                        ApprovalStatus::Unapproved
                    },
                })
                .collect(),
        });
    }

    // GitLab links an open MR's source branch to the MR's issues too; once the MR is closed or merged
    // the branch goes back to what its pushes say.
    let mut branches = Vec::new();
    if status == PullRequestStatus::Open && same_project {
        let branch_keys = issue_keys::extract([source, a.title.as_str(), description]);
        if let (false, Some(tip)) = (branch_keys.is_empty(), a.last_commit.as_ref()) {
            branches.push(branch_entity(
                project,
                source,
                branch_keys,
                tip,
                seq,
                &mut caps,
            ));
        }
    }

    if pull_requests.is_empty() && branches.is_empty() {
        return MergeRequestAction::Nothing;
    }
    let mut repo = repository(project, seq, vec![], branches);
    repo.pull_requests = pull_requests;
    MergeRequestAction::Store {
        request: devinfo(repo, OperationType::Normal),
        dropped_keys: caps.0,
    }
}

fn status(state: &str) -> PullRequestStatus {
    match state {
        "opened" | "locked" => PullRequestStatus::Open,
        "merged" => PullRequestStatus::Merged,
        "closed" => PullRequestStatus::Declined,
        _ => PullRequestStatus::Unknown,
    }
}

fn display_name(u: &User) -> &str {
    if u.name.is_empty() {
        &u.username
    } else {
        &u.name
    }
}

/// The author as far as it is known. Jira requires an author but matches users only by email, so an
/// unknown author is named by id rather than mistaken for whoever caused the event.
fn author(ev: &MergeRequestEvent, extras: &MergeRequestExtras) -> Author {
    let author_id = ev.object_attributes.author_id;
    let known = extras.author.as_ref().or(ev
        .user
        .as_ref()
        .filter(|u| u.id.is_some() && u.id == author_id));
    match known {
        Some(u) => Author {
            name: jira::cap(display_name(u), jira::MAX_NAME_CHARS),
            email: u
                .email()
                .filter(|e| e.chars().count() <= jira::MAX_NAME_CHARS)
                .map(str::to_owned),
        },
        None => Author {
            name: author_id.map_or_else(
                || "GitLab user".to_owned(),
                |id| format!("GitLab user {id}"),
            ),
            email: None,
        },
    }
}

/// `group/project!12`. A path too long for Jira loses its start, so that the part that tells MRs apart
/// stays.
fn display_id(path: &str, iid: i64) -> String {
    let full = format!("{path}!{iid}");
    let n = full.chars().count();
    if n <= jira::MAX_SHORT_TEXT_CHARS {
        return full;
    }
    let tail: String = full
        .chars()
        .skip(n - (jira::MAX_SHORT_TEXT_CHARS - 1))
        .collect();
    format!("…{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gitlab::{
        Commit, CommitAuthor, GitLabTime, MergeRequestAttributes, MergeRequestEvent,
    };
    use crate::jira::Repository;
    use crate::mapping::branch_id;

    fn user(id: i64, name: &str, email: Option<&str>) -> User {
        User {
            id: Some(id),
            name: name.into(),
            username: name.to_lowercase(),
            avatar_url: None,
            email_as_sent: email.map(Into::into),
        }
    }

    fn mr(title: &str, description: &str, source: &str, state: &str) -> MergeRequestEvent {
        MergeRequestEvent {
            object_kind: "merge_request".into(),
            user: Some(user(5, "Ada", Some("ada@example.com"))),
            project: crate::mapping::test_project(),
            object_attributes: MergeRequestAttributes {
                id: 9001,
                iid: 12,
                title: title.into(),
                description: Some(description.into()),
                state: state.into(),
                action: Some("open".into()),
                source_branch: source.into(),
                target_branch: "main".into(),
                source_project_id: Some(15),
                target_project_id: 15,
                author_id: Some(5),
                assignee_ids: vec![],
                reviewer_ids: vec![7],
                created_at: GitLabTime::parse("2026-11-27 10:00:00 UTC"),
                updated_at: GitLabTime::parse("2026-11-27 12:00:00 UTC"),
                last_edited_at: None,
                merged_at: None,
                url: "https://gitlab.example/g/api/-/merge_requests/12".into(),
                last_commit: Some(Commit {
                    id: "c".repeat(40),
                    message: "wip".into(),
                    title: "wip".into(),
                    timestamp: "2026-11-27T10:00:00+02:00".into(),
                    url: format!("https://gitlab.example/g/api/-/commit/{}", "c".repeat(40)),
                    author: CommitAuthor {
                        name: "Ada".into(),
                        email: "ada@example.com".into(),
                    },
                    added: vec![],
                    modified: vec![],
                    removed: vec![],
                }),
                merge_commit_sha: None,
                head_pipeline_id: None,
                oldrev: None,
                draft: false,
                work_in_progress: false,
                merge_status: None,
                detailed_merge_status: None,
                blocking_discussions_resolved: None,
            },
            repository: None,
            labels: vec![],
            assignees: vec![],
            reviewers: vec![user(7, "Bob", Some("[REDACTED]"))],
            changes: serde_json::Value::Null,
        }
    }

    fn stored(a: MergeRequestAction) -> (Repository, Vec<DroppedKeys>) {
        match a {
            MergeRequestAction::Store {
                mut request,
                dropped_keys,
            } => {
                assert_eq!(request.operation_type, OperationType::Normal);
                assert!(!request.prevent_transitions);
                (request.repositories.remove(0), dropped_keys)
            }
            other => panic!("expected Store, got {other:?}"),
        }
    }

    fn map(ev: &MergeRequestEvent) -> MergeRequestAction {
        map_merge_request(ev, 42, MergeRequestOptions::default())
    }

    #[test]
    fn open_mr_as_pull_request_and_branch() {
        let ev = mr("PROJ-1 login", "also QA-2", "feature/PROJ-3", "opened");
        let (repo, dropped) = stored(map(&ev));
        assert!(dropped.is_empty());
        assert_eq!(repo.id, "15");
        let pr = &repo.pull_requests[0];
        assert_eq!(pr.id, "9001", "the global id, not the iid");
        assert_eq!(pr.display_id, "g/api!12");
        assert_eq!(pr.issue_keys, ["PROJ-1", "QA-2", "PROJ-3"]);
        assert_eq!(pr.status, PullRequestStatus::Open);
        assert_eq!(pr.update_sequence_id, 42);
        assert_eq!(pr.comment_count, 0);
        assert_eq!(pr.last_update, "2026-11-27T12:00:00Z");
        assert_eq!(pr.url, "https://gitlab.example/g/api/-/merge_requests/12");
        assert_eq!(
            pr.author,
            Author {
                name: "Ada".into(),
                email: Some("ada@example.com".into())
            }
        );
        assert_eq!(
            pr.reviewers,
            [Reviewer {
                name: "Bob".into(),
                email: None,
                approval_status: ApprovalStatus::Unapproved
            }]
        );
        assert_eq!(pr.source_branch, "feature/PROJ-3");
        assert_eq!(pr.destination_branch.as_deref(), Some("main"));

        let b = &repo.branches[0];
        assert_eq!(b.id, branch_id("feature/PROJ-3"));
        assert_eq!(b.issue_keys, ["PROJ-3", "PROJ-1", "QA-2"]);
        assert_eq!(b.last_commit.id, "c".repeat(40));
        assert_eq!(b.last_commit.issue_keys, ["PROJ-3", "PROJ-1", "QA-2"]);
        assert_eq!(
            pr.source_branch_url.as_deref(),
            Some(b.url.as_str()),
            "Jira matches the pull request to its branch by this URL"
        );
        assert_eq!(
            b.url,
            "https://gitlab.example/g/api/-/commits/feature/PROJ-3"
        );
        assert!(repo.commits.is_empty());
    }

    #[test]
    fn state_table() {
        let cases = [
            ("opened", PullRequestStatus::Open, true),
            ("locked", PullRequestStatus::Open, true),
            ("merged", PullRequestStatus::Merged, false),
            ("closed", PullRequestStatus::Declined, false),
            ("archived", PullRequestStatus::Unknown, false),
            ("", PullRequestStatus::Unknown, false),
        ];
        for (state, want, with_branch) in cases {
            let (repo, _) = stored(map(&mr("PROJ-1", "", "topic", state)));
            assert_eq!(repo.pull_requests[0].status, want, "{state}");
            assert_eq!(!repo.branches.is_empty(), with_branch, "{state}");
        }
    }

    #[test]
    fn key_sources() {
        // Title and description only, as GitLab's app, when the branch option is off.
        let off = MergeRequestOptions {
            keys_from_source_branch: false,
        };
        let ev = mr("login", "no keys", "PROJ-3-login", "merged");
        assert_eq!(map_merge_request(&ev, 1, off), MergeRequestAction::Nothing);
        let (repo, _) = stored(map(&ev));
        assert_eq!(repo.pull_requests[0].issue_keys, ["PROJ-3"]);
        assert!(repo.branches.is_empty(), "merged: no branch entity");

        // Open, option off, key only in the branch name: the branch still carries it (GitLab's branch
        // rule), the pull request does not exist for Jira.
        let ev = mr("login", "", "PROJ-3-login", "opened");
        let (repo, _) = stored(map_merge_request(&ev, 1, off));
        assert!(repo.pull_requests.is_empty());
        assert_eq!(repo.branches[0].issue_keys, ["PROJ-3"]);

        assert_eq!(
            map(&mr("plain", "text", "topic", "opened")),
            MergeRequestAction::Nothing
        );
        let mut no_description = mr("PROJ-1", "", "topic", "opened");
        no_description.object_attributes.description = None;
        let (repo, _) = stored(map(&no_description));
        assert_eq!(repo.pull_requests[0].issue_keys, ["PROJ-1"]);
    }

    #[test]
    fn forks_and_missing_tips_have_no_branch() {
        let mut ev = mr("PROJ-1", "", "topic", "opened");
        ev.object_attributes.source_project_id = Some(99);
        let (repo, _) = stored(map(&ev));
        assert!(repo.branches.is_empty());
        assert_eq!(repo.pull_requests[0].source_branch_url, None);

        let mut ev = mr("PROJ-1", "", "topic", "opened");
        ev.object_attributes.last_commit = None;
        let (repo, _) = stored(map(&ev));
        assert!(repo.branches.is_empty());
        assert_eq!(repo.pull_requests.len(), 1);
    }

    #[test]
    fn last_update_author_and_extras() {
        let mut ev = mr("PROJ-1", "", "topic", "opened");
        ev.object_attributes.last_edited_at = GitLabTime::parse("2026-11-27T13:00:00+02:00");
        let (repo, _) = stored(map(&ev));
        assert_eq!(repo.pull_requests[0].last_update, "2026-11-27T11:00:00Z");

        ev.object_attributes.last_edited_at = None;
        ev.object_attributes.updated_at = None;
        let (repo, _) = stored(map(&ev));
        assert_eq!(repo.pull_requests[0].last_update, "2026-11-27T10:00:00Z");

        ev.object_attributes.created_at = None;
        let (repo, _) = stored(map_merge_request(
            &ev,
            1_795_000_000_000_000,
            MergeRequestOptions::default(),
        ));
        assert_eq!(
            repo.pull_requests[0].last_update, "2026-11-18T11:06:40Z",
            "no GitLab time: when the event arrived"
        );

        // Someone other than the author caused the event.
        ev.user = Some(user(8, "Eve", Some("eve@example.com")));
        let (repo, _) = stored(map(&ev));
        assert_eq!(
            repo.pull_requests[0].author,
            Author {
                name: "GitLab user 5".into(),
                email: None
            }
        );

        let extras = MergeRequestExtras {
            author: Some(user(5, "Ada", None)),
            comment_count: Some(3),
            approved_by: vec![7],
        };
        let (repo, _) = stored(map_merge_request_with(
            &ev,
            1,
            MergeRequestOptions::default(),
            &extras,
        ));
        let pr = &repo.pull_requests[0];
        assert_eq!(pr.author.name, "Ada");
        assert_eq!(pr.comment_count, 3);
        assert_eq!(pr.reviewers[0].approval_status, ApprovalStatus::Approved);
    }

    #[test]
    fn keys_capped_and_limits_kept() {
        let many: String = (1..=510).map(|n| format!("K{n}-1 ")).collect();
        let long_branch = format!("PROJ-1-{}", "b".repeat(600));
        let mut ev = mr(
            &format!("{many}{}", "t".repeat(2000)),
            "",
            &long_branch,
            "opened",
        );
        ev.project.path_with_namespace = "g/".repeat(200);
        ev.object_attributes.url = format!("https://gitlab.example/{}", "u".repeat(2000));
        let (repo, dropped) = stored(map(&ev));
        let pr = &repo.pull_requests[0];
        assert_eq!(pr.issue_keys.len(), issue_keys::MAX_KEYS_PER_ENTITY);
        assert_eq!(pr.title.chars().count(), jira::MAX_TITLE_CHARS);
        assert_eq!(pr.source_branch.chars().count(), jira::MAX_SHORT_TEXT_CHARS);
        assert_eq!(pr.display_id.chars().count(), jira::MAX_SHORT_TEXT_CHARS);
        assert!(pr.display_id.ends_with("g/!12"));
        assert_eq!(pr.url, "https://gitlab.example/g/api/-/merge_requests/12");
        let b = &repo.branches[0];
        assert_eq!(b.name.chars().count(), jira::MAX_BRANCH_NAME_CHARS);
        assert_eq!(b.issue_keys.len(), issue_keys::MAX_KEYS_PER_ENTITY);
        assert_eq!(
            dropped,
            [
                DroppedKeys {
                    entity_type: "pull_request",
                    entity_id: "9001".into(),
                    dropped: 11
                },
                DroppedKeys {
                    entity_type: "commit",
                    entity_id: "c".repeat(40),
                    dropped: 11
                },
                DroppedKeys {
                    entity_type: "branch",
                    entity_id: branch_id(&long_branch),
                    dropped: 11
                },
            ]
        );
    }

    #[test]
    fn display_id_falls_back_to_the_url_path() {
        let mut ev = mr("PROJ-1", "", "topic", "opened");
        ev.project.path_with_namespace = String::new();
        let (repo, _) = stored(map(&ev));
        assert_eq!(repo.pull_requests[0].display_id, "g/api!12");
    }
}
