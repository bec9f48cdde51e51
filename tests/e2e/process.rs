//! `serve` as a real process: SIGKILL in the middle of a job loses nothing, and SIGTERM drains and exits 0.

use std::process::{Child, Command, Stdio};

use gfj_sim::gitlab::ci::JobSpec;
use gfj_sim::gitlab::{GitLabSim, Plan};
use gfj_sim::jira::{Fault, JiraSim, JiraSimConfig};
use gfj_store::test_on_both_databases;
use gfj_store::testing::{TEST_KEY, TestDatabase};
use gitlab_for_jira::Settings;
use gitlab_for_jira::commands::link::{self, HookMode, LinkRequest};

use crate::helpers::{eventually, now_ms};

struct Serve {
    child: Child,
    log: std::path::PathBuf,
}

fn env(db: &TestDatabase, port: u16, jira: &JiraSim, gitlab: &GitLabSim) -> Vec<(String, String)> {
    [
        ("GFJ_LISTEN", format!("127.0.0.1:{port}")),
        ("GFJ_BASE_URL", format!("http://127.0.0.1:{port}")),
        ("GFJ_DATABASE_URL", db.url.clone()),
        ("GFJ_ENCRYPTION_KEY", TEST_KEY.to_owned()),
        ("GFJ_CONNECT_KEYS_URL", jira.connect_keys_url()),
        ("GFJ_GITLAB_URLS", gitlab.base_url.clone()),
        ("GFJ_JIRA_URLS", "http://127.0.0.1:*".to_owned()),
        ("GFJ_LOG_FORMAT", "json".to_owned()),
        // Short, so that on PostgreSQL the restarted process takes over the dead one's job quickly.
        ("GFJ_JOB_LEASE_SECS", "2".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

async fn start(vars: &[(String, String)], run: usize) -> Serve {
    let log = std::env::temp_dir().join(format!(
        "gfj-serve-{}-{}-{run}.log",
        std::process::id(),
        now_ms()
    ));
    let child = Command::new(env!("CARGO_BIN_EXE_gitlab-for-jira"))
        .arg("serve")
        .env_clear()
        .envs(vars.iter().cloned())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let base = vars
        .iter()
        .find(|(k, _)| k == "GFJ_BASE_URL")
        .unwrap()
        .1
        .clone();
    eventually("serve answers /readyz", || async {
        reqwest::get(format!("{base}/readyz"))
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    Serve { child, log }
}

fn read_log(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

async fn sigkill_mid_job_loses_nothing_and_sigterm_exits_cleanly(db: TestDatabase) {
    let jira = JiraSim::start(JiraSimConfig::default()).await.unwrap();
    let gitlab = GitLabSim::start().await.unwrap();
    let port = gfj_sim::free_port();
    let vars = env(&db, port, &jira, &gitlab);
    let mut serve = start(&vars, 1).await;
    assert_eq!(
        jira.install(&format!("http://127.0.0.1:{port}"))
            .await
            .unwrap(),
        204
    );

    let user = gitlab.add_user("ada", "glpat-ada");
    let group = gitlab.add_group("acme", None, Plan::Free);
    gitlab.add_member(group, user, 40);
    let project = gitlab.add_project(group, "api");
    let settings = Settings::from_map(&vars.iter().cloned().collect()).unwrap();
    let store = settings.open_store().await.unwrap();
    let req = LinkRequest {
        site: jira.client_key().into(),
        group: "acme".into(),
        gitlab_url: gitlab.base_url.clone(),
        gitlab_token: "glpat-ada".into(),
        gitlab_connection: None,
        hook_mode: HookMode::Auto,
    };
    link::link(&settings, &store, req, now_ms()).await.unwrap();
    // The (empty) project's backfill first, so that the held write is the push's.
    eventually("the backfill is done", || async {
        let tasks = store.backfill_tasks(None).await.unwrap();
        !tasks.is_empty()
            && tasks
                .iter()
                .all(|t| t.state == gfj_store::backfill::TaskState::Done)
    })
    .await;

    // The delivery is acknowledged, the worker is inside the Jira call: kill -9.
    jira.hold_next_writes(1);
    gitlab
        .push(project, "feature/KILL-1", &["KILL-1 survive"], user)
        .await;
    assert_eq!(gitlab.deliveries().last().unwrap().status, Some(202));
    jira.wait_until_held(1).await;
    serve.child.kill().unwrap();
    serve.child.wait().unwrap();
    assert!(jira.issue("KILL-1").commits.is_empty());

    let mut serve = start(&vars, 2).await;
    eventually(
        "the interrupted job completes after the restart",
        || async {
            jira.issue("KILL-1").commits.len() == 1 && store.jobs().await.unwrap().is_empty()
        },
    )
    .await;
    assert_eq!(jira.issue("KILL-1").branches.len(), 1);
    assert_eq!(
        jira.requests().iter().filter(|r| r.status == 202).count(),
        1,
        "sent once by the new process"
    );

    let pid = serve.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::task::spawn_blocking(move || serve.child.wait().unwrap())
        .await
        .unwrap();
    assert_eq!(
        status.code(),
        Some(0),
        "serve exits 0 on SIGTERM; its log:\n{}",
        read_log(&serve.log)
    );
    assert!(
        read_log(&serve.log).contains("resuming jobs interrupted")
            || db.url.starts_with("postgres")
    );
    jira.release_held();
    store.close().await;
    let _ = std::fs::remove_file(&serve.log);
    db.drop_database().await;
}

test_on_both_databases!(
    chaos_loses_nothing_and_leaves_nothing_stale,
    sigkill_mid_job_loses_nothing_and_sigterm_exits_cleanly
);

/// What the Jira panel must show at the end, as the test made it happen in GitLab.
#[derive(Default)]
struct Expected {
    /// (issue key, commit SHA): every keyed commit, under its key.
    commits: Vec<(String, String)>,
    /// Issue key → (branch name, head SHA): the branch as last pushed, never an older head.
    branches: std::collections::BTreeMap<String, (String, String)>,
    /// Issue key of a merge request's title → its final status.
    merge_requests: std::collections::BTreeMap<String, &'static str>,
    /// Issue key of a flag's current description → the flag's name; `gone` keys must show no flag.
    flags: std::collections::BTreeMap<String, String>,
    gone_flag_keys: Vec<String>,
    /// Issue key of a pipeline's commit → the pipeline's iid; its build must show it successful.
    builds: std::collections::BTreeMap<String, i64>,
    /// Issue keys of commits deployed to an environment that waits for approval (GitLab sends no
    /// webhook for a blocked deployment): a pending deployment must show on each.
    pending_deployments: Vec<String>,
}

impl Expected {
    /// What is still missing or stale in Jira, if anything.
    fn differences(&self, jira: &JiraSim) -> Vec<String> {
        let mut out = Vec::new();
        for (key, sha) in &self.commits {
            if !jira
                .issue(key)
                .commits
                .iter()
                .any(|c| c["id"] == sha.as_str())
            {
                out.push(format!("commit {sha} missing on {key}"));
            }
        }
        for (key, (name, head)) in &self.branches {
            let b = jira.issue(key).branches;
            if !b
                .iter()
                .any(|b| b["name"] == name.as_str() && b["lastCommit"]["id"] == head.as_str())
            {
                out.push(format!(
                    "branch {name} at {head} missing or stale on {key}: {b:?}"
                ));
            }
        }
        for (key, status) in &self.merge_requests {
            let prs = jira.issue(key).pull_requests;
            if prs.len() != 1 || prs[0]["status"] != *status {
                out.push(format!("merge request on {key} is not {status}: {prs:?}"));
            }
        }
        for (key, name) in &self.flags {
            if !jira
                .issue(key)
                .feature_flags
                .iter()
                .any(|f| f["key"] == name.as_str())
            {
                out.push(format!("flag {name} missing on {key}"));
            }
        }
        for (key, iid) in &self.builds {
            let builds = jira.issue(key).builds;
            if !builds
                .iter()
                .any(|b| b["buildNumber"] == *iid && b["state"] == "successful")
            {
                out.push(format!(
                    "build {iid} on {key} missing or not successful: {builds:?}"
                ));
            }
        }
        for key in &self.pending_deployments {
            let deployments = jira.issue(key).deployments;
            if !deployments.iter().any(|d| d["state"] == "pending") {
                out.push(format!(
                    "pending deployment missing on {key}: {deployments:?}"
                ));
            }
        }
        for key in &self.gone_flag_keys {
            if !jira.issue(key).feature_flags.is_empty() {
                out.push(format!("stale flag still on {key}"));
            }
        }
        out
    }
}

/// The chaos run: over 1,000 mixed GitLab events (silent kinds included), Jira answering bursts of 429
/// and 503, and the service killed with SIGKILL and restarted twice. At the end Jira shows exactly what
/// GitLab holds: nothing missing, nothing stale.
async fn chaos_loses_nothing_and_leaves_nothing_stale(db: TestDatabase) {
    let jira = JiraSim::start(JiraSimConfig::default()).await.unwrap();
    let gitlab = GitLabSim::start().await.unwrap();
    let port = gfj_sim::free_port();
    let mut vars = env(&db, port, &jira, &gitlab);
    vars.extend([
        ("GFJ_RECONCILE_SECS".to_owned(), "10".to_owned()),
        ("GFJ_HOOK_CHECK_SECS".to_owned(), "5".to_owned()),
    ]);
    let mut serve = start(&vars, 1).await;
    assert_eq!(
        jira.install(&format!("http://127.0.0.1:{port}"))
            .await
            .unwrap(),
        204
    );
    let user = gitlab.add_user("ada", "glpat-ada");
    let group = gitlab.add_group("acme", None, Plan::Free);
    gitlab.add_member(group, user, 40);
    let projects = [
        gitlab.add_project(group, "api"),
        gitlab.add_project(group, "web"),
    ];
    // Deployments of "web" to production wait for an approval that never comes.
    gitlab.add_environment(projects[1], "production", "production");
    let approver = gitlab.add_user("approver", "glpat-approver");
    gitlab.protect_environment(projects[1], "production", &[approver], 1);
    let settings = Settings::from_map(&vars.iter().cloned().collect()).unwrap();
    let store = settings.open_store().await.unwrap();
    let req = LinkRequest {
        site: jira.client_key().into(),
        group: "acme".into(),
        gitlab_url: gitlab.base_url.clone(),
        gitlab_token: "glpat-ada".into(),
        gitlab_connection: None,
        hook_mode: HookMode::Auto,
    };
    link::link(&settings, &store, req, now_ms()).await.unwrap();

    let mut want = Expected::default();
    let mut events = 0;
    let mut n = 0;
    let mut next = |prefix: &str| {
        n += 1;
        format!("{prefix}-{n}")
    };
    for round in 0..3 {
        for i in 0..200 {
            let p = projects[i % 2];
            if i % 25 == 0 {
                jira.inject([
                    Fault::RateLimited {
                        retry_after_secs: 1,
                    },
                    Fault::ServerError(503),
                    Fault::ServerError(503),
                ]);
            }
            match i % 10 {
                // Pushes to the default branch.
                0..=2 => {
                    let key = next("CH");
                    let sha = gitlab
                        .push(p, "main", &[&format!("{key} work")], user)
                        .await;
                    want.commits.push((key, sha[0].clone()));
                    events += 1;
                }
                // Pushes to an issue branch, reused so that heads move.
                3..=5 => {
                    let branch_key = format!("BR{}-{}", i % 2, i % 7);
                    let branch = format!("feature/{branch_key}");
                    let key = next("CH");
                    let sha = gitlab
                        .push(p, &branch, &[&format!("{key} on a branch")], user)
                        .await;
                    want.commits.push((key, sha[0].clone()));
                    want.branches.insert(branch_key, (branch, sha[0].clone()));
                    events += 1;
                }
                // One push of four refs: GitLab sends no webhook at all.
                6 => {
                    let keys: Vec<String> = (0..4).map(|_| next("SILENT")).collect();
                    let msgs: Vec<[&str; 1]> = keys.iter().map(|k| [k.as_str()]).collect();
                    let names = ["silent-a", "silent-b", "silent-c", "silent-d"];
                    let updates: Vec<(&str, &[&str])> = names
                        .iter()
                        .copied()
                        .zip(msgs.iter().map(|m| &m[..]))
                        .collect();
                    let shas = gitlab.push_refs(p, &updates, user).await;
                    for (key, sha) in keys.into_iter().zip(shas) {
                        want.commits.push((key, sha[0].clone()));
                    }
                    events += 4;
                }
                // A merge request opened from an issue branch, merged two rounds of ten later.
                7 => {
                    let key = next("MR");
                    let branch = format!("mr/{key}");
                    gitlab.push(p, &branch, &["prepare"], user).await;
                    let mr = gitlab
                        .open_merge_request(p, &branch, "main", &format!("{key} change"), "", user)
                        .await;
                    events += 2;
                    if i % 20 == 7 {
                        gitlab.merge_merge_request(p, mr.iid, user).await;
                        want.merge_requests.insert(key, "MERGED");
                        events += 1;
                    } else {
                        want.merge_requests.insert(key, "OPEN");
                    }
                }
                // A feature flag toggled on (a webhook), then silently described anew (no webhook).
                8 => {
                    let name = format!("flag_{round}_{i}");
                    let first = next("FF");
                    gitlab
                        .create_feature_flag(p, &name, &first, false, vec![])
                        .await;
                    gitlab.update_feature_flag(p, &name, None, Some(true)).await;
                    // GitLab's REST API hides flag ids; only the toggle's webhook tells it. A flag
                    // whose only webhook went nowhere (service down) cannot be known, by design.
                    let toggle_received = gitlab.deliveries().last().is_some_and(|d| {
                        d.event == "Feature Flag Hook"
                            && d.status.is_some_and(|s| (200..300).contains(&s))
                    });
                    let second = next("FF");
                    gitlab
                        .update_feature_flag(p, &name, Some(&second), None)
                        .await;
                    if toggle_received {
                        want.flags.insert(second, name);
                    }
                    want.gone_flag_keys.push(first);
                    events += 3;
                }
                // A deployment to "web"'s protected production: blocked, and no webhook says so.
                9 if i % 20 == 9 => {
                    let key = next("DEP");
                    gitlab
                        .push(p, "main", &[&format!("{key} release")], user)
                        .await;
                    let deploy = JobSpec::deploy("deploy", "production", "production", false);
                    gitlab.run_pipeline(p, "main", &[deploy]).await;
                    want.pending_deployments.push(key);
                    events += 2;
                }
                // A pipeline on a branch of its own, running its test job to success.
                _ => {
                    let key = next("PL");
                    let sha = gitlab
                        .push(p, "ci", &[&format!("{key} faster tests")], user)
                        .await;
                    want.commits.push((key.clone(), sha[0].clone()));
                    let pipeline = gitlab
                        .run_pipeline(p, "ci", &[JobSpec::new("test", "test")])
                        .await;
                    for status in ["running", "success"] {
                        gitlab.set_job_status(p, pipeline.job_ids[0], status).await;
                    }
                    want.builds.insert(key, pipeline.iid);
                    events += 4;
                }
            }
            // Twice, in the middle of the stream: kill -9, keep GitLab busy meanwhile, restart.
            if round < 2 && i == 140 {
                serve.child.kill().unwrap();
                serve.child.wait().unwrap();
                for _ in 0..20 {
                    let key = next("DOWN");
                    let sha = gitlab
                        .push(projects[0], "main", &[&format!("{key} while down")], user)
                        .await;
                    want.commits.push((key, sha[0].clone()));
                    events += 1;
                }
                serve = start(&vars, round + 2).await;
            }
        }
    }
    assert!(events >= 1000, "{events} events");

    // Converges: live events, retries, hook repair and reconciliation passes.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(150);
    loop {
        let missing = want.differences(&jira);
        if missing.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} differences after 150 s, e.g. {:?}; log:\n{}",
            missing.len(),
            &missing[..missing.len().min(5)],
            read_log(&serve.log)
                .lines()
                .rev()
                .take(30)
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }

    let pid = serve.child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let _ = tokio::task::spawn_blocking(move || serve.child.wait()).await;
    store.close().await;
    db.drop_database().await;
}
