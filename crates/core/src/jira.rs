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
/// Longest pull request title Jira accepts.
pub const MAX_TITLE_CHARS: usize = 1024;
/// Longest pull request branch names, display ids and most build, deployment and flag texts.
pub const MAX_SHORT_TEXT_CHARS: usize = 255;
/// Longest reviewer email Jira accepts (one less than an author's).
pub const MAX_REVIEWER_EMAIL_CHARS: usize = 254;
/// Most association values (issue keys plus service ids) on one deployment.
pub const MAX_ASSOCIATION_VALUES: usize = 500;

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
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pull_requests: Vec<PullRequest>,
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
    /// Up to 10 changed files, with line counts (read from GitLab when it answers).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<CommitFile>,
    /// `MERGE_COMMIT` for a commit with several parents.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<String>,
}

/// A file a commit changed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CommitFile {
    pub path: String,
    pub url: String,
    /// ADDED, DELETED, MODIFIED, MOVED.
    pub change_type: String,
    pub lines_added: i32,
    pub lines_removed: i32,
}

/// Jira shows at most this many files per commit.
pub const MAX_FILES_PER_COMMIT: usize = 10;

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

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PullRequest {
    pub id: String,
    pub issue_keys: Vec<String>,
    pub update_sequence_id: i64,
    pub status: PullRequestStatus,
    pub title: String,
    pub author: Author,
    pub comment_count: i32,
    pub source_branch: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_branch_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_branch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_branch_url: Option<String>,
    /// ISO 8601 in UTC.
    pub last_update: String,
    pub url: String,
    pub display_id: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reviewers: Vec<Reviewer>,
}

/// On concurrent updates Jira keeps the first of OPEN, MERGED, DECLINED, UNKNOWN.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PullRequestStatus {
    Open,
    Merged,
    Declined,
    Unknown,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Reviewer {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    pub approval_status: ApprovalStatus,
}

/// `NEEDSWORK` is what GitLab's app sends for "reviewed"; Atlassian's OpenAPI of 2023 (our fixture, and
/// so the simulator) allows only the other two, so the mapping never produces it: it exists to read what
/// newer Jira returns.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ApprovalStatus {
    Approved,
    #[serde(rename = "NEEDSWORK")]
    NeedsWork,
    Unapproved,
}

/// Most issue keys on a build, deployment or feature flag (`issueKeys` is `[..100]`; more go through
/// associations, up to 500).
pub const MAX_KEYS_PER_CICD_ENTITY: usize = 100;

/// `POST /rest/builds/0.1/bulk`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BuildsRequest {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, String>,
    pub builds: Vec<Build>,
    pub provider_metadata: ProviderMetadata,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Build {
    pub schema_version: String,
    pub pipeline_id: String,
    pub build_number: i64,
    pub update_sequence_number: i64,
    pub display_name: String,
    pub url: String,
    /// `pending`, `in_progress`, `successful`, `failed`, `cancelled` or `unknown`.
    pub state: String,
    pub last_updated: String,
    pub issue_keys: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_info: Option<TestInfo>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<BuildReference>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TestInfo {
    pub total_number: i64,
    pub number_passed: i64,
    pub number_failed: i64,
    pub number_skipped: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BuildReference {
    pub commit: CommitRef,
    #[serde(rename = "ref")]
    pub git_ref: RefRef,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CommitRef {
    pub id: String,
    pub repository_uri: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RefRef {
    pub name: String,
    pub uri: String,
}

/// `POST /rest/deployments/0.1/bulk`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentsRequest {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, String>,
    pub deployments: Vec<Deployment>,
    pub provider_metadata: ProviderMetadata,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    pub schema_version: String,
    pub deployment_sequence_number: i64,
    pub update_sequence_number: i64,
    /// `issueKeys` (or `issueIdOrKeys`) and `serviceIdOrKeys` (JSM services), up to 500 values.
    pub associations: Vec<Association>,
    pub display_name: String,
    pub url: String,
    pub description: String,
    pub last_updated: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// `unknown`, `pending`, `in_progress`, `cancelled`, `failed`, `rolled_back` or `successful`.
    pub state: String,
    pub pipeline: DeploymentPipeline,
    pub environment: DeploymentEnvironment,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub commands: Vec<DeploymentCommand>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Association {
    pub association_type: String,
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentPipeline {
    pub id: String,
    pub display_name: String,
    pub url: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentEnvironment {
    pub id: String,
    pub display_name: String,
    /// `unmapped`, `development`, `testing`, `staging` or `production`.
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeploymentCommand {
    pub command: String,
}

/// `POST /rest/featureflags/0.1/bulk`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FeatureFlagsRequest {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, String>,
    pub flags: Vec<FeatureFlag>,
    pub provider_metadata: ProviderMetadata,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FeatureFlag {
    pub schema_version: String,
    pub id: String,
    pub key: String,
    pub update_sequence_id: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    pub issue_keys: Vec<String>,
    pub summary: FlagSummary,
    pub details: Vec<FlagDetails>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FlagSummary {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    pub status: FlagStatus,
    pub last_updated: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FlagStatus {
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<FlagRollout>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FlagRollout {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentage: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FlagDetails {
    pub url: String,
    pub last_updated: String,
    pub environment: FlagEnvironment,
    pub status: FlagStatus,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FlagEnvironment {
    pub name: String,
    /// `development`, `testing`, `staging` or `production`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}
