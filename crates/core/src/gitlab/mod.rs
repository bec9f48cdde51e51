//! GitLab webhook payloads, typed as far as we use them. Unknown fields are ignored so that newer GitLab
//! versions keep working; missing optional fields default. [`WebhookEvent::parse`] is the way in: it
//! checks that the body is the event its `X-Gitlab-Event` header says and carries the ids we route by.

mod dates;
mod events;
mod parse;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

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
    #[serde(default)]
    pub added: Vec<String>,
    #[serde(default)]
    pub modified: Vec<String>,
    #[serde(default)]
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
    #[serde(default)]
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
}

/// Hex SHA-256 of a webhook secret token: the only form in which tokens are stored or compared.
pub fn webhook_token_hash(token: &[u8]) -> String {
    crate::qsh::hex(&Sha256::digest(token))
}

#[cfg(test)]
mod tests {
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
