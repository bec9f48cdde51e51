//! GitLab webhook bodies written after the examples in GitLab's `webhook_events.md`, one per event and
//! edge case we depend on, parsed the way the webhook endpoint parses them.

use std::path::PathBuf;

use gfj_core::gitlab::{EventKind, GitLabTime, NULL_SHA, PayloadError, PushUser, WebhookEvent};
use serde_json::{Value, json};

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gitlab")
}

fn fixture(name: &str) -> Vec<u8> {
    let path = fixture_dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn fixture_json(name: &str) -> Value {
    serde_json::from_slice(&fixture(name)).unwrap_or_else(|e| panic!("{name} is not JSON: {e}"))
}

fn parse(header: &str, name: &str) -> WebhookEvent {
    WebhookEvent::parse(EventKind::from_header(header), &fixture(name))
        .unwrap_or_else(|e| panic!("{name} with {header:?}: {e}"))
}

fn parse_value(header: &str, body: &Value) -> Result<WebhookEvent, PayloadError> {
    WebhookEvent::parse(EventKind::from_header(header), body.to_string().as_bytes())
}

fn ms(time: Option<GitLabTime>) -> Option<i64> {
    time.map(|t| t.unix_ms())
}

const FIXTURES: &[(&str, &str)] = &[
    ("push_branch_created.json", "Push Hook"),
    ("push_branch_deleted.json", "Push Hook"),
    ("push_25_commits.json", "Push Hook"),
    ("push_redacted_email.json", "Push Hook"),
    ("tag_push.json", "Tag Push Hook"),
    ("merge_request_opened.json", "Merge Request Hook"),
    ("merge_request_merged.json", "Merge Request Hook"),
    ("merge_request_no_merged_at.json", "Merge Request Hook"),
    ("pipeline_with_builds_and_environment.json", "Pipeline Hook"),
    ("job_waiting_for_approval.json", "Job Hook"),
    ("job_success.json", "Job Hook"),
    ("deployment_running.json", "Deployment Hook"),
    ("deployment_api_created.json", "Deployment Hook"),
    ("feature_flag.json", "Feature Flag Hook"),
    ("project_create.json", "Project Hook"),
    ("subgroup_create.json", "Subgroup Hook"),
    ("member_add.json", "Member Hook"),
];

#[test]
fn every_fixture_parses_with_its_header_and_no_other() {
    for (name, header) in FIXTURES {
        let event = parse(header, name);
        assert_eq!(event.kind().header(), *header, "{name}");
        for other in EventKind::KNOWN {
            if other.header() != *header {
                assert!(
                    WebhookEvent::parse(other, &fixture(name)).is_err(),
                    "{name} parsed as {other:?}"
                );
            }
        }
    }
}

#[test]
fn every_fixture_file_is_in_the_table() {
    let mut on_disk: Vec<String> = std::fs::read_dir(fixture_dir())
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    on_disk.sort();
    let mut listed: Vec<String> = FIXTURES
        .iter()
        .map(|(name, _)| (*name).to_owned())
        .collect();
    listed.sort();
    assert_eq!(on_disk, listed);
}

#[test]
fn push_branch_created() {
    let WebhookEvent::Push(push) = parse("Push Hook", "push_branch_created.json") else {
        panic!("not a push");
    };
    assert_eq!(push.before, NULL_SHA);
    assert!(!push.deletes_ref());
    assert_eq!(push.branch(), Some("feature/PAY-142-retry-webhooks"));
    assert_eq!(push.project_id, 4711);
    assert_eq!(
        push.project.path_with_namespace,
        "acme/platform/payments-api"
    );
    assert_eq!(push.commits.len(), 1);
    assert_eq!(push.total_commits_count, 1);
    let commit = &push.commits[0];
    assert_eq!(commit.id, push.after);
    assert_eq!(commit.added, ["app/webhooks/retry.rb"]);
    // 09:14:05+01:00 is 08:14:05Z.
    assert_eq!(ms(commit.parsed_timestamp()), Some(1_772_439_245_000));
    assert_eq!(
        commit.parsed_timestamp().map(|t| t.rfc3339()).as_deref(),
        Some("2026-03-02T08:14:05Z")
    );
    assert_eq!(
        commit.author.visible_email(),
        Some("priya.raman@acme.example")
    );
}

#[test]
fn push_branch_deleted() {
    let event = parse("Push Hook", "push_branch_deleted.json");
    assert_eq!(event.project_id(), Some(4711));
    assert_eq!(event.group_id(), None);
    let WebhookEvent::Push(push) = event else {
        panic!("not a push");
    };
    assert_eq!(push.after, NULL_SHA);
    assert!(push.deletes_ref());
    assert_eq!(push.checkout_sha, None);
    assert!(push.commits.is_empty());
    assert_eq!(push.total_commits_count, 0);
    assert_eq!(push.branch(), Some("feature/PAY-98-old-export"));
}

#[test]
fn push_with_more_commits_than_gitlab_lists() {
    let WebhookEvent::Push(push) = parse("Push Hook", "push_25_commits.json") else {
        panic!("not a push");
    };
    assert_eq!(push.commits.len(), 20);
    assert_eq!(push.total_commits_count, 25);
    // Oldest first, so the newest listed commit is the new tip.
    assert_eq!(
        push.commits.last().map(|c| c.id.as_str()),
        Some(push.after.as_str())
    );
    assert_eq!(
        push.commits[0].title,
        "PAY-150 Step 6 of the ledger migration"
    );
    assert_eq!(
        ms(push.commits.last().and_then(|c| c.parsed_timestamp())),
        Some(1_772_531_455_000)
    );
    assert_eq!(push.user_username.as_deref(), Some("meilin"));
}

#[test]
fn push_with_redacted_email() {
    let body = fixture("push_redacted_email.json");
    let Ok(WebhookEvent::Push(push)) = WebhookEvent::parse(EventKind::Push, &body) else {
        panic!("not a push");
    };
    assert_eq!(push.branch(), Some("main"));
    assert_eq!(push.user_username.as_deref(), Some("toliveira"));
    let pusher = PushUser::from_body(&body).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(pusher.user_email_as_sent.as_deref(), Some("[REDACTED]"));
    assert_eq!(pusher.email(), None);
    assert_eq!(pusher.user_name, "Tomás Oliveira");
    assert_eq!(pusher.user_id, Some(318));
    // The commit's author email comes from git, not from the profile, and is not redacted.
    assert_eq!(
        push.commits[0].author.visible_email(),
        Some("tomas@oliveira.dev")
    );
    // 16:45:12-03:00 is 19:45:12Z.
    assert_eq!(
        ms(push.commits[0].parsed_timestamp()),
        Some(1_772_653_512_000)
    );
}

#[test]
fn tag_push() {
    let body = fixture("tag_push.json");
    let Ok(WebhookEvent::TagPush(tag)) = WebhookEvent::parse(EventKind::TagPush, &body) else {
        panic!("not a tag push");
    };
    assert_eq!(tag.object_kind, "tag_push");
    assert_eq!(tag.git_ref, "refs/tags/v2.4.0");
    assert_eq!(tag.branch(), None);
    assert_eq!(tag.before, NULL_SHA);
    assert_eq!(tag.user_username, None);
    assert!(tag.commits.is_empty());
    let pusher = PushUser::from_body(&body).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(pusher.email(), None);
    assert_eq!(pusher.user_name, "Priya Raman");
}

#[test]
fn merge_request_opened() {
    let WebhookEvent::MergeRequest(mr) = parse("Merge Request Hook", "merge_request_opened.json")
    else {
        panic!("not a merge request");
    };
    let attrs = &mr.object_attributes;
    assert_eq!((attrs.id, attrs.iid), (90211, 57));
    assert_eq!(attrs.state, "opened");
    assert_eq!(attrs.action.as_deref(), Some("open"));
    assert_eq!(attrs.source_branch, "feature/PAY-142-retry-webhooks");
    assert_eq!(attrs.target_branch, "main");
    assert_eq!(
        (attrs.source_project_id, attrs.target_project_id),
        (Some(4711), 4711)
    );
    assert_eq!(attrs.author_id, Some(212));
    assert_eq!(ms(attrs.created_at), Some(1_772_439_611_000));
    assert_eq!(attrs.last_edited_at, None);
    assert_eq!(attrs.merged_at, None);
    assert_eq!(attrs.merge_commit_sha, None);
    assert!(!attrs.is_draft());
    assert_eq!(attrs.detailed_merge_status.as_deref(), Some("not_approved"));
    assert_eq!(
        attrs.url,
        "https://gitlab.example.com/acme/platform/payments-api/-/merge_requests/57"
    );
    let last = attrs.last_commit.as_ref().map(|c| c.title.as_str());
    assert_eq!(last, Some("PAY-142 Retry webhook deliveries with backoff"));
    assert_eq!(
        mr.labels
            .iter()
            .map(|l| l.title.as_str())
            .collect::<Vec<_>>(),
        ["payments"]
    );
    assert_eq!(mr.reviewers.len(), 1);
    assert_eq!(mr.reviewers[0].username, "meilin");
    assert_eq!(mr.reviewers[0].email(), None, "reviewers carry no email");
    assert_eq!(mr.assignees[0].id, Some(212));
    assert_eq!(
        mr.user.as_ref().and_then(|u| u.email()),
        Some("priya.raman@acme.example")
    );
    assert!(mr.changes.get("iid").is_some());
}

#[test]
fn merge_request_merged() {
    let event = parse("Merge Request Hook", "merge_request_merged.json");
    assert_eq!(event.project_id(), Some(4711));
    let WebhookEvent::MergeRequest(mr) = event else {
        panic!("not a merge request");
    };
    let attrs = &mr.object_attributes;
    assert_eq!(attrs.state, "merged");
    assert_eq!(attrs.action.as_deref(), Some("merge"));
    assert_eq!(ms(attrs.merged_at), Some(1_772_719_366_000));
    assert_eq!(
        attrs.merged_at.map(|t| t.rfc3339()).as_deref(),
        Some("2026-03-05T14:02:46Z")
    );
    assert!(attrs.last_edited_at.is_some());
    assert_eq!(attrs.merge_commit_sha.as_ref().map(String::len), Some(40));
    assert_eq!(attrs.detailed_merge_status.as_deref(), Some("mergeable"));
    assert_eq!(
        mr.user.as_ref().map(|u| u.username.as_str()),
        Some("meilin")
    );
}

#[test]
fn merge_request_from_an_older_instance() {
    let WebhookEvent::MergeRequest(mr) =
        parse("Merge Request Hook", "merge_request_no_merged_at.json")
    else {
        panic!("not a merge request");
    };
    let attrs = &mr.object_attributes;
    assert_eq!(attrs.state, "merged");
    assert_eq!(attrs.merged_at, None);
    assert_eq!(attrs.detailed_merge_status, None);
    assert_eq!(attrs.merge_status.as_deref(), Some("can_be_merged"));
    assert!(attrs.is_draft(), "work_in_progress stands in for draft");
    assert_eq!(ms(attrs.updated_at), Some(1_622_637_005_000));
    assert!(mr.reviewers.is_empty());
    assert_eq!(mr.assignees[0].id, None);
    assert_eq!(mr.assignees[0].username, "praman");
}

#[test]
fn pipeline_with_builds_and_environment() {
    let WebhookEvent::Pipeline(pipeline) =
        parse("Pipeline Hook", "pipeline_with_builds_and_environment.json")
    else {
        panic!("not a pipeline");
    };
    let attrs = &pipeline.object_attributes;
    assert_eq!((attrs.id, attrs.iid), (880123, Some(412)));
    assert_eq!(attrs.status, "manual");
    assert_eq!(attrs.source.as_deref(), Some("merge_request_event"));
    assert_eq!(attrs.git_ref, "refs/merge-requests/57/head");
    assert!(!attrs.tag);
    assert_eq!(attrs.stages, ["build", "test", "deploy"]);
    assert_eq!(ms(attrs.created_at), Some(1_772_439_615_000));
    assert_eq!(attrs.finished_at, None);
    assert_eq!(attrs.duration, Some(212.0));
    assert_eq!(
        pipeline.web_url(),
        "https://gitlab.example.com/acme/platform/payments-api/-/pipelines/880123"
    );
    let mr = pipeline.merge_request.as_ref().map(|mr| (mr.id, mr.iid));
    assert_eq!(mr, Some((90211, 57)));
    assert_eq!(
        pipeline.commit.as_ref().map(|c| c.id.as_str()),
        Some(attrs.sha.as_str())
    );

    assert_eq!(pipeline.builds.len(), 3);
    let deploys: Vec<_> = pipeline
        .builds
        .iter()
        .filter(|b| b.is_manual_deployment())
        .collect();
    assert_eq!(deploys.len(), 1);
    let deploy = deploys[0];
    assert_eq!(
        (deploy.id, deploy.name.as_str()),
        (5550003, "deploy-production")
    );
    assert!(deploy.manual);
    assert_eq!(deploy.when.as_deref(), Some("manual"));
    assert_eq!(deploy.started_at, None);
    let env = deploy.environment.as_ref().map(|e| {
        (
            e.name.as_str(),
            e.action.as_deref(),
            e.deployment_tier.as_deref(),
        )
    });
    assert_eq!(env, Some(("production", Some("start"), Some("production"))));
    let rspec = pipeline.builds.iter().find(|b| b.name == "rspec");
    assert_eq!(rspec.map(|b| b.status.as_str()), Some("success"));
    assert_eq!(rspec.and_then(|b| b.environment.as_ref()), None);
    assert_eq!(rspec.and_then(|b| b.duration), Some(127.3));
}

#[test]
fn job_waiting_for_approval() {
    let event = parse("Job Hook", "job_waiting_for_approval.json");
    assert_eq!(event.project_id(), Some(4711));
    let WebhookEvent::Job(job) = event else {
        panic!("not a job");
    };
    assert_eq!(job.object_kind, "build");
    assert_eq!((job.build_id, job.pipeline_id), (5560010, 880200));
    assert_eq!(job.build_status, "manual");
    assert!(job.is_manual_deployment());
    let env = job.environment.as_ref().map(|e| {
        (
            e.name.as_str(),
            e.action.as_deref(),
            e.deployment_tier.as_deref(),
        )
    });
    assert_eq!(env, Some(("production", Some("start"), Some("production"))));
    assert_eq!(ms(job.build_created_at), Some(1_772_719_381_000));
    assert_eq!((job.build_started_at, job.build_finished_at), (None, None));
    // `commit.id` is the pipeline id.
    assert_eq!(job.commit.as_ref().and_then(|c| c.id), Some(880200));
    assert_eq!(job.git_ref, "main");
    assert_eq!(job.user.as_ref().map(|u| u.username.as_str()), Some(""));
}

#[test]
fn job_success() {
    let WebhookEvent::Job(job) = parse("Job Hook", "job_success.json") else {
        panic!("not a job");
    };
    assert_eq!(job.build_id, 5560008);
    assert_eq!(job.build_status, "success");
    assert!(!job.is_manual_deployment());
    assert_eq!(job.environment, None);
    assert_eq!(job.retries_count, Some(1));
    assert_eq!(ms(job.build_finished_at), Some(1_772_719_513_050));
    assert_eq!(
        job.build_finished_at.map(|t| t.rfc3339()).as_deref(),
        Some("2026-03-05T14:05:13.050Z")
    );
    assert_eq!(job.build_duration, Some(128.332));
    assert_eq!(job.project.as_ref().map(|p| p.id), Some(job.project_id));
    assert_eq!(
        job.repository.as_ref().map(|r| r.name.as_str()),
        Some("payments-api")
    );
}

#[test]
fn deployment_running() {
    let WebhookEvent::Deployment(deployment) = parse("Deployment Hook", "deployment_running.json")
    else {
        panic!("not a deployment");
    };
    assert_eq!(deployment.status, "running");
    assert_eq!(deployment.deployment_id, 3301);
    assert_eq!(deployment.deployable_id, Some(5560010));
    assert!(deployment.deployable_url.is_some());
    assert_eq!(deployment.environment, "production");
    assert_eq!(deployment.environment_tier.as_deref(), Some("production"));
    assert_eq!(deployment.git_ref.as_deref(), Some("main"));
    // 15:10:00 +0100 is 14:10:00Z.
    assert_eq!(ms(deployment.status_changed_at), Some(1_772_719_800_000));
    assert_eq!(deployment.short_sha, "ae892699");
    assert_eq!(
        deployment.commit_sha(),
        Some("ae892699b97c793cb231ec1bcd44e69122111b53")
    );
}

#[test]
fn deployment_created_through_the_api() {
    let WebhookEvent::Deployment(deployment) =
        parse("Deployment Hook", "deployment_api_created.json")
    else {
        panic!("not a deployment");
    };
    assert_eq!(deployment.status, "success");
    assert_eq!(deployment.deployable_id, None);
    assert_eq!(deployment.deployable_url, None);
    assert_eq!(deployment.git_ref, None);
    assert_eq!(ms(deployment.status_changed_at), Some(1_772_807_412_000));
    assert_eq!(deployment.user.as_ref().and_then(|u| u.email()), None);
    assert_eq!(deployment.user.as_ref().map(|u| u.id), Some(Some(318)));
}

#[test]
fn deployment_commit_sha_must_agree_with_short_sha() {
    let mut body = fixture_json("deployment_running.json");
    body["short_sha"] = json!("12345678");
    let Ok(WebhookEvent::Deployment(deployment)) = parse_value("Deployment Hook", &body) else {
        panic!("not a deployment");
    };
    assert_eq!(deployment.commit_sha(), None);
}

#[test]
fn feature_flag() {
    let event = parse("Feature Flag Hook", "feature_flag.json");
    assert_eq!(event.project_id(), Some(4711));
    let WebhookEvent::FeatureFlag(flag) = event else {
        panic!("not a feature flag");
    };
    let attrs = &flag.object_attributes;
    assert_eq!(
        (attrs.id, attrs.name.as_str(), attrs.active),
        (19, "sepa-instant-payments", true)
    );
    assert!(
        attrs
            .description
            .as_deref()
            .is_some_and(|d| d.contains("PAY-160"))
    );
    assert_eq!(
        flag.user_url.as_deref(),
        Some("https://gitlab.example.com/meilin")
    );
}

#[test]
fn project_create() {
    let event = parse("Project Hook", "project_create.json");
    assert_eq!((event.project_id(), event.group_id()), (Some(4790), None));
    let WebhookEvent::Project(project) = event else {
        panic!("not a project event");
    };
    assert!(project.is_create());
    assert_eq!(project.path_with_namespace, "acme/platform/fraud-scoring");
    assert_eq!(project.project_namespace_id, Some(9121));
    assert_eq!(project.project_visibility.as_deref(), Some("internal"));
    assert_eq!(ms(project.created_at), Some(1_772_881_353_000));
    let emails: Vec<_> = project.owners.iter().map(|o| o.email()).collect();
    assert_eq!(emails, [Some("priya.raman@acme.example"), None]);
}

#[test]
fn subgroup_create() {
    let event = parse("Subgroup Hook", "subgroup_create.json");
    assert_eq!((event.project_id(), event.group_id()), (None, Some(1208)));
    let WebhookEvent::Subgroup(subgroup) = event else {
        panic!("not a subgroup event");
    };
    assert!(subgroup.is_create());
    assert_eq!(subgroup.full_path, "acme/platform/risk");
    assert_eq!(subgroup.parent_group_id, Some(1101));
    assert_eq!(subgroup.parent_full_path.as_deref(), Some("acme/platform"));
}

#[test]
fn member_add() {
    let event = parse("Member Hook", "member_add.json");
    assert_eq!(event.group_id(), Some(1101));
    let WebhookEvent::Member(member) = event else {
        panic!("not a member event");
    };
    assert_eq!(member.event_name, "user_add_to_group");
    assert!(member.is_member_after());
    assert_eq!(
        (member.user_id, member.user_username.as_str()),
        (318, "toliveira")
    );
    assert_eq!(member.group_access, "Maintainer");
    assert_eq!(member.access_level(), Some(40));
    assert_eq!(member.user_email(), None);
    assert_eq!(member.group_plan.as_deref(), Some("premium"));
    assert_eq!(ms(member.expires_at), Some(1_798_675_200_000));
}

#[test]
fn date_formats_gitlab_uses() {
    let table: &[(&str, i64, &str)] = &[
        (
            "2016-08-12 15:23:28 UTC",
            1_471_015_408_000,
            "2016-08-12T15:23:28Z",
        ),
        (
            "2021-04-28 21:50:00 +0200",
            1_619_639_400_000,
            "2021-04-28T19:50:00Z",
        ),
        (
            "2021-04-28 21:50:00 +02:00",
            1_619_639_400_000,
            "2021-04-28T19:50:00Z",
        ),
        (
            "2021-04-28 14:50:00 -0500",
            1_619_639_400_000,
            "2021-04-28T19:50:00Z",
        ),
        (
            "2021-04-28T19:50:00+0000",
            1_619_639_400_000,
            "2021-04-28T19:50:00Z",
        ),
        (
            "2013-12-03T17:15:43Z",
            1_386_090_943_000,
            "2013-12-03T17:15:43Z",
        ),
        (
            "2013-12-03T17:15:43.000Z",
            1_386_090_943_000,
            "2013-12-03T17:15:43Z",
        ),
        (
            "2026-11-27T10:00:00.123+02:00",
            1_795_766_400_123,
            "2026-11-27T08:00:00.123Z",
        ),
        (
            "2021-02-23T02:41:37.886Z",
            1_614_048_097_886,
            "2021-02-23T02:41:37.886Z",
        ),
        (
            "2011-12-12T14:27:31+02:00",
            1_323_692_851_000,
            "2011-12-12T12:27:31Z",
        ),
        ("2020-12-14", 1_607_904_000_000, "2020-12-14T00:00:00Z"),
        (
            " 2016-08-12 15:23:28 UTC ",
            1_471_015_408_000,
            "2016-08-12T15:23:28Z",
        ),
    ];
    for (text, unix_ms, rfc3339) in table {
        let parsed = GitLabTime::parse(text);
        assert_eq!(ms(parsed), Some(*unix_ms), "{text:?}");
        assert_eq!(
            parsed.map(|t| t.rfc3339()).as_deref(),
            Some(*rfc3339),
            "{text:?}"
        );
    }
    for text in [
        "",
        "next tuesday",
        "2021-04-28 21:50:00",
        "28/04/2021 21:50",
        "2021-02-30T00:00:00Z",
    ] {
        assert_eq!(GitLabTime::parse(text), None, "{text:?}");
    }
}

#[test]
fn header_kind_mismatch_is_refused() {
    let body = fixture("merge_request_opened.json");
    let err = WebhookEvent::parse(EventKind::Pipeline, &body).err();
    assert_eq!(
        err.map(|e| e.to_string()).as_deref(),
        Some(r#"object_kind "merge_request" does not match X-Gitlab-Event "Pipeline Hook""#)
    );

    let mut job = fixture_json("job_success.json");
    job["object_kind"] = json!("job");
    assert!(matches!(
        parse_value("Job Hook", &job),
        Err(PayloadError::KindMismatch {
            field: "object_kind",
            ..
        })
    ));

    let err = WebhookEvent::parse(EventKind::Member, &fixture("project_create.json")).err();
    assert_eq!(
        err.map(|e| e.to_string()).as_deref(),
        Some(r#"event_name "project_create" does not match X-Gitlab-Event "Member Hook""#)
    );

    let mut push = fixture_json("push_branch_created.json");
    if let Some(fields) = push.as_object_mut() {
        fields.remove("object_kind");
    }
    let err = parse_value("Push Hook", &push).err().map(|e| e.to_string());
    assert_eq!(
        err.as_deref(),
        Some(r#"missing object_kind; X-Gitlab-Event "Push Hook" expects "push""#)
    );
}

#[test]
fn member_events_added_later_still_parse() {
    let mut body = fixture_json("member_add.json");
    body["event_name"] = json!("user_access_request_denied_for_group");
    let Ok(WebhookEvent::Member(member)) = parse_value("Member Hook", &body) else {
        panic!("not a member event");
    };
    assert!(!member.is_member_after());
}

#[test]
fn missing_or_bad_ids_are_refused() {
    let mut mr = fixture_json("merge_request_opened.json");
    if let Some(project) = mr["project"].as_object_mut() {
        project.remove("id");
    }
    let err = parse_value("Merge Request Hook", &mr).err();
    assert_eq!(
        err.map(|e| e.to_string()).as_deref(),
        Some("missing project id (project.id)")
    );

    let mut job = fixture_json("job_success.json");
    if let Some(fields) = job.as_object_mut() {
        fields.remove("project_id");
    }
    assert!(matches!(
        parse_value("Job Hook", &job),
        Err(PayloadError::MissingId {
            what: "project id",
            ..
        })
    ));

    let mut push = fixture_json("push_branch_created.json");
    push["project_id"] = Value::Null;
    assert!(matches!(
        parse_value("Push Hook", &push),
        Err(PayloadError::MissingId {
            what: "project id",
            ..
        })
    ));

    let mut deployment = fixture_json("deployment_running.json");
    deployment["deployment_id"] = json!(0);
    let err = parse_value("Deployment Hook", &deployment).err();
    assert_eq!(
        err.map(|e| e.to_string()).as_deref(),
        Some("deployment id (deployment_id) must be a positive integer, not 0")
    );

    let mut mr = fixture_json("merge_request_opened.json");
    mr["object_attributes"]["iid"] = json!("57");
    assert!(matches!(
        parse_value("Merge Request Hook", &mr),
        Err(PayloadError::InvalidId {
            what: "merge request iid",
            ..
        })
    ));

    let mut pipeline = fixture_json("pipeline_with_builds_and_environment.json");
    if let Some(build) = pipeline["builds"][1].as_object_mut() {
        build.remove("id");
    }
    let err = parse_value("Pipeline Hook", &pipeline).err();
    assert_eq!(
        err.map(|e| e.to_string()).as_deref(),
        Some("missing job id (builds.1.id)")
    );

    let mut subgroup = fixture_json("subgroup_create.json");
    subgroup["group_id"] = json!(-3);
    assert!(matches!(
        parse_value("Subgroup Hook", &subgroup),
        Err(PayloadError::InvalidId {
            what: "group id",
            ..
        })
    ));
}

/// The routing ids are found where a JSON pointer would find them, whatever else is in the way.
#[test]
fn ids_in_unexpected_places_read_as_missing() {
    let mut mr = fixture_json("merge_request_opened.json");
    mr["project"] = json!("acme/web");
    assert_eq!(
        parse_value("Merge Request Hook", &mr)
            .err()
            .map(|e| e.to_string())
            .as_deref(),
        Some("missing project id (project.id)")
    );

    let mut mr = fixture_json("merge_request_opened.json");
    mr["project"] = json!([{"id": 3}]);
    assert!(matches!(
        parse_value("Merge Request Hook", &mr),
        Err(PayloadError::MissingId {
            what: "project id",
            ..
        })
    ));

    let mut pipeline = fixture_json("pipeline_with_builds_and_environment.json");
    pipeline["builds"][0] = Value::Null;
    assert_eq!(
        parse_value("Pipeline Hook", &pipeline)
            .err()
            .map(|e| e.to_string())
            .as_deref(),
        Some("missing job id (builds.0.id)")
    );

    let mut pipeline = fixture_json("pipeline_with_builds_and_environment.json");
    pipeline["merge_request"] = json!("!57");
    assert_eq!(
        parse_value("Pipeline Hook", &pipeline)
            .err()
            .map(|e| e.to_string())
            .as_deref(),
        Some("missing merge request id (merge_request.id)")
    );

    let mut deployment = fixture_json("deployment_running.json");
    deployment["deployment_id"] = json!(12.5);
    assert_eq!(
        parse_value("Deployment Hook", &deployment)
            .err()
            .map(|e| e.to_string())
            .as_deref(),
        Some("deployment id (deployment_id) must be a positive integer, not 12.5")
    );

    // Keys are compared unescaped, as any JSON reader does.
    let body = String::from_utf8(fixture("push_branch_created.json"))
        .map(|text| text.replacen("\"project_id\"", "\"project\\u005fid\"", 1))
        .unwrap_or_default();
    assert!(body.contains("project\\u005fid"));
    assert!(matches!(
        WebhookEvent::parse(EventKind::Push, body.as_bytes()),
        Ok(WebhookEvent::Push(_))
    ));
}

#[test]
fn bodies_that_are_not_json_objects_are_refused() {
    for body in [&b""[..], b"{", b"<html>502</html>", b"\xff\xfe{}"] {
        let err = WebhookEvent::parse(EventKind::Push, body);
        assert!(
            matches!(err, Err(PayloadError::NotJson(_))),
            "{body:?}: {err:?}"
        );
    }
    for (body, json_type) in [
        (&b"[1, 2]"[..], "array"),
        (b"\"push\"", "string"),
        (b"null", "null"),
        (b"17", "number"),
        (b"true", "boolean"),
    ] {
        let err = WebhookEvent::parse(EventKind::Push, body)
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err,
            Some(format!("the body is a JSON {json_type}, not an object"))
        );
    }
    let err = WebhookEvent::parse(EventKind::Push, b"{\"object_kind\": \"push\"} {}");
    assert!(matches!(err, Err(PayloadError::NotJson(_))), "{err:?}");
    assert!(
        WebhookEvent::parse(EventKind::Push, b"not json")
            .err()
            .is_some_and(|e| e.to_string().starts_with("not JSON: "))
    );
}

#[test]
fn other_events_are_unsupported() {
    let body = fixture("push_branch_created.json");
    let err = WebhookEvent::parse(EventKind::from_header("System Hook"), &body);
    assert_eq!(err, Err(PayloadError::UnsupportedEvent));
}

#[test]
fn wrong_types_name_the_place() {
    let mut pipeline = fixture_json("pipeline_with_builds_and_environment.json");
    pipeline["object_attributes"]["status"] = json!(7);
    let err = parse_value("Pipeline Hook", &pipeline).err();
    let Some(PayloadError::Shape { header, detail }) = err else {
        panic!("expected a shape error, got {err:?}");
    };
    assert_eq!(header, "Pipeline Hook");
    assert!(
        detail.contains("expected a string") && detail.contains("line"),
        "{detail}"
    );
}

#[test]
fn unknown_fields_anywhere_are_ignored() {
    let extra = json!({"introduced_in": "GitLab 99.0", "nested": [1, {"deep": null}]});

    let mut pipeline = fixture_json("pipeline_with_builds_and_environment.json");
    pipeline["future_top_level"] = extra.clone();
    pipeline["object_attributes"]["future_attribute"] = extra.clone();
    pipeline["project"]["future_project_field"] = extra.clone();
    pipeline["builds"][0]["future_build_field"] = extra.clone();
    pipeline["builds"][0]["environment"]["future_env_field"] = extra.clone();
    pipeline["merge_request"]["future_mr_field"] = extra.clone();
    pipeline["commit"]["author"]["future_author_field"] = extra.clone();
    let with_extra = parse_value("Pipeline Hook", &pipeline);
    let plain = WebhookEvent::parse(
        EventKind::Pipeline,
        &fixture("pipeline_with_builds_and_environment.json"),
    );
    assert!(plain.is_ok());
    assert_eq!(with_extra, plain);

    let mut push = fixture_json("push_branch_created.json");
    push["commits"][0]["future_commit_field"] = extra.clone();
    push["future_top_level"] = extra.clone();
    assert!(parse_value("Push Hook", &push).is_ok());

    let mut member = fixture_json("member_add.json");
    member["future_member_field"] = extra;
    assert!(parse_value("Member Hook", &member).is_ok());
}

#[test]
fn unreadable_optional_dates_do_not_fail_the_payload() {
    let mut mr = fixture_json("merge_request_merged.json");
    mr["object_attributes"]["merged_at"] = json!("the day before yesterday");
    mr["object_attributes"]["updated_at"] = json!(1_772_719_367);
    mr["object_attributes"]["created_at"] = Value::Null;
    let Ok(WebhookEvent::MergeRequest(mr)) = parse_value("Merge Request Hook", &mr) else {
        panic!("not a merge request");
    };
    let attrs = &mr.object_attributes;
    assert_eq!(
        (attrs.merged_at, attrs.updated_at, attrs.created_at),
        (None, None, None)
    );
    assert!(attrs.last_edited_at.is_some());
}

#[test]
fn nulls_where_lists_and_flags_were_expected_default() {
    let mut pipeline = fixture_json("pipeline_with_builds_and_environment.json");
    pipeline["builds"] = Value::Null;
    pipeline["merge_request"] = Value::Null;
    pipeline["object_attributes"]["tag"] = Value::Null;
    pipeline["object_attributes"]["url"] = Value::Null;
    let Ok(WebhookEvent::Pipeline(pipeline)) = parse_value("Pipeline Hook", &pipeline) else {
        panic!("not a pipeline");
    };
    assert!(pipeline.builds.is_empty());
    assert_eq!(pipeline.merge_request, None);
    assert!(!pipeline.object_attributes.tag);
    assert_eq!(
        pipeline.web_url(),
        "https://gitlab.example.com/acme/platform/payments-api/-/pipelines/880123"
    );
}

#[test]
fn typed_events_survive_a_round_trip_through_json() {
    let WebhookEvent::Pipeline(pipeline) =
        parse("Pipeline Hook", "pipeline_with_builds_and_environment.json")
    else {
        panic!("not a pipeline");
    };
    let stored = serde_json::to_vec(&pipeline).unwrap_or_default();
    let restored = WebhookEvent::parse(EventKind::Pipeline, &stored);
    assert_eq!(restored, Ok(WebhookEvent::Pipeline(pipeline)));
}

proptest::proptest! {
    #[test]
    fn no_date_text_panics(text in "\\PC{0,40}") {
        if let Some(time) = GitLabTime::parse(&text) {
            let _ = (time.unix_ms(), time.rfc3339());
        }
    }

    #[test]
    fn date_shaped_text_never_panics(
        text in "[0-9]{4}-[0-9]{2}-[0-9]{2}[ Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,9})?( ?UTC| ?[+-][0-9]{2}:?[0-9]{2}|Z)?"
    ) {
        if let Some(time) = GitLabTime::parse(&text) {
            proptest::prop_assert!(GitLabTime::parse(&time.rfc3339()).is_some());
            let _ = time.unix_ms();
        }
    }

    #[test]
    fn no_body_panics(body in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
        for kind in EventKind::KNOWN {
            let _ = WebhookEvent::parse(kind, &body);
        }
    }

    #[test]
    fn replacing_any_top_level_field_never_panics(
        field_index in 0usize..40,
        replacement in proptest::prop_oneof![
            proptest::strategy::Just(Value::Null),
            proptest::strategy::Just(json!(-1)),
            proptest::strategy::Just(json!("")),
            proptest::strategy::Just(json!([])),
            proptest::strategy::Just(json!({})),
            proptest::strategy::Just(json!(1e300)),
        ],
    ) {
        for (name, header) in FIXTURES {
            let mut body = fixture_json(name);
            if let Some(fields) = body.as_object_mut()
                && let Some(key) = fields.keys().nth(field_index % fields.len().max(1)).cloned()
            {
                fields.insert(key, replacement.clone());
            }
            let _ = parse_value(header, &body);
        }
    }
}
