//! Jira Service Management settings: the service IDs a project's deployments carry, and the environment
//! tiers whose deployments wait for a change request. Set per project, or on a group for the projects
//! under it; validated as GitLab's app validates them, with its messages where it has one.

use serde::Serialize;

use crate::domain::ProjectId;
use crate::named_enum;

/// GitLab's limit on a project's service IDs.
pub const MAX_SERVICE_IDS: usize = 100;

named_enum! {
    /// A GitLab environment tier that deployment gating can apply to (GitLab's `other` cannot be gated).
    pub enum GatingTier ("environment tier") {
        Production = "production",
        Staging = "staging",
        Testing = "testing",
        Development = "development",
    }
}

/// Why a JSM setting was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsmError {
    #[error("cannot have more than 100 service IDs (got {0})")]
    TooManyServiceIds(usize),
    #[error(
        "service ID {0:?} is not valid: service IDs hold letters, digits, '=' and ':' only, at most 255 characters"
    )]
    BadServiceId(String),
    #[error("only available environment names: production,staging,testing,development (got {0:?})")]
    UnknownTier(String),
}

/// Parses a comma-separated list of service IDs: items trimmed, empty ones and repeats dropped. An ID
/// holds what GitLab's format allows (`[A-Za-z0-9=:]`, e.g. `b:AXJpOmNs...=`), within Jira's 255.
pub fn parse_service_ids(list: &str) -> Result<Vec<String>, JsmError> {
    let mut ids: Vec<String> = Vec::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let valid = item.len() <= 255
            && item
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '=' || c == ':');
        if !valid {
            return Err(JsmError::BadServiceId(item.chars().take(64).collect()));
        }
        if !ids.iter().any(|id| id == item) {
            ids.push(item.to_owned());
        }
    }
    if ids.len() > MAX_SERVICE_IDS {
        return Err(JsmError::TooManyServiceIds(ids.len()));
    }
    Ok(ids)
}

/// Parses a comma-separated list of tiers (lowercase, as GitLab names them): items trimmed, empty ones
/// and repeats dropped, in the order given; an unknown one is refused and named.
pub fn parse_tiers(list: &str) -> Result<Vec<GatingTier>, JsmError> {
    let mut tiers = Vec::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let tier = GatingTier::parse(item)
            .map_err(|_| JsmError::UnknownTier(item.chars().take(64).collect()))?;
        if !tiers.contains(&tier) {
            tiers.push(tier);
        }
    }
    Ok(tiers)
}

/// Where a JSM setting applies: a project, or a group (the linked group or a subgroup of it) for the
/// projects under it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "scope", rename_all = "snake_case")]
pub enum JsmScope {
    Group { path: String },
    Project { id: ProjectId, path: String },
}

impl JsmScope {
    pub fn path(&self) -> &str {
        match self {
            JsmScope::Group { path } | JsmScope::Project { path, .. } => path,
        }
    }
}

/// A GitLab token (of a service account or bot) that approves, rejects and plays gated deployments.
/// Never shown: debug output and JSON say only that one is set.
#[derive(Clone, PartialEq, Eq)]
pub struct GatingToken(pub String);

impl std::fmt::Debug for GatingToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GatingToken(set)")
    }
}

impl Serialize for GatingToken {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("set")
    }
}

/// The settings one scope sets; a field left `None` is inherited from the nearest group that sets it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct JsmSettings {
    pub service_ids: Option<Vec<String>>,
    /// Tiers whose blocked deployments wait for a change request; `Some(empty)` turns gating off.
    pub gating_tiers: Option<Vec<GatingTier>>,
    pub gating_token: Option<GatingToken>,
    /// Whether an approved deployment's manual job is played (approval alone does not start it).
    pub play_after_approval: Option<bool>,
}

/// Deployment gating as it applies to one project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GatingInForce {
    pub tiers: Vec<GatingTier>,
    pub token: GatingToken,
    pub play_after_approval: bool,
    /// The project or group the tiers come from.
    pub from: String,
}

/// What applies to one project once inheritance is resolved.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct JsmInForce {
    pub service_ids: Vec<String>,
    /// The path of the project or group each setting comes from (`None`: nothing set).
    pub service_ids_from: Option<String>,
    /// The tiers gated, whether or not a token is set to act on their decisions.
    pub gating_tiers: Vec<GatingTier>,
    /// `None` when no tiers are gated, or no token is set to act on decisions.
    pub gating: Option<GatingInForce>,
}

