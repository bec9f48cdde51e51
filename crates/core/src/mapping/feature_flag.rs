//! Feature flag → Jira feature flag. The webhook carries only id, name, description and `active`; the
//! caller reads the strategies from GitLab's REST API (whose entity has no id).

use serde_json::Value;

use crate::gitlab::{GitLabTime, Project};
use crate::issue_keys;
use crate::jira::{
    self, FeatureFlag, FlagDetails, FlagEnvironment, FlagRollout, FlagStatus, FlagSummary,
};

use super::time_or_seq;

#[derive(Debug, Clone, PartialEq)]
pub struct FlagFacts {
    pub project: Project,
    /// The webhook's `object_attributes.id`.
    pub id: i64,
    pub name: String,
    pub description: String,
    pub active: bool,
    /// GitLab's `strategies[]` as the REST API returns them.
    pub strategies: Vec<FlagStrategy>,
    pub updated_at: String,
}

/// One of a flag's strategies, as GitLab's REST API returns it, read leniently: a field of another shape
/// reads as absent (a strategy that is not even an object reads as one without name, rollout or scopes),
/// so one odd strategy never costs the whole flag.
#[derive(Debug, Clone, PartialEq, Default, serde::Deserialize)]
#[serde(from = "Value")]
pub struct FlagStrategy {
    /// `default`, `gradualRolloutUserId`, `flexibleRollout`, `userWithId`, `gitlabUserList`, …
    pub name: String,
    /// The `rollout` or `percentage` parameter, where it is a percentage Jira accepts (0–100).
    pub percentage: Option<f64>,
    /// The environment scopes it applies to (`*` for all).
    pub scopes: Vec<String>,
}

impl From<Value> for FlagStrategy {
    fn from(strategy: Value) -> Self {
        let scopes = strategy["scopes"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|scope| {
                scope["environment_scope"]
                    .as_str()
                    .unwrap_or("*")
                    .to_owned()
            })
            .collect();
        Self {
            name: strategy["name"].as_str().unwrap_or_default().to_owned(),
            percentage: percentage(&strategy),
            scopes,
        }
    }
}

/// `None` when the description names no issue key.
pub fn map_feature_flag(f: &FlagFacts, seq: i64) -> Option<FeatureFlag> {
    let mut keys = issue_keys::extract([f.description.as_str()]).into_keys();
    if keys.is_empty() {
        return None;
    }
    // Flags take fewer keys than devinfo entities (`issueKeys` is `[1..100]`).
    keys.truncate(jira::MAX_KEYS_PER_CICD_ENTITY);

    let url = Some(format!(
        "{}/-/feature_flags/{}/edit",
        f.project.web_url, f.id
    ))
    .filter(|u| u.chars().count() <= jira::MAX_URL_CHARS);
    let last_updated = time_or_seq(GitLabTime::parse(&f.updated_at), seq);
    let summary_status = status(
        f.active,
        f.strategies.first().and_then(|s| s.percentage),
        &f.strategies,
    );

    let mut details = Vec::new();
    for s in &f.strategies {
        let detail_status = status(f.active, s.percentage, std::slice::from_ref(s));
        for name in &s.scopes {
            details.push(FlagDetails {
                // Jira requires a detail URL; the flag's own page is the only one GitLab has.
                url: url.clone().unwrap_or_else(|| f.project.web_url.clone()),
                last_updated: last_updated.clone(),
                environment: FlagEnvironment {
                    name: jira::cap(name, jira::MAX_SHORT_TEXT_CHARS),
                    kind: environment_type(name).map(Into::into),
                },
                status: detail_status.clone(),
            });
        }
    }
    // Jira requires at least one detail. A flag without strategies (or scopes) applies nowhere in
    // particular, so it is shown once for all environments (`*`, GitLab's scope for "all").
    if details.is_empty() {
        details.push(FlagDetails {
            url: url.clone().unwrap_or_else(|| f.project.web_url.clone()),
            last_updated: last_updated.clone(),
            environment: FlagEnvironment {
                name: "*".into(),
                kind: None,
            },
            status: summary_status.clone(),
        });
    }

    Some(FeatureFlag {
        schema_version: "1.0".into(),
        id: f.id.to_string(),
        key: jira::cap(&f.name, jira::MAX_SHORT_TEXT_CHARS),
        update_sequence_id: seq,
        display_name: Some(jira::cap(&f.name, jira::MAX_SHORT_TEXT_CHARS)),
        issue_keys: keys,
        summary: FlagSummary {
            url,
            status: summary_status,
            last_updated,
        },
        details,
    })
}

