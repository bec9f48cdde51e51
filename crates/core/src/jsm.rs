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

/// The settings one scope sets; a field left `None` is inherited from the nearest group that sets it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct JsmSettings {
    pub service_ids: Option<Vec<String>>,
}

/// What applies to one project once inheritance is resolved.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct JsmInForce {
    pub service_ids: Vec<String>,
    /// The path of the project or group each setting comes from (`None`: nothing set).
    pub service_ids_from: Option<String>,
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
    let mut out = JsmInForce::default();
    if let Some((scope, settings)) = applicable.iter().find(|(_, s)| s.service_ids.is_some()) {
        out.service_ids = settings.service_ids.clone().unwrap_or_default();
        out.service_ids_from = Some(scope.path().to_owned());
    }
    out
}

/// Whether `project_path` lies under the group `group_path` (GitLab paths compare case-insensitively).
fn is_under(project_path: &str, group_path: &str) -> bool {
    let (p, g) = (project_path.to_lowercase(), group_path.to_lowercase());
    p.len() > g.len() && p.starts_with(&g) && p.as_bytes()[g.len()] == b'/'
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
            },
        ));
        let own = f(&records, 1, "acme/web/shop");
        assert_eq!(
            (own.service_ids.len(), own.service_ids_from.as_deref()),
            (0, Some("acme/web/shop-renamed"))
        );
        assert_eq!(f(&records, 5, "acme/web/blog").service_ids, ["web"]);
    }
}
