//! `serve` as a real process: SIGKILL in the middle of a job loses nothing, and SIGTERM drains and exits 0.

use std::process::{Child, Command, Stdio};

use gfj_sim::gitlab::{GitLabSim, Plan};
use gfj_sim::jira::{JiraSim, JiraSimConfig};
use gfj_store::test_on_both_databases;
use gfj_store::testing::{TEST_KEY, TestDatabase};
use gitlab_for_jira::Settings;
use gitlab_for_jira::commands::link::{self, HookMode, LinkRequest};

use crate::helpers::{eventually, now_ms};

struct Serve {
    child: Child,
    log: std::path::PathBuf,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
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
    let port = free_port();
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

test_on_both_databases!(sigkill_mid_job_loses_nothing_and_sigterm_exits_cleanly);
