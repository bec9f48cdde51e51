//! Every development-information body the mapping can produce is valid against Atlassian's OpenAPI: a
//! property test over generated pushes, not only the hand-picked ones of the other tests.

use gfj_core::gitlab::{Commit, CommitAuthor, Project, PushEvent};
use gfj_core::mapping::{PushAction, map_push};
use gfj_sim::openapi::OpenApi;
use proptest::prelude::*;
use proptest::strategy::ValueTree;

fn text() -> impl Strategy<Value = String> {
    // Keys, near-keys, unicode, punctuation and long runs, in any mix.
    prop::collection::vec(
        prop_oneof![
            "[A-Z][A-Z0-9_]{1,6}-[0-9]{1,5}",
            "[a-z]{1,8}",
            "[ /._:#()\\[\\]-]{1,3}",
            "\\PC{1,20}",
            Just("é漢字🙂".to_owned()),
            "x{0,1500}",
        ],
        0..8,
    )
    .prop_map(|parts| parts.join(" "))
}

fn commit() -> impl Strategy<Value = Commit> {
    (
        text(),
        "[0-9a-f]{40}",
        "\\PC{0,40}",
        "[a-z0-9.@]{0,30}",
        0usize..30,
    )
        .prop_map(|(message, id, name, email, files)| Commit {
            title: message.lines().next().unwrap_or("").to_owned(),
            message,
            url: format!("https://gitlab.example/g/p/-/commit/{id}"),
            id,
            timestamp: "2026-11-27T10:00:00+02:00".into(),
            author: CommitAuthor { name, email },
            added: (0..files).map(|n| format!("f{n}")).collect(),
            modified: vec![],
            removed: vec![],
        })
}

fn push() -> impl Strategy<Value = PushEvent> {
    (
        text(),
        prop::collection::vec(commit(), 1..21),
        1i64..1_000_000,
        "\\PC{1,40}",
    )
        .prop_map(|(branch, commits, project_id, name)| {
            let after = commits.last().unwrap().id.clone();
            let branch = if branch.trim().is_empty() {
                "b".to_owned()
            } else {
                branch.replace(' ', "-")
            };
            PushEvent {
                object_kind: "push".into(),
                before: "0".repeat(40),
                after: after.clone(),
                git_ref: format!("refs/heads/{branch}"),
                checkout_sha: Some(after),
                user_username: None,
                project_id,
                project: Project {
                    id: project_id,
                    name,
                    web_url: "https://gitlab.example/g/p".into(),
                    path_with_namespace: "g/p".into(),
                    default_branch: Some("main".into()),
                    avatar_url: None,
                },
                total_commits_count: commits.len() as i64,
                commits,
            }
        })
}

#[test]
fn every_mapped_push_is_valid_devinfo() {
    let api = OpenApi::load(
        &gfj_sim::shared_dir().join("jira-fixtures/jira-software-devops-subset.openapi.json"),
    )
    .unwrap();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(200));
    let mut stored = 0;
    runner
        .run(&push(), |p| {
            if let Ok(PushAction::Store { request, .. }) = map_push(&p, 1_700_000_000_000_000, None)
            {
                let body = serde_json::to_value(&request).unwrap();
                let errors = api
                    .validate("POST", "/rest/devinfo/0.10/bulk", &body)
                    .err()
                    .unwrap_or_default();
                prop_assert!(errors.is_empty(), "{errors:?}");
            }
            Ok(())
        })
        .unwrap();
    // The generator must actually produce bodies, or the property says nothing.
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(50));
    for _ in 0..50 {
        let p = push().new_tree(&mut runner).unwrap().current();
        if matches!(map_push(&p, 1, None), Ok(PushAction::Store { .. })) {
            stored += 1;
        }
    }
    assert!(
        stored > 10,
        "only {stored} of 50 generated pushes produced a body"
    );
}

mod cicd {
    use gfj_core::jira::*;
    use gfj_sim::openapi::OpenApi;
    use proptest::prelude::*;

    fn name() -> impl Strategy<Value = String> {
        "\\PC{1,255}"
    }
    fn url() -> impl Strategy<Value = String> {
        "[a-z0-9/._-]{0,200}".prop_map(|p| format!("https://gitlab.example/{p}"))
    }
    fn keys() -> impl Strategy<Value = Vec<String>> {
        prop::collection::vec(
            "[A-Z][A-Z0-9_]{1,9}-[1-9][0-9]{0,6}",
            1..=MAX_KEYS_PER_CICD_ENTITY,
        )
    }
    const TS: &str = "2026-11-27T10:00:00Z";

    fn build() -> impl Strategy<Value = Build> {
        (
            (name(), 1i64..i64::MAX, 1i64..i64::MAX, name(), url()),
            (
                prop::sample::select(vec![
                    "pending",
                    "in_progress",
                    "successful",
                    "failed",
                    "cancelled",
                    "unknown",
                ]),
                keys(),
            ),
            (
                prop::option::of((0i64..1000, 0i64..1000, 0i64..1000, 0i64..1000)),
                prop::collection::vec(("[0-9a-f]{40}", url(), name(), url()), 0..3),
            ),
        )
            .prop_map(
                |(
                    (pipeline_id, build_number, seq, display_name, url),
                    (state, issue_keys),
                    (tests, refs),
                )| Build {
                    schema_version: "1.0".into(),
                    pipeline_id,
                    build_number,
                    update_sequence_number: seq,
                    display_name,
                    url,
                    state: state.into(),
                    last_updated: TS.into(),
                    issue_keys,
                    label: None,
                    test_info: tests.map(|(t, p, f, s)| TestInfo {
                        total_number: t,
                        number_passed: p,
                        number_failed: f,
                        number_skipped: s,
                    }),
                    references: refs
                        .into_iter()
                        .map(|(id, repository_uri, name, uri)| BuildReference {
                            commit: CommitRef { id, repository_uri },
                            git_ref: RefRef { name, uri },
                        })
                        .collect(),
                },
            )
    }

