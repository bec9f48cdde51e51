//! Pipeline → Jira build.

use sha2::{Digest, Sha256};

use crate::gitlab::PipelineEvent;
use crate::issue_keys;
use crate::jira::{self, Build, BuildReference, CommitRef, RefRef, TestInfo};
use crate::qsh::hex;

use super::{time_or_seq, url_or};

/// One stable Jira `pipelineId` per project and ref. GitLab's app uses its internal `ci_ref` id, which
/// REST does not expose; hashing the ref keeps the id short (Jira takes 255 characters, refs can be
/// longer) and stable across restarts.
pub fn pipeline_id(project_id: i64, git_ref: &str) -> String {
    let digest = hex(&Sha256::digest(git_ref.as_bytes()));
    format!("{project_id}-{}", &digest[..32])
}

/// `None` when nothing in the pipeline mentions an issue key.
pub fn map_pipeline(ev: &PipelineEvent, seq: i64) -> Option<Build> {
    let a = &ev.object_attributes;
    let mut texts: Vec<&str> = Vec::new();
    if let Some(c) = &ev.commit {
        texts.push(&c.message);
    }
    if let Some(mr) = &ev.merge_request {
        texts.extend([mr.source_branch.as_str(), mr.title.as_str()]);
    }
    let mut keys = issue_keys::extract(texts).into_keys();
    if keys.is_empty() {
        return None;
    }
    // Builds take fewer keys than devinfo entities (`issueKeys` is `[1..100]`).
    keys.truncate(jira::MAX_KEYS_PER_CICD_ENTITY);

    let project_url = &ev.project.web_url;
    let passed = count(ev, "success");
    let failed = count(ev, "failed");
    let total = i64::try_from(ev.builds.len()).unwrap_or(i64::MAX);
    Some(Build {
        schema_version: "1.0".into(),
        pipeline_id: pipeline_id(ev.project.id, &a.git_ref),
        // Instances before iids existed: the global id is just as monotonic within the project.
        build_number: a.iid.unwrap_or(a.id),
        update_sequence_number: seq,
        display_name: jira::cap(&a.git_ref, jira::MAX_SHORT_TEXT_CHARS),
        url: url_or(ev.web_url(), || {
            format!("{project_url}/-/pipelines/{}", a.id)
        }),
        state: state(&a.status).into(),
        last_updated: time_or_seq(a.finished_at.or(a.created_at), seq),
        issue_keys: keys,
        label: None,
        test_info: (!ev.builds.is_empty()).then(|| TestInfo {
            total_number: total,
            number_passed: passed,
            number_failed: failed,
            number_skipped: total - passed - failed,
        }),
        references: vec![BuildReference {
            commit: CommitRef {
                id: jira::cap(&a.sha, jira::MAX_SHORT_TEXT_CHARS),
                repository_uri: jira::cap(project_url, jira::MAX_URL_CHARS),
            },
            git_ref: RefRef {
                name: jira::cap(&a.git_ref, jira::MAX_SHORT_TEXT_CHARS),
                uri: url_or(format!("{project_url}/-/commits/{}", a.git_ref), || {
                    format!("{project_url}/-/branches")
                }),
            },
        }],
    })
}

