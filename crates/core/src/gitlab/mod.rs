//! GitLab webhook payloads, typed as far as we use them. Unknown fields are ignored so that newer GitLab
//! versions keep working; missing optional fields default. [`WebhookEvent::parse`] is the way in: it
//! checks that the body is the event its `X-Gitlab-Event` header says and carries the ids we route by.

pub mod capped;
mod dates;
mod events;
mod parse;
pub mod shorten;

use serde::{Deserialize, Serialize};

pub use dates::GitLabTime;
pub use events::{
    BuildEnvironment, DeploymentEvent, FeatureFlagAttributes, FeatureFlagEvent, JobCommit,
    JobEvent, Label, MemberEvent, MergeRequestAttributes, MergeRequestEvent, PipelineAttributes,
    PipelineBuild, PipelineEvent, PipelineMergeRequest, ProjectEvent, ProjectOwner, PushUser,
    REDACTED_EMAIL, Repository, SubgroupEvent, User, visible_email,
};
pub use parse::{PayloadError, WebhookEvent};

/// The `X-Gitlab-Event` header values we act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Push,
    TagPush,
    MergeRequest,
    Pipeline,
    Job,
    Deployment,
    FeatureFlag,
    /// Group hooks only (GitLab 17.6+).
    Project,
    /// Group hooks only.
    Subgroup,
    /// Group hooks only.
    Member,
    Other,
}

impl EventKind {
    /// Every kind with a header, in the order GitLab's documentation lists them.
    pub const KNOWN: [EventKind; 10] = [
        Self::Push,
        Self::TagPush,
        Self::MergeRequest,
        Self::Pipeline,
        Self::Job,
        Self::Deployment,
        Self::FeatureFlag,
        Self::Project,
        Self::Subgroup,
        Self::Member,
    ];

    /// Whether the service acts on deliveries of this kind. The others are acknowledged (200) and not
    /// queued: a hook may send them (GitLab sends tag pushes and member events to the same hook), and
    /// queuing what no handler uses would only cost the queue.
    pub fn is_acted_on(self) -> bool {
        !matches!(self, Self::TagPush | Self::Member | Self::Other)
    }

    pub fn from_header(value: &str) -> Self {
        match value {
            "Push Hook" => Self::Push,
            "Tag Push Hook" => Self::TagPush,
            "Merge Request Hook" => Self::MergeRequest,
            "Pipeline Hook" => Self::Pipeline,
            "Job Hook" => Self::Job,
            "Deployment Hook" => Self::Deployment,
            "Feature Flag Hook" => Self::FeatureFlag,
            "Project Hook" => Self::Project,
            "Subgroup Hook" => Self::Subgroup,
            "Member Hook" => Self::Member,
            _ => Self::Other,
        }
    }

    /// The kind's name in metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Push => "push",
            Self::TagPush => "tag_push",
            Self::MergeRequest => "merge_request",
            Self::Pipeline => "pipeline",
            Self::Job => "job",
            Self::Deployment => "deployment",
            Self::FeatureFlag => "feature_flag",
            Self::Project => "project",
            Self::Subgroup => "subgroup",
            Self::Member => "member",
            Self::Other => "other",
        }
    }

    /// The `X-Gitlab-Event` value; empty for [`EventKind::Other`], which stands for any header we ignore.
    pub fn header(&self) -> &'static str {
        match self {
            Self::Push => "Push Hook",
            Self::TagPush => "Tag Push Hook",
            Self::MergeRequest => "Merge Request Hook",
            Self::Pipeline => "Pipeline Hook",
            Self::Job => "Job Hook",
            Self::Deployment => "Deployment Hook",
            Self::FeatureFlag => "Feature Flag Hook",
            Self::Project => "Project Hook",
            Self::Subgroup => "Subgroup Hook",
            Self::Member => "Member Hook",
            Self::Other => "",
        }
    }
}

/// The all-zero SHA GitLab uses for "no commit" in `before`/`after`.
pub const NULL_SHA: &str = "0000000000000000000000000000000000000000";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Project {
    pub id: i64,
    pub name: String,
    pub web_url: String,
    #[serde(default)]
    pub path_with_namespace: String,
    #[serde(default)]
    pub default_branch: Option<String>,
    #[serde(default)]
    pub avatar_url: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CommitAuthor {
    pub name: String,
    #[serde(default)]
    pub email: String,
}

impl CommitAuthor {
    /// The author's email unless it is empty or `[REDACTED]`.
    pub fn visible_email(&self) -> Option<&str> {
        visible_email(Some(&self.email))
    }
}

/// A commit as push hooks and the commits REST API describe it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Commit {
    pub id: String,
    pub message: String,
    #[serde(default)]
    pub title: String,
    pub timestamp: String,
    pub url: String,
    pub author: CommitAuthor,
    #[serde(
        default,
        deserialize_with = "capped::at_most::<_, _, {capped::MAX_COMMIT_FILES}>"
    )]
    pub added: Vec<String>,
    #[serde(
        default,
        deserialize_with = "capped::at_most::<_, _, {capped::MAX_COMMIT_FILES}>"
    )]
    pub modified: Vec<String>,
    #[serde(
        default,
        deserialize_with = "capped::at_most::<_, _, {capped::MAX_COMMIT_FILES}>"
    )]
    pub removed: Vec<String>,
}

impl Commit {
    /// `timestamp` as a time; `None` when GitLab sent something unreadable.
    pub fn parsed_timestamp(&self) -> Option<GitLabTime> {
        GitLabTime::parse(&self.timestamp)
    }
}

