//! One entry point from (`X-Gitlab-Event`, body) to a typed event. Strict about what routes the event (its
//! kind and ids), lenient about everything else.

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::events::{
    DeploymentEvent, FeatureFlagEvent, JobEvent, MemberEvent, MergeRequestEvent, PipelineEvent,
    ProjectEvent, SubgroupEvent,
};
use super::{EventKind, PushEvent};

/// A webhook body, typed by its `X-Gitlab-Event` header.
#[derive(Debug, Clone, PartialEq)]
pub enum WebhookEvent {
    Push(PushEvent),
    TagPush(PushEvent),
    MergeRequest(Box<MergeRequestEvent>),
    Pipeline(Box<PipelineEvent>),
    Job(Box<JobEvent>),
    Deployment(Box<DeploymentEvent>),
    FeatureFlag(Box<FeatureFlagEvent>),
    Project(ProjectEvent),
    Subgroup(SubgroupEvent),
    Member(MemberEvent),
}

/// Why a webhook body was refused. The messages are meant for the GitLab administrator who reads them in
/// the hook's "Recent events".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error(
        "unsupported X-Gitlab-Event; this service handles push, tag push, merge request, pipeline, job, \
         deployment, feature flag, project, subgroup and member events"
    )]
    UnsupportedEvent,
    #[error("not JSON: {0}")]
    NotJson(String),
    #[error("the body is a JSON {0}, not an object")]
    NotAnObject(&'static str),
    #[error("missing {field}; X-Gitlab-Event \"{header}\" expects \"{expected}\"")]
    MissingKind {
        field: &'static str,
        header: &'static str,
        expected: &'static str,
    },
    #[error("{field} {found} does not match X-Gitlab-Event \"{header}\"")]
    KindMismatch {
        field: &'static str,
        /// The value as JSON, so a string shows with its quotes.
        found: String,
        header: &'static str,
    },
    #[error("missing {what} ({path})")]
    MissingId { what: &'static str, path: String },
    #[error("{what} ({path}) must be a positive integer, not {found}")]
    InvalidId {
        what: &'static str,
        path: String,
        found: String,
    },
    #[error("\"{header}\" payload has an unexpected shape: {detail}")]
    Shape {
        header: &'static str,
        detail: String,
    },
}

/// How the body names its own kind: `object_kind` for project events, `event_name` for group events.
enum KindField {
    ObjectKind(&'static str),
    EventName {
        prefix: &'static str,
        suffix: &'static str,
        example: &'static str,
    },
}

impl KindField {
    fn of(kind: EventKind) -> Option<Self> {
        Some(match kind {
            EventKind::Push => Self::ObjectKind("push"),
            EventKind::TagPush => Self::ObjectKind("tag_push"),
            EventKind::MergeRequest => Self::ObjectKind("merge_request"),
            EventKind::Pipeline => Self::ObjectKind("pipeline"),
            EventKind::Job => Self::ObjectKind("build"),
            EventKind::Deployment => Self::ObjectKind("deployment"),
            EventKind::FeatureFlag => Self::ObjectKind("feature_flag"),
            // Prefix and suffix rather than a closed list: GitLab adds event names to these hooks over
            // time (access requests came in 17.4), and a new one should still parse.
            EventKind::Project => Self::EventName {
                prefix: "project_",
                suffix: "",
                example: "project_create",
            },
            EventKind::Subgroup => Self::EventName {
                prefix: "subgroup_",
                suffix: "",
                example: "subgroup_create",
            },
            EventKind::Member => Self::EventName {
                prefix: "user_",
                suffix: "group",
                example: "user_add_to_group",
            },
            EventKind::Other => return None,
        })
    }

    fn check(&self, body: &Value, header: &'static str) -> Result<(), PayloadError> {
        let (field, expected) = match self {
            Self::ObjectKind(expected) => ("object_kind", *expected),
            Self::EventName { example, .. } => ("event_name", *example),
        };
        let found = match body.get(field) {
            None | Some(Value::Null) => {
                return Err(PayloadError::MissingKind {
                    field,
                    header,
                    expected,
                });
            }
            Some(found) => found,
        };
        let matches = match (self, found.as_str()) {
            (Self::ObjectKind(expected), Some(found)) => found == *expected,
            (Self::EventName { prefix, suffix, .. }, Some(found)) => {
                found.starts_with(prefix) && found.ends_with(suffix)
            }
            (_, None) => false,
        };
        if matches {
            Ok(())
        } else {
            Err(PayloadError::KindMismatch {
                field,
                found: found.to_string(),
                header,
            })
        }
    }
}

/// The ids an event of this kind is routed and deduplicated by, as (JSON pointer, what it is).
fn required_ids(kind: EventKind, body: &Value) -> Vec<(String, &'static str)> {
    let fixed: &[(&str, &'static str)] = match kind {
        EventKind::Push | EventKind::TagPush => {
            &[("/project_id", "project id"), ("/project/id", "project id")]
        }
        EventKind::MergeRequest => &[
            ("/project/id", "project id"),
            ("/object_attributes/id", "merge request id"),
            ("/object_attributes/iid", "merge request iid"),
            ("/object_attributes/target_project_id", "target project id"),
        ],
        EventKind::Pipeline => &[
            ("/project/id", "project id"),
            ("/object_attributes/id", "pipeline id"),
        ],
        EventKind::Job => &[
            ("/project_id", "project id"),
            ("/build_id", "job id"),
            ("/pipeline_id", "pipeline id"),
        ],
        EventKind::Deployment => &[
            ("/project/id", "project id"),
            ("/deployment_id", "deployment id"),
        ],
        EventKind::FeatureFlag => &[
            ("/project/id", "project id"),
            ("/object_attributes/id", "feature flag id"),
        ],
        EventKind::Project => &[("/project_id", "project id")],
        EventKind::Subgroup => &[("/group_id", "group id")],
        EventKind::Member => &[("/group_id", "group id"), ("/user_id", "user id")],
        EventKind::Other => &[],
    };
    let mut ids: Vec<(String, &'static str)> = fixed
        .iter()
        .map(|(pointer, what)| ((*pointer).to_owned(), *what))
        .collect();
    if kind == EventKind::Pipeline {
        if body.get("merge_request").is_some_and(|mr| !mr.is_null()) {
            ids.push(("/merge_request/id".to_owned(), "merge request id"));
            ids.push(("/merge_request/iid".to_owned(), "merge request iid"));
        }
        let build_count = body
            .get("builds")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        ids.extend((0..build_count).map(|index| (format!("/builds/{index}/id"), "job id")));
    }
    ids
}

fn check_id(body: &Value, pointer: &str, what: &'static str) -> Result<(), PayloadError> {
    // `/builds/0/id` reads better to a person as `builds.0.id`.
    let path = pointer.trim_start_matches('/').replace('/', ".");
    match body.pointer(pointer) {
        None | Some(Value::Null) => Err(PayloadError::MissingId { what, path }),
        Some(id) if id.as_i64().is_some_and(|id| id > 0) => Ok(()),
        Some(id) => Err(PayloadError::InvalidId {
            what,
            path,
            found: id.to_string(),
        }),
    }
}

fn json_type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn typed<T: DeserializeOwned>(
    value: &Value,
    body: &[u8],
    header: &'static str,
) -> Result<T, PayloadError> {
    T::deserialize(value).map_err(|from_value| {
        // Reading the bytes again costs a second parse, but only for a refused body, and it adds the line
        // and column that `from_value` cannot know.
        let detail = serde_json::from_slice::<T>(body)
            .err()
            .map_or_else(|| from_value.to_string(), |located| located.to_string());
        PayloadError::Shape { header, detail }
    })
}

impl WebhookEvent {
    /// The Jira entity this event's state replaces, for events that carry a whole entity's state
    /// (merge request, pipeline, deployment, feature flag): a newer event with the same key makes an
    /// older, still queued one redundant. Pushes and jobs add to what Jira has and have none.
    pub fn entity_key(&self) -> Option<String> {
        match self {
            Self::MergeRequest(e) => Some(format!("mr:{}", e.object_attributes.id)),
            Self::Pipeline(e) => Some(format!("pipeline:{}", e.object_attributes.id)),
            Self::Deployment(e) => Some(format!("deployment:{}:{}", e.project.id, e.deployment_id)),
            Self::FeatureFlag(e) => {
                Some(format!("flag:{}:{}", e.project.id, e.object_attributes.id))
            }
            _ => None,
        }
    }

    pub fn parse(kind: EventKind, body: &[u8]) -> Result<Self, PayloadError> {
        Self::from_value(kind, &Self::json(body)?, body)
    }

    /// The body as JSON, for callers that keep the parsed value ([`WebhookEvent::from_value`]).
    pub fn json(body: &[u8]) -> Result<Value, PayloadError> {
        serde_json::from_slice(body).map_err(|e| PayloadError::NotJson(e.to_string()))
    }

    /// [`WebhookEvent::parse`] of a body already parsed as JSON (`value`); `body` is read again only to
    /// locate the error in a refused one.
    pub fn from_value(kind: EventKind, value: &Value, body: &[u8]) -> Result<Self, PayloadError> {
        let kind_field = KindField::of(kind).ok_or(PayloadError::UnsupportedEvent)?;
        let header = kind.header();
        if !value.is_object() {
            return Err(PayloadError::NotAnObject(json_type_name(value)));
        }
        kind_field.check(value, header)?;
        for (pointer, what) in required_ids(kind, value) {
            check_id(value, &pointer, what)?;
        }
        Ok(match kind {
            EventKind::Push => Self::Push(typed(value, body, header)?),
            EventKind::TagPush => Self::TagPush(typed(value, body, header)?),
            EventKind::MergeRequest => Self::MergeRequest(Box::new(typed(value, body, header)?)),
            EventKind::Pipeline => Self::Pipeline(Box::new(typed(value, body, header)?)),
            EventKind::Job => Self::Job(Box::new(typed(value, body, header)?)),
            EventKind::Deployment => Self::Deployment(Box::new(typed(value, body, header)?)),
            EventKind::FeatureFlag => Self::FeatureFlag(Box::new(typed(value, body, header)?)),
            EventKind::Project => Self::Project(typed(value, body, header)?),
            EventKind::Subgroup => Self::Subgroup(typed(value, body, header)?),
            EventKind::Member => Self::Member(typed(value, body, header)?),
            EventKind::Other => return Err(PayloadError::UnsupportedEvent),
        })
    }

    pub fn kind(&self) -> EventKind {
        match self {
            Self::Push(_) => EventKind::Push,
            Self::TagPush(_) => EventKind::TagPush,
            Self::MergeRequest(_) => EventKind::MergeRequest,
            Self::Pipeline(_) => EventKind::Pipeline,
            Self::Job(_) => EventKind::Job,
            Self::Deployment(_) => EventKind::Deployment,
            Self::FeatureFlag(_) => EventKind::FeatureFlag,
            Self::Project(_) => EventKind::Project,
            Self::Subgroup(_) => EventKind::Subgroup,
            Self::Member(_) => EventKind::Member,
        }
    }

    /// The project the event belongs to; `None` for group-level events. For a merge request this is the
    /// target project, which owns it even when the source branch is in a fork.
    pub fn project_id(&self) -> Option<i64> {
        match self {
            Self::Push(push) | Self::TagPush(push) => Some(push.project.id),
            Self::MergeRequest(mr) => Some(mr.project.id),
            Self::Pipeline(pipeline) => Some(pipeline.project.id),
            Self::Job(job) => Some(job.project_id),
            Self::Deployment(deployment) => Some(deployment.project.id),
            Self::FeatureFlag(flag) => Some(flag.project.id),
            Self::Project(project) => Some(project.project_id),
            Self::Subgroup(_) | Self::Member(_) => None,
        }
    }

    /// The group a group-level event is about: the new or removed subgroup itself (its parent is in
    /// `parent_group_id`), or the group whose membership changed. `None` for project events.
    pub fn group_id(&self) -> Option<i64> {
        match self {
            Self::Subgroup(subgroup) => Some(subgroup.group_id),
            Self::Member(member) => Some(member.group_id),
            _ => None,
        }
    }
}
