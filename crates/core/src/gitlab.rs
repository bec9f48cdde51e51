//! GitLab webhook payloads, typed as far as we use them. Unknown fields are ignored so that newer GitLab
//! versions keep working; missing optional fields default.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

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
    Other,
}

impl EventKind {
    pub fn from_header(value: &str) -> Self {
        match value {
            "Push Hook" => Self::Push,
            "Tag Push Hook" => Self::TagPush,
            "Merge Request Hook" => Self::MergeRequest,
            "Pipeline Hook" => Self::Pipeline,
            "Job Hook" => Self::Job,
            "Deployment Hook" => Self::Deployment,
            "Feature Flag Hook" => Self::FeatureFlag,
            _ => Self::Other,
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
