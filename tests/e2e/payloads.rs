//! Every development-information body the mapping can produce is valid against Atlassian's OpenAPI: a
//! property test over generated pushes, not only the hand-picked ones of the other tests.

use gfj_core::gitlab::{Commit, CommitAuthor, Project, PushEvent};
use gfj_core::mapping::{PushAction, map_push};
use gfj_sim::openapi::RequestSchemas;
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
    let api = RequestSchemas::found().unwrap();
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
    use gfj_sim::openapi::RequestSchemas;
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

    static API: std::sync::LazyLock<RequestSchemas> =
        std::sync::LazyLock::new(|| RequestSchemas::found().unwrap());

    fn api() -> &'static RequestSchemas {
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

/// The same property for what the other mappings produce from generated GitLab objects: merge requests
/// (devinfo pull requests and branches), pipelines (builds), deployments and feature flags.
mod mapped {
    use gfj_core::gitlab::{
        GitLabTime, MergeRequestAttributes, MergeRequestEvent, PipelineAttributes, PipelineBuild,
        PipelineEvent, PipelineMergeRequest, Project, User,
    };
    use gfj_core::jira::{
        BuildsRequest, DeploymentsRequest, FeatureFlagsRequest, ProviderMetadata,
    };
    use gfj_core::mapping::deployment::{DeploymentFacts, map_deployment};
    use gfj_core::mapping::feature_flag::{FlagFacts, map_feature_flag};
    use gfj_core::mapping::merge_request::{
        MergeRequestAction, MergeRequestOptions, map_merge_request,
    };
    use gfj_core::mapping::pipeline::map_pipeline;
    use gfj_sim::openapi::RequestSchemas;
    use proptest::prelude::*;
    use proptest::strategy::ValueTree;
    use serde_json::json;

    use super::{commit, text};

    static API: std::sync::LazyLock<RequestSchemas> =
        std::sync::LazyLock::new(|| RequestSchemas::found().unwrap());

    fn check(route: &str, body: serde_json::Value) -> Result<(), TestCaseError> {
        let errors = API.validate("POST", route, &body).err().unwrap_or_default();
        prop_assert!(errors.is_empty(), "{route}: {errors:?}\n{body}");
        Ok(())
    }

    fn project() -> impl Strategy<Value = Project> {
        (
            1i64..i64::MAX,
            "\\PC{1,300}",
            "[a-z0-9._-]{1,40}(/[a-z0-9._-]{1,40}){0,3}",
        )
            .prop_map(|(id, name, path)| Project {
                id,
                name,
                web_url: format!("https://gitlab.example/{path}"),
                path_with_namespace: path,
                default_branch: Some("main".into()),
                avatar_url: None,
            })
    }

    fn time() -> impl Strategy<Value = Option<GitLabTime>> {
        prop::option::of(
            "20[0-9]{2}-(0[1-9]|1[0-2])-[0-2][1-9] [0-2][0-9]:[0-5][0-9]:[0-5][0-9] (UTC|\\+0[0-9]00|-1[0-2]00)",
        )
        .prop_map(|t| t.and_then(|t| GitLabTime::parse(&t)))
    }

    fn user() -> impl Strategy<Value = User> {
        (
            prop::option::of(1i64..20),
            "\\PC{0,300}",
            "[a-z]{0,10}",
            prop::option::of(prop_oneof![
                "[a-z0-9.]{1,300}@example\\.com",
                Just("[REDACTED]".to_owned()),
                Just(String::new()),
            ]),
        )
            .prop_map(|(id, name, username, email)| User {
                id,
                name,
                username,
                avatar_url: None,
                email_as_sent: email,
            })
    }

    fn branch() -> impl Strategy<Value = String> {
        text().prop_map(|b| {
            if b.trim().is_empty() {
                "b".to_owned()
            } else {
                b.replace(' ', "-")
            }
        })
    }

