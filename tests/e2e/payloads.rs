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
            if let Ok(PushAction::Store(request)) = map_push(&p, 1_700_000_000_000_000, None) {
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
        if matches!(map_push(&p, 1, None), Ok(PushAction::Store(_))) {
            stored += 1;
        }
    }
    assert!(
        stored > 10,
        "only {stored} of 50 generated pushes produced a body"
    );
}
