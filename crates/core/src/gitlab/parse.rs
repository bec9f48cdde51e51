//! One entry point from (`X-Gitlab-Event`, body) to a typed event. Strict about what routes the event (its
//! kind and ids), lenient about everything else.

use std::borrow::Cow;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{DeserializeOwned, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
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

    fn check(&self, probe: &Probe, header: &'static str) -> Result<(), PayloadError> {
        let (field, expected, found) = match self {
            Self::ObjectKind(expected) => ("object_kind", *expected, &probe.object_kind),
            Self::EventName { example, .. } => ("event_name", *example, &probe.event_name),
        };
        let found = match found {
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

/// What routes a body, read in one pass over it without building it: its kind field and every id some
/// kind is checked for, each kept as a small JSON value; the rest of the body is skipped. The typed parse
/// that follows then reads only bodies that will be accepted, and no JSON tree is built for any.
///
/// Lenient by construction, like a JSON pointer lookup: a field that is not where it is expected, or not
/// an object where ids are looked for, reads as missing.
#[derive(Default)]
struct Probe {
    /// The JSON type of the body when it is not an object.
    not_an_object: Option<&'static str>,
    object_kind: Option<Value>,
    event_name: Option<Value>,
    project_id: Option<Value>,
    build_id: Option<Value>,
    pipeline_id: Option<Value>,
    deployment_id: Option<Value>,
    group_id: Option<Value>,
    user_id: Option<Value>,
    /// `None` when absent or null; the ids of anything else present (none when it is not an object).
    project: Option<Ids>,
    object_attributes: Option<Ids>,
    merge_request: Option<Ids>,
    /// Empty when absent or not an array.
    builds: Vec<Ids>,
}

/// The ids of a nested object.
#[derive(Default)]
struct Ids {
    id: Option<Value>,
    iid: Option<Value>,
    target_project_id: Option<Value>,
}

/// A struct read field by field from whatever JSON value is there (see [`Probe`]).
trait LenientFields: Default {
    /// Reads the value of `key` into `self` when it is wanted, and skips it otherwise.
    fn field<'de, A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error>;

    /// What a value that is not an object reads as.
    fn not_an_object(json_type: &'static str) -> Self {
        let _ = json_type;
        Self::default()
    }

    /// What an array reads as: its items skipped, unless the struct reads them.
    fn items<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<Self, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Self::not_an_object("array"))
    }
}

impl LenientFields for Probe {
    fn field<'de, A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error> {
        let slot = match key {
            "object_kind" => &mut self.object_kind,
            "event_name" => &mut self.event_name,
            "project_id" => &mut self.project_id,
            "build_id" => &mut self.build_id,
            "pipeline_id" => &mut self.pipeline_id,
            "deployment_id" => &mut self.deployment_id,
            "group_id" => &mut self.group_id,
            "user_id" => &mut self.user_id,
            "project" => return read(map, &mut self.project),
            "object_attributes" => return read(map, &mut self.object_attributes),
            "merge_request" => return read(map, &mut self.merge_request),
            "builds" => {
                self.builds = map.next_value::<Lenient<LenientList<Ids>>>()?.0.0;
                return Ok(());
            }
            _ => return map.next_value::<IgnoredAny>().map(drop),
        };
        *slot = map.next_value()?;
        Ok(())
    }

    fn not_an_object(json_type: &'static str) -> Self {
        Self {
            not_an_object: Some(json_type),
            ..Self::default()
        }
    }
}

impl LenientFields for Ids {
    fn field<'de, A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error> {
        let slot = match key {
            "id" => &mut self.id,
            "iid" => &mut self.iid,
            "target_project_id" => &mut self.target_project_id,
            _ => return map.next_value::<IgnoredAny>().map(drop),
        };
        *slot = map.next_value()?;
        Ok(())
    }
}

/// The items of an array, each read leniently; empty for anything that is not an array.
#[derive(Default)]
struct LenientList<T>(Vec<T>);

impl<T: LenientFields> LenientFields for LenientList<T> {
    fn field<'de, A: MapAccess<'de>>(&mut self, _key: &str, map: &mut A) -> Result<(), A::Error> {
        map.next_value::<IgnoredAny>().map(drop)
    }

    fn items<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<Self, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Lenient<T>>()? {
            items.push(item.0);
        }
        Ok(Self(items))
    }
}

/// Reads a nested object's ids; null reads as absent.
fn read<'de, A: MapAccess<'de>, T: LenientFields>(
    map: &mut A,
    slot: &mut Option<T>,
) -> Result<(), A::Error> {
    *slot = map.next_value::<Option<Lenient<T>>>()?.map(|read| read.0);
    Ok(())
}

/// Any JSON value read as `T` ([`LenientFields`]).
struct Lenient<T>(T);

impl<'de, T: LenientFields> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(LenientVisitor(PhantomData))
    }
}

struct LenientVisitor<T>(PhantomData<T>);

impl<'de, T: LenientFields> Visitor<'de> for LenientVisitor<T> {
    type Value = Lenient<T>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = T::default();
        while let Some(key) = map.next_key::<Key<'de>>()? {
            fields.field(&key.0, &mut map)?;
        }
        Ok(Lenient(fields))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        T::items(seq).map(Lenient)
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Lenient(T::not_an_object("null")))
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Lenient(T::not_an_object("boolean")))
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Lenient(T::not_an_object("number")))
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Lenient(T::not_an_object("number")))
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Lenient(T::not_an_object("number")))
    }

    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Lenient(T::not_an_object("string")))
    }
}

/// An object key, borrowed from the body unless it had to be unescaped.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object key")
            }

            fn visit_borrowed_str<E>(self, key: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(key)))
            }

            fn visit_str<E>(self, key: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(key.to_owned())))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// A nested object's id, as `pick` chooses it.
