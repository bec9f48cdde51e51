//! The webhook payloads other than push, as far as we use them. Ids are required (`parse` checks them
//! before these types see the body); everything GitLab has added, renamed or made nullable over the
//! versions in use is optional or defaults, and unknown fields are ignored.

use serde::{Deserialize, Serialize};

use super::capped::{MAX_PEOPLE_AND_LABELS, MAX_PIPELINE_BUILDS, at_most};
use super::dates::{GitLabTime, lenient_time, null_as_default};
use super::{Commit, Project};

/// What GitLab writes instead of the address of a user without a public email.
pub const REDACTED_EMAIL: &str = "[REDACTED]";

/// An email as GitLab sent it, or `None` when it is empty or [`REDACTED_EMAIL`].
pub fn visible_email(as_sent: Option<&str>) -> Option<&str> {
    as_sent.filter(|email| !email.is_empty() && *email != REDACTED_EMAIL)
}

/// A GitLab user as `user`, `assignees[]`, `reviewers[]` and `builds[].user` describe them. Job hooks omit
/// `username`, and older assignee lists omit `id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    #[serde(default)]
    pub id: Option<i64>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub username: String,
    #[serde(default)]
    pub avatar_url: Option<String>,
    /// Possibly `[REDACTED]`; read it through [`User::email`].
    #[serde(rename = "email", default)]
    pub email_as_sent: Option<String>,
}

impl User {
    pub fn email(&self) -> Option<&str> {
        visible_email(self.email_as_sent.as_deref())
    }
}

/// The pushing user of a push or tag push hook. [`super::PushEvent`] is built by hand in many places and
/// so cannot grow these fields; read them from the same body when needed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PushUser {
    #[serde(default)]
    pub user_id: Option<i64>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub user_name: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub user_username: String,
    /// Possibly `[REDACTED]`; read it through [`PushUser::email`].
    #[serde(rename = "user_email", default)]
    pub user_email_as_sent: Option<String>,
    #[serde(default)]
    pub user_avatar: Option<String>,
}

impl PushUser {
    /// Reads the pusher from a push or tag push body.
    pub fn from_body(body: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(body)
    }