/// `Push Hook` (`object_kind: push`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PushEvent {
    #[serde(default = "push_kind")]
    pub object_kind: String,
    pub before: String,
    pub after: String,
    #[serde(rename = "ref")]
    pub git_ref: String,
    #[serde(default)]
    pub checkout_sha: Option<String>,
    #[serde(default)]
    pub user_username: Option<String>,
    pub project_id: i64,
    pub project: Project,
    #[serde(
        default,
        deserialize_with = "capped::at_most::<_, _, {capped::MAX_PAYLOAD_COMMITS}>"
    )]
    pub commits: Vec<Commit>,
    #[serde(default)]
    pub total_commits_count: i64,
}

fn push_kind() -> String {
    "push".to_owned()
}

impl PushEvent {
    /// The branch name, when this push is to a branch.
    pub fn branch(&self) -> Option<&str> {
        self.git_ref.strip_prefix("refs/heads/")
    }

    pub fn deletes_ref(&self) -> bool {
        self.after == NULL_SHA
    }

    /// GitLab puts at most 20 commits in a push; when it pushed more, the revision to compare `after`
    /// with to get them all: `before`, or for a new branch the default branch it was cut from. `None`
    /// when the payload is complete, or for a new default branch (whose whole history is the backfill's).
    pub fn missing_commits_base(&self) -> Option<String> {
        if self.deletes_ref() || self.total_commits_count <= self.commits.len() as i64 {
            return None;
        }
        if self.before != NULL_SHA {
            return Some(self.before.clone());
        }
        let default = self.project.default_branch.as_deref()?;
        (self.branch() != Some(default)).then(|| default.to_owned())
    }

    /// Replaces the payload's commits with the complete list (oldest first), keeping the payload's own
    /// version of a commit where it has one (it lists the changed files).
    pub fn with_all_commits(mut self, all: Vec<Commit>) -> Self {
        let mut from_payload: std::collections::HashMap<String, Commit> =
            self.commits.drain(..).map(|c| (c.id.clone(), c)).collect();
        self.commits = all
            .into_iter()
            .map(|c| from_payload.remove(&c.id).unwrap_or(c))
            .collect();
        self
    }
}

/// One file of `GET /projects/:id/repository/commits/:sha/diff`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DiffFile {
    #[serde(default)]
    pub old_path: String,
    #[serde(default)]
    pub new_path: String,
    #[serde(default)]
    pub new_file: bool,
    #[serde(default)]
    pub renamed_file: bool,
    #[serde(default)]
    pub deleted_file: bool,
    /// The unified diff of this file (hunks only).
    #[serde(default)]
    pub diff: String,
}

/// Hex SHA-256 of a webhook secret token: the only form in which tokens are stored or compared.
pub fn webhook_token_hash(token: &[u8]) -> String {
    crate::digest::sha256_hex(token)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_push_beyond_twenty_commits_names_the_base_to_compare_with() {
        let mut p: super::PushEvent = serde_json::from_str(
            r#"{"before":"b","after":"a","ref":"refs/heads/PROJ-1-x","project_id":1,
                "project":{"id":1,"name":"p","web_url":"http://gl/p","default_branch":"main"},
                "commits":[{"id":"c20","message":"m","timestamp":"t","url":"u","author":{"name":"n"},"added":["f"]}],
                "total_commits_count":25}"#,
        )
        .unwrap();
        assert_eq!(p.missing_commits_base().as_deref(), Some("b"));
        p.before = super::NULL_SHA.to_owned();
        assert_eq!(p.missing_commits_base().as_deref(), Some("main"));
        p.git_ref = "refs/heads/main".into();
        assert_eq!(p.missing_commits_base(), None, "a new default branch");
        p.total_commits_count = 1;
        assert_eq!(p.missing_commits_base(), None, "complete payload");

        let plain = |id: &str| super::Commit {
            id: id.to_owned(),
            added: vec![],
            ..p.commits[0].clone()
        };
        let all = vec![plain("c19"), plain("c20")];
        let merged = p.clone().with_all_commits(all);
        let ids: Vec<&str> = merged.commits.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["c19", "c20"]);
        assert_eq!(
            merged.commits[1].added,
            ["f"],
            "the payload's version is kept"
        );
    }

    use super::*;

    #[test]
    fn header_round_trips_through_from_header() {
        for kind in EventKind::KNOWN {
            assert_eq!(EventKind::from_header(kind.header()), kind, "{kind:?}");
        }
        assert_eq!(
            EventKind::from_header(EventKind::Other.header()),
            EventKind::Other
        );
        assert_eq!(EventKind::from_header("System Hook"), EventKind::Other);
        let acted_on: Vec<EventKind> = EventKind::KNOWN
            .into_iter()
            .filter(|k| k.is_acted_on())
            .collect();
        assert!(!acted_on.contains(&EventKind::TagPush) && !acted_on.contains(&EventKind::Member));
        assert!(acted_on.contains(&EventKind::Push) && acted_on.contains(&EventKind::Job));
        assert_eq!(EventKind::from_header("push hook"), EventKind::Other);
    }

    #[test]
    fn known_headers_are_distinct_and_exclude_other() {
        let mut headers: Vec<_> = EventKind::KNOWN.iter().map(EventKind::header).collect();
        headers.sort_unstable();
        headers.dedup();
        assert_eq!(headers.len(), EventKind::KNOWN.len());
        assert!(!EventKind::KNOWN.contains(&EventKind::Other));
    }
}