fn status(enabled: bool, percentage: Option<f64>, strategies: &[FlagStrategy]) -> FlagStatus {
    let text = strategies
        .iter()
        .map(|s| strategy_text(&s.name))
        .filter(|t| !t.is_empty())
        .collect::<Vec<_>>()
        .join(", ");
    let text = Some(jira::cap(&text, jira::MAX_SHORT_TEXT_CHARS)).filter(|t| !t.is_empty());
    FlagStatus {
        enabled,
        default_value: Some(String::new()),
        rollout: (percentage.is_some() || text.is_some()).then_some(FlagRollout {
            percentage,
            text,
            rules: None,
        }),
    }
}

fn strategy_text(name: &str) -> &str {
    match name {
        "default" => "All users",
        "gitlabUserList" => "User List",
        "gradualRolloutUserId" => "Percent of users",
        "flexibleRollout" => "Percent rollout",
        "userWithId" => "User IDs",
        other => other,
    }
}

/// The strategy's `rollout` or `percentage` parameter. GitLab stores them as strings (`"50"`); anything
/// that is not a percentage Jira accepts (0–100) is left out rather than sent and rejected.
fn percentage(strategy: &Value) -> Option<f64> {
    let params = &strategy["parameters"];
    ["rollout", "percentage"].iter().find_map(|k| {
        let v = &params[*k];
        let n = match v {
            Value::String(s) => s.trim().parse::<f64>().ok(),
            Value::Number(n) => n.as_f64(),
            _ => None,
        }?;
        (n.is_finite() && (0.0..=100.0).contains(&n)).then_some(n)
    })
}