fn nested(ids: &Option<Ids>, pick: fn(&Ids) -> &Option<Value>) -> Option<&Value> {
    ids.as_ref().and_then(|ids| pick(ids).as_ref())
}

/// The ids an event of this kind is routed and deduplicated by, as (where, what it is, the value found).
fn required_ids(
    kind: EventKind,
    probe: &Probe,
) -> Vec<(Cow<'static, str>, &'static str, Option<&Value>)> {
    let id: fn(&Ids) -> &Option<Value> = |ids| &ids.id;
    let project_id = probe.project_id.as_ref();
    let nested_project_id = nested(&probe.project, id);
    let mut ids: Vec<(Cow<'static, str>, &'static str, Option<&Value>)> = match kind {
        EventKind::Push | EventKind::TagPush => vec![
            ("project_id".into(), "project id", project_id),
            ("project.id".into(), "project id", nested_project_id),
        ],
        EventKind::MergeRequest => vec![
            ("project.id".into(), "project id", nested_project_id),
            (
                "object_attributes.id".into(),
                "merge request id",
                nested(&probe.object_attributes, id),
            ),
            (
                "object_attributes.iid".into(),
                "merge request iid",
                nested(&probe.object_attributes, |ids| &ids.iid),
            ),
            (
                "object_attributes.target_project_id".into(),
                "target project id",
                nested(&probe.object_attributes, |ids| &ids.target_project_id),
            ),
        ],
        EventKind::Pipeline => vec![
            ("project.id".into(), "project id", nested_project_id),
            (
                "object_attributes.id".into(),
                "pipeline id",
                nested(&probe.object_attributes, id),
            ),
        ],
        EventKind::Job => vec![
            ("project_id".into(), "project id", project_id),
            ("build_id".into(), "job id", probe.build_id.as_ref()),
            (
                "pipeline_id".into(),
                "pipeline id",
                probe.pipeline_id.as_ref(),
            ),
        ],
        EventKind::Deployment => vec![
            ("project.id".into(), "project id", nested_project_id),
            (
                "deployment_id".into(),
                "deployment id",
                probe.deployment_id.as_ref(),
            ),
        ],
        EventKind::FeatureFlag => vec![
            ("project.id".into(), "project id", nested_project_id),
            (
                "object_attributes.id".into(),
                "feature flag id",
                nested(&probe.object_attributes, id),
            ),
        ],
        EventKind::Project => vec![("project_id".into(), "project id", project_id)],
        EventKind::Subgroup => vec![("group_id".into(), "group id", probe.group_id.as_ref())],
        EventKind::Member => vec![
            ("group_id".into(), "group id", probe.group_id.as_ref()),
            ("user_id".into(), "user id", probe.user_id.as_ref()),
        ],
        EventKind::Other => vec![],
    };
    if kind == EventKind::Pipeline {
        if probe.merge_request.is_some() {
            ids.push((
                "merge_request.id".into(),
                "merge request id",
                nested(&probe.merge_request, id),
            ));
            ids.push((
                "merge_request.iid".into(),
                "merge request iid",
                nested(&probe.merge_request, |ids| &ids.iid),
            ));
        }
        ids.extend(probe.builds.iter().enumerate().map(|(index, build)| {
            (
                Cow::Owned(format!("builds.{index}.id")),
                "job id",
                build.id.as_ref(),
            )
        }));
    }
    ids
}

fn check_id(
    found: Option<&Value>,
    path: Cow<'static, str>,
    what: &'static str,
) -> Result<(), PayloadError> {
    match found {
        None | Some(Value::Null) => Err(PayloadError::MissingId {
            what,
            path: path.into_owned(),
        }),
        Some(id) if id.as_i64().is_some_and(|id| id > 0) => Ok(()),
        Some(id) => Err(PayloadError::InvalidId {
            what,
            path: path.into_owned(),
            found: id.to_string(),
        }),
    }
}

fn typed<T: DeserializeOwned>(body: &[u8], header: &'static str) -> Result<T, PayloadError> {
    serde_json::from_slice(body).map_err(|e| PayloadError::Shape {
        header,
        detail: e.to_string(),
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

    /// The body checked and typed: the kind field must match the header and the routing ids must be
    /// positive integers (read by a [`Probe`]), then one typed parse of the bytes.
    pub fn parse(kind: EventKind, body: &[u8]) -> Result<Self, PayloadError> {
        let kind_field = KindField::of(kind).ok_or(PayloadError::UnsupportedEvent)?;
        let header = kind.header();
        let probe = serde_json::from_slice::<Lenient<Probe>>(body)
            .map_err(|e| PayloadError::NotJson(e.to_string()))?
            .0;
        if let Some(json_type) = probe.not_an_object {
            return Err(PayloadError::NotAnObject(json_type));
        }
        kind_field.check(&probe, header)?;
        for (path, what, found) in required_ids(kind, &probe) {
            check_id(found, path, what)?;
        }
        Ok(match kind {
            EventKind::Push => Self::Push(typed(body, header)?),
            EventKind::TagPush => Self::TagPush(typed(body, header)?),
            EventKind::MergeRequest => Self::MergeRequest(Box::new(typed(body, header)?)),
            EventKind::Pipeline => Self::Pipeline(Box::new(typed(body, header)?)),
            EventKind::Job => Self::Job(Box::new(typed(body, header)?)),
            EventKind::Deployment => Self::Deployment(Box::new(typed(body, header)?)),
            EventKind::FeatureFlag => Self::FeatureFlag(Box::new(typed(body, header)?)),
            EventKind::Project => Self::Project(typed(body, header)?),
            EventKind::Subgroup => Self::Subgroup(typed(body, header)?),
            EventKind::Member => Self::Member(typed(body, header)?),
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