    fn merge_request() -> impl Strategy<Value = MergeRequestEvent> {
        (
            (
                project(),
                1i64..i64::MAX,
                1i64..i64::MAX,
                text(),
                prop::option::of(text()),
            ),
            (
                prop::sample::select(vec!["opened", "locked", "merged", "closed", "other"]),
                branch(),
                branch(),
                any::<bool>(),
                prop::option::of(1i64..20),
            ),
            (time(), time(), time(), prop::option::of(commit())),
            (
                prop::option::of(user()),
                prop::collection::vec(user(), 0..4),
                "[a-z0-9/._-]{0,2100}",
            ),
        )
            .prop_map(
                |(
                    (project, id, iid, title, description),
                    (state, source, target, same_project, author_id),
                    (created_at, updated_at, last_edited_at, last_commit),
                    (user, reviewers, url_path),
                )| MergeRequestEvent {
                    object_kind: "merge_request".into(),
                    user,
                    object_attributes: MergeRequestAttributes {
                        id,
                        iid,
                        title,
                        description,
                        state: state.into(),
                        action: None,
                        source_branch: source,
                        target_branch: target,
                        source_project_id: Some(if same_project { project.id } else { 1 }),
                        target_project_id: project.id,
                        author_id,
                        assignee_ids: vec![],
                        reviewer_ids: vec![],
                        created_at,
                        updated_at,
                        last_edited_at,
                        merged_at: None,
                        url: format!("{}/-/merge_requests/{url_path}", project.web_url),
                        last_commit,
                        merge_commit_sha: None,
                        head_pipeline_id: None,
                        oldrev: None,
                        draft: false,
                        work_in_progress: false,
                        merge_status: None,
                        detailed_merge_status: None,
                        blocking_discussions_resolved: None,
                    },
                    project,
                    repository: None,
                    labels: vec![],
                    assignees: vec![],
                    reviewers,
                    changes: serde_json::Value::Null,
                },
            )
    }

    fn pipeline() -> impl Strategy<Value = PipelineEvent> {
        (
            (
                project(),
                1i64..i64::MAX,
                prop::option::of(1i64..i64::MAX),
                branch(),
            ),
            (
                prop::sample::select(vec![
                    "created",
                    "pending",
                    "running",
                    "success",
                    "failed",
                    "canceled",
                    "skipped",
                    "manual",
                    "scheduled",
                    "weird",
                ]),
                time(),
                time(),
                prop::option::of(commit()),
            ),
            (
                prop::option::of((text(), branch())),
                prop::collection::vec(
                    prop::sample::select(vec!["success", "failed", "skipped", "manual", "running"]),
                    0..30,
                ),
            ),
        )
            .prop_map(
                |(
                    (project, id, iid, git_ref),
                    (status, created_at, finished_at, commit),
                    (mr, builds),
                )| PipelineEvent {
                    object_kind: "pipeline".into(),
                    object_attributes: PipelineAttributes {
                        id,
                        iid,
                        name: None,
                        git_ref,
                        tag: false,
                        sha: "a".repeat(40),
                        before_sha: None,
                        source: None,
                        status: status.into(),
                        detailed_status: None,
                        stages: vec![],
                        created_at,
                        finished_at,
                        duration: None,
                        queued_duration: None,
                        url: None,
                    },
                    merge_request: mr.map(|(title, source_branch)| PipelineMergeRequest {
                        id: 1,
                        iid: 1,
                        title,
                        source_branch,
                        source_project_id: None,
                        target_branch: "main".into(),
                        target_project_id: None,
                        state: "opened".into(),
                        merge_status: None,
                        detailed_merge_status: None,
                        url: String::new(),
                    }),
                    user: None,
                    project,
                    commit,
                    builds: builds
                        .into_iter()
                        .enumerate()
                        .map(|(n, status)| PipelineBuild {
                            id: n as i64,
                            stage: "test".into(),
                            name: format!("job{n}"),
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
                        })
                        .collect(),
                },
            )
    }

    fn deployment() -> impl Strategy<Value = DeploymentFacts> {
        (
            (
                project(),
                1i64..i64::MAX,
                1i64..i64::MAX,
                branch(),
                "[0-9a-f]{0,40}",
            ),
            (
                prop::sample::select(vec![
                    "created", "blocked", "running", "success", "failed", "canceled", "skipped",
                    "approved",
                ]),
                1i64..i64::MAX,
                "\\PC{1,300}",
                prop::option::of(prop::sample::select(vec![
                    "production",
                    "staging",
                    "testing",
                    "development",
                    "other",
                ])),
            ),
            (
                prop::option::of((1i64..i64::MAX, "\\PC{0,300}")),
                prop::option::of((1i64..i64::MAX, 1i64..i64::MAX)),
                prop_oneof![
                    Just("2021-04-28 21:50:00 +0200".to_owned()),
                    Just("2026-11-27T10:00:00Z".to_owned()),
                    "\\PC{0,20}",
                ],
            ),
            (
                prop::collection::vec(text(), 0..4),
                prop::collection::vec("\\PC{0,300}", 0..4),
                any::<bool>(),
            ),
        )
            .prop_map(
                |(
                    (project, deployment_id, iid, git_ref, sha),
                    (status, environment_id, environment_name, tier),
                    (job, pipeline, updated_at),
                    (key_texts, service_ids, gating),
                )| DeploymentFacts {
                    project,
                    deployment_id,
                    iid,
                    status: status.into(),
                    git_ref,
                    sha,
                    environment_id,
                    environment_name,
                    environment_tier: tier.map(Into::into),
                    job,
                    pipeline,
                    updated_at,
                    key_texts,
                    service_ids,
                    gating,
                },
            )
    }