    pub fn email(&self) -> Option<&str> {
        visible_email(self.user_email_as_sent.as_deref())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Label {
    #[serde(default)]
    pub id: Option<i64>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub title: String,
    #[serde(default)]
    pub color: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
}

/// The `repository` object of push, merge request and job hooks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Repository {
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub homepage: Option<String>,
    #[serde(default)]
    pub git_http_url: Option<String>,
    #[serde(default)]
    pub git_ssh_url: Option<String>,
}

/// `Merge Request Hook` (`object_kind: merge_request`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MergeRequestEvent {
    pub object_kind: String,
    /// Who caused the event, not the author.
    #[serde(default)]
    pub user: Option<User>,
    /// The target project: the project that owns the merge request.
    pub project: Project,
    pub object_attributes: MergeRequestAttributes,
    #[serde(default)]
    pub repository: Option<Repository>,
    #[serde(default, deserialize_with = "at_most::<_, _, {MAX_PEOPLE_AND_LABELS}>")]
    pub labels: Vec<Label>,
    #[serde(default, deserialize_with = "at_most::<_, _, {MAX_PEOPLE_AND_LABELS}>")]
    pub assignees: Vec<User>,
    #[serde(default, deserialize_with = "at_most::<_, _, {MAX_PEOPLE_AND_LABELS}>")]
    pub reviewers: Vec<User>,
    /// Kept as sent: GitLab can send it empty, and the state to act on is `object_attributes.state`.
    #[serde(default)]
    pub changes: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MergeRequestAttributes {
    pub id: i64,
    pub iid: i64,
    #[serde(default, deserialize_with = "null_as_default")]
    pub title: String,
    #[serde(default)]
    pub description: Option<String>,
    /// `opened`, `closed`, `merged` or `locked`.
    pub state: String,
    /// `open`, `close`, `reopen`, `update`, `approved`, `unapproved`, `approval`, `unapproval`, `merge`.
    #[serde(default)]
    pub action: Option<String>,
    pub source_branch: String,
    pub target_branch: String,
    /// `None` when the fork the merge request came from has been deleted.
    #[serde(default)]
    pub source_project_id: Option<i64>,
    pub target_project_id: i64,
    #[serde(default)]
    pub author_id: Option<i64>,
    #[serde(default, deserialize_with = "at_most::<_, _, {MAX_PEOPLE_AND_LABELS}>")]
    pub assignee_ids: Vec<i64>,
    #[serde(default, deserialize_with = "at_most::<_, _, {MAX_PEOPLE_AND_LABELS}>")]
    pub reviewer_ids: Vec<i64>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub created_at: Option<GitLabTime>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub updated_at: Option<GitLabTime>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub last_edited_at: Option<GitLabTime>,
    /// Absent on older instances even for merged merge requests.
    #[serde(default, deserialize_with = "lenient_time")]
    pub merged_at: Option<GitLabTime>,
    pub url: String,
    #[serde(default)]
    pub last_commit: Option<Commit>,
    #[serde(default)]
    pub merge_commit_sha: Option<String>,
    #[serde(default)]
    pub head_pipeline_id: Option<i64>,
    /// Present only when the event changed the code.
    #[serde(default)]
    pub oldrev: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub draft: bool,
    /// The name `draft` had before GitLab 14; still sent alongside it.
    #[serde(default, deserialize_with = "null_as_default")]
    pub work_in_progress: bool,
    /// Deprecated by GitLab in favour of `detailed_merge_status`, which older instances lack.
    #[serde(default)]
    pub merge_status: Option<String>,
    #[serde(default)]
    pub detailed_merge_status: Option<String>,
    #[serde(default)]
    pub blocking_discussions_resolved: Option<bool>,
}

impl MergeRequestAttributes {
    pub fn is_draft(&self) -> bool {
        self.draft || self.work_in_progress
    }
}

/// `Pipeline Hook` (`object_kind: pipeline`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipelineEvent {
    pub object_kind: String,
    pub object_attributes: PipelineAttributes,
    /// Only for merge request pipelines.
    #[serde(default)]
    pub merge_request: Option<PipelineMergeRequest>,
    /// `None` when the pipeline was started by a user since deleted.
    #[serde(default)]
    pub user: Option<User>,
    pub project: Project,
    /// `None` when the commit is no longer in the repository.
    #[serde(default)]
    pub commit: Option<Commit>,
    #[serde(default, deserialize_with = "at_most::<_, _, {MAX_PIPELINE_BUILDS}>")]
    pub builds: Vec<PipelineBuild>,
}