impl JsmInForce {
    /// Whether a deployment to `tier` waits for a change request.
    pub fn gates(&self, tier: Option<&str>) -> bool {
        let Some(gating) = &self.gating else {
            return false;
        };
        tier.and_then(|t| GatingTier::parse(t).ok())
            .is_some_and(|t| gating.tiers.contains(&t))
    }
}

/// The settings in force for the project `project_id` at `project_path`: each field from the project's
/// own settings, else from the deepest group above the project that sets it.
pub fn in_force(
    records: &[(JsmScope, JsmSettings)],
    project_id: ProjectId,
    project_path: &str,
) -> JsmInForce {
    // The project's own record first, then its groups from the deepest up.
    let mut applicable: Vec<&(JsmScope, JsmSettings)> = records
        .iter()
        .filter(|(scope, _)| match scope {
            JsmScope::Project { id, .. } => *id == project_id,
            JsmScope::Group { path } => is_under(project_path, path),
        })
        .collect();
    applicable.sort_by_key(|(scope, _)| match scope {
        JsmScope::Project { .. } => (0, 0),
        JsmScope::Group { path } => (1, usize::MAX - path.len()),
    });
    let nearest = |field: fn(&JsmSettings) -> bool| {
        applicable
            .iter()
            .find(|(_, settings)| field(settings))
            .map(|(scope, settings)| (scope, settings))
    };
    let mut out = JsmInForce::default();
    if let Some((scope, settings)) = nearest(|s| s.service_ids.is_some()) {
        out.service_ids = settings.service_ids.clone().unwrap_or_default();
        out.service_ids_from = Some(scope.path().to_owned());
    }
    let tiers = nearest(|s| s.gating_tiers.is_some());
    let token = nearest(|s| s.gating_token.is_some()).and_then(|(_, s)| s.gating_token.clone());
    let play = nearest(|s| s.play_after_approval.is_some())
        .and_then(|(_, s)| s.play_after_approval)
        .unwrap_or(true);
    out.gating_tiers = tiers
        .and_then(|(_, s)| s.gating_tiers.clone())
        .unwrap_or_default();
    if let (Some((scope, settings)), Some(token)) = (tiers, token) {
        let tiers = settings.gating_tiers.clone().unwrap_or_default();
        if !tiers.is_empty() {
            out.gating = Some(GatingInForce {
                tiers,
                token,
                play_after_approval: play,
                from: scope.path().to_owned(),
            });
        }
    }
    out
}

/// Whether `project_path` lies under the group `group_path` (GitLab paths compare case-insensitively).
fn is_under(project_path: &str, group_path: &str) -> bool {
    let (p, g) = (project_path.to_lowercase(), group_path.to_lowercase());
    p.len() > g.len() && p.starts_with(&g) && p.as_bytes()[g.len()] == b'/'
}

named_enum! {
    /// JSM's answer about a gated deployment (the gating-status API and the `jiraDeploymentGating`
    /// callback).
    pub enum GatingStatus ("gating status") {
        Allowed = "allowed",
        Prevented = "prevented",
        Awaiting = "awaiting",
        Invalid = "invalid",
    }
}

/// JSM's report on a gated deployment: the gating-status API's answer and the `jiraDeploymentGating`
/// callback's body share this shape. An unknown status is refused, not guessed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct GatingReport {
    #[serde(rename = "pipelineId", default)]
    pub pipeline_id: String,
    #[serde(rename = "environmentId", default)]
    pub environment_id: String,
    #[serde(rename = "deploymentSequenceNumber", default)]
    pub deployment_sequence_number: i64,
    #[serde(rename = "gatingStatus")]
    pub gating_status: GatingStatus,
    #[serde(default)]
    pub details: Vec<GatingDetail>,
}

/// What decides a gate; today always a change request issue.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct GatingDetail {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(rename = "issueKey", default)]
    pub issue_key: Option<String>,
    #[serde(rename = "issueLink", default)]
    pub issue_link: Option<String>,
}

