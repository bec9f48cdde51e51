//! The audit trail's entries: for every entity sent to Jira, one entry per issue key with Jira's
//! verdict, built from the request and Jira's answer.

use gfj_core::jira::{Build, Deployment, DevinfoRequest, FeatureFlag};
use gfj_store::audit::AuditEntry;
use serde_json::Value;

/// Jira's reasons for rejected builds, deployments or flags, by the entity key Jira reported.
pub type Rejections = [(String, String)];

struct Sent<'a> {
    client_key: &'a str,
    at: i64,
}

impl Sent<'_> {
    fn entries(
        &self,
        entity_type: &str,
        entity_id: &str,
        keys: &[String],
        seq: i64,
        rejection: Option<&str>,
    ) -> Vec<AuditEntry> {
        let verdict = if rejection.is_some() {
            "rejected"
        } else {
            "accepted"
        };
        keys.iter()
            .map(|k| AuditEntry {
                client_key: self.client_key.to_owned(),
                issue_key: k.clone(),
                entity_type: entity_type.to_owned(),
                entity_id: entity_id.to_owned(),
                seq,
                verdict: verdict.to_owned(),
                message: rejection.map(str::to_owned),
                at: self.at,
            })
            .collect()
    }
}

/// Entries for a devinfo request Jira answered; `failures` are (repository, type, id, reason).
pub fn devinfo(
    client_key: &str,
    request: &DevinfoRequest,
    failures: &[(String, String, String, String)],
    at: i64,
) -> Vec<AuditEntry> {
    let sent = Sent { client_key, at };
    let reason = |repo: &str, ty: &str, id: &str| {
        failures
            .iter()
            .find(|(r, t, i, _)| r == repo && (t == "repository" || (t == ty && i == id)))
            .map(|f| f.3.as_str())
    };
    let mut out = Vec::new();
    for repo in &request.repositories {
        for c in &repo.commits {
            let why = reason(&repo.id, "commit", &c.id);
            out.extend(sent.entries("commit", &c.id, &c.issue_keys, c.update_sequence_id, why));
        }
        for b in &repo.branches {
            let why = reason(&repo.id, "branch", &b.id);
            out.extend(sent.entries("branch", &b.name, &b.issue_keys, b.update_sequence_id, why));
        }
        for p in &repo.pull_requests {
            let why = reason(&repo.id, "pull_request", &p.id);
            out.extend(sent.entries(
                "pull_request",
                &p.display_id,
                &p.issue_keys,
                p.update_sequence_id,
                why,
            ));
        }
    }
    out
}

/// The rejection whose reported key has these fields (Jira reports builds and deployments by their
/// key fields, flags by id).
fn rejected_with<'a>(
    rejected: &'a Rejections,
    fields: &[(&str, Value)],
    id: &str,
) -> Option<&'a str> {
    rejected
        .iter()
        .find(|(key, _)| {
            key == id
                || serde_json::from_str::<Value>(key)
                    .is_ok_and(|k| fields.iter().all(|(f, v)| &k[*f] == v))
        })
        .map(|r| r.1.as_str())
}

pub fn builds(
    client_key: &str,
    builds: &[Build],
    rejected: &Rejections,
    at: i64,
) -> Vec<AuditEntry> {
    let sent = Sent { client_key, at };
    builds
        .iter()
        .flat_map(|b| {
            let id = format!("{}#{}", b.pipeline_id, b.build_number);
            let why = rejected_with(
                rejected,
                &[
                    ("pipelineId", Value::from(b.pipeline_id.clone())),
                    ("buildNumber", Value::from(b.build_number)),
                ],
                &id,
            );
            sent.entries("build", &id, &b.issue_keys, b.update_sequence_number, why)
        })
        .collect()
}

pub fn deployments(
    client_key: &str,
    deployments: &[Deployment],
    rejected: &Rejections,
    at: i64,
) -> Vec<AuditEntry> {
    let sent = Sent { client_key, at };
    deployments
        .iter()
        .flat_map(|d| {
            let id = format!(
                "{}#{}#{}",
                d.pipeline.id, d.environment.id, d.deployment_sequence_number
            );
            let why = rejected_with(
                rejected,
                &[
                    ("pipelineId", Value::from(d.pipeline.id.clone())),
                    ("environmentId", Value::from(d.environment.id.clone())),
                    (
                        "deploymentSequenceNumber",
                        Value::from(d.deployment_sequence_number),
                    ),
                ],
                &id,
            );
            let keys: Vec<String> = d
                .associations
                .iter()
                .flat_map(|a| a.values.iter().cloned())
                .collect();
            sent.entries("deployment", &id, &keys, d.update_sequence_number, why)
        })
        .collect()
}

pub fn flags(
    client_key: &str,
    flags: &[FeatureFlag],
    rejected: &Rejections,
    at: i64,
) -> Vec<AuditEntry> {
    let sent = Sent { client_key, at };
    flags
        .iter()
        .flat_map(|f| {
            let why = rejected
                .iter()
                .find(|(k, _)| k == &f.id)
                .map(|r| r.1.as_str());
            sent.entries(
                "feature_flag",
                &f.key,
                &f.issue_keys,
                f.update_sequence_id,
                why,
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use gfj_core::jira::{Build, BuildReference, CommitRef, RefRef};

    fn build(pipeline: &str, number: i64, keys: &[&str]) -> Build {
        Build {
            schema_version: "1.0".into(),
            pipeline_id: pipeline.into(),
            build_number: number,
            update_sequence_number: 9,
            display_name: "main".into(),
            url: "https://gitlab.example/p".into(),
            state: "successful".into(),
            last_updated: "2026-11-27T10:00:00Z".into(),
            issue_keys: keys.iter().map(|k| (*k).to_owned()).collect(),
            label: None,
            test_info: None,
            references: vec![BuildReference {
                commit: CommitRef {
                    id: "a".repeat(40),
                    repository_uri: "https://gitlab.example/p".into(),
                },
                git_ref: RefRef {
                    name: "main".into(),
                    uri: "https://gitlab.example/p/-/commits/main".into(),
                },
            }],
        }
    }

    #[test]
    fn one_entry_per_key_with_the_verdict_jira_gave_that_entity() {
        let builds = [
            build("15-aa", 3, &["PROJ-1", "OPS-2"]),
            build("15-bb", 4, &["PROJ-1"]),
        ];
        let rejected = [(
            r#"{"pipelineId":"15-bb","buildNumber":4}"#.to_owned(),
            "bad state".to_owned(),
        )];
        let entries = super::builds("site", &builds, &rejected, 100);
        let summary: Vec<(&str, &str, &str, Option<&str>)> = entries
            .iter()
            .map(|e| {
                (
                    e.issue_key.as_str(),
                    e.entity_id.as_str(),
                    e.verdict.as_str(),
                    e.message.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("PROJ-1", "15-aa#3", "accepted", None),
                ("OPS-2", "15-aa#3", "accepted", None),
                ("PROJ-1", "15-bb#4", "rejected", Some("bad state")),
            ]
        );
        assert!(entries.iter().all(|e| e.seq == 9 && e.at == 100));
    }
}