impl PipelineEvent {
    /// The pipeline's page; `object_attributes.url` is missing before GitLab 15, so it is built then.
    pub fn web_url(&self) -> String {
        self.object_attributes.url.clone().unwrap_or_else(|| {
            format!(
                "{}/-/pipelines/{}",
                self.project.web_url.trim_end_matches('/'),
                self.object_attributes.id
            )
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipelineAttributes {
    pub id: i64,
    /// Missing on older instances.
    #[serde(default)]
    pub iid: Option<i64>,
    /// `workflow:name`, sent since GitLab 16.1.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(rename = "ref")]
    pub git_ref: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub tag: bool,
    pub sha: String,
    #[serde(default)]
    pub before_sha: Option<String>,
    /// `push`, `merge_request_event`, `schedule`, `web`, `api`, `trigger`, `parent_pipeline`, ...
    #[serde(default)]
    pub source: Option<String>,
    pub status: String,
    /// The status as the UI words it, for example `passed` or `waiting for manual action`.
    #[serde(default)]
    pub detailed_status: Option<String>,
    #[serde(default, deserialize_with = "at_most::<_, _, {MAX_PEOPLE_AND_LABELS}>")]
    pub stages: Vec<String>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub created_at: Option<GitLabTime>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub finished_at: Option<GitLabTime>,
    /// Seconds.
    #[serde(default)]
    pub duration: Option<f64>,
    /// Seconds.
    #[serde(default)]
    pub queued_duration: Option<f64>,
    #[serde(default)]
    pub url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipelineMergeRequest {
    pub id: i64,
    pub iid: i64,
    #[serde(default, deserialize_with = "null_as_default")]
    pub title: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub source_branch: String,
    #[serde(default)]
    pub source_project_id: Option<i64>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub target_branch: String,
    #[serde(default)]
    pub target_project_id: Option<i64>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub state: String,
    #[serde(default)]
    pub merge_status: Option<String>,
    #[serde(default)]
    pub detailed_merge_status: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub url: String,
}

/// One job of a pipeline hook's `builds[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipelineBuild {
    pub id: i64,
    #[serde(default, deserialize_with = "null_as_default")]
    pub stage: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
    pub status: String,
    #[serde(default, deserialize_with = "lenient_time")]
    pub created_at: Option<GitLabTime>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub started_at: Option<GitLabTime>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub finished_at: Option<GitLabTime>,
    /// Seconds.
    #[serde(default)]
    pub duration: Option<f64>,
    /// Seconds.
    #[serde(default)]
    pub queued_duration: Option<f64>,
    /// `on_success`, `manual`, `delayed`, `always`, `on_failure`.
    #[serde(default)]
    pub when: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub manual: bool,
    #[serde(default, deserialize_with = "null_as_default")]
    pub allow_failure: bool,
    #[serde(default)]
    pub failure_reason: Option<String>,
    #[serde(default)]
    pub user: Option<User>,
    #[serde(default)]
    pub environment: Option<BuildEnvironment>,
}

impl PipelineBuild {
    /// See [`JobEvent::is_manual_deployment`].
    pub fn is_manual_deployment(&self) -> bool {
        self.status == "manual" && starts_deployment(self.environment.as_ref())
    }
}

/// The environment a job deploys to (`environment:` in `.gitlab-ci.yml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildEnvironment {
    pub name: String,
    /// `start` (the default), `prepare`, `stop`, `verify` or `access`.
    #[serde(default)]
    pub action: Option<String>,
    /// `production`, `staging`, `testing`, `development` or `other`.
    #[serde(default)]
    pub deployment_tier: Option<String>,
}

/// Only `start` jobs create deployments; `stop`, `prepare` and the rest touch the environment without
/// deploying to it.
fn starts_deployment(environment: Option<&BuildEnvironment>) -> bool {
    environment.is_some_and(|env| env.action.as_deref().is_none_or(|action| action == "start"))
}

/// `Job Hook` (`object_kind: build`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobEvent {
    pub object_kind: String,
    #[serde(rename = "ref")]
    pub git_ref: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub tag: bool,
    #[serde(default)]
    pub before_sha: Option<String>,
    pub sha: String,
    pub build_id: i64,
    #[serde(default, deserialize_with = "null_as_default")]
    pub build_name: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub build_stage: String,
    pub build_status: String,
    #[serde(default, deserialize_with = "lenient_time")]
    pub build_created_at: Option<GitLabTime>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub build_started_at: Option<GitLabTime>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub build_finished_at: Option<GitLabTime>,
    /// Seconds.
    #[serde(default)]
    pub build_duration: Option<f64>,
    /// Seconds.
    #[serde(default)]
    pub build_queued_duration: Option<f64>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub build_allow_failure: bool,
    /// `unknown_failure` even for jobs that did not fail, on some versions; read it only for failed jobs.
    #[serde(default)]
    pub build_failure_reason: Option<String>,
    #[serde(default)]
    pub retries_count: Option<i64>,
    pub pipeline_id: i64,
    pub project_id: i64,
    /// `namespace/project` despite the name.
    #[serde(default, deserialize_with = "null_as_default")]
    pub project_name: String,
    #[serde(default)]
    pub user: Option<User>,
    #[serde(default)]
    pub commit: Option<JobCommit>,
    #[serde(default)]
    pub repository: Option<Repository>,
    /// Missing on older instances; `project_id` is always there.
    #[serde(default)]
    pub project: Option<Project>,
    #[serde(default)]
    pub environment: Option<BuildEnvironment>,
}

impl JobEvent {
    /// A deployment job that waits for someone: either a plain manual deploy or one blocked on an
    /// approval. GitLab sends no deployment hook for `blocked`, so this is how we learn about it.
    pub fn is_manual_deployment(&self) -> bool {
        self.build_status == "manual" && starts_deployment(self.environment.as_ref())
    }
}

/// The `commit` of a job hook, which describes the pipeline as much as the commit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobCommit {
    /// The **pipeline** id, not a commit id.
    #[serde(default)]
    pub id: Option<i64>,
    /// The pipeline's `workflow:name`.
    #[serde(default)]
    pub name: Option<String>,
    pub sha: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub message: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub author_name: String,
    #[serde(default)]
    pub author_email: Option<String>,
    #[serde(default)]
    pub author_url: Option<String>,
    /// The pipeline's status.
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub duration: Option<f64>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub started_at: Option<GitLabTime>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub finished_at: Option<GitLabTime>,
}

/// `Deployment Hook` (`object_kind: deployment`). Carries neither the deployment `iid` nor the full SHA;
/// fetch the deployment for those.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploymentEvent {
    pub object_kind: String,
    /// `running`, `success`, `failed`, `canceled`; on the newest GitLab also `approved`/`rejected`.
    pub status: String,
    #[serde(default, deserialize_with = "lenient_time")]
    pub status_changed_at: Option<GitLabTime>,
    pub deployment_id: i64,
    /// The job that deploys; `None` for deployments created through the API.
    #[serde(default)]
    pub deployable_id: Option<i64>,
    /// `None` for deployments created through the API or by trigger jobs.
    #[serde(default)]
    pub deployable_url: Option<String>,
    /// The environment's name.
    pub environment: String,
    #[serde(default)]
    pub environment_tier: Option<String>,
    #[serde(default)]
    pub environment_slug: Option<String>,
    #[serde(default)]
    pub environment_external_url: Option<String>,
    pub project: Project,
    #[serde(default, deserialize_with = "null_as_default")]
    pub short_sha: String,
    #[serde(default)]
    pub user: Option<User>,
    #[serde(default)]
    pub user_url: Option<String>,
    #[serde(default)]
    pub commit_url: Option<String>,
    #[serde(default)]
    pub commit_title: Option<String>,
    /// Sent by current GitLab, though its own example omits it.
    #[serde(rename = "ref", default)]
    pub git_ref: Option<String>,
}