fn count(ev: &PipelineEvent, status: &str) -> i64 {
    let n = ev.builds.iter().filter(|b| b.status == status).count();
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn state(status: &str) -> &'static str {
    match status {
        "scheduled" | "created" | "pending" | "preparing" | "waiting_for_resource" => "pending",
        "running" => "in_progress",
        "success" => "successful",
        "failed" => "failed",
        "canceled" | "canceling" | "skipped" => "cancelled",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gitlab::{
        Commit, CommitAuthor, GitLabTime, PipelineAttributes, PipelineBuild, PipelineMergeRequest,
    };

    fn build(id: i64, status: &str) -> PipelineBuild {
        PipelineBuild {
            id,
            stage: "test".into(),
            name: format!("job{id}"),
            status: status.into(),
            created_at: None,
            started_at: None,
            finished_at: None,
            duration: None,
            queued_duration: None,
            when: None,
            manual: false,
            allow_failure: false,
            failure_reason: None,
            user: None,
            environment: None,
        }
    }

    fn pipeline(message: &str, status: &str) -> PipelineEvent {
        PipelineEvent {
            object_kind: "pipeline".into(),
            object_attributes: PipelineAttributes {
                id: 31,
                iid: Some(4),
                name: None,
                git_ref: "feature/login".into(),
                tag: false,
                sha: "a".repeat(40),
                before_sha: None,
                source: Some("push".into()),
                status: status.into(),
                detailed_status: None,
                stages: vec![],
                created_at: GitLabTime::parse("2026-11-27 10:00:00 UTC"),
                finished_at: GitLabTime::parse("2026-11-27 10:05:00 +0200"),
                duration: None,
                queued_duration: None,
                url: Some("https://gitlab.example/g/api/-/pipelines/31".into()),
            },
            merge_request: None,
            user: None,
            project: crate::mapping::test_project(),
            commit: Some(Commit {
                id: "a".repeat(40),
                message: message.into(),
                title: message.into(),
                timestamp: "2026-11-27T10:00:00+02:00".into(),
                url: String::new(),
                author: CommitAuthor {
                    name: "Ada".into(),
                    email: String::new(),
                },
                added: vec![],
                modified: vec![],
                removed: vec![],
            }),
            builds: vec![
                build(1, "success"),
                build(2, "failed"),
                build(3, "skipped"),
                build(4, "manual"),
                build(5, "success"),
            ],
        }
    }

    #[test]
    fn a_pipeline_as_a_build() {
        let b = map_pipeline(&pipeline("PROJ-1 fix", "success"), 42).unwrap();
        assert_eq!(b.schema_version, "1.0");
        assert_eq!(b.pipeline_id, pipeline_id(15, "feature/login"));
        assert_eq!(b.build_number, 4, "the iid");
        assert_eq!(b.update_sequence_number, 42);
        assert_eq!(b.display_name, "feature/login");
        assert_eq!(b.url, "https://gitlab.example/g/api/-/pipelines/31");
        assert_eq!(b.state, "successful");
        assert_eq!(b.last_updated, "2026-11-27T08:05:00Z");
        assert_eq!(b.issue_keys, ["PROJ-1"]);
        assert_eq!(
            b.test_info,
            Some(TestInfo {
                total_number: 5,
                number_passed: 2,
                number_failed: 1,
                number_skipped: 2
            })
        );
        assert_eq!(
            b.references,
            [BuildReference {
                commit: CommitRef {
                    id: "a".repeat(40),
                    repository_uri: "https://gitlab.example/g/api".into()
                },
                git_ref: RefRef {
                    name: "feature/login".into(),
                    uri: "https://gitlab.example/g/api/-/commits/feature/login".into()
                },
            }]
        );
    }

    #[test]
    fn pipeline_ids_are_stable_short_and_per_project_and_ref() {
        let id = pipeline_id(15, "main");
        assert_eq!(id, pipeline_id(15, "main"));
        assert_eq!(id.len(), "15-".len() + 32);
        assert!(id.starts_with("15-"));
        assert_ne!(id, pipeline_id(16, "main"));
        assert_ne!(id, pipeline_id(15, "main2"));
        // Prefix of the branch id's hash: the same SHA-256 of the ref, one rule.
        assert!(super::super::branch_id("main").starts_with(&id[3..]));
        assert!(pipeline_id(i64::MIN, &"x".repeat(10_000)).len() <= 255);
    }

    #[test]
    fn state_table() {
        let cases = [
            ("scheduled", "pending"),
            ("created", "pending"),
            ("pending", "pending"),
            ("preparing", "pending"),
            ("waiting_for_resource", "pending"),
            ("running", "in_progress"),
            ("success", "successful"),
            ("failed", "failed"),
            ("canceled", "cancelled"),
            ("canceling", "cancelled"),
            ("skipped", "cancelled"),
            ("manual", "unknown"),
            ("", "unknown"),
        ];
        for (status, want) in cases {
            let b = map_pipeline(&pipeline("PROJ-1", status), 1).unwrap();
            assert_eq!(b.state, want, "{status}");
        }
    }

    #[test]
    fn key_sources() {
        assert_eq!(map_pipeline(&pipeline("no key", "running"), 1), None);
        let mut p = pipeline("no key", "running");
        p.merge_request = Some(PipelineMergeRequest {
            id: 9001,
            iid: 12,
            title: "QA-2 login".into(),
            source_branch: "PROJ-3-login".into(),
            source_project_id: Some(15),
            target_branch: "main".into(),
            target_project_id: Some(15),
            state: "opened".into(),
            merge_status: None,
            detailed_merge_status: None,
            url: String::new(),
        });
        assert_eq!(map_pipeline(&p, 1).unwrap().issue_keys, ["PROJ-3", "QA-2"]);
        p.commit = None;
        p.merge_request = None;
        assert_eq!(map_pipeline(&p, 1), None, "the ref alone is not a source");
    }

    #[test]
    fn fallbacks_and_limits() {
        let many: String = (1..=150).map(|n| format!("K{n}-1 ")).collect();
        let mut p = pipeline(&many, "pending");
        p.object_attributes.iid = None;
        p.object_attributes.finished_at = None;
        p.object_attributes.url = None;
        p.object_attributes.git_ref = format!("PROJ-1-{}", "r".repeat(3000));
        p.builds.clear();
        let b = map_pipeline(&p, 1).unwrap();
        assert_eq!(b.issue_keys.len(), jira::MAX_KEYS_PER_CICD_ENTITY);
        assert_eq!(b.issue_keys[99], "K100-1");
        assert_eq!(b.build_number, 31, "no iid: the pipeline id");
        assert_eq!(
            b.last_updated, "2026-11-27T10:00:00Z",
            "not finished: created"
        );
        assert_eq!(b.url, "https://gitlab.example/g/api/-/pipelines/31");
        assert_eq!(b.test_info, None);
        assert_eq!(b.display_name.chars().count(), jira::MAX_SHORT_TEXT_CHARS);
        assert_eq!(b.references[0].git_ref.name.chars().count(), 255);
        assert_eq!(
            b.references[0].git_ref.uri,
            "https://gitlab.example/g/api/-/branches"
        );
        p.object_attributes.created_at = None;
        assert_eq!(
            map_pipeline(&p, 0).unwrap().last_updated,
            "1970-01-01T00:00:00Z"
        );
    }
}