impl GatingReport {
    /// The change request deciding the gate, as (key, link), when JSM names one.
    pub fn change_request(&self) -> Option<(&str, &str)> {
        self.details
            .iter()
            .filter(|d| d.kind == "issue")
            .find_map(|d| {
                Some((
                    d.issue_key.as_deref()?,
                    d.issue_link.as_deref().unwrap_or(""),
                ))
            })
    }
}

named_enum! {
    /// Where a gate is: waiting for JSM, decided (the decision not yet carried out in GitLab), or done.
    pub enum GateState ("gate state") {
        Open = "open",
        Decided = "decided",
        Done = "done",
    }
}

named_enum! {
    /// What ended a gate's wait.
    pub enum GateDecision ("gate decision") {
        Allowed = "allowed",
        Prevented = "prevented",
        Invalid = "invalid",
        /// No decision within `GFJ_GATING_TIMEOUT_SECS`.
        TimedOut = "timed_out",
    }
}

impl GateDecision {
    /// The decision a gating status makes; `None` while JSM is still waiting.
    pub fn from_status(status: GatingStatus) -> Option<Self> {
        match status {
            GatingStatus::Allowed => Some(GateDecision::Allowed),
            GatingStatus::Prevented => Some(GateDecision::Prevented),
            GatingStatus::Invalid => Some(GateDecision::Invalid),
            GatingStatus::Awaiting => None,
        }
    }
}

/// What to do with a gate that JSM found invalid or did not decide in time (`GFJ_GATING_UNDECIDED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Undecided {
    /// Reject the deployment, with a comment that says why.
    Reject,
    /// Leave it blocked, for people to approve or reject in GitLab.
    Leave,
}

/// What a decision does in GitLab.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GateAction {
    /// Approve with this comment, then play the deployment's manual job when `play`.
    Approve {
        comment: String,
        play: bool,
    },
    Reject {
        comment: String,
    },
    /// Nothing: people decide in GitLab.
    Leave,
}

/// The GitLab action for a decision. `change_request` is JSM's change request (key and link) when it
/// named one; `timeout_secs` is what the comment of a timed-out gate cites.
pub fn gate_action(
    decision: GateDecision,
    change_request: Option<(&str, &str)>,
    undecided: Undecided,
    play_after_approval: bool,
    timeout_secs: i64,
) -> GateAction {
    let request = change_request.map_or_else(
        || "its change request".to_owned(),
        |(key, link)| format!("change request {key} ({link})"),
    );
    let undecided_comment = |why: String| match undecided {
        Undecided::Reject => GateAction::Reject {
            comment: format!("Rejected: {why}. Approve it in GitLab to deploy anyway."),
        },
        Undecided::Leave => GateAction::Leave,
    };
    match decision {
        GateDecision::Allowed => GateAction::Approve {
            comment: format!(
                "Approved in Jira Service Management: {request} allows this deployment."
            ),
            play: play_after_approval,
        },
        GateDecision::Prevented => GateAction::Reject {
            comment: format!(
                "Rejected in Jira Service Management: {request} prevents this deployment."
            ),
        },
        GateDecision::Invalid => undecided_comment(format!(
            "Jira Service Management could not evaluate the gate of this deployment ({request} is invalid: check the service's change management settings)"
        )),
        GateDecision::TimedOut => undecided_comment(format!(
            "Jira Service Management did not decide {request} within {}",
            describe_secs(timeout_secs)
        )),
    }
}