impl DeploymentEvent {
    /// The full SHA, which the payload only carries as the last segment of `commit_url`. Checked against
    /// `short_sha` so that a URL of another shape yields `None` rather than a wrong commit.
    pub fn commit_sha(&self) -> Option<&str> {
        let sha = self
            .commit_url
            .as_deref()?
            .trim_end_matches('/')
            .rsplit('/')
            .next()?;
        let is_full_sha =
            matches!(sha.len(), 40 | 64) && sha.bytes().all(|b| b.is_ascii_hexdigit());
        (is_full_sha && !self.short_sha.is_empty() && sha.starts_with(&self.short_sha))
            .then_some(sha)
    }
}

/// `Feature Flag Hook` (`object_kind: feature_flag`). Sent only when `active` toggles.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureFlagEvent {
    pub object_kind: String,
    pub project: Project,
    #[serde(default)]
    pub user: Option<User>,
    #[serde(default)]
    pub user_url: Option<String>,
    pub object_attributes: FeatureFlagAttributes,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureFlagAttributes {
    pub id: i64,
    pub name: String,
    /// Where GitLab's own Jira app looks for issue keys.
    #[serde(default)]
    pub description: Option<String>,
    pub active: bool,
}

/// `Project Hook` (group hooks only, GitLab 17.6+).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProjectEvent {
    /// `project_create` or `project_destroy`.
    pub event_name: String,
    #[serde(default, deserialize_with = "lenient_time")]
    pub created_at: Option<GitLabTime>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub updated_at: Option<GitLabTime>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub path: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub path_with_namespace: String,
    pub project_id: i64,
    #[serde(default)]
    pub project_namespace_id: Option<i64>,
    #[serde(default, deserialize_with = "at_most::<_, _, {MAX_PEOPLE_AND_LABELS}>")]
    pub owners: Vec<ProjectOwner>,
    /// `private`, `internal` or `public`.
    #[serde(default)]
    pub project_visibility: Option<String>,
}