    fn strategy() -> impl Strategy<Value = serde_json::Value> {
        (
            prop::sample::select(vec![
                "default",
                "gitlabUserList",
                "gradualRolloutUserId",
                "flexibleRollout",
                "userWithId",
                "somethingNew",
            ]),
            prop_oneof![
                Just(json!({})),
                (-50.0f64..200.0).prop_map(|p| json!({"percentage": p.to_string()})),
                (0u32..=100).prop_map(|p| json!({"rollout": p.to_string(), "groupId": "g"})),
                Just(json!({"percentage": "half"})),
            ],
            prop::collection::vec("\\PC{0,300}", 0..3),
        )
            .prop_map(|(name, parameters, scopes)| {
                json!({
                    "name": name,
                    "parameters": parameters,
                    "scopes": scopes.into_iter().map(|s| json!({"environment_scope": s})).collect::<Vec<_>>(),
                })
            })
    }

    fn flag() -> impl Strategy<Value = FlagFacts> {
        (
            project(),
            1i64..i64::MAX,
            "\\PC{1,300}",
            text(),
            any::<bool>(),
            prop::collection::vec(strategy(), 0..4),
            prop_oneof![Just("2026-11-27T10:00:00.000Z".to_owned()), "\\PC{0,20}"],
        )
            .prop_map(
                |(project, id, name, description, active, strategies, updated_at)| FlagFacts {
                    project,
                    id,
                    name,
                    description,
                    active,
                    strategies: strategies.into_iter().map(Into::into).collect(),
                    updated_at,
                },
            )
    }

    const SEQ: i64 = 1_795_000_000_000_000;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        #[test]
        fn mapped_merge_requests_are_valid_devinfo(ev in merge_request(), from_branch in any::<bool>()) {
            let opts = MergeRequestOptions { keys_from_source_branch: from_branch };
            if let MergeRequestAction::Store { request, .. } = map_merge_request(&ev, SEQ, opts) {
                check("/rest/devinfo/0.10/bulk", serde_json::to_value(&request).unwrap())?;
            }
        }

        #[test]
        fn mapped_pipelines_are_valid_builds(ev in pipeline()) {
            if let Some(build) = map_pipeline(&ev, SEQ) {
                let body = BuildsRequest { properties: Default::default(), builds: vec![build], provider_metadata: ProviderMetadata::ours() };
                check("/rest/builds/0.1/bulk", serde_json::to_value(&body).unwrap())?;
            }
        }

        #[test]
        fn mapped_deployments_are_valid(f in deployment()) {
            if let Some(d) = map_deployment(&f, SEQ) {
                let body = DeploymentsRequest { properties: Default::default(), deployments: vec![d], provider_metadata: ProviderMetadata::ours() };
                check("/rest/deployments/0.1/bulk", serde_json::to_value(&body).unwrap())?;
            }
        }

        #[test]
        fn mapped_feature_flags_are_valid(f in flag()) {
            if let Some(flag) = map_feature_flag(&f, SEQ) {
                let body = FeatureFlagsRequest { properties: gfj_core::mapping::properties(1, f.project.id), flags: vec![flag], provider_metadata: ProviderMetadata::ours() };
                check("/rest/featureflags/0.1/bulk", serde_json::to_value(&body).unwrap())?;
            }
        }
    }

    /// The generators must actually produce bodies, or the properties say nothing.
    #[test]
    fn the_mapped_generators_produce_bodies() {
        fn produced<T: std::fmt::Debug>(
            s: impl Strategy<Value = T>,
            mapped: impl Fn(&T) -> bool,
        ) -> usize {
            let mut runner = proptest::test_runner::TestRunner::deterministic();
            (0..50)
                .filter(|_| mapped(&s.new_tree(&mut runner).unwrap().current()))
                .count()
        }
        let counts = [
            produced(merge_request(), |ev| {
                matches!(
                    map_merge_request(ev, 1, MergeRequestOptions::default()),
                    MergeRequestAction::Store { .. }
                )
            }),
            produced(pipeline(), |ev| map_pipeline(ev, 1).is_some()),
            produced(deployment(), |f| map_deployment(f, 1).is_some()),
            produced(flag(), |f| map_feature_flag(f, 1).is_some()),
        ];
        assert!(counts.iter().all(|n| *n > 10), "bodies per 50: {counts:?}");
    }
}