    fn deployment() -> impl Strategy<Value = Deployment> {
        (
            (1i64..i64::MAX, 1i64..i64::MAX, name(), url(), name()),
            (
                prop::sample::select(vec![
                    "unknown",
                    "pending",
                    "in_progress",
                    "cancelled",
                    "failed",
                    "rolled_back",
                    "successful",
                ]),
                keys(),
            ),
            (
                name(),
                name(),
                url(),
                name(),
                name(),
                prop::sample::select(vec![
                    "unmapped",
                    "development",
                    "testing",
                    "staging",
                    "production",
                ]),
            ),
            (
                prop::collection::vec("[a-z0-9-]{1,20}", 0..3),
                any::<bool>(),
            ),
        )
            .prop_map(
                |(
                    (dsn, seq, display_name, url, description),
                    (state, keys),
                    (pid, pname, purl, eid, ename, etype),
                    (services, gated),
                )| {
                    let mut associations = vec![Association {
                        association_type: "issueKeys".into(),
                        values: keys,
                    }];
                    if !services.is_empty() {
                        associations.insert(
                            0,
                            Association {
                                association_type: "serviceIdOrKeys".into(),
                                values: services,
                            },
                        );
                    }
                    Deployment {
                        schema_version: "1.0".into(),
                        deployment_sequence_number: dsn,
                        update_sequence_number: seq,
                        associations,
                        display_name,
                        url,
                        description,
                        last_updated: TS.into(),
                        label: None,
                        state: state.into(),
                        pipeline: DeploymentPipeline {
                            id: pid,
                            display_name: pname,
                            url: purl,
                        },
                        environment: DeploymentEnvironment {
                            id: eid,
                            display_name: ename,
                            kind: etype.into(),
                        },
                        commands: if gated {
                            vec![DeploymentCommand {
                                command: "initiate_deployment_gating".into(),
                            }]
                        } else {
                            vec![]
                        },
                    }
                },
            )
    }

    fn status() -> impl Strategy<Value = FlagStatus> {
        (any::<bool>(), prop::option::of(0.0f64..100.0)).prop_map(|(enabled, pct)| FlagStatus {
            enabled,
            default_value: Some(String::new()),
            rollout: pct.map(|p| FlagRollout {
                percentage: Some(p),
                text: None,
                rules: None,
            }),
        })
    }

    fn flag() -> impl Strategy<Value = FeatureFlag> {
        (
            ("[0-9]{1,10}", name(), 1i64..i64::MAX, keys(), status()),
            prop::collection::vec(
                (
                    url(),
                    name(),
                    prop::option::of(prop::sample::select(vec![
                        "development",
                        "testing",
                        "staging",
                        "production",
                    ])),
                    status(),
                ),
                1..4,
            ),
        )
            .prop_map(|((id, key, seq, issue_keys, summary_status), details)| {
                FeatureFlag {
                    schema_version: "1.0".into(),
                    id,
                    display_name: Some(key.clone()),
                    key,
                    update_sequence_id: seq,
                    issue_keys,
                    summary: FlagSummary {
                        url: None,
                        status: summary_status,
                        last_updated: TS.into(),
                    },
                    details: details
                        .into_iter()
                        .map(|(url, env, kind, status)| FlagDetails {
                            url,
                            last_updated: TS.into(),
                            environment: FlagEnvironment {
                                name: env,
                                kind: kind.map(Into::into),
                            },
                            status,
                        })
                        .collect(),
                }
            })
    }

    static API: std::sync::LazyLock<OpenApi> = std::sync::LazyLock::new(|| {
        OpenApi::load(
            &gfj_sim::shared_dir().join("jira-fixtures/jira-software-devops-subset.openapi.json"),
        )
        .unwrap()
    });

    fn api() -> &'static OpenApi {
        &API
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn builds_deployments_and_flags_are_valid(b in prop::collection::vec(build(), 1..4), d in prop::collection::vec(deployment(), 1..4), f in prop::collection::vec(flag(), 1..4)) {
            let api = api();
            let builds = BuildsRequest { properties: Default::default(), builds: b, provider_metadata: ProviderMetadata::ours() };
            let deployments = DeploymentsRequest { properties: Default::default(), deployments: d, provider_metadata: ProviderMetadata::ours() };
            let flags = FeatureFlagsRequest {
                properties: [("projectId".to_owned(), "project-7".to_owned())].into(),
                flags: f,
                provider_metadata: ProviderMetadata::ours(),
            };
            for (route, body) in [
                ("/rest/builds/0.1/bulk", serde_json::to_value(&builds).unwrap()),
                ("/rest/deployments/0.1/bulk", serde_json::to_value(&deployments).unwrap()),
                ("/rest/featureflags/0.1/bulk", serde_json::to_value(&flags).unwrap()),
            ] {
                let errors = api.validate("POST", route, &body).err().unwrap_or_default();
                prop_assert!(errors.is_empty(), "{route}: {errors:?}");
            }
        }
    }

    #[test]
    fn a_missing_required_field_fails_the_same_check() {
        let body = serde_json::json!({ "builds": [{ "pipelineId": "p", "buildNumber": 1 }], "providerMetadata": { "product": "x" } });
        assert!(
            api()
                .validate("POST", "/rest/builds/0.1/bulk", &body)
                .is_err()
        );
    }
}