impl ProjectEvent {
    pub fn is_create(&self) -> bool {
        self.event_name == "project_create"
    }

    pub fn is_destroy(&self) -> bool {
        self.event_name == "project_destroy"
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProjectOwner {
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
    /// Possibly `[REDACTED]`; read it through [`ProjectOwner::email`].
    #[serde(rename = "email", default)]
    pub email_as_sent: Option<String>,
}

impl ProjectOwner {
    pub fn email(&self) -> Option<&str> {
        visible_email(self.email_as_sent.as_deref())
    }
}

/// `Subgroup Hook` (group hooks only). Not sent when a subgroup is transferred.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubgroupEvent {
    /// `subgroup_create` or `subgroup_destroy`.
    pub event_name: String,
    #[serde(default, deserialize_with = "lenient_time")]
    pub created_at: Option<GitLabTime>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub updated_at: Option<GitLabTime>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub path: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub full_path: String,
    /// The subgroup's own id.
    pub group_id: i64,
    #[serde(default)]
    pub parent_group_id: Option<i64>,
    #[serde(default)]
    pub parent_name: Option<String>,
    #[serde(default)]
    pub parent_path: Option<String>,
    #[serde(default)]
    pub parent_full_path: Option<String>,
}

impl SubgroupEvent {
    pub fn is_create(&self) -> bool {
        self.event_name == "subgroup_create"
    }

    pub fn is_destroy(&self) -> bool {
        self.event_name == "subgroup_destroy"
    }
}

/// `Member Hook` (group hooks only, Premium).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberEvent {
    /// `user_add_to_group`, `user_update_for_group`, `user_remove_from_group`,
    /// `user_access_request_to_group` or `user_access_request_denied_for_group`.
    pub event_name: String,
    #[serde(default, deserialize_with = "lenient_time")]
    pub created_at: Option<GitLabTime>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub updated_at: Option<GitLabTime>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub group_name: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub group_path: String,
    pub group_id: i64,
    pub user_id: i64,
    #[serde(default, deserialize_with = "null_as_default")]
    pub user_username: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub user_name: String,
    /// Possibly `[REDACTED]`; read it through [`MemberEvent::user_email`].
    #[serde(rename = "user_email", default)]
    pub user_email_as_sent: Option<String>,
    /// The role's name, for example `Maintainer`; see [`MemberEvent::access_level`].
    #[serde(default, deserialize_with = "null_as_default")]
    pub group_access: String,
    #[serde(default, deserialize_with = "lenient_time")]
    pub expires_at: Option<GitLabTime>,
    #[serde(default)]
    pub group_plan: Option<String>,
}

impl MemberEvent {
    pub fn user_email(&self) -> Option<&str> {
        visible_email(self.user_email_as_sent.as_deref())
    }

    /// The numeric access level the REST API uses for `group_access` (Maintainer = 40), so that it can be
    /// compared with a required role; `None` for a role name we do not know.
    pub fn access_level(&self) -> Option<u32> {
        match self.group_access.as_str() {
            "Minimal Access" => Some(5),
            "Guest" => Some(10),
            "Planner" => Some(15),
            "Reporter" => Some(20),
            "Developer" => Some(30),
            "Maintainer" => Some(40),
            "Owner" => Some(50),
            _ => None,
        }
    }

    /// Whether the user is a member after this event; access requests do not make anyone a member.
    pub fn is_member_after(&self) -> bool {
        matches!(
            self.event_name.as_str(),
            "user_add_to_group" | "user_update_for_group"
        )
    }
}
