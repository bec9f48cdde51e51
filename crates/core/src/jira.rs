//! Jira Software Cloud request bodies (devinfo 0.10), with the field names Jira expects. Shapes follow
//! Atlassian's OpenAPI; the Jira simulator validates every body we send against it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Most repositories in one devinfo request.
pub const MAX_REPOSITORIES_PER_REQUEST: usize = 100;
/// Most entities (commits + branches + pull requests) across one devinfo request.
pub const MAX_ENTITIES_PER_REQUEST: usize = 1000;
/// Most entities of one type in one repository of a request.
pub const MAX_PER_TYPE_PER_REPOSITORY: usize = 400;
/// Longest commit message Jira stores; longer ones are cut.
pub const MAX_MESSAGE_CHARS: usize = 1024;
/// Longest names (repository, author) Jira accepts.
pub const MAX_NAME_CHARS: usize = 255;
/// Longest branch name Jira accepts.
pub const MAX_BRANCH_NAME_CHARS: usize = 512;
/// Longest URL Jira accepts.
pub const MAX_URL_CHARS: usize = 2000;

/// The first `max` characters of `s` (Jira counts characters, not bytes).
pub fn cap(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DevinfoRequest {
    pub repositories: Vec<Repository>,
    pub prevent_transitions: bool,
    pub operation_type: OperationType,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, String>,
    pub provider_metadata: ProviderMetadata,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OperationType {
    Normal,
    Backfill,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProviderMetadata {
    pub product: String,
}

impl ProviderMetadata {
    pub fn ours() -> Self {
        Self {
            product: concat!("gitlab-for-jira ", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Repository {
    pub id: String,
    pub name: String,
    pub url: String,
    pub update_sequence_id: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avatar: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub commits: Vec<Commit>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub branches: Vec<Branch>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Author {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Commit {
    pub id: String,
    pub issue_keys: Vec<String>,
    pub update_sequence_id: i64,
    pub display_id: String,
    pub message: String,
    pub author: Author,
    pub file_count: i32,
    pub url: String,
    pub author_timestamp: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Branch {
    pub id: String,
    pub issue_keys: Vec<String>,
    pub update_sequence_id: i64,
    pub name: String,
    pub last_commit: Commit,
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_pull_request_url: Option<String>,
}