fn describe_secs(secs: i64) -> String {
    if secs % 3600 == 0 {
        format!("{} hour(s)", secs / 3600)
    } else if secs % 60 == 0 {
        format!("{} minute(s)", secs / 60)
    } else {
        format!("{secs} second(s)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_ids_are_trimmed_deduplicated_and_capped_at_100() {
        assert_eq!(
            parse_service_ids(" b:AXJpOmNs=, ,svc2,,b:AXJpOmNs= ,").unwrap(),
            ["b:AXJpOmNs=", "svc2"]
        );
        assert_eq!(parse_service_ids("").unwrap(), Vec::<String>::new());
        let hundred: Vec<String> = (0..100).map(|n| format!("s{n}")).collect();
        assert_eq!(parse_service_ids(&hundred.join(",")).unwrap().len(), 100);
        let err = parse_service_ids(&format!("{},s100", hundred.join(","))).unwrap_err();
        assert_eq!(err, JsmError::TooManyServiceIds(101));
        assert!(
            err.to_string()
                .starts_with("cannot have more than 100 service IDs")
        );
        for bad in ["has space", "semi;colon", "ü", &"x".repeat(256)] {
            assert!(
                matches!(parse_service_ids(bad), Err(JsmError::BadServiceId(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn tiers_are_gitlabs_four_in_lowercase_and_others_are_named() {
        assert_eq!(
            parse_tiers("production, staging,production,,development").unwrap(),
            [
                GatingTier::Production,
                GatingTier::Staging,
                GatingTier::Development
            ]
        );
        assert_eq!(parse_tiers(" testing ").unwrap(), [GatingTier::Testing]);
        for bad in ["Production", "other", "prod", "production;staging"] {
            let err = parse_tiers(bad).unwrap_err();
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
            assert!(
                err.to_string()
                    .starts_with("only available environment names")
            );
        }
    }

    fn group(path: &str, ids: Option<&[&str]>) -> (JsmScope, JsmSettings) {
        (
            JsmScope::Group { path: path.into() },
            JsmSettings {
                service_ids: ids.map(|i| i.iter().map(|s| s.to_string()).collect()),
                ..JsmSettings::default()
            },
        )
    }

    #[test]
    fn a_project_inherits_from_its_deepest_group_unless_it_sets_its_own() {
        let mut records = vec![
            group("acme", Some(&["top"])),
            group("acme/web", Some(&["web"])),
            group("acme/web-old", Some(&["not-a-parent"])),
            group("acme/api", None),
            group("other", Some(&["foreign"])),
        ];
        let f =
            |records: &[(JsmScope, JsmSettings)], id, path| in_force(records, ProjectId(id), path);
        let web = f(&records, 1, "acme/web/shop");
        assert_eq!(
            (web.service_ids, web.service_ids_from.as_deref()),
            (vec!["web".to_owned()], Some("acme/web"))
        );
        // A group that sets nothing passes its parent's on; paths compare case-insensitively.
        let api = f(&records, 2, "ACME/api/gateway");
        assert_eq!(api.service_ids, ["top"]);
        assert_eq!(f(&records, 3, "elsewhere/p"), JsmInForce::default());
        // A group's own path is not a project under it.
        assert_eq!(f(&records, 4, "acme").service_ids_from, None);

        // The project's own setting wins, even an empty one; it is found by id, whatever its path now.
        records.push((
            JsmScope::Project {
                id: ProjectId(1),
                path: "acme/web/shop-renamed".into(),
            },
            JsmSettings {
                service_ids: Some(vec![]),
                ..JsmSettings::default()
            },
        ));
        let own = f(&records, 1, "acme/web/shop");
        assert_eq!(
            (own.service_ids.len(), own.service_ids_from.as_deref()),
            (0, Some("acme/web/shop-renamed"))
        );
        assert_eq!(f(&records, 5, "acme/web/blog").service_ids, ["web"]);
    }

    #[test]
    fn gating_needs_tiers_and_a_token_each_inherited_on_its_own() {
        let token = |t: &str| Some(GatingToken(t.into()));
        let mut records = vec![
            (
                JsmScope::Group {
                    path: "acme".into(),
                },
                JsmSettings {
                    gating_tiers: Some(vec![GatingTier::Production]),
                    gating_token: token("group-token"),
                    ..JsmSettings::default()
                },
            ),
            (
                JsmScope::Group {
                    path: "acme/labs".into(),
                },
                JsmSettings {
                    gating_tiers: Some(vec![]),
                    ..JsmSettings::default()
                },
            ),
        ];
        let g = in_force(&records, ProjectId(1), "acme/shop")
            .gating
            .unwrap();
        assert_eq!(
            (g.tiers, g.token, g.play_after_approval),
            (
                vec![GatingTier::Production],
                GatingToken("group-token".into()),
                true
            )
        );
        assert!(in_force(&records, ProjectId(1), "acme/shop").gates(Some("production")));
        assert!(!in_force(&records, ProjectId(1), "acme/shop").gates(Some("staging")));
        assert!(!in_force(&records, ProjectId(1), "acme/shop").gates(None));
        // An empty list turns gating off below it.
        assert_eq!(in_force(&records, ProjectId(2), "acme/labs/x").gating, None);
        // A project's own tiers and play setting, with the group's token.
        records.push((
            JsmScope::Project {
                id: ProjectId(3),
                path: "acme/api".into(),
            },
            JsmSettings {
                gating_tiers: Some(vec![GatingTier::Staging]),
                play_after_approval: Some(false),
                ..JsmSettings::default()
            },
        ));
        let g = in_force(&records, ProjectId(3), "acme/api").gating.unwrap();
        assert_eq!(
            (
                g.tiers,
                g.token.0.as_str(),
                g.play_after_approval,
                g.from.as_str()
            ),
            (vec![GatingTier::Staging], "group-token", false, "acme/api")
        );
        // Tiers without any token: nothing could act on the decisions, so nothing is gated.
        let no_token = [(
            JsmScope::Group {
                path: "acme".into(),
            },
            JsmSettings {
                gating_tiers: Some(vec![GatingTier::Production]),
                ..JsmSettings::default()
            },
        )];
        let tiers_only = in_force(&no_token, ProjectId(1), "acme/shop");
        assert_eq!(
            (tiers_only.gating, tiers_only.gating_tiers),
            (None, vec![GatingTier::Production])
        );
        // The token never shows.
        assert_eq!(format!("{:?}", token("secret")), "Some(GatingToken(set))");
        assert_eq!(
            serde_json::to_string(&GatingToken("secret".into())).unwrap(),
            "\"set\""
        );
    }

    #[test]
    fn each_decision_does_one_thing_in_gitlab() {
        let cr = Some((
            "CHG-1",
            "https://acme.atlassian.net/servicedesk/customer/portal/1/CHG-1",
        ));
        let approve = gate_action(GateDecision::Allowed, cr, Undecided::Reject, true, 3600);
        assert!(
            matches!(&approve, GateAction::Approve { comment, play: true } if comment.contains("change request CHG-1 (https://acme"))
        );
        assert!(matches!(
            gate_action(GateDecision::Allowed, None, Undecided::Reject, false, 3600),
            GateAction::Approve { play: false, .. }
        ));
        let reject = gate_action(GateDecision::Prevented, cr, Undecided::Leave, true, 3600);
        assert!(
            matches!(&reject, GateAction::Reject { comment } if comment.contains("CHG-1") && comment.contains("prevents"))
        );
        let invalid = gate_action(GateDecision::Invalid, None, Undecided::Reject, true, 3600);
        assert!(
            matches!(&invalid, GateAction::Reject { comment } if comment.contains("could not evaluate"))
        );
        let late = gate_action(GateDecision::TimedOut, None, Undecided::Reject, true, 7200);
        assert!(
            matches!(&late, GateAction::Reject { comment } if comment.contains("within 2 hour(s)"))
        );
        for d in [GateDecision::Invalid, GateDecision::TimedOut] {
            assert_eq!(
                gate_action(d, cr, Undecided::Leave, true, 60),
                GateAction::Leave
            );
        }
        assert_eq!(GateDecision::from_status(GatingStatus::Awaiting), None);
        assert_eq!(
            GateDecision::from_status(GatingStatus::Prevented),
            Some(GateDecision::Prevented)
        );
    }

    #[test]
    fn gating_reports_read_strictly() {
        let report: GatingReport = serde_json::from_str(
            r#"{"updatedTimestamp":"2020-08-25T06:04:50.239Z","gatingStatus":"prevented","pipelineId":"p","environmentId":"e","deploymentSequenceNumber":7,
                "details":[{"type":"issue","issueKey":"CHG-1","issueLink":"https://acme.atlassian.net/servicedesk/customer/portal/1/CHG-1"}]}"#,
        )
        .unwrap();
        assert_eq!(report.gating_status, GatingStatus::Prevented);
        assert_eq!(report.deployment_sequence_number, 7);
        assert_eq!(report.change_request().map(|c| c.0), Some("CHG-1"));
        let bare: GatingReport =
            serde_json::from_str(r#"{"gatingStatus":"awaiting","details":[]}"#).unwrap();
        assert_eq!(bare.change_request(), None);
        assert!(serde_json::from_str::<GatingReport>(r#"{"gatingStatus":"ALLOWED"}"#).is_err());
        assert!(serde_json::from_str::<GatingReport>(r#"{"details":[]}"#).is_err());
    }
}