/// The Jira environment type a scope names: the first of these words to appear in it.
fn environment_type(scope: &str) -> Option<&'static str> {
    ["development", "testing", "staging", "production"]
        .into_iter()
        .filter_map(|t| scope.find(t).map(|at| (at, t)))
        .min_by_key(|(at, _)| *at)
        .map(|(_, t)| t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn facts(description: &str, strategies: Vec<Value>) -> FlagFacts {
        FlagFacts {
            project: crate::mapping::test_project(),
            id: 77,
            name: "new_login".into(),
            description: description.into(),
            active: true,
            strategies: serde_json::from_value(Value::Array(strategies)).unwrap(),
            updated_at: "2026-11-27T10:00:00.123+02:00".into(),
        }
    }

    #[test]
    fn gitlabs_own_example() {
        let f = facts(
            "PROJ-1 rollout",
            vec![json!({
                "id": 1,
                "name": "gradualRolloutUserId",
                "parameters": {"groupId": "default", "percentage": "50"},
                "scopes": [
                    {"id": 1, "environment_scope": "production in live"},
                    {"id": 2, "environment_scope": "staging"},
                    {"id": 3, "environment_scope": "*"}
                ]
            })],
        );
        let flag = map_feature_flag(&f, 42).unwrap();
        assert_eq!(flag.schema_version, "1.0");
        assert_eq!(flag.id, "77");
        assert_eq!(flag.key, "new_login");
        assert_eq!(flag.display_name.as_deref(), Some("new_login"));
        assert_eq!(flag.update_sequence_id, 42);
        assert_eq!(flag.issue_keys, ["PROJ-1"]);
        let status = FlagStatus {
            enabled: true,
            default_value: Some(String::new()),
            rollout: Some(FlagRollout {
                percentage: Some(50.0),
                text: Some("Percent of users".into()),
                rules: None,
            }),
        };
        assert_eq!(
            flag.summary,
            FlagSummary {
                url: Some("https://gitlab.example/g/api/-/feature_flags/77/edit".into()),
                status: status.clone(),
                last_updated: "2026-11-27T08:00:00.123Z".into(),
            }
        );
        let envs: Vec<_> = flag
            .details
            .iter()
            .map(|d| (d.environment.name.as_str(), d.environment.kind.as_deref()))
            .collect();
        assert_eq!(
            envs,
            [
                ("production in live", Some("production")),
                ("staging", Some("staging")),
                ("*", None)
            ]
        );
        assert!(flag.details.iter().all(|d| d.status == status));
        let body = serde_json::to_value(&flag.summary.status).unwrap();
        assert_eq!(
            body,
            json!({"enabled": true, "defaultValue": "", "rollout": {"percentage": 50.0, "text": "Percent of users"}})
        );
    }

    #[test]
    fn strategy_texts_percentages_and_details_per_scope() {
        let f = facts(
            "QA-1",
            vec![
                json!({"name": "flexibleRollout", "parameters": {"rollout": "25", "groupId": "x", "stickiness": "default"}, "scopes": [{"environment_scope": "review/*"}]}),
                json!({"name": "default", "parameters": {}, "scopes": [{"environment_scope": "development-testing"}, {"environment_scope": "dev"}]}),
                json!({"name": "gitlabUserList", "parameters": {}, "scopes": []}),
                json!({"name": "userWithId", "parameters": {"userIds": "1,2"}, "scopes": [{"environment_scope": "staging"}]}),
            ],
        );
        let flag = map_feature_flag(&f, 1).unwrap();
        let rollout = flag.summary.status.rollout.as_ref().unwrap();
        assert_eq!(rollout.percentage, Some(25.0));
        assert_eq!(
            rollout.text.as_deref(),
            Some("Percent rollout, All users, User List, User IDs")
        );
        let details: Vec<_> = flag
            .details
            .iter()
            .map(|d| {
                (
                    d.environment.name.as_str(),
                    d.environment.kind.as_deref(),
                    d.status.rollout.as_ref().and_then(|r| r.text.as_deref()),
                )
            })
            .collect();
        assert_eq!(
            details,
            [
                ("review/*", None, Some("Percent rollout")),
                (
                    "development-testing",
                    Some("development"),
                    Some("All users")
                ),
                ("dev", None, Some("All users")),
                ("staging", Some("staging"), Some("User IDs")),
            ]
        );
    }

    #[test]
    fn environment_type_is_the_first_word_to_appear() {
        let cases = [
            ("production", Some("production")),
            ("staging-production", Some("staging")),
            ("production/staging", Some("production")),
            ("my testing env", Some("testing")),
            ("prod", None),
            ("Production", None),
            ("*", None),
            ("", None),
        ];
        for (scope, want) in cases {
            assert_eq!(environment_type(scope), want, "{scope}");
        }
    }

    #[test]
    fn percentages_jira_would_reject_are_left_out() {
        let cases = [
            (json!({"parameters": {"percentage": "50"}}), Some(50.0)),
            (json!({"parameters": {"rollout": "12.5"}}), Some(12.5)),
            (json!({"parameters": {"percentage": 30}}), Some(30.0)),
            (
                json!({"parameters": {"rollout": "7", "percentage": "9"}}),
                Some(7.0),
            ),
            (json!({"parameters": {"percentage": "150"}}), None),
            (json!({"parameters": {"percentage": "-1"}}), None),
            (json!({"parameters": {"percentage": "NaN"}}), None),
            (json!({"parameters": {"percentage": "half"}}), None),
            (json!({"parameters": null}), None),
            (json!("not an object"), None),
        ];
        for (strategy, want) in cases {
            assert_eq!(percentage(&strategy), want, "{strategy}");
        }
    }

    #[test]
    fn keys_only_from_the_description_and_details_never_empty() {
        let mut f = facts("no key", vec![]);
        f.name = "PROJ-1".into();
        assert_eq!(map_feature_flag(&f, 1), None, "the name is not a source");

        let mut f = facts("PROJ-1", vec![]);
        f.active = false;
        f.updated_at = "garbage".into();
        let flag = map_feature_flag(&f, 0).unwrap();
        assert_eq!(flag.summary.status.rollout, None);
        assert!(!flag.summary.status.enabled);
        assert_eq!(flag.summary.last_updated, "1970-01-01T00:00:00Z");
        assert_eq!(flag.details.len(), 1);
        assert_eq!(flag.details[0].environment.name, "*");

        let many: String = (1..=150).map(|n| format!("K{n}-1 ")).collect();
        let mut f = facts(&many, vec![json!(null), json!({"scopes": "x"})]);
        f.name = "n".repeat(300);
        let flag = map_feature_flag(&f, 1).unwrap();
        assert_eq!(flag.issue_keys.len(), jira::MAX_KEYS_PER_CICD_ENTITY);
        assert_eq!(flag.key.chars().count(), jira::MAX_SHORT_TEXT_CHARS);
        assert_eq!(flag.details.len(), 1);
    }
}
